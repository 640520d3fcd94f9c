"""The OCR stage's cache: keyed by page sha256 and engine settings, a rerun calls no engine."""

import shutil
import signal
import subprocess
import sys
import time

import pytest

import stages.ocr as ocr_stage
from ocr import EngineConfig
from stages.intake import intake_batch
from stages.submit import submit_folder
from tests.conftest import REPO, SAMPLE_BATCH


class EngineMustNotRun:
    def __init__(self, *args, **kwargs):
        raise AssertionError("the OCR engine was started although every page is cached")


def test_rerun_hits_the_cache_and_starts_no_engine(tmp_path, services, monkeypatch):
    folder = tmp_path / "one-page"
    (folder / "pages").mkdir(parents=True)
    page = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[2]
    shutil.copy(page, folder / "pages" / page.name)
    (folder / "manifest.csv").write_text(
        "档号,姓名,身份证号,类号,序号,材料名称,形成时间,份数,页数,备注,页面文件\n"
        f"GZ-C1,张三,11010519491231002X,9-1,1,工资审批表,1996-03-01,1,1,,pages/{page.name}\n", encoding="utf-8")
    batch = submit_folder(folder, services).batch_id
    intake_batch(batch, services)
    first = ocr_stage.ocr_batch(batch, services, workers=1)
    assert (first.files_ocred, first.files_cached, first.pages_ocred) == (1, 0, 1)

    monkeypatch.setattr(ocr_stage, "OcrPool", EngineMustNotRun)
    again = ocr_stage.ocr_batch(batch, services, workers=1)
    assert (again.files_ocred, again.files_cached, again.pages_ocred) == (0, 1, 0)
    # another engine setting is another cache entry: it would run
    with pytest.raises(AssertionError, match="engine was started"):
        ocr_stage.ocr_batch(batch, services, EngineConfig(det_side=960), workers=1)


def test_units_split_the_batch_and_a_killed_units_results_get_their_events_once(services, monkeypatch):
    """One page per unit: each unit reads only its scans. A unit whose results were stored by an
    attempt killed before it committed records their events from the stored results, once."""
    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    intake_batch(batch, services)
    units = ocr_stage.plan_units(batch, services, unit_pages=1)
    scans = ocr_stage.accepted_scans(batch, services)
    assert [u.paths for u in units] == [[s["path"]] for s in scans] and len(units) > 2

    first = ocr_stage.ocr_unit(batch, services, units[0].paths, workers=1)
    assert (first.files_ocred, first.files_cached) == (1, 0)
    with services.db.transaction() as cur:  # as if the attempt died between storing and committing
        cur.execute("DELETE FROM events WHERE event_type = 'ocr'")
    with pytest.raises(ocr_stage.OcrNotDone):  # the other units have not run: not OCR'd
        ocr_stage.finish_ocr(batch, services)

    monkeypatch.setattr(ocr_stage, "OcrPool", EngineMustNotRun)
    retried = ocr_stage.ocr_unit(batch, services, units[0].paths, workers=1)
    assert (retried.files_ocred, retried.files_cached) == (0, 1)
    ocr_stage.ocr_unit(batch, services, units[0].paths, workers=1)
    monkeypatch.undo()
    result = ocr_stage.ocr_batch(batch, services, workers=1, unit_pages=1)  # the rest, unit by unit
    assert result.files_ocred == len(scans) - 1 and result.files_cached == 1
    with services.db.transaction() as cur:
        cur.execute("SELECT object_sha256, count(*) AS n FROM events WHERE event_type = 'ocr' GROUP BY 1")
        assert {r["object_sha256"]: r["n"] for r in cur.fetchall()} == {s["sha256"]: 1 for s in scans}
        cur.execute("SELECT count(*) AS n FROM batch_files WHERE batch_id = %s AND ocr_key IS NOT NULL", (batch,))
        assert cur.fetchone()["n"] == len(scans)


def test_two_attempts_of_one_unit_at_once_record_each_scans_event_once(services, monkeypatch):
    """A dead run's Celery task may still run a unit while its retry runs the same one: both find
    the result missing and OCR the scan; the second to commit adds no second event."""
    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    intake_batch(batch, services)
    unit = ocr_stage.plan_units(batch, services, unit_pages=1)[0]
    ocr_stage.ocr_unit(batch, services, unit.paths, workers=1)
    real_head = type(services.store).head
    monkeypatch.setattr(type(services.store), "head",  # its look at the result came before the other stored it
                        lambda self, bucket, key: None if key.startswith("ocr/") else real_head(self, bucket, key))
    late = ocr_stage.ocr_unit(batch, services, unit.paths, workers=1)
    assert late.files_ocred == 1
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM events WHERE event_type = 'ocr' AND batch_id = %s", (batch,))
        assert cur.fetchone()["n"] == 1


_POOL_OWNER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from ocr.pool import spawn_pool
pool = spawn_pool(1)
print(pool.submit(os.getpid).result(), flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def test_worker_processes_end_when_their_parent_is_killed():
    """A Celery worker killed with SIGKILL in an OCR unit must not leave its OCR process behind,
    waiting for ever with its models in memory."""
    owner = subprocess.Popen([sys.executable, "-c", _POOL_OWNER, str(REPO)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(owner.stdout.readline())
        assert not _gone(child)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(child):
            assert time.monotonic() < deadline, f"worker process {child} outlived its killed parent"
            time.sleep(0.2)
    finally:
        owner.kill()
