"""The four-property checks (四性检测, DA/T 70) of a transfer package's payload: authenticity,
integrity, usability and security. The sender runs them before sealing the bag (their report
travels in it), the receiver runs them again on what it received.

The payload (a bag's data/ folder, transfer/package.py):
    person.json  catalog.json  notice.json  notice.pdf  material-list.pdf  history.json
    originals/<sha256>.<ext>  ocr/<sha256>.json  pdf/<material code>.pdf
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from catalog.categories import is_valid_class_code
from intake.scanfile import SUPPORTED_IMAGES, inspect_scan
from ocr.images import is_pdf
from ocr.pdf_check import self_contained_problems
from ocr.pool import default_workers, spawn_pool
from storage.objects import file_sha256

PROPERTIES = {"authenticity": "真实性", "integrity": "完整性", "usability": "可用性", "security": "安全性"}
DOCUMENTS = ("person.json", "catalog.json", "notice.json", "notice.pdf", "material-list.pdf", "history.json",
             "four-properties.json")
BAG_PATH = re.compile(r"^(originals/[0-9a-f]{64}\.[a-z]{3,4}|ocr/[0-9a-f]{64}\.json"
                      r"|pdf/[0-9]{1,2}(-[0-9]{1,2})?-[0-9]{1,4}\.pdf)$")  # transfer/package.py's layout
FORMED = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
PARALLEL_FROM = 400  # scans and PDFs to open before worker processes pay for their start (~1.5 s)


@dataclass(frozen=True)
class Check:
    property: str          # authenticity | integrity | usability | security
    code: str
    passed: bool | None    # None: not checked here, and why
    message_zh: str
    message_en: str

    def to_dict(self) -> dict:
        return asdict(self)


def _json(payload: Path, name: str, checks: list[Check]) -> dict | None:
    try:
        return json.loads((payload / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        checks.append(Check("usability", f"readable:{name}", False, f"{name} 无法读取：{exc}",
                            f"{name} cannot be read: {exc}"))
        return None


def check_payload(payload: Path, notice: dict | None = None, formats: bool = True) -> list[Check]:
    """Every check, passed or failed with its reason; `notice` (the record's) gives the counts to
    compare against, else the package's own notice.json. `formats=False` (the sender, whose
    files passed intake and PDF/A validation as these very bytes) takes usability from the
    digests; a receiver opens every file."""
    checks: list[Check] = []

    def ok(prop: str, code: str, passed: bool, zh: str, en: str) -> None:
        checks.append(Check(prop, code, passed, zh, en))

    person, catalog = _json(payload, "person.json", checks), _json(payload, "catalog.json", checks)
    own_notice = _json(payload, "notice.json", checks)
    notice = notice or own_notice or {}
    if person is None or catalog is None:
        return checks
    materials = catalog.get("materials", [])
    # authenticity: metadata well formed, files what the catalog says they are
    problems = [m.get("code", "?") for m in materials
                if not is_valid_class_code(str(m.get("class_code"))) or not FORMED.match(str(m.get("formed", "")))
                or not str(m.get("title", "")).strip()]
    codes = [m.get("code") for m in materials]
    if len(set(codes)) != len(codes):
        problems.append("duplicate material codes")
    same_file = person.get("file_number") == catalog.get("file_number") == notice.get("file_number")
    ok("authenticity", "metadata", not problems and same_file and bool(person.get("name")),
       "元数据格式正确，档号一致" if not problems and same_file else f"元数据有误：{problems or '档号不一致'}",
       "metadata well formed, one file number throughout" if not problems and same_file
       else f"metadata malformed: {problems or 'file numbers differ'}")
    listed: dict[str, str] = {}
    for m in materials:
        if m.get("pdf"):
            listed[str(m["pdf"])] = m.get("pdf_sha256", "")
        for p in m.get("pages", []):
            listed[str(p.get("original"))] = p.get("original_sha256")
            listed[str(p.get("ocr"))] = p.get("ocr_sha256")
    # a catalog names files inside the bag, by the package's own layout: nothing else is opened
    outside = [rel for rel in listed if not BAG_PATH.match(rel)]
    ok("security", "paths", not outside,
       "目录所列文件均在包内" if not outside else f"目录所列路径不合规：{outside[:3]}",
       "every catalogued file lies inside the bag" if not outside else f"catalogued paths refused: {outside[:3]}")
    if outside:
        return checks
    wrong = [rel for rel, sha in listed.items() if (payload / rel).is_file() and file_sha256(payload / rel) != sha]
    ok("authenticity", "digests", not wrong,
       "每个文件的摘要与目录一致" if not wrong else f"文件摘要与目录不符：{wrong[:5]}",
       "every file's sha256 is the catalog's" if not wrong else f"files differ from their catalog digests: {wrong[:5]}")
    # integrity: complete, numbered without gaps, counts as the notice says
    missing = sorted(rel for rel in listed if not (payload / rel).is_file())
    no_pdf = [m.get("code") for m in materials if not m.get("pdf")]
    ok("integrity", "content", not missing and not no_pdf,
       "每条目录都有其文件" if not missing and not no_pdf else f"缺少文件：{(missing + no_pdf)[:5]}",
       "every catalog entry has its file" if not missing and not no_pdf else f"missing: {(missing + no_pdf)[:5]}")
    gaps = [m.get("code") for m in materials
            if [p["page_no"] for p in m.get("pages", [])] != list(range(1, len(m.get("pages", [])) + 1))
            or len(m.get("pages", [])) != m.get("page_count")]
    ok("integrity", "sequence", not gaps, "页号连续，页数与目录一致" if not gaps else f"页号或页数有误：{gaps[:5]}",
       "pages numbered 1..n, as many as catalogued" if not gaps else f"page numbers or counts wrong: {gaps[:5]}")
    pages = sum(len(m.get("pages", [])) for m in materials)
    counts = (len(materials), pages) == (notice.get("material_count"), notice.get("page_count"))
    ok("integrity", "counts", counts,
       f"材料 {len(materials)} 份、{pages} 页，与转递通知单一致" if counts
       else f"材料 {len(materials)} 份、{pages} 页，通知单为 {notice.get('material_count')} 份、"
            f"{notice.get('page_count')} 页",
       f"{len(materials)} materials, {pages} pages, as the notice says" if counts
       else f"{len(materials)} materials, {pages} pages; the notice says {notice.get('material_count')}, "
            f"{notice.get('page_count')}")
    # usability: every scan opens in an approved format, every PDF self-contained PDF/A, OCR readable
    if formats:
        unusable = _unusable(payload, materials)
        ok("usability", "formats", not unusable, "全部文件可读、格式合规（扫描件 JPEG/TIFF/PNG/PDF，PDF/A）"
           if not unusable else f"文件不可用：{unusable[:3]}",
           "every file opens in an approved format (scans JPEG/TIFF/PNG/PDF, PDF/A)" if not unusable
           else f"unusable: {unusable[:3]}")
    else:  # the sender: the very bytes intake inspected and the archive stage validated as PDF/A
        ok("usability", "formats", not wrong, "扫描件入库时已检验格式，PDF 生成时已检验为 PDF/A-2b，摘要未变",
           "scans inspected at intake and PDFs validated as PDF/A-2b when written, their sha256 unchanged")
    # security: nothing that is not listed, no links
    present = {p.relative_to(payload).as_posix() for p in payload.rglob("*") if p.is_file() or p.is_symlink()}
    stray = sorted(present - set(listed) - set(DOCUMENTS))
    links = sorted(p.relative_to(payload).as_posix() for p in payload.rglob("*") if p.is_symlink())
    ok("security", "no_stray_files", not stray and not links,
       "没有目录之外的文件或链接" if not stray and not links else f"有目录之外的文件或链接：{(stray + links)[:5]}",
       "nothing but what is listed, no links" if not stray and not links
       else f"stray files or links: {(stray + links)[:5]}")
    checks.append(Check("security", "virus_scan", None, "本机未配置病毒扫描（DA/T 70 要求），请在接收方安全区检查",
                        "no virus scanner is configured here (DA/T 70 asks for one): scan in the receiver's "
                        "secure zone"))
    return checks


def _usable_file(path: Path, kind: str, source_page: int | None = None) -> str | None:
    """Why the file is not usable, or None: a scan that does not decode in an approved format,
    a PDF that is not self-contained PDF/A, an OCR result without the page."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return str(exc)
    if kind == "scan":
        if is_pdf(data):
            info, findings = inspect_scan(data, path.name)
            return None if info is not None else (findings[0].message_en if findings else "unreadable")
        try:
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            img.verify()  # structure; then every byte decoded (JPEG at 1/8 scale: a truncated file still fails)
            img = Image.open(io.BytesIO(data))
            img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            return f"does not open as an image: {exc}"
        return None if fmt in SUPPORTED_IMAGES else f"format {fmt} is not an approved one"
    if kind == "ocr":
        try:
            json.loads(data)["pages"][source_page]
        except (ValueError, KeyError, IndexError, TypeError):
            return f"no OCR result of page {source_page}"
        return None
    # what a reader's machine must not supply; pikepdf's allowlist walk ran where the PDF was made
    problems = self_contained_problems(data, validator=False)
    return problems[0] if problems else None


def _unusable(payload: Path, materials: list[dict]) -> list[str]:
    jobs = []
    for m in materials:
        for p in m.get("pages", []):
            jobs += [(p["original"], "scan", None), (p["ocr"], "ocr", p.get("source_page"))]
        if m.get("pdf"):
            jobs.append((m["pdf"], "pdf", None))
    jobs += [(doc, "pdf", None) for doc in ("notice.pdf", "material-list.pdf")]
    jobs = [j for j in jobs if (payload / j[0]).is_file()]  # a missing one is the integrity check's
    heavy = sum(1 for _, kind, _ in jobs if kind != "ocr")
    if heavy < PARALLEL_FROM or default_workers() < 2:
        results = [_usable_file(payload / rel, kind, page) for rel, kind, page in jobs]
    else:  # decoding scans and walking PDFs is CPU work: every core, by process
        with spawn_pool(default_workers()) as pool:
            results = list(pool.map(_usable_file, [payload / r for r, _, _ in jobs], [k for _, k, _ in jobs],
                                    [p for _, _, p in jobs], chunksize=8))
    return [f"{rel}: {why}" for (rel, _, _), why in zip(jobs, results, strict=True) if why]


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.passed is False]
