"""What every OCR engine returns, and the settings that identify a result (the cache key)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image

from errors import SetupError
from ocr.layout import Line
from settings.environment import text

# Bump when preprocessing, gates, settings or text clean-up change: it keys the OCR cache.
ENGINE_VERSION = 4
TESSDATA_CANDIDATES = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
)


class OcrSetupError(SetupError):
    """An engine or its model data is missing; the message says how to install it."""


def find_tessdata(langs: str) -> str:
    candidates = [text("TESSDATA_PREFIX")] if text("TESSDATA_PREFIX") else []
    candidates += list(TESSDATA_CANDIDATES)
    needed = langs.split("+")
    for path in candidates:
        if all((Path(path) / f"{lang}.traineddata").exists() for lang in needed):
            return path
    pkgs = " ".join(f"tesseract-ocr-{lang.replace('_', '-')}" for lang in needed)
    raise OcrSetupError(
        f"未找到 tesseract 语言数据 {', '.join(needed)}，请运行 `make setup`",
        f"tesseract language data {', '.join(needed)} not found in {', '.join(candidates)}; "
        f"install it with: apt-get install tesseract-ocr {pkgs} (or run `make setup`)")


@dataclass(frozen=True)
class EngineConfig:
    """Chosen by measurement (benchmarks/ocr_bench.py; its CER in README.md and docs/benchmarks.md):
    RapidOCR misreads far fewer characters than tesseract chi_sim; tesseract is the fallback and baseline."""

    primary: str = "rapidocr"      # rapidocr | tesseract
    fallback: str = "tesseract"    # engine for pages that fail the quality gates; "" for none
    lang: str = "chi_sim+eng"      # tesseract languages
    psm: int = 3                   # tesseract page segmentation: automatic
    det_side: int = 1024           # rapidocr: longest side of the page for text detection
    rec_side: int = 2048           # rapidocr: longest side of the page the text lines are cut from

    @property
    def key(self) -> str:
        """Identifies everything that changes the output; part of the OCR cache key."""
        fb = f"+{self.fallback}" if self.fallback else ""
        return (f"{self.primary}{fb}-{self.lang}-psm{self.psm}-det{self.det_side}-rec{self.rec_side}"
                f"-v{ENGINE_VERSION}")


@dataclass
class Word:
    text: str
    confidence: float
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 at scan resolution, page turned by PageResult.rotation


@dataclass
class PageResult:
    text: str
    confidence: float  # mean line confidence, 0-100
    words: list[Word]
    width: int
    height: int
    dpi: int
    engine: str
    seconds: float
    rotation: int = 0           # degrees counter-clockwise applied to make the page upright
    skew: float = 0.0           # degrees of skew found (reading order corrects for it)
    ink: float = 0.0            # share of dark pixels: ~0 on a blank page
    flags: list[str] = field(default_factory=list)  # every gate that failed, fallback's prefixed "fallback:"
    failed_gates: list[str] = field(default_factory=list)  # gates the text returned here fails
    review: bool = False        # failed_gates not empty: a person must look
    raw_text: str = field(default="", repr=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PageResult:
        words = [Word(w["text"], w["confidence"], tuple(w["bbox"])) for w in data["words"]]
        return cls(**{**data, "words": words})


@dataclass
class RawPage:
    """An engine's reading of an upright page: rows of lines in reading order."""

    rows: list[list[Line]]
    rotation: int = 0
    skew: float = 0.0
    scale: float = 1.0          # line boxes are at this fraction of the scan resolution


class Recogniser(Protocol):
    name: str

    def recognise(self, gray: Image.Image, dpi: int) -> RawPage: ...
