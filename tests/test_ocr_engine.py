"""The OCR engine on real models: orientation, deskew, clean-up, gates, fallback, parallel workers."""

import io
import random
import re

import numpy as np
import pytest
from PIL import Image

from ocr import EngineConfig, OcrPool, PageOcr, gates
from ocr.images import load_pages
from ocr.quality import cer
from ocr.rapid import rec_input
from ocr.tesseract import TesseractEngine
from sample_scans import degrade
from tests.conftest import SAMPLE_BATCH, SAMPLE_TRUTH

CLEAN = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[0]   # a ruled form, clean, 300 dpi
PROSE = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[4]   # prose with full-width punctuation


@pytest.fixture(scope="module")
def engine():
    e = PageOcr(EngineConfig())
    yield e
    e.close()


def _page(path):
    (img, dpi), = load_pages(path.read_bytes())
    return img, dpi, (SAMPLE_TRUTH / f"{path.stem}.txt").read_text(encoding="utf-8")


def test_clean_page_words_boxes_confidence(engine):
    img, dpi, truth = _page(CLEAN)
    r = engine.run(img, dpi)
    assert cer(truth, r.text) < 0.01
    assert r.words and 90 < r.confidence <= 100 and not r.flags and not r.review
    for w in r.words:
        x0, y0, x1, y1 = w.bbox
        assert 0 <= x0 < x1 <= img.width + 2 and 0 <= y0 < y1 <= img.height + 2
    assert "1968年4月1日" in r.text or re.search(r"\d{4}年\d{1,2}月\d{1,2}日", r.text)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_pages_are_read_upright(engine, degrees):
    img, dpi, truth = _page(CLEAN)
    r = engine.run(img.rotate(degrees, expand=True), dpi)
    assert r.rotation == (360 - degrees) % 360
    assert cer(truth, r.text) < 0.01
    for w in r.words:  # boxes on the page turned upright (180: turned, not detected again)
        x0, y0, x1, y1 = w.bbox
        assert 0 <= x0 < x1 <= img.width + 2 and 0 <= y0 < y1 <= img.height + 2


def test_short_line_is_not_padded_to_a_long_one():
    cell = np.full((30, 100, 3), 255, np.uint8)  # a table cell: 160 px wide at height 48
    x = rec_input(cell)
    assert x.shape == (1, 3, 48, 192)  # its width, a 16 px margin, up to a multiple of 32; not 320
    assert float(x[..., :160].min()) == 1.0 and float(np.abs(x[..., 160:]).max()) == 0.0


def test_three_degree_skew_within_one_percent_of_clean_twin(engine):
    img, dpi, truth = _page(CLEAN)
    clean = cer(truth, engine.run(img, dpi).text)
    skewed = engine.run(degrade.skew(img, 3.0), dpi)
    assert abs(skewed.skew) > 2.5
    assert cer(truth, skewed.text) <= clean + 0.01


def test_no_spaces_between_chinese_and_fullwidth_punctuation(engine):
    img, dpi, truth = _page(PROSE)
    r = engine.run(img, dpi)
    assert not re.search(r"[\u4e00-\u9fff] +[\u4e00-\u9fff]", r.text)
    assert not re.search(r"[\u4e00-\u9fff][:,;]", r.text)
    for mark in "，。：":
        if mark in truth:
            assert mark in r.text


def test_red_seal_over_text_is_ignored(engine):
    img, dpi, truth = _page(PROSE)
    sealed = degrade.seal(img.convert("RGB"), random.Random(1), "贵阳市人才服务中心", center=(0.5, 0.3))
    assert cer(truth, engine.run(sealed, dpi).text) < 0.01


def _noisy(img):
    return degrade.noise(img, random.Random(5), sigma=60.0, speckle=0.05)


def test_empty_output_gate_fires_on_noisy_page_without_preprocessing():
    img, dpi, _ = _page(CLEAN)
    noisy = _noisy(img)
    tess = TesseractEngine()
    try:
        from ocr.pipeline import assemble

        text, conf, _ = assemble(tess.recognise(noisy, dpi))
    finally:
        tess.close()
    from ocr.preprocess import ink_ratio

    assert ink_ratio(noisy) > gates.BLANK_INK
    assert gates.check(text, conf, ink_ratio(noisy))  # empty, too short or low confidence: never passed


def test_failing_page_goes_to_fallback_and_is_flagged_for_review(engine):
    from PIL import ImageDraw

    scribbled = Image.new("L", (2480, 3508), 255)  # ink everywhere, text nowhere
    draw, rng = ImageDraw.Draw(scribbled), random.Random(3)
    for _ in range(400):
        draw.line([(rng.randrange(2480), rng.randrange(3508)) for _ in range(2)], fill=0, width=8)
    r = engine.run(scribbled, 300)
    assert r.flags and r.review  # ink but no readable text: a person must look
    assert any(f.startswith("fallback:") for f in r.flags)


def test_blank_page_is_not_a_failure(engine):
    r = engine.run(Image.new("L", (2480, 3508), 250), 300)
    assert r.text == "" and r.flags == [] and not r.review and r.ink < gates.BLANK_INK


def test_pool_keeps_order_and_reads_pdfs():
    pages = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[:3]
    buf = io.BytesIO()
    Image.open(pages[1]).save(buf, "PDF", resolution=300)
    blobs = [p.read_bytes() for p in pages] + [buf.getvalue()]
    with OcrPool(workers=2) as pool:
        results = list(pool.map(blobs))
    assert [len(r) for r in results] == [1, 1, 1, 1]
    truths = [(SAMPLE_TRUTH / f"{p.stem}.txt").read_text() for p in pages]
    assert cer(truths[1], results[3][0].text) < 0.02  # the PDF copy reads like the image
    for i, r in enumerate(results[:3]):  # in input order: each page matches its own truth best
        assert min(range(3), key=lambda j: cer(truths[j], r[0].text)) == i
