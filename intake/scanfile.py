"""Identifies a scan file by its content (never its extension) and reads its page geometry."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from catalog.findings import Finding, error, warning
from ocr.gates import BLANK_INK
from ocr.images import image_dpi, is_pdf
from ocr.preprocess import ink_ratio, to_gray

SUPPORTED_IMAGES = {"JPEG": "image/jpeg", "TIFF": "image/tiff", "PNG": "image/png"}
MIN_DPI, GOOD_DPI = 200, 300


@dataclass
class ScanInfo:
    media_type: str
    page_count: int
    dpi: int | None = None
    width: int | None = None
    height: int | None = None


def inspect_scan(data: bytes, item: str) -> tuple[ScanInfo | None, list[Finding]]:
    """ScanInfo for a readable page image or PDF, else None and the reason."""
    if is_pdf(data):
        return _inspect_pdf(data, item)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            img.verify()  # structure check; a truncated file fails here or on load below
            img = Image.open(io.BytesIO(data))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, [error("scan.bomb", item, "图像像素数超过上限，拒收", f"image exceeds the pixel cap: {exc}")]
    except UnidentifiedImageError:
        return None, [error("scan.format", item, "无法识别的文件格式（应为 JPEG、TIFF、PNG 或 PDF）",
                            "unrecognised file format (expected JPEG, TIFF, PNG or PDF)")]
    except (OSError, SyntaxError, ValueError) as exc:
        return None, [error("scan.corrupt", item, f"图像文件损坏或不完整：{exc}",
                            f"image is corrupt or truncated: {exc}")]
    if fmt not in SUPPORTED_IMAGES:
        return None, [error("scan.format", item, f"不支持的图像格式 {fmt}", f"unsupported image format {fmt}")]
    dpi = image_dpi(img) if img.info.get("dpi") else None
    info = ScanInfo(SUPPORTED_IMAGES[fmt], getattr(img, "n_frames", 1), dpi, img.width, img.height)
    findings = _resolution_findings(info, item)
    if ink_ratio(to_gray(img)) < BLANK_INK:  # kept: the back of a sheet counts as a page
        findings.append(warning("scan.blank", item, "空白页（已保留，请确认是否应扫描）",
                                "blank page (kept; check it was meant to be scanned)"))
    return info, findings


def _inspect_pdf(data: bytes, item: str) -> tuple[ScanInfo | None, list[Finding]]:
    from pdf2image import pdfinfo_from_bytes
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError

    try:
        meta = pdfinfo_from_bytes(data)
    except PDFInfoNotInstalledError as exc:
        raise RuntimeError("pdfinfo not found: install poppler-utils (run `make setup`)") from exc
    except (PDFPageCountError, PDFSyntaxError, ValueError) as exc:
        return None, [error("scan.pdf", item, f"PDF 文件损坏、加密或无法读取：{exc}",
                            f"PDF is broken, encrypted or unreadable: {exc}")]
    if str(meta.get("Encrypted", "no")).startswith("yes"):
        return None, [error("scan.pdf_encrypted", item, "PDF 文件已加密", "PDF is encrypted")]
    return ScanInfo("application/pdf", int(meta.get("Pages", 0))), []


def _resolution_findings(info: ScanInfo, item: str) -> list[Finding]:
    if info.dpi is None:
        return [warning("scan.dpi_unknown", item, "图像未记录分辨率，按 300 dpi 处理",
                        "image records no resolution; treated as 300 dpi")]
    if info.dpi < MIN_DPI:
        return [error("scan.dpi_low", item, f"分辨率 {info.dpi} dpi 低于 200 dpi 的最低要求",
                      f"resolution {info.dpi} dpi is below the 200 dpi minimum")]
    if info.dpi < GOOD_DPI:
        return [warning("scan.dpi_below_300", item, f"分辨率 {info.dpi} dpi 低于建议的 300 dpi",
                        f"resolution {info.dpi} dpi is below the recommended 300 dpi")]
    return []
