"""Executors by configuration: the sample batch run by two Celery workers (separate processes, a
Redis broker on loopback) leaves the same rows and objects as the multiprocess executor's run,
its OCR units spread over both workers; and so it does when one worker is killed in an OCR unit."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

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


def _run(env: dict[str, str], all_ocred_now: bool = True, timeout: float = 600) -> tuple[dict, list]:
    done = subprocess.run([*ARCHIVE, "run", str(SAMPLE_BATCH)], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not all_ocred_now or "9 pages OCR'd now" in done.stdout, done.stdout
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


@pytest.fixture(scope="module")
def multiprocess_run() -> tuple[dict, list]:
    with _installation("multiprocess") as env:
        return _run(env)


@contextmanager
def _celery_workers(env: dict[str, str]) -> Iterator[tuple[list[subprocess.Popen], list[Path]]]:
    logs = [Path(env["DAGSTER_HOME"]) / f"worker-{n}.log" for n in (1, 2)]
    workers = [subprocess.Popen([*ARCHIVE, "worker", "--name", f"w{n}"], env=env, cwd=REPO,
                                stdout=log.open("w"), stderr=subprocess.STDOUT) for n, log in enumerate(logs, 1)]
    try:
        deadline = time.monotonic() + 60
        while not all("ready." in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
                [log.read_text()[-2000:] for log in logs]
            time.sleep(0.5)
        yield workers, logs
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(150)


def _assert_same(celery: tuple[dict, list], multiprocess: tuple[dict, list]) -> None:
    for table in ROWS:  # as sorted lists: a row twice is a difference
        only_celery = set(celery[0][table]) - set(multiprocess[0][table])
        only_multi = set(multiprocess[0][table]) - set(celery[0][table])
        assert celery[0][table] == multiprocess[0][table], (table, sorted(only_celery)[:2], sorted(only_multi)[:2])
    assert celery[1] == multiprocess[1] and sum(d != "made" for _, d in celery[1]) >= 10


def test_two_celery_workers_leave_what_the_multiprocess_executor_leaves(multiprocess_run):
    redis = LocalRedis(free_port())
    with _installation("celery", ARCHIVE_CELERY_BROKER=redis.url) as env:
        redis.start()
        try:
            with _celery_workers(env) as (_, logs):
                celery = _run(env)
                ran = [log.read_text().count("succeeded in") for log in logs]
                units = [log.read_text().count("ocr.ocr_unit_step[unit_") for log in logs]
        finally:
            redis.stop()
    assert all(ran) and sum(ran) >= 9, ran  # intake, plan, 3 units, finish, index, copy, PDF units, finish
    assert all(units), units                # the OCR units themselves on both
    _assert_same(celery, multiprocess_run)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:  # ended meanwhile
        return ""


def _kill_in_ocr(worker: subprocess.Popen, seen: list[str]) -> None:
    """SIGKILL the worker's Celery process once it has an OCR process of its own: inside an OCR unit."""
    (celery,) = _children(worker.pid)  # `archive worker` runs Celery as its one child
    deadline = time.monotonic() + 300
    while not any("spawn_main" in _command(c) for c in _children(celery)):
        assert time.monotonic() < deadline, "the worker never started an OCR unit"
        time.sleep(0.2)
    time.sleep(1)  # into the unit's pages
    os.kill(celery, signal.SIGKILL)
    seen.append("killed")


_DAGSTER_STATE = """
import dagster as dg
with dg.DagsterInstance.get() as instance:
    run = instance.get_runs(limit=1)[0]
    sent_again = [e.message.split()[1].rstrip(":") for e in instance.all_logs(run.run_id)
                  if "is gone (no sign of life" in (e.message or "")]
    print(run.status.value, instance.event_log_storage.get_concurrency_info("ocr").active_slot_count, *sent_again)
"""


def test_a_celery_worker_killed_in_ocr_costs_its_step_a_resend_and_nothing_twice(multiprocess_run):
    """The step whose worker died is sent again (its worker's heartbeat expired) and the run
    completes on the other worker: every page OCR'd, indexed and stored once, the OCR slot free."""
    import threading

    redis = LocalRedis(free_port())
    with _installation("celery", ARCHIVE_CELERY_BROKER=redis.url) as env:
        redis.start()
        try:
            with _celery_workers(env) as (workers, logs):
                killed: list[str] = []
                killer = threading.Thread(target=_kill_in_ocr, args=(workers[0], killed))
                killer.start()
                # the killed unit's stored pages are reused; a run waiting on its lost step for ever times out
                celery = _run(env, all_ocred_now=False, timeout=300)
                killer.join()
                assert killed
                dagster_db = f"postgresql+psycopg2://archive@127.0.0.1:{env['ARCHIVE_PG_PORT']}/dagster"
                state = subprocess.run([sys.executable, "-c", _DAGSTER_STATE], cwd=REPO, capture_output=True,
                                       text=True, env={**env, "ARCHIVE_DAGSTER_DATABASE_URL": dagster_db})
        finally:
            redis.stop()
    status, slots, *sent_again = state.stdout.split() or ["", ""]
    assert (status, slots) == ("SUCCESS", "0"), (state.stdout, state.stderr[-2000:])
    assert len(sent_again) == 1 and sent_again[0].startswith("ocr.ocr_unit_step[unit_"), sent_again
    _assert_same(celery, multiprocess_run)
