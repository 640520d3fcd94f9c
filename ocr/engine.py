"""Tesseract through its C API (tesserocr): the model is loaded once and reused per page."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from ocr import text as textnorm

# Bump when preprocessing, settings or text clean-up change: it keys the OCR cache.
ENGINE_VERSION = 1
TESSDATA_CANDIDATES = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
)


class OcrSetupError(RuntimeError):
    """Tesseract or its language data is missing; the message says how to install it."""


def find_tessdata(langs: str) -> str:
    candidates = [os.environ["TESSDATA_PREFIX"]] if os.environ.get("TESSDATA_PREFIX") else []
    candidates += list(TESSDATA_CANDIDATES)
    needed = langs.split("+")
    for path in candidates:
        if all((Path(path) / f"{lang}.traineddata").exists() for lang in needed):
            return path
    pkgs = " ".join(f"tesseract-ocr-{lang.replace('_', '-')}" for lang in needed)
    raise OcrSetupError(
        f"tesseract language data {', '.join(needed)} not found in {', '.join(candidates)}; "
        f"install it with: apt-get install tesseract-ocr {pkgs} (or run `make setup`)")


@dataclass(frozen=True)
class EngineConfig:
    lang: str = "chi_sim+eng"
    psm: int = 3  # fully automatic page segmentation

    @property
    def key(self) -> str:
        """Identifies everything that changes the output; part of the OCR cache key."""
        return f"tesseract-{self.lang}-psm{self.psm}-v{ENGINE_VERSION}"


@dataclass
class Word:
    text: str
    confidence: float
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 in page pixels


@dataclass
class PageResult:
    text: str
    confidence: float  # mean word confidence, 0-100
    words: list[Word]
    width: int
    height: int
    dpi: int
    engine: str
    seconds: float
    raw_text: str = field(default="", repr=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PageResult:
        words = [Word(w["text"], w["confidence"], tuple(w["bbox"])) for w in data["words"]]
        return cls(**{**data, "words": words})


class TesseractEngine:
    """One loaded tesseract model; not thread-safe: one per worker process."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        config = config or EngineConfig()
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # must precede loading libtesseract
        import tesserocr

        self.config = config
        self._tesserocr = tesserocr
        self.api = tesserocr.PyTessBaseAPI(path=find_tessdata(config.lang) + "/", lang=config.lang,
                                           psm=config.psm)

    def recognise(self, image: Image.Image, dpi: int) -> PageResult:
        t0 = time.perf_counter()
        api, RIL = self.api, self._tesserocr.RIL
        api.SetImage(image)
        api.SetSourceResolution(dpi)
        api.Recognize()
        raw = api.GetUTF8Text()
        words: list[Word] = []
        it = api.GetIterator()
        for w in self._tesserocr.iterate_level(it, RIL.WORD):
            token = w.GetUTF8Text(RIL.WORD)
            box = w.BoundingBox(RIL.WORD)
            if token and box:
                words.append(Word(token, round(w.Confidence(RIL.WORD), 1), tuple(box)))
        confidence = round(sum(w.confidence for w in words) / len(words), 1) if words else 0.0
        api.Clear()
        return PageResult(textnorm.normalise(raw), confidence, words, image.width, image.height, dpi,
                          self.config.key, round(time.perf_counter() - t0, 3), raw)

    def close(self) -> None:
        self.api.End()
