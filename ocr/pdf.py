"""Searchable PDF/A-2b: each scan page as an image with the OCR text laid invisibly over it.

Self-contained, so search and copy work in any reader (poppler without poppler-data, pdf.js,
pypdf): the text is set in an embedded glyphless TrueType font (OCRmyPDF's Occulta, every
character an empty glyph) whose subsets carry a /ToUnicode map, and drawn in render mode 3.
pikepdf's PDF/A support then adds the XMP identification and the sRGB OutputIntent, writes
the file and validates the bytes it wrote; a file it does not approve is an error, never a
preserved copy. Output is byte-for-byte reproducible, so the PDF is stored under its sha256.
Measured against OCRmyPDF's own renderer and plugin route: docs/benchmarks.md.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image

from ocr.engine import PageResult
from ocr.preprocess import rotate

FONT = "Occulta"
FONT_FILE = Path(__file__).parent / "fonts" / "Occulta.ttf"
PDFA_FLAVOUR = "2b"
JPEG_QUALITY = 80  # a viewing copy (DA/T 31): the originals are preserved as handed in
_registered = False
_METADATA_DATE = re.compile(rb"\s*<xmp:MetadataDate>[^<]*</xmp:MetadataDate>")
# Occulta's cmap covers the Basic Multilingual Plane, and reportlab's /ToUnicode maps write
# 4 hex digits a character: anything beyond (1 of RapidOCR's 6,623 characters) is laid as
# U+FFFD, so the layer stays aligned; the OCR text and the search index keep the character.
_BEYOND_BMP = re.compile("[\U00010000-\U0010FFFF]")


class PdfWriteError(RuntimeError):
    """The searchable PDF of a material could not be made as a valid PDF/A: a bug to report
    (the writer controls every construct in the file), so not one of the known states."""


def _font() -> str:
    global _registered
    if not _registered:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        pdfmetrics.registerFont(TTFont(FONT, str(FONT_FILE)))
        _registered = True
    return FONT


def _draft(pages: list[tuple[Image.Image, PageResult]], title: str, author: str) -> bytes:
    """The PDF as reportlab writes it: images, invisible text in the embedded font."""
    from reportlab import rl_config
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfgen import canvas

    font = _font()
    # reportlab's only switch is global: ASCII85 makes images larger and, in pure Python, is
    # most of a page's time
    rl_config.useA85 = 0
    buf = io.BytesIO()
    # the initial font is the embedded one, else reportlab declares an unembedded Helvetica
    c = canvas.Canvas(buf, invariant=1, pageCompression=1, initialFontName=font)
    c.setTitle(title)
    c.setAuthor(author)
    c.setSubject("")
    c.setCreator("personnel-archive-pipeline")
    for image, result in pages:
        img = rotate(image, result.rotation)  # the boxes are on the page turned upright
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        k = 72.0 / result.dpi  # pixels to points
        width, height = img.width * k, img.height * k
        c.setPageSize((width, height))
        jpeg = io.BytesIO()
        img.save(jpeg, "JPEG", quality=JPEG_QUALITY)
        jpeg.seek(0)
        c.drawImage(ImageReader(jpeg), 0, 0, width, height)
        text = c.beginText()
        text.setTextRenderMode(3)
        for word in result.words:
            x0, y0, x1, y1 = word.bbox
            chars = _BEYOND_BMP.sub("\ufffd", word.text)
            size = max(1.0, (y1 - y0) * k * 0.85)
            natural = pdfmetrics.stringWidth(chars, font, size)
            if not chars or natural <= 0:
                continue
            text.setFont(font, size)
            text.setHorizScale(100.0 * (x1 - x0) * k / natural)
            text.setTextOrigin(x0 * k, height - y1 * k + 0.15 * size)
            text.textOut(chars)
        c.drawText(text)
        c.showPage()
    c.save()
    return buf.getvalue()


def to_pdfa(draft: bytes, item: str) -> bytes:
    """The draft as PDF/A-2b, validated as written: pikepdf.pdfa adds the XMP identification
    (from the document information) and the sRGB OutputIntent."""
    import pikepdf
    import pikepdf.pdfa

    with pikepdf.open(io.BytesIO(draft)) as doc:
        for page in doc.pages:
            if "/Trans" in page.obj:  # reportlab's empty page transition: not allowed in PDF/A
                del page.obj["/Trans"]
        # No dates in the file: the same material gives the same bytes (and sha256) on any day;
        # when it was made is in the file's event history.
        for key in ("/CreationDate", "/ModDate"):
            if key in doc.docinfo:
                del doc.docinfo[key]
        pikepdf.pdfa.prepare(doc, PDFA_FLAVOUR)
        xmp = doc.Root.Metadata
        xmp.write(_METADATA_DATE.sub(b"", xmp.read_bytes()))
        out = io.BytesIO()
        try:  # validates the bytes it writes
            pikepdf.pdfa.save(doc, out, PDFA_FLAVOUR, repair=False, deterministic_id=True)
        except pikepdf.pdfa.PdfaError as exc:
            raise PdfWriteError(f"{item}: the searchable PDF is not valid PDF/A-{PDFA_FLAVOUR}: {exc}") from exc
    return out.getvalue()


def searchable_pdf(pages: list[tuple[Image.Image, PageResult]], title: str = "", author: str = "") -> bytes:
    """One PDF/A-2b of the pages, each image under its invisible OCR text; `title` names the
    material in the document information and XMP, `author` the agency holding it."""
    return to_pdfa(_draft(pages, title, author), title or "searchable PDF")
