"""OCR benchmark: raw tesseract CLI against this engine, on the same generated pages, same run.

    .venv/bin/python benchmarks/ocr_bench.py [--files 3] [--variants clean,skew,...] [--workers 2]

For every variant it renders the same personnel-file pages (forms and prose, three fonts),
then measures
  (a) `tesseract PAGE stdout -l chi_sim` run 2 at a time, OMP_THREAD_LIMIT=1, no preprocessing;
  (b) this engine through OcrPool (the pipeline's own path), models loaded before timing;
and prints pages/s, CER (whitespace stripped), empty outputs on non-blank pages, and the ratio
(b)/(a) of throughput. Both run in this process's machine at the same time of day, so the ratio
holds where absolute numbers drift.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocr import EngineConfig, OcrPool  # noqa: E402
from ocr.quality import corpus_cer, strip_ws  # noqa: E402
from sample_scans.degrade import VARIANTS  # noqa: E402
from sample_scans.generate import generate  # noqa: E402

DEFAULT_VARIANTS = ["clean", "skew", "noise", "jpeg", "dpi200", "combined", "seal", "aged", "upside_down",
                    "sideways", "archive"]


def raw_cli(pages: list[Path], workers: int) -> tuple[list[str], float]:
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def one(path: Path) -> str:
        return subprocess.run(["tesseract", str(path), "stdout", "-l", "chi_sim"], env=env, capture_output=True,
                              text=True, check=True).stdout

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        texts = list(pool.map(one, pages))
    return texts, time.perf_counter() - t0


def engine(pool: OcrPool, pages: list[Path]) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    texts = [results[0].text for results in pool.map(p.read_bytes() for p in pages)]
    return texts, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=3, help="personnel files per variant (3 materials each)")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=101)
    args = ap.parse_args()
    variants = args.variants.split(",")
    root = Path(tempfile.mkdtemp(prefix="ocr-bench-"))
    sets = {}
    for v in variants:
        batch = generate(root / v, files=args.files, seed=args.seed, variants=[v], materials_per_file=3)
        pages = sorted((batch / "pages").iterdir())
        truths = [(root / v / "truth" / f"{p.stem}.txt").read_text(encoding="utf-8") for p in pages]
        sets[v] = (pages, truths)

    config = EngineConfig()
    print(f"engine: {config.key}; {args.workers} workers; {args.files * 3}+ pages per variant; pages in {root}")
    header = f"{'variant':<12} {'pages':>5} | {'raw CLI p/s':>11} {'CER':>7} {'empty':>5} | " \
             f"{'engine p/s':>10} {'CER':>7} {'empty':>5} {'review':>6} | {'speed ratio':>11}"
    print(header)
    print("-" * len(header))
    totals = {"pages": 0, "raw_s": 0.0, "eng_s": 0.0, "raw": [], "eng": []}
    worst = 0.0
    with OcrPool(config, args.workers) as pool:
        list(pool.map([sets[variants[0]][0][0].read_bytes()] * args.workers))  # load the models first
        for v in variants:
            pages, truths = sets[v]
            raw_texts, raw_s = raw_cli(pages, args.workers)
            t0 = time.perf_counter()
            results = [r[0] for r in pool.map(p.read_bytes() for p in pages)]
            eng_s = time.perf_counter() - t0
            eng_texts = [r.text for r in results]
            raw_cer = corpus_cer(list(zip(truths, raw_texts, strict=True)))
            eng_cer = corpus_cer(list(zip(truths, eng_texts, strict=True)))
            worst = max(worst, eng_cer)
            raw_empty = sum(1 for t in raw_texts if not strip_ws(t))
            eng_empty = sum(1 for t in eng_texts if not strip_ws(t))
            review = sum(1 for r in results if r.review)
            n = len(pages)
            print(f"{v:<12} {n:>5} | {n / raw_s:>11.2f} {raw_cer:>7.2%} {raw_empty:>5} | "
                  f"{n / eng_s:>10.2f} {eng_cer:>7.2%} {eng_empty:>5} {review:>6} | {raw_s / eng_s:>10.2f}x")
            totals["pages"] += n
            totals["raw_s"] += raw_s
            totals["eng_s"] += eng_s
            totals["raw"] += list(zip(truths, raw_texts, strict=True))
            totals["eng"] += list(zip(truths, eng_texts, strict=True))
    n = totals["pages"]
    print("-" * len(header))
    print(f"{'all':<12} {n:>5} | {n / totals['raw_s']:>11.2f} {corpus_cer(totals['raw']):>7.2%} {'':>5} | "
          f"{n / totals['eng_s']:>10.2f} {corpus_cer(totals['eng']):>7.2%} {'':>5} {'':>6} | "
          f"{totals['raw_s'] / totals['eng_s']:>10.2f}x")
    print(f"targets: CER <= 1% on every variant: {'met' if worst <= 0.01 else 'NOT met'} (worst {worst:.2%}); "
          f"throughput >= 1.2x raw CLI: {'met' if totals['raw_s'] / totals['eng_s'] >= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
