"""Pages per second of one batch with 1 and with 2 Celery workers, in one run: the gain of a
second worker, against a target of 1.8x.

    .venv/bin/python benchmarks/workers_bench.py [--pages 200] [--intake-unit-files 100] [--unit-pages 25]
        [--copy-unit-files 100] [--pdf-unit-pages 50] [--rounds 2]

Renders distinct pages with the sample generator and lays out one batch of `--pages` page files
(intake_bench.big_batch: every file its own sha256, so nothing comes from a cache). Then, for 1
and for 2 workers, on a fresh installation each (its own PostgreSQL, object folder and Dagster
instance, the `ocr` pool at twice the workers; one Redis broker on loopback): starts the workers
(`archive worker`, one step at a time each, one OCR process per step) and runs the batch with
`ARCHIVE_EXECUTOR=celery archive run`, whose process is the run worker and sends every step to
the broker.

Prints, per round and worker count: the whole run (intake → ocr units → index → archive, as the
CLI times it, hand-in excluded) and the OCR stage alone (first unit's start to last unit's end),
in s and pages/s; then the ratios 2 workers / 1 worker per round and of the rounds' summed times
(`--rounds`, 2: the same batch run four times, about 9 minutes). Run it on an otherwise idle
machine: on 2 cores, 2 workers use both.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from intake_bench import VARIANTS, big_batch  # noqa: E402

from devservices.redis import LocalRedis  # noqa: E402
from devservices.s3 import free_port  # noqa: E402
from sample_scans.generate import generate  # noqa: E402

ARCHIVE = [sys.executable, "-m", "cli.main"]
# the last run's steps: start after the first step's start @ duration, from Dagster's own record
STEP_SECONDS = """
import dagster as dg
with dg.DagsterInstance.get() as instance:
    run = instance.get_runs(limit=1)[0]
    steps = sorted((s for s in instance.get_run_step_stats(run.run_id) if s.end_time and s.start_time),
                   key=lambda s: s.start_time)
    print(", ".join(f"{s.step_key} @{s.start_time - steps[0].start_time:.1f}+{s.end_time - s.start_time:.1f}"
                    for s in steps))
"""


def run_with_workers(root: Path, folder: Path, workers: int, broker: str,
                     units: dict[str, int], round_no: int = 1) -> tuple[float, float, int]:
    """(whole run s, OCR stage s, pages OCR'd) of the batch on a fresh installation with `workers` workers."""
    home = root / f"home-{round_no}-{workers}"
    home.mkdir()
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    # units held in the broker beyond the running ones: a worker that ends one starts the next at
    # once, while a unit waiting for a pool slot looks again only every 1 to 15 s
    config["concurrency"]["pools"]["default_limit"] = 2 * workers
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env.update(DAGSTER_HOME=str(home), ARCHIVE_PG_PORT=str(free_port()), ARCHIVE_EXECUTOR="celery",
               ARCHIVE_CELERY_BROKER=broker, OMP_THREAD_LIMIT="1", **{k: str(v) for k, v in units.items()})
    subprocess.run([*ARCHIVE, "services", "start"], env=env, cwd=REPO, capture_output=True, check=True)
    logs = [home / f"worker-{n}.log" for n in range(workers)]
    procs = [subprocess.Popen([*ARCHIVE, "worker", "--name", f"bench{n}"], env=env, cwd=REPO, stdout=log.open("w"),
                              stderr=subprocess.STDOUT) for n, log in enumerate(logs)]
    try:
        deadline = time.monotonic() + 120
        while not all("ready." in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("workers did not start: " + " | ".join(log.read_text()[-500:] for log in logs))
            time.sleep(0.5)
        done = subprocess.run([*ARCHIVE, "run", str(folder)], env=env, cwd=REPO, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the run failed ({done.returncode}): {done.stderr[-3000:]}")
        whole = float(re.search(r"pipeline / 全流程\s+([\d.]+) s", done.stdout).group(1))
        ocr = re.search(r"(\d+) pages OCR'd now at ([\d.]+) pages/s, (\d+) scans from cache", done.stdout)
        pages, rate, cached = int(ocr.group(1)), float(ocr.group(2)), int(ocr.group(3))
        if cached:
            raise SystemExit(f"{cached} scans came from the cache: not a measurement of OCR")
        per_worker = [len(set(re.findall(r"\w+\.\w+_unit_step\[unit_\d+\]", log.read_text())))
                      for log in logs]
        dagster_db = f"postgresql+psycopg2://archive@127.0.0.1:{env['ARCHIVE_PG_PORT']}/dagster"
        steps = subprocess.run([sys.executable, "-c", STEP_SECONDS], cwd=REPO, capture_output=True, text=True,
                               env={**env, "ARCHIVE_DAGSTER_DATABASE_URL": dagster_db})
        steps = steps.stdout.strip() or steps.stderr.strip()[-300:]
        print(f"  round {round_no}, {workers} worker(s): units per worker {per_worker}; steps @start+seconds {steps}")
        return whole, pages / rate, pages
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(180)
        subprocess.run([*ARCHIVE, "services", "stop"], env=env, cwd=REPO, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--intake-unit-files", type=int, default=100,
                    help="page files per unit of intake's checks (ARCHIVE_INTAKE_UNIT_FILES)")
    ap.add_argument("--unit-pages", type=int, default=25, help="pages per OCR unit (ARCHIVE_OCR_UNIT_PAGES)")
    ap.add_argument("--copy-unit-files", type=int, default=100,
                    help="page files per unit of copies into the archive (ARCHIVE_COPY_UNIT_FILES)")
    ap.add_argument("--pdf-unit-pages", type=int, default=50,
                    help="pages per unit of searchable PDFs (ARCHIVE_PDF_UNIT_PAGES)")
    ap.add_argument("--distinct", type=int, default=30, help="distinct rendered pages the batch's files copy")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of 1 then 2 workers; the ratios are of the rounds' summed times")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    root.chmod(0o755)
    redis = LocalRedis(free_port())
    redis.start()
    try:
        source = generate(root / "render", files=max(1, args.distinct // 3), seed=11, variants=VARIANTS)
        folder = big_batch(source, root, args.pages)
        units = {"ARCHIVE_INTAKE_UNIT_FILES": args.intake_unit_files, "ARCHIVE_OCR_UNIT_PAGES": args.unit_pages,
                 "ARCHIVE_COPY_UNIT_FILES": args.copy_unit_files, "ARCHIVE_PDF_UNIT_PAGES": args.pdf_unit_pages}
        print(f"batch: {args.pages} page files; units: intake checks {args.intake_unit_files} files, OCR "
              f"{args.unit_pages} pages, copies {args.copy_unit_files} files, PDFs {args.pdf_unit_pages} pages")
        # rounds one after the other, each 1 worker then 2: a slow spell of the shared machine falls
        # on both counts rather than on one
        rounds = [{n: run_with_workers(root, folder, n, redis.url, units, r) for n in (1, 2)}
                  for r in range(1, args.rounds + 1)]
        for r, results in enumerate(rounds, start=1):
            for n, (whole, ocr, pages) in results.items():
                print(f"round {r}, {n} worker(s): whole run {whole:.1f} s = {pages / whole:.2f} pages/s; "
                      f"OCR stage {ocr:.1f} s = {pages / ocr:.2f} pages/s")
            print(f"round {r}, 2 workers / 1 worker: whole run {results[1][0] / results[2][0]:.2f}x, "
                  f"OCR stage {results[1][1] / results[2][1]:.2f}x")
        w1, o1, w2, o2 = (sum(results[n][k] for results in rounds) for n, k in ((1, 0), (1, 1), (2, 0), (2, 1)))
        print(f"2 workers / 1 worker over {len(rounds)} rounds: whole run {w1 / w2:.2f}x, OCR stage {o1 / o2:.2f}x "
              "(target 1.8x)")
    finally:
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
