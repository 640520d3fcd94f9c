"""OCR engine: page images in, text with word boxes and confidence out. No Dagster here."""

from ocr.engine import ENGINE_VERSION, EngineConfig, PageResult, Word
from ocr.pipeline import PageOcr
from ocr.pool import OcrPool

__all__ = ["ENGINE_VERSION", "EngineConfig", "OcrPool", "PageOcr", "PageResult", "Word"]
