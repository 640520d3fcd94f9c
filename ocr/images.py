"""Decoding of scan files into page images with their real resolution."""

from __future__ import annotations

import io

from PIL import Image, ImageSequence

# A 600 dpi A3 scan is ~70 Mpx; anything far beyond is a decompression bomb, not a page.
Image.MAX_IMAGE_PIXELS = 150_000_000
DEFAULT_DPI = 300
PDF_RENDER_DPI = 300


def is_pdf(data: bytes) -> bool:
    return data[:1024].lstrip().startswith(b"%PDF-")


def image_dpi(img: Image.Image) -> int:
    dpi = img.info.get("dpi")
    if dpi and dpi[0] and float(dpi[0]) > 1:
        return round(float(dpi[0]))
    return DEFAULT_DPI


def load_pages(data: bytes) -> list[tuple[Image.Image, int]]:
    """Every page of an image (all TIFF frames) or PDF, as (image, dpi)."""
    if is_pdf(data):
        from pdf2image import convert_from_bytes

        return [(p, PDF_RENDER_DPI) for p in convert_from_bytes(data, dpi=PDF_RENDER_DPI, grayscale=True)]
    img = Image.open(io.BytesIO(data))
    dpi = image_dpi(img)
    if getattr(img, "n_frames", 1) == 1:
        img.load()  # decoded once, not copied: a copy of a whole colour page is costly
        frames = [img]
    else:
        frames = [frame.copy() for frame in ImageSequence.Iterator(img)]
    return [(_to_ocr_mode(f), dpi) for f in frames]


def _to_ocr_mode(img: Image.Image) -> Image.Image:
    if img.mode in ("L", "RGB"):
        return img
    return img.convert("RGB" if img.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA") else "L")
