"""Tesseract through its C API (tesserocr): the model is loaded once and reused per page."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ocr.engine import RawPage, find_tessdata
from ocr.layout import Line, reading_order


class TesseractEngine:
    """One loaded tesseract model; not thread-safe: one per worker process."""

    name = "tesseract"

    def __init__(self, lang: str = "chi_sim+eng", psm: int = 3) -> None:
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # must precede loading libtesseract
        import tesserocr

        self._tesserocr = tesserocr
        self.api = tesserocr.PyTessBaseAPI(path=find_tessdata(lang) + "/", lang=lang, psm=psm)

    def recognise(self, gray: Image.Image, dpi: int = 300) -> RawPage:
        api, RIL = self.api, self._tesserocr.RIL
        api.SetImage(gray)
        api.SetSourceResolution(dpi)
        api.Recognize()
        lines = []
        for it in self._tesserocr.iterate_level(api.GetIterator(), RIL.TEXTLINE):
            text = (it.GetUTF8Text(RIL.TEXTLINE) or "").strip()
            box = it.BoundingBox(RIL.TEXTLINE)
            if text and box:
                x0, y0, x1, y1 = box
                corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
                lines.append(Line(text, it.Confidence(RIL.TEXTLINE) / 100.0, corners))
        api.Clear()
        return RawPage(reading_order(lines))

    def close(self) -> None:
        self.api.End()
