"""The intake skew estimate: measured against pages turned by known angles."""

from PIL import Image

from intake.skew import estimate_skew
from ocr.preprocess import rotate, to_gray
from tests.conftest import SAMPLE_BATCH


def test_skew_estimate_follows_known_turns():
    # relative to each page's own estimate: the sample holds pages scanned skewed on purpose
    for path in sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[:3]:
        gray = to_gray(Image.open(path))
        own = estimate_skew(gray)
        for turn in (-3.0, -0.7, 1.5, 4.0):
            assert abs(estimate_skew(rotate(gray, turn)) - own - turn) <= 0.2, (path.name, turn)


def test_blank_page_has_no_skew_estimate():
    assert estimate_skew(Image.new("L", (2480, 3508), 250)) is None
