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


def test_the_paper_level_is_numpys_90th_percentile_exactly():
    """The histogram's answer, not an approximation: the blank rule and the skew estimate
    threshold against it, so any difference could turn a page's verdict."""
    import numpy as np

    from ocr.preprocess import paper_level

    rng = np.random.default_rng(7)
    pages = [np.asarray(to_gray(Image.open(p))) for p in sorted((SAMPLE_BATCH / "pages").glob("*.jpg"))[:3]]
    arrays = [*pages, *(p[p.shape[0] // 20: -(p.shape[0] // 20), p.shape[1] // 20: -(p.shape[1] // 20)] for p in pages),
              np.zeros((1, 1), np.uint8), np.full((7, 3), 255, np.uint8), np.array([[0, 255]], np.uint8)]
    for _ in range(500):
        h, w = rng.integers(1, 200, 2)
        a = np.clip(rng.normal(rng.integers(0, 256), rng.integers(1, 80), (h, w)), 0, 255).astype(np.uint8)
        arrays += [a, a[h // 20: h - h // 20 or None, w // 3:]]
    tall = np.full((22000, 960), 200, np.uint8)  # over 2**24 pixels, where float32 counts round
    tall.flat[:19_008_001] = 10  # an odd count over 2**24: float32 cannot hold it
    arrays.append(tall)
    for a in arrays:
        if a.size:
            assert paper_level(a) == float(np.percentile(a, 90)), a.shape
