"""The catalog-to-image link (数据挂接): each material's pages exist and belong to it alone."""

from __future__ import annotations

import re

from catalog.findings import Finding, error, warning
from catalog.manifest import Catalog, PersonnelFile

_PAGE_NUMBER = re.compile(r"(\d+)\.[A-Za-z0-9]+$")


def _class_key(code: str) -> tuple[int, ...]:
    return tuple(int(p) for p in code.split("-"))


def check_page_order(pf: PersonnelFile) -> list[Finding]:
    """Pages are named by file number plus page sequence (DA/T 31): in catalog order (class,
    then sequence) their numbers must rise by one. Out of order or a gap (a page missing?) is a
    warning naming the two files; files not named with a trailing number are not judged."""
    names = [n for m in sorted(pf.materials, key=lambda m: (_class_key(m.class_code), m.seq)) for n in m.page_files]
    numbers = [_PAGE_NUMBER.search(n) for n in names]
    if len(names) < 2 or not all(numbers):
        return []
    out = []
    for (a, na), (b, nb) in zip(zip(names, numbers, strict=True), list(zip(names, numbers, strict=True))[1:],
                                strict=False):
        x, y = int(na.group(1)), int(nb.group(1))
        if y <= x:
            out.append(warning("link.out_of_order", pf.file_number, f"页面顺序与目录不符：{b} 排在 {a} 之后",
                               f"pages out of catalog order: {b} comes after {a}"))
        elif y > x + 1:
            out.append(warning("link.numbering_gap", pf.file_number, f"页号从 {a} 跳到 {b}，可能缺页",
                               f"page numbers jump from {a} to {b}: a page may be missing"))
    return out


def check_linkage(catalog: Catalog, page_counts: dict[str, int | None],
                  manifest_path: str) -> tuple[Catalog, list[Finding]]:
    """Catalog of the materials whose pages are all present and readable, plus findings.

    `page_counts` maps every handed-in page file to its page count, or None if rejected.
    """
    findings: list[Finding] = []
    owner: dict[str, str] = {}
    kept = Catalog()
    for pf in catalog.files:
        keep = type(pf)(pf.file_number, pf.name, pf.id_number)
        for m in pf.materials:
            item = f"{manifest_path} {pf.file_number} {m.code}"
            problems = []
            for name in m.page_files:
                if name in owner:
                    problems.append(error("link.shared_page", item, f"页面文件 {name} 已属于材料 {owner[name]}",
                                          f"page file {name} already belongs to material {owner[name]}"))
                owner.setdefault(name, f"{pf.file_number} {m.code}")
                if name not in page_counts:
                    problems.append(error("link.missing_page", item, f"缺少页面文件 {name}",
                                          f"page file {name} is missing from the batch"))
                elif page_counts[name] is None:
                    problems.append(error("link.rejected_page", item, f"页面文件 {name} 被拒收，材料暂缓处理",
                                          f"page file {name} was rejected, so the material is held back"))
            if not problems:
                found = sum(page_counts[n] or 0 for n in m.page_files)
                if found != m.pages:
                    problems.append(error("link.page_count", item, f"目录页数为 {m.pages}，实际图像为 {found} 页",
                                          f"catalog says {m.pages} pages, the images hold {found}"))
            findings.extend(problems)
            if not problems:
                keep.materials.append(m)
        if keep.materials:
            kept.files.append(keep)
        findings.extend(check_page_order(pf))
    for name in sorted(set(page_counts) - set(owner)):
        findings.append(warning("link.extra_file", name, "文件不在目录中，已保存但不处理",
                                "file is not listed in the catalog; kept but not processed"))
    return kept, findings
