"""Checks the machine before a run, so a missing piece is one clear sentence, not a traceback."""

from __future__ import annotations

import shutil
import socket
from urllib.parse import urlparse

from devservices.postgres import find_bindir
from errors import SetupError


def check_ocr(lang: str = "chi_sim+eng") -> None:
    from ocr.engine import find_tessdata

    if not shutil.which("tesseract"):
        raise SetupError("未安装 tesseract，请运行 `make setup`",
                         "tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-chi-sim "
                         "tesseract-ocr-eng (or run `make setup`)")
    find_tessdata(lang)
    try:
        import tesserocr  # noqa: F401
    except ImportError as exc:
        raise SetupError("无法加载 tesserocr，请运行 `make setup`",
                         f"the tesserocr Python package cannot be loaded ({exc}): run `make setup`") from exc


def check_pdf_tools() -> None:
    if not shutil.which("pdfinfo") or not shutil.which("pdftoppm"):
        raise SetupError("未安装 poppler-utils（pdfinfo、pdftoppm），请运行 `make setup`",
                         "poppler-utils (pdfinfo, pdftoppm) is not installed: apt-get install poppler-utils "
                         "(or run `make setup`)")


def check_postgres_binaries() -> None:
    find_bindir()


def check_s3_endpoint(url: str, timeout: float = 3.0) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SetupError(f"ARCHIVE_S3_ENDPOINT_URL={url!r} 不是 http(s) 地址",
                         f"ARCHIVE_S3_ENDPOINT_URL={url!r} is not an http(s) URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise SetupError(f"无法连接对象存储 {url}",
                         f"S3 endpoint {url} is unreachable ({exc.strerror or exc}): start it, fix "
                         "ARCHIVE_S3_ENDPOINT_URL, or unset it to use the local directory store") from exc


def check_all(s3_endpoint: str | None, need_postgres_binaries: bool = True) -> None:
    check_ocr()
    check_pdf_tools()
    if need_postgres_binaries:
        check_postgres_binaries()
    if s3_endpoint:
        check_s3_endpoint(s3_endpoint)
