"""Executors by configuration: the sample batch run by two Celery workers (separate processes, a
Redis broker on loopback) leaves the same rows and objects as the multiprocess executor's run,
its OCR units spread over both workers."""

import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2

from devservices.redis import LocalRedis
from devservices.s3 import free_port
from tests.conftest import REPO, SAMPLE_BATCH, searchable_tempdir
from tests.test_cli import ARCHIVE

UNIT_PAGES = "3"  # 9 pages: three OCR units and a few PDF units, for two workers to share

# What a run leaves, without ids and times: the same batch gives the same answers whoever ran it.
ROWS = {
    "batch_files": "SELECT path, sha256, status, page_count, ocr_key FROM batch_files",
    "personnel_files": "SELECT file_number, name, id_hash, id_masked, batch_id FROM personnel_files",
    "materials": "SELECT file_number, class_code, seq, title, formed, page_count FROM materials",
    # an OCR result records how long each page took, so its digest differs run to run: its text does not
    "pages": "SELECT m.file_number, m.class_code, m.seq, p.page_no, p.source_sha256, p.ocr_text, p.ocr_confidence"
             " FROM pages p JOIN materials m USING (material_id)",
    # made objects are stored under their content's digest: their number per role is what must agree
    "stored_objects": "SELECT bucket, role, CASE WHEN role = 'original' THEN key END FROM stored_objects",
    "events": "SELECT event_type, outcome, file_number, CASE WHEN object_sha256 IN (SELECT sha256 FROM batch_files)"
              " THEN object_sha256 END FROM events",
}


@contextmanager
def _installation(executor: str, **extra: str) -> Iterator[dict[str, str]]:
    home = searchable_tempdir(f"archive-{executor}-")
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env.update(DAGSTER_HOME=str(home), ARCHIVE_PG_PORT=str(free_port()), ARCHIVE_EXECUTOR=executor,
               ARCHIVE_OCR_UNIT_PAGES=UNIT_PAGES, ARCHIVE_PDF_UNIT_PAGES=UNIT_PAGES, **extra)
    subprocess.run([*ARCHIVE, "services", "start"], env=env, cwd=REPO, capture_output=True, check=True)
    try:
        yield env
    finally:
        subprocess.run([*ARCHIVE, "services", "stop"], env=env, cwd=REPO, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _run(env: dict[str, str]) -> tuple[dict, list]:
    done = subprocess.run([*ARCHIVE, "run", str(SAMPLE_BATCH)], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "9 pages OCR'd now" in done.stdout, done.stdout
    url = f"postgresql://archive@127.0.0.1:{env['ARCHIVE_PG_PORT']}/archive"
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        rows = {}
        for table, query in ROWS.items():
            cur.execute(query)
            rows[table] = sorted(cur.fetchall(), key=repr)
    conn.close()
    root = Path(env["DAGSTER_HOME"]) / "objects"
    originals = {r[1] for r in rows["batch_files"]}
    objects = []  # (bucket, digest) of every object, originals by content (kept verbatim), the rest counted
    for path in (p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        objects.append((path.relative_to(root).parts[0], digest if digest in originals else "made"))
    objects.sort()
    return rows, objects


def test_two_celery_workers_leave_what_the_multiprocess_executor_leaves():
    with _installation("multiprocess") as env:
        multiprocess = _run(env)

    redis = LocalRedis(free_port())
    with _installation("celery", ARCHIVE_CELERY_BROKER=redis.url) as env:
        redis.start()
        logs = [Path(env["DAGSTER_HOME"]) / f"worker-{n}.log" for n in (1, 2)]
        workers = [subprocess.Popen([*ARCHIVE, "worker", "--name", f"w{n}"], env=env, cwd=REPO,
                                    stdout=log.open("w"), stderr=subprocess.STDOUT) for n, log in enumerate(logs, 1)]
        try:
            deadline = time.monotonic() + 60
            while not all("ready." in log.read_text() for log in logs):
                assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
                    [log.read_text()[-2000:] for log in logs]
                time.sleep(0.5)
            celery = _run(env)
            ran = [log.read_text().count("succeeded in") for log in logs]
            units = [log.read_text().count("ocr.ocr_unit_step[unit_") for log in logs]
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(150)
            redis.stop()
    assert all(ran) and sum(ran) >= 9, ran  # intake, plan, 3 units, finish, index, copy, PDF units, finish
    assert all(units), units                # the OCR units themselves on both
    for table in ROWS:
        only_celery = set(celery[0][table]) - set(multiprocess[0][table])
        only_multi = set(multiprocess[0][table]) - set(celery[0][table])
        assert celery[0][table] == multiprocess[0][table], (table, sorted(only_celery)[:2], sorted(only_multi)[:2])
    assert celery[1] == multiprocess[1] and sum(d != "made" for _, d in celery[1]) >= 10
