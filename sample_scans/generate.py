"""Generates a synthetic scan batch: page images, the catalog manifest and ground truth.

    python -m sample_scans.generate OUT --files 3 --seed 7 --variants clean,skew,jpeg

Writes OUT/<name>/ (what staff hand in: manifest.csv and pages/; name defaults to
<prefix>-S<seed>) and OUT/truth/ (one .txt per page image, same stem). Deterministic for a
given seed and options.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import random
from collections.abc import Callable
from pathlib import Path

from catalog.manifest import TEMPLATE_HEADER
from sample_scans import degrade
from sample_scans.people import (
    APPRAISAL,
    AUTOBIOGRAPHY,
    AWARD,
    SELF_ASSESSMENT,
    Person,
    cn_date,
    fill,
    history,
    make_person,
)
from sample_scans.render import Page, available_fonts

Builder = Callable[[Person, random.Random, str], tuple[str, str, dt.date, list[Page]]]


def _registration_form(p: Person, rng: random.Random, font: str) -> tuple[str, str, dt.date, list[Page]]:
    page = Page(font)
    page.title("流动人员人事档案登记表")
    page.table([
        ["姓名", p.name, "性别", p.gender],
        ["出生日期", cn_date(p.born), "民族", p.ethnic],
        ["籍贯", p.native_place, "学历", "大学本科"],
        ["身份证号", p.id_number, "专业", p.major],
        ["工作单位", p.employer, "职务", p.post],
    ], [0.16, 0.36, 0.14, 0.34])
    page.title("学习和工作经历", points=14)
    for line in history(p, rng):
        page.paragraph(line, indent=False)
    return "1", "流动人员人事档案登记表", p.graduated + dt.timedelta(days=rng.randrange(30, 2000)), [page]


def _autobiography(p: Person, rng: random.Random, font: str) -> tuple[str, str, dt.date, list[Page]]:
    lines = fill(AUTOBIOGRAPHY, p, rng, p.graduated.year)
    pages = [Page(font)]
    pages[0].title("自传")
    body = lines + fill(rng.sample(AUTOBIOGRAPHY[1:], 4), p, rng, p.graduated.year)
    for para in body:
        if pages[-1].room() < 3:
            pages.append(Page(font))
        pages[-1].paragraph(para)
    return "2", "自传", p.graduated - dt.timedelta(days=rng.randrange(30, 200)), pages


def _appraisal(p: Person, rng: random.Random, font: str) -> tuple[str, str, dt.date, list[Page]]:
    year = p.graduated.year + rng.randint(1, 8)
    page = Page(font)
    page.title(f"{year}年度考核登记表")
    page.table([["姓名", p.name, "单位", p.employer], ["职务", p.post, "考核年度", f"{year}年"]],
               [0.12, 0.22, 0.12, 0.54])
    page.title("主管领导评语", points=14)
    for para in fill(APPRAISAL, p, rng, year):
        page.paragraph(para)
    return "3", f"{year}年度考核登记表", dt.date(year + 1, 1, 10), [page]


def _graduate_form(p: Person, rng: random.Random, font: str) -> tuple[str, str, dt.date, list[Page]]:
    page = Page(font)
    page.title("普通高等学校毕业生登记表")
    page.table([
        ["姓名", p.name, "性别", p.gender],
        ["学校", p.school, "专业", p.major],
        ["入学时间", f"{p.born.year + 18}年9月", "毕业时间", f"{p.graduated.year}年7月"],
    ], [0.16, 0.36, 0.16, 0.32])
    page.title("自我鉴定", points=14)
    for para in fill(SELF_ASSESSMENT, p, rng, p.graduated.year):
        page.paragraph(para)
    return "4-1", "普通高等学校毕业生登记表", p.graduated - dt.timedelta(days=20), [page]


def _salary_form(p: Person, rng: random.Random, font: str) -> tuple[str, str, dt.date, list[Page]]:
    year = p.graduated.year + rng.randint(1, 6)
    base = rng.randrange(2600, 6800, 50)
    page = Page(font)
    page.title("职工工资标准审批表")
    page.table([
        ["姓名", p.name, "工作单位", p.employer],
        ["岗位", p.post, "执行时间", f"{year}年{rng.randint(1, 12)}月"],
        ["原工资标准", f"{base}元", "调整后标准", f"{base + rng.randrange(200, 900, 50)}元"],
    ], [0.16, 0.22, 0.16, 0.46])
    page.paragraph(f"经审核，同意{p.name}同志自{year}年起按上述标准执行。", indent=True)
    page.paragraph(f"审批单位：{p.employer}人力资源部", indent=False)
    page.paragraph(f"审批日期：{year}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日", indent=False)
    return "9-1", "职工工资标准审批表", dt.date(year, 3, 1), [page]


def _award(p: Person, rng: random.Random, font: str) -> tuple[str, str, dt.date, list[Page]]:
    year = p.graduated.year + rng.randint(1, 9)
    lines = fill(AWARD, p, rng, year)
    page = Page(font)
    page.title(lines[0], points=16)
    for para in lines[1:]:
        page.paragraph(para, indent=para not in (lines[1], lines[-2], lines[-1]))
    return "7", "先进个人表彰决定", dt.date(year + 1, 1, 15), [page]


BUILDERS: list[Builder] = [_registration_form, _autobiography, _appraisal, _graduate_form,
                           _salary_form, _award]


def generate(out: Path, files: int = 3, seed: int = 7, variants: list[str] | None = None,
             fmt: str = "jpg", materials_per_file: int = 3, prefix: str = "GZ2026", name: str | None = None) -> Path:
    """Writes OUT/<name> and OUT/truth; returns the batch folder."""
    rng = random.Random(seed)
    fonts = available_fonts()
    variants = variants or ["clean"]
    batch, truth = out / (name or f"{prefix}-S{seed:03d}"), out / "truth"
    (batch / "pages").mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    rows, page_counter = [], 0
    for n in range(files):
        person = make_person(rng)
        number = f"{prefix}-{seed:03d}{n + 1:04d}"
        chosen = [BUILDERS[0]] + rng.sample(BUILDERS[1:], materials_per_file - 1)
        seq_by_class: dict[str, int] = {}
        page_no = 0
        built = []
        for builder in chosen:
            font = fonts[rng.choice(sorted(fonts))]
            built.append(builder(person, rng, font))
        # a file is arranged by class, then formation date, and its pages numbered in that order
        built.sort(key=lambda b: (tuple(int(x) for x in b[0].split("-")), b[2]))
        for class_code, title, formed, pages in built:
            seq_by_class[class_code] = seq_by_class.get(class_code, 0) + 1
            names = []
            for page in pages:
                page_no += 1
                variant = variants[page_counter % len(variants)]
                page_counter += 1
                img, dpi, quality = degrade.apply(page.image, variant, rng)
                name = f"{number}-{page_no:04d}.{fmt}"
                (batch / "pages" / name).write_bytes(degrade.encode(img, fmt, dpi, quality))
                (truth / f"{Path(name).stem}.txt").write_text(page.truth(), encoding="utf-8")
                names.append(f"pages/{name}")
            rows.append([number, person.name, person.id_number, class_code, seq_by_class[class_code],
                         title, formed.isoformat(), 1, len(pages), "", ";".join(names)])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TEMPLATE_HEADER)
    writer.writerows(rows)
    (batch / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
    return batch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--materials", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--format", default="jpg", choices=["jpg", "png", "tif"])
    ap.add_argument("--variants", default="clean", help=f"comma list of {', '.join(degrade.VARIANTS)}")
    args = ap.parse_args(argv)
    batch = generate(args.out, args.files, args.seed, args.variants.split(","), args.format, args.materials)
    print(batch)


if __name__ == "__main__":
    main()
