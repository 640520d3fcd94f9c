"""One page through the whole engine, OCRmyPDF-style: small steps the driver just orders.

gray (red seals suppressed) → primary engine (orientation, deskew, rows) → text clean-up →
quality gates → fallback engine on the upright page for a failing page → review flag.
"""

from __future__ import annotations

import time

from PIL import Image

from errors import SetupError
from ocr import gates
from ocr import text as textnorm
from ocr.engine import EngineConfig, PageResult, RawPage, Recogniser, Word
from ocr.preprocess import ink_ratio, rotate, to_gray


def make_engine(name: str, config: EngineConfig) -> Recogniser:
    if name == "rapidocr":
        from ocr.rapid import RapidEngine

        return RapidEngine(config.det_side, config.rec_side)
    if name == "tesseract":
        from ocr.tesseract import TesseractEngine

        return TesseractEngine(config.lang, config.psm)
    raise SetupError(f"未知的识别引擎 {name!r}", f"unknown OCR engine {name!r}")


def assemble(raw: RawPage) -> tuple[str, float, list[Word]]:
    rows = [" ".join(line.text for line in row) for row in raw.rows]
    lines = [line for row in raw.rows for line in row]
    words = [Word(textnorm.normalise(line.text) or line.text, round(line.score * 100, 1), line.bbox)
             for line in lines]
    confidence = round(sum(w.confidence for w in words) / len(words), 1) if words else 0.0
    return textnorm.normalise("\n".join(rows)), confidence, words


class PageOcr:
    """Loads each engine once, on first use, and reuses it for every page of this process."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._engines: dict[str, Recogniser] = {}

    def engine(self, name: str) -> Recogniser:
        if name not in self._engines:
            self._engines[name] = make_engine(name, self.config)
        return self._engines[name]

    def run(self, image: Image.Image, dpi: int) -> PageResult:
        t0 = time.perf_counter()
        gray = to_gray(image)
        ink = ink_ratio(gray)
        raw = self.engine(self.config.primary).recognise(gray, dpi)
        text, confidence, words = assemble(raw)
        used, failed = self.config.primary, gates.check(text, confidence, ink)
        history = list(failed)  # every gate that failed, in order, the fallback's prefixed
        if failed and self.config.fallback:
            upright = rotate(rotate(gray, raw.rotation), raw.skew)  # tesseract wants it level
            alt_text, alt_conf, alt_words = assemble(self.engine(self.config.fallback).recognise(upright, dpi))
            alt_failed = gates.check(alt_text, alt_conf, ink)
            history += [f"fallback:{f}" for f in alt_failed] or ["fallback:passed"]
            if not alt_failed or len(alt_text) > len(text):
                used = f"{self.config.fallback} (fallback after {', '.join(failed)})"
                text, confidence, words, failed = alt_text, alt_conf, alt_words, alt_failed
        return PageResult(text, confidence, words, image.width, image.height, dpi, used,
                          round(time.perf_counter() - t0, 3), raw.rotation, raw.skew, round(ink, 5), history, failed,
                          bool(failed),
                          raw_text="\n".join(" ".join(line.text for line in row) for row in raw.rows))

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
