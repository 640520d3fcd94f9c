"""The catalog manifest (目录) of a scan batch: one CSV row per material.

Headers may be Chinese (the staff template) or English; both map to the same fields.
Parsing never raises on bad rows: each problem becomes a Finding naming the row, and the
valid rows go on.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import asdict, dataclass, field

from catalog import idnumber
from catalog.categories import is_valid_class_code
from catalog.findings import Finding, error, warning

# File names a batch's manifest may have, compared lower-case.
MANIFEST_NAMES = ("manifest.csv", "catalog.csv", "目录.csv")

# canonical field -> accepted header spellings
COLUMNS: dict[str, tuple[str, ...]] = {
    "file_number": ("档号", "file_number"),
    "name": ("姓名", "name"),
    "id_number": ("身份证号", "id_number"),
    "class_code": ("类号", "class_code"),
    "seq": ("序号", "seq"),
    "title": ("材料名称", "title"),
    "formed": ("形成时间", "formed"),
    "copies": ("份数", "copies"),
    "pages": ("页数", "pages"),
    "remarks": ("备注", "remarks"),
    "page_files": ("页面文件", "page_files"),
}
REQUIRED = ("file_number", "name", "id_number", "class_code", "seq", "title", "formed", "pages",
            "page_files")
TEMPLATE_HEADER = [names[0] for names in COLUMNS.values()]
# One example row (a made-up person; the ID number's check digit is valid). Several page
# files of one material are separated by semicolons.
TEMPLATE_EXAMPLE = ["GZ2026-0000001", "张三", "11010519491231002X", "4-1", "1", "流动人员人事档案登记表",
                    "2001-05-01", "1", "2", "", "pages/GZ2026-0000001-0001.jpg;pages/GZ2026-0000001-0002.jpg"]


def template_csv() -> bytes:
    """The manifest template staff fill in: UTF-8 with a byte-order mark, so Excel shows the Chinese."""
    return ("\ufeff" + ",".join(TEMPLATE_HEADER) + "\r\n" + ",".join(TEMPLATE_EXAMPLE) + "\r\n").encode("utf-8")

_DATE = re.compile(r"^(\d{4})(?:[-./年]?(\d{1,2}))?(?:[-./月]?(\d{1,2}))?日?$")


@dataclass
class Material:
    class_code: str
    seq: int
    title: str
    formed: str          # ISO, as precise as the catalog: YYYY, YYYY-MM or YYYY-MM-DD
    pages: int
    page_files: list[str]
    copies: int = 1
    remarks: str = ""

    @property
    def code(self) -> str:
        """The material number, class then sequence: `4-1-2`."""
        return f"{self.class_code}-{self.seq}"


@dataclass
class PersonnelFile:
    file_number: str
    name: str
    id_number: str
    materials: list[Material] = field(default_factory=list)

    @property
    def page_count(self) -> int:
        return sum(m.pages for m in self.materials)


@dataclass
class Catalog:
    files: list[PersonnelFile] = field(default_factory=list)

    def page_files(self) -> list[str]:
        return [p for f in self.files for m in f.materials for p in m.page_files]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Catalog:
        files = []
        for f in data["files"]:
            materials = [Material(**m) for m in f["materials"]]
            files.append(PersonnelFile(f["file_number"], f["name"], f["id_number"], materials))
        return cls(files)


def normalise_date(text: str) -> str | None:
    m = _DATE.match(text.strip())
    if not m:
        return None
    year, month, day = m.group(1), m.group(2), m.group(3)
    if month is None:
        return year
    if not 1 <= int(month) <= 12:
        return None
    if day is None:
        return f"{year}-{int(month):02d}"
    try:
        return dt.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


def _header_map(header: list[str]) -> dict[str, int]:
    lookup = {alias.strip().lower(): key for key, names in COLUMNS.items() for alias in names}
    return {lookup[h.strip().lower()]: i for i, h in enumerate(header) if h.strip().lower() in lookup}


def parse_manifest(data: bytes, source: str = "manifest.csv") -> tuple[Catalog, list[Finding]]:
    """Parse a UTF-8 CSV manifest into a Catalog plus findings for every bad row."""
    findings: list[Finding] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Excel on Chinese Windows saves "CSV" in GBK: read it (GB18030 is its superset) and say so
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            return Catalog(), [error("manifest.encoding", source,
                                     f"目录文件既不是 UTF-8 也不是 GBK/GB18030 编码（第 {exc.start} 字节）",
                                     f"manifest is neither UTF-8 nor GBK/GB18030 (byte {exc.start})")]
        findings.append(warning("manifest.encoding_gb18030", source,
                                "目录文件为 GBK/GB18030 编码，已按此读取；请改存为 UTF-8",
                                "manifest is GBK/GB18030, read as such; please save it as UTF-8"))
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return Catalog(), [*findings, error("manifest.empty", source, "目录文件为空", "manifest is empty")]
    cols = _header_map(rows[0])
    absent = [k for k in REQUIRED if k not in cols]
    if absent:
        names = "、".join(COLUMNS[k][0] for k in absent)
        return Catalog(), [*findings, error("manifest.columns", source, f"目录缺少必填列：{names}",
                                 f"manifest lacks required columns: {', '.join(absent)}")]

    files: dict[str, PersonnelFile] = {}
    seen: set[tuple[str, str, int]] = set()
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        item = f"{source}:{lineno}"
        cell = {k: (row[i].strip() if i < len(row) else "") for k, i in cols.items()}
        material, problems = _parse_row(cell, item)
        if problems:
            findings.extend(problems)
            continue
        number = cell["file_number"]
        key = (number, material.class_code, material.seq)
        if key in seen:
            findings.append(error("manifest.duplicate_material", item,
                                  f"档号 {number} 的材料 {material.code} 重复",
                                  f"material {material.code} of file {number} appears twice"))
            continue
        seen.add(key)
        pf = files.setdefault(number, PersonnelFile(number, cell["name"], cell["id_number"].upper()))
        if (pf.name, pf.id_number) != (cell["name"], cell["id_number"].upper()):
            findings.append(error("manifest.conflicting_person", item,
                                  f"档号 {number} 的姓名或身份证号与前面的行不一致",
                                  f"name or ID number differs from earlier rows of file {number}"))
            continue
        pf.materials.append(material)
    return Catalog(list(files.values())), findings


def _parse_row(cell: dict[str, str], item: str) -> tuple[Material, list[Finding]]:
    problems: list[Finding] = []

    def bad(code: str, zh: str, en: str) -> None:
        problems.append(error(f"manifest.{code}", item, zh, en))

    for key in REQUIRED:
        if not cell.get(key):
            bad("missing_value", f"“{COLUMNS[key][0]}”为空", f"{key} is empty")
    if problems:
        return None, problems  # type: ignore[return-value]
    reason = idnumber.validate(cell["id_number"])
    if reason:
        bad("id_number", f"身份证号 {idnumber.mask(cell['id_number'])} 无效", f"ID number invalid: {reason}")
    if not is_valid_class_code(cell["class_code"]):
        bad("class_code", f"类号 {cell['class_code']} 不在十大类及其子类中",
            f"class code {cell['class_code']} is not one of the ten categories or their sub-classes")
    formed = normalise_date(cell["formed"])
    if formed is None:
        bad("formed", f"形成时间 {cell['formed']} 不是有效日期", f"formation date {cell['formed']} is not a date")
    numbers = {}
    for key in ("seq", "pages", "copies"):
        raw = cell.get(key) or ("1" if key == "copies" else "")
        if not raw.isdigit() or int(raw) < 1:
            bad(key, f"“{COLUMNS[key][0]}”应为正整数：{raw}", f"{key} must be a positive integer: {raw}")
        else:
            numbers[key] = int(raw)
    # Page counts are checked by intake against the files themselves (a PDF holds many pages).
    page_files = [p.strip() for p in re.split(r"[;；]", cell["page_files"]) if p.strip()]
    if problems:
        return None, problems  # type: ignore[return-value]
    # an ID number typed into a title or remark would be shown, searched and sent whole: masked
    return Material(cell["class_code"], numbers["seq"], idnumber.mask_ids(cell["title"]), formed, numbers["pages"],
                    page_files, numbers["copies"], idnumber.mask_ids(cell.get("remarks", ""))), []
