"""Identifies a scan file by its content (never its extension) and reads its page geometry."""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from catalog.findings import Finding, error, warning
from errors import SetupError
from intake.blank import text_marks
from intake.skew import estimate_skew
from ocr.images import DEFAULT_DPI, image_dpi, is_pdf
from ocr.preprocess import shrink, to_gray

SUPPORTED_IMAGES = {"JPEG": "image/jpeg", "TIFF": "image/tiff", "PNG": "image/png"}
MIN_DPI, GOOD_DPI = 200, 300
# An uncompressed A3 colour page at 600 dpi is ~210 MB; anything bigger is not one scan.
MAX_SCAN_BYTES = 256 * 1024**2
# DA/T 31 asks for no visible skew; practice tolerates 1-3 degrees. Warned above 1, kept.
SKEW_WARN_DEGREES = 1.0
# A scan of a document page is between A8 (52 x 74 mm: a cropped ID card is 54 x 86) and A0
# (841 x 1189 mm) plus the 2-3 mm DA/T 31 crops outside the edge; anything else at its
# resolution is not a page (a 1 x 1 pixel image, a resolution written wrong).
MIN_PAGE_MM = (50.0, 70.0)      # short side, long side
MAX_PAGE_MM = (880.0, 1240.0)


@dataclass
class ScanInfo:
    media_type: str
    page_count: int
    dpi: int | None = None
    width: int | None = None
    height: int | None = None
    skew: float | None = None  # degrees, counter-clockwise positive; None for PDFs and blank pages


def too_large(size: int, item: str) -> Finding | None:
    """The refusal for a file over the byte cap, checked before it is read at all."""
    if size <= MAX_SCAN_BYTES:
        return None
    mb, cap = size / 1024**2, MAX_SCAN_BYTES // 1024**2
    return error("scan.too_large", item, f"文件过大（{mb:.0f} MB，上限 {cap} MB），拒收",
                 f"file too large ({mb:.0f} MB, cap {cap} MB), refused")


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
    size = (img.width / (dpi or DEFAULT_DPI) * 25.4, img.height / (dpi or DEFAULT_DPI) * 25.4)
    if wrong := _page_size_finding(size, item, f"{img.width}×{img.height} 像素，{dpi or DEFAULT_DPI} dpi",
                                   f"{img.width} x {img.height} px at {dpi or DEFAULT_DPI} dpi"):
        return None, findings + [wrong]  # a resolution written wrong is named beside the size it gives
    full = to_gray(img)
    gray = shrink(full)  # the skew estimate works on a ~640 px copy
    if text_marks(full, dpi or DEFAULT_DPI).blank:  # kept: the back of a sheet counts as a page
        findings.append(warning("scan.blank", item, "空白页（已保留，请确认是否应扫描）",
                                "blank page (kept; check it was meant to be scanned)"))
    else:
        info.skew = estimate_skew(gray)
        if info.skew is not None and abs(info.skew) > SKEW_WARN_DEGREES:
            angle, limit = abs(info.skew), SKEW_WARN_DEGREES
            findings.append(warning("scan.skewed", item, f"页面倾斜约 {angle:.1f}°（超过 {limit:g}°），"
                                    "已接收，识别时自动纠偏；请检查扫描仪进纸",
                                    f"page skewed by about {angle:.1f} degrees (over {limit:g}); "
                                    "accepted and deskewed for OCR; check the scanner feed"))
    return info, findings


def _inspect_pdf(data: bytes, item: str) -> tuple[ScanInfo | None, list[Finding]]:
    from pdf2image import pdfinfo_from_bytes
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError

    try:
        meta = pdfinfo_from_bytes(data)
    except PDFInfoNotInstalledError as exc:
        raise SetupError("未找到 pdfinfo，请运行 `make setup`", "pdfinfo not found: install poppler-utils "
                         "(run `make setup`)") from exc
    except (PDFPageCountError, PDFSyntaxError, ValueError) as exc:
        if "password" in str(exc).lower():
            return None, [error("scan.pdf_encrypted", item, "PDF 文件设有打开密码，无法读取，请提交未加密的文件",
                                "PDF needs a password to open; hand in an unencrypted file")]
        return None, [error("scan.pdf", item, f"PDF 文件损坏、加密或无法读取：{exc}",
                            f"PDF is broken, encrypted or unreadable: {exc}")]
    points = re.match(r"\s*([\d.]+)\s*x\s*([\d.]+)\s*pts", str(meta.get("Page size", "")))
    if points:  # the first page's size, as pdfinfo reports it
        w, h = (float(v) / 72 * 25.4 for v in points.groups())
        if wrong := _page_size_finding((w, h), item, f"{points.group(1)}×{points.group(2)} 点",
                                       f"{points.group(1)} x {points.group(2)} pt"):
            return None, [wrong]
    if str(meta.get("Encrypted", "no")).startswith("yes"):
        # even with an empty open password: encryption has no place in preservation copies (PDF/A)
        return None, [error("scan.pdf_encrypted", item, "PDF 文件已加密（长期保存不允许加密），请提交未加密的文件",
                            "PDF is encrypted (not allowed for preservation); hand in an unencrypted file")]
    return ScanInfo("application/pdf", int(meta.get("Pages", 0))), []


def _page_size_finding(size_mm: tuple[float, float], item: str, found_zh: str, found_en: str) -> Finding | None:
    """The refusal for a page whose physical size cannot be a document page's."""
    short, long = sorted(size_mm)
    if MIN_PAGE_MM[0] <= short <= MAX_PAGE_MM[0] and MIN_PAGE_MM[1] <= long <= MAX_PAGE_MM[1]:
        return None
    small = short < MIN_PAGE_MM[0] or long < MIN_PAGE_MM[1]
    what = ("小于 A8（50×70 毫米）", "smaller than A8 (50 x 70 mm)") if small else ("大于 A0", "larger than A0")
    w, h = size_mm
    return error("scan.page_size", item,
                 f"页面实际尺寸约 {w:.0f}×{h:.0f} 毫米（{found_zh}），{what[0]}，不可能是档案页面"
                 "（或记录的分辨率有误），拒收",
                 f"the page measures about {w:.0f} x {h:.0f} mm ({found_en}), {what[1]}: not a document page "
                 "(or its recorded resolution is wrong), refused")


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
