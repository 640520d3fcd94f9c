"""OCRmyPDF OCR-engine plugin for benchmarks/pdf_bench.py: hands back OCR results already made.

The pages' PageResult dicts are read from the JSON file named by GIVEN_OCR_RESULTS, one per
page in order; boxes are scaled to the image OCRmyPDF rasterised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ocrmypdf import hookimpl
from ocrmypdf.hocrtransform import BoundingBox, OcrClass, OcrElement
from ocrmypdf.pluginspec import OcrEngine, OrientationConfidence
from PIL import Image


class GivenOcr(OcrEngine):
    @staticmethod
    def version() -> str:
        return "1"

    @staticmethod
    def creator_tag(options) -> str:
        return "personnel-archive-pipeline OCR results"

    def __str__(self) -> str:
        return "given OCR results"

    @staticmethod
    def languages(options) -> set[str]:
        return {"chi_sim", "eng"}

    @staticmethod
    def get_orientation(input_file: Path, options) -> OrientationConfidence:
        return OrientationConfidence(angle=0, confidence=0.0)  # the pages are upright already

    @staticmethod
    def supports_generate_ocr() -> bool:
        return True

    @staticmethod
    def generate_ocr(input_file: Path, options, page_number: int = 0):
        result = json.loads(Path(os.environ["GIVEN_OCR_RESULTS"]).read_text(encoding="utf-8"))[page_number]
        with Image.open(input_file) as img:
            width, height = img.size
        k = width / result["width"]
        lines = []
        for word in result["words"]:
            box = BoundingBox(*(v * k for v in word["bbox"]))
            lines.append(OcrElement(ocr_class=OcrClass.LINE, bbox=box, children=[
                OcrElement(ocr_class=OcrClass.WORD, bbox=box, text=word["text"], language="chi_sim")]))
        page = OcrElement(ocr_class=OcrClass.PAGE, bbox=BoundingBox(0, 0, width, height), dpi=result["dpi"] * k,
                          page_number=page_number, children=lines)
        return page, result["text"]

    @staticmethod
    def generate_hocr(input_file, output_hocr, output_text, options) -> None:
        raise NotImplementedError("generate_ocr is used")

    @staticmethod
    def generate_pdf(input_file, output_pdf, output_text, options) -> None:
        raise NotImplementedError("generate_ocr is used")


@hookimpl
def get_ocr_engine(options):
    return GivenOcr()
