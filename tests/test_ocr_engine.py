"""The OCR engine on real tesseract: text, word boxes, confidence, PDFs, parallel workers."""

import io

from PIL import Image

from ocr import EngineConfig, OcrPool
from ocr.engine import TesseractEngine
from ocr.images import load_pages
from ocr.quality import cer
from tests.conftest import SAMPLE_BATCH, SAMPLE_TRUTH


def test_page_result_has_words_boxes_and_confidence():
    page = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[0]
    (img, dpi), = load_pages(page.read_bytes())
    engine = TesseractEngine(EngineConfig())
    try:
        r = engine.recognise(img, dpi)
    finally:
        engine.close()
    assert r.words and 0 < r.confidence <= 100
    for w in r.words:
        x0, y0, x1, y1 = w.bbox
        assert 0 <= x0 < x1 <= img.width and 0 <= y0 < y1 <= img.height
    assert " 学" not in r.text  # no spaces between Chinese characters
    assert cer((SAMPLE_TRUTH / f"{page.stem}.txt").read_text(), r.text) < 0.15


def test_pool_keeps_order_and_reads_pdfs():
    pages = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[:3]
    img = Image.open(pages[1])
    buf = io.BytesIO()
    img.save(buf, "PDF", resolution=300)
    blobs = [p.read_bytes() for p in pages] + [buf.getvalue()]
    with OcrPool(workers=2) as pool:
        results = list(pool.map(blobs))
    assert [len(r) for r in results] == [1, 1, 1, 1]
    truth = (SAMPLE_TRUTH / f"{pages[1].stem}.txt").read_text()
    assert cer(truth, results[3][0].text) < cer(truth, "") / 2  # the PDF copy reads like the image
    truths = [(SAMPLE_TRUTH / f"{p.stem}.txt").read_text() for p in pages]
    for i, r in enumerate(results[:3]):  # in input order: each page matches its own truth best
        assert min(range(3), key=lambda j: cer(truths[j], r[0].text)) == i
