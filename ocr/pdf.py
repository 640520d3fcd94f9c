"""Searchable PDF: each scan page as an image with the OCR text laid invisibly over it.

The text uses reportlab's built-in STSong-Light CID font (Adobe-GB1), which viewers know
without embedding; render mode 3 draws nothing, so only search and copy see it. Output is
byte-for-byte reproducible (invariant mode), so the PDF can be stored under its sha256.
"""

from __future__ import annotations

import io

from PIL import Image

from ocr.engine import PageResult
from ocr.preprocess import rotate

FONT = "STSong-Light"
_registered = False


def _font() -> str:
    global _registered
    if not _registered:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont

        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
        _registered = True
    return FONT


def searchable_pdf(pages: list[tuple[Image.Image, PageResult]], title: str = "") -> bytes:
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfgen import canvas

    font = _font()
    buf = io.BytesIO()
    c = canvas.Canvas(buf, invariant=1, pageCompression=1)
    if title:
        c.setTitle(title)
    for image, result in pages:
        img = rotate(image, result.rotation)  # the boxes are on the page turned upright
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        k = 72.0 / result.dpi  # pixels to points
        width, height = img.width * k, img.height * k
        c.setPageSize((width, height))
        jpeg = io.BytesIO()
        img.save(jpeg, "JPEG", quality=80)
        jpeg.seek(0)
        c.drawImage(ImageReader(jpeg), 0, 0, width, height)
        text = c.beginText()
        text.setTextRenderMode(3)
        for word in result.words:
            x0, y0, x1, y1 = word.bbox
            size = max(1.0, (y1 - y0) * k * 0.85)
            natural = pdfmetrics.stringWidth(word.text, font, size)
            if not word.text or natural <= 0:
                continue
            text.setFont(font, size)
            text.setHorizScale(100.0 * (x1 - x0) * k / natural)
            text.setTextOrigin(x0 * k, height - y1 * k + 0.15 * size)
            text.textOut(word.text)
        c.drawText(text)
        c.showPage()
    c.save()
    return buf.getvalue()
