"""Intake versus OCR on a 1,000-page batch: intake must cost under 10% of the OCR it feeds.

    .venv/bin/python benchmarks/intake_bench.py [--pages 1000] [--distinct 30]

Starts a private PostgreSQL and a moto S3 server over HTTP (the production path), renders
`--distinct` pages with the sample generator (clean, skewed, noisy, JPEG, archive-aged and
sealed, 200 dpi), and lays out a batch of `--pages` page files cycling through them. Each copy
gets its own JPEG comment, so every file has its own sha256: nothing is deduplicated and every
page is decoded and checked, exactly as distinct scans would be.

Prints, measured in the same run:
  - hand-in (hash every file, store it verbatim in staging, register it) and validation
    (manifest, every page by content, dpi, blank and skew, the catalog link), in s and pages/s;
  - OCR through the pipeline's stage (`stages.ocr.ocr_batch`, 2 worker processes) on the same
    batch, every one of its pages (each copy its own sha256, so none is taken from the cache), in
    s and s/page; its pool's start-up is counted once, as intake's worker processes are;
  - the ratio intake / OCR, against the 10% target.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog.manifest import TEMPLATE_HEADER  # noqa: E402
from devservices.postgres import LocalPostgres  # noqa: E402
from devservices.s3 import MotoServer, free_port  # noqa: E402
from sample_scans.generate import generate  # noqa: E402
from settings import StorageSettings  # noqa: E402
from stages.intake import intake_batch  # noqa: E402
from stages.ocr import ocr_batch  # noqa: E402
from stages.services import Services  # noqa: E402
from stages.submit import submit_folder  # noqa: E402

VARIANTS = ["clean", "skew", "noise", "jpeg", "archive", "dpi200"]


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: same pixels, new sha256."""
    body = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def big_batch(source: Path, out: Path, pages: int) -> Path:
    """`pages` page files cycling through the source batch's pages, one material per page."""
    rows = list(csv.DictReader(io.StringIO((source / "manifest.csv").read_text(encoding="utf-8"))))
    singles = [(r, f) for r in rows for f in r["页面文件"].split(";")]
    folder = out / "big-batch"
    (folder / "pages").mkdir(parents=True)
    manifest = []
    for start in range(0, pages, 20):  # personnel files of 20 one-page materials
        number = f"GZ-B{start // 20:05d}"
        person = singles[start % len(singles)][0]
        chosen = sorted((singles[n % len(singles)] for n in range(start, min(start + 20, pages))),
                        key=lambda s: tuple(int(x) for x in s[0]["类号"].split("-")))
        seq: dict[str, int] = {}
        for k, (row, page) in enumerate(chosen, start=1):  # pages numbered in catalog order (DA/T 31)
            name = f"pages/{number}-{k:04d}.jpg"
            (folder / name).write_bytes(with_comment((source / page).read_bytes(), f"bench copy {number}-{k}"))
            seq[row["类号"]] = seq.get(row["类号"], 0) + 1
            manifest.append([number, person["姓名"], person["身份证号"], row["类号"], seq[row["类号"]],
                             row["材料名称"], row["形成时间"], 1, 1, "", name])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([TEMPLATE_HEADER, *manifest])
    (folder / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--distinct", type=int, default=30, help="distinct rendered pages the batch's files copy")
    args = ap.parse_args()
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    root = Path(tempfile.mkdtemp(prefix="intake-bench-"))
    root.chmod(0o755)
    pg, s3 = LocalPostgres(root / "pg", free_port()), MotoServer()
    pg.start()
    pg.ensure_database("bench")
    s3.start()
    try:
        services = Services.from_settings(StorageSettings(pg.url("bench"), s3.url, None, "staging", "archive"))
        services.prepare()
        t0 = time.perf_counter()
        files = max(1, args.distinct // 3)
        source = generate(root / "render", files=files, seed=11, variants=VARIANTS)
        print(f"rendered {len(list(source.glob('pages/*')))} distinct pages in {time.perf_counter() - t0:.0f} s")
        folder = big_batch(source, root, args.pages)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"batch: {args.pages} page files, {size / 1e6:.0f} MB")

        t0 = time.perf_counter()
        sub = submit_folder(folder, services)
        hand_in = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = intake_batch(sub.batch_id, services)
        validate = time.perf_counter() - t0
        intake = hand_in + validate
        errors = [f for f in result.findings if f.severity.value == "error"]
        print(f"intake: hand-in {hand_in:.1f} s + validation {validate:.1f} s = {intake:.1f} s "
              f"({args.pages / intake:.0f} pages/s); accepted {result.accepted}, rejected {result.rejected}, "
              f"{len(errors)} errors, {result.warnings} warnings")
        print("  findings by kind:", dict(Counter(f.code for f in result.findings).most_common()))

        t0 = time.perf_counter()
        ocr = ocr_batch(sub.batch_id, services, workers=2)
        ocr_total = time.perf_counter() - t0
        if ocr.files_cached or ocr.pages_ocred != args.pages:  # intake checked every page: so must OCR read them
            raise SystemExit(f"OCR read {ocr.pages_ocred} of the {args.pages} pages ({ocr.files_cached} files from"
                             " the cache): not the pages intake checked")
        print(f"OCR: {ocr_total:.0f} s for the same {ocr.pages_ocred} pages ({ocr_total / ocr.pages_ocred:.2f} s/page,"
              " 2 processes, their start-up included once)")
        ratio = intake / ocr_total
        print(f"intake / OCR = {ratio:.3f} ({ratio:.1%}); target < 10%: {'met' if ratio < 0.10 else 'NOT met'}")
    finally:
        s3.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
