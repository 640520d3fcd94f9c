"""Crashes cost a retry: a killed run worker is seen as dead and its pool slot freed, a run killed
in the middle of OCR is run again to the end with nothing done twice, and a PostgreSQL restart
in the middle of the index step is survived by the step's retry."""

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor

import pipeline.workers
import stages.index
from devservices.postgres import LocalPostgres
from devservices.s3 import free_port
from errors import BatchRefused, NotReady
from pipeline.assets import ASSETS
from pipeline.celery_liveness import StepWorkerLost
from pipeline.executor import _RecordingWorker
from pipeline.launcher import ArchiveRunLauncher
from pipeline.partitions import BATCH_JOB, scan_batches
from pipeline.run_failures import (
    RETRY_GRACE_SECONDS,
    record_failed_batches,
    record_failed_run,
    report_run_error,
    run_error,
)
from pipeline.workers import WORKER_TAG, RunWorkerGone, Worker, dead_runs_failed, fail_if_dead, run_worker, this_worker
from stages.progress import batch_status, record_failure
from stages.submit import submit_folder
from tests.conftest import REPO, SAMPLE_BATCH, make_services, pipeline_resources, searchable_tempdir
from tests.test_cli import ARCHIVE, _summary_numbers, demo_env  # noqa: F401  (a fixture)


def _dead_worker(run_id: str) -> Worker:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stat = Path(f"/proc/{proc.pid}/stat").read_text()
    started = stat[stat.rindex(")") + 2:].split()[19]
    proc.kill()
    proc.wait()
    return dataclasses.replace(this_worker(run_id), pid=proc.pid, started=started)


def _started_run(instance: dg.DagsterInstance, worker_of, batch: str, **tags) -> dg.DagsterRun:
    run_id = str(uuid.uuid4())
    run = dg.DagsterRun(job_name="process_batch", run_id=run_id, status=dg.DagsterRunStatus.STARTED,
                        tags={WORKER_TAG: worker_of(run_id).tag(), "batch": batch, **tags})
    return instance.add_run(run)


def test_worker_liveness_is_asked_of_the_operating_system(monkeypatch):
    me = this_worker("r1")
    assert me.alive() is True
    assert _dead_worker("r1").alive() is False
    assert dataclasses.replace(me, started=str(int(me.started) + 1)).alive() is False  # the PID reused
    assert dataclasses.replace(me, boot="another-boot").alive() is False             # the machine restarted
    read = pipeline.workers._read
    monkeypatch.setattr(pipeline.workers, "_read", lambda path: "" if path == "/etc/machine-id" else read(path))
    nameless = this_worker("r1")  # no machine id: a clone of this machine may share its host name
    assert nameless.alive() is True and dataclasses.replace(nameless, boot="another-boot").alive() is None
    assert dataclasses.replace(me, host="some-other-host").alive() is None          # only that host can tell
    assert dataclasses.replace(me, pid_namespace="4026530000").alive() is None     # another container's PIDs
    assert dataclasses.replace(me, started="").alive() is None                     # nothing known: no guess
    assert Worker.parse(me.tag()) == me and Worker.parse("garbage") is None


def test_a_dead_workers_run_is_failed_and_its_ocr_slot_freed(tmp_path):
    overrides = {"concurrency": {"pools": {"default_limit": 1}},  # one slot: a second run waits for it
                 "run_launcher": {"module": "pipeline.launcher", "class": "ArchiveRunLauncher"}}
    with dg.DagsterInstance.local_temp(str(tmp_path), overrides=overrides) as instance:
        dead, alive = _started_run(instance, _dead_worker, "B1"), _started_run(instance, this_worker, "B2")
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("ocr")  # as a step of the pool does before claiming
        assert storage.claim_concurrency_slot("ocr", dead.run_id, "ocr").is_claimed
        assert not storage.claim_concurrency_slot("ocr", alive.run_id, "ocr").is_claimed  # one slot: waits

        launcher = instance.run_launcher  # what Dagster's run monitoring asks
        assert isinstance(launcher, ArchiveRunLauncher)
        assert launcher.supports_check_run_worker_health
        assert launcher.check_run_worker_health(dead).status.value == "FAILED"
        assert launcher.check_run_worker_health(alive).status.value == "RUNNING"

        assert [r.run_id for r in dead_runs_failed(instance, {})] == [dead.run_id]
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
        assert storage.get_concurrency_info("ocr").active_slot_count == 0
        assert storage.claim_concurrency_slot("ocr", alive.run_id, "ocr").is_claimed
        assert not fail_if_dead(instance, instance.get_run_by_id(dead.run_id))  # once only

        # a re-execution starts with its parent's tags: the parent's worker is not taken for its own
        child = instance.add_run(dg.DagsterRun(job_name="process_batch", status=dg.DagsterRunStatus.STARTED,
                                               tags={**dead.tags, "dagster/parent_run_id": dead.run_id}))
        assert run_worker(child) is None
        assert launcher.check_run_worker_health(child).status.value == "RUNNING" and not dead_runs_failed(instance, {})


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *_children(int(child))]
    return out


def _status(database: str) -> str | None:
    try:
        with psycopg2.connect(database, connect_timeout=2) as conn, conn.cursor() as cur:
            cur.execute("SELECT status FROM batches")
            row = cur.fetchone()
        conn.close()
        return row[0] if row else None
    except psycopg2.Error:  # not started, or its tables not made yet
        return None


def test_archive_run_killed_in_ocr_then_run_again_completes_with_nothing_twice(demo_env):  # noqa: F811
    env = demo_env
    first = subprocess.Popen([*ARCHIVE, "run", str(SAMPLE_BATCH)], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    database = f"postgresql://archive@127.0.0.1:{env['ARCHIVE_PG_PORT']}/archive"
    try:
        # mid-OCR: intake committed (the batch validated) and the OCR pool's processes started
        deadline = time.monotonic() + 240
        while not (_status(database) == "validated" and _children(first.pid)):
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "OCR never started"
            time.sleep(0.2)
        time.sleep(2)
        for pid in [first.pid, *_children(first.pid)]:
            if "postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                os.kill(pid, signal.SIGKILL)  # the run and its OCR workers, not the database it started
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()

    again = subprocess.run([*ARCHIVE, "run", str(SAMPLE_BATCH)], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"run \S+'s worker \(pid \d+\) is gone: marked failed", again.stderr), again.stderr[-3000:]
    once = subprocess.run([*ARCHIVE, "run", str(SAMPLE_BATCH)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert once.returncode == 0 and "gone" not in once.stderr
    # the interrupted batch ends with what one clean run makes, and a third run adds nothing
    assert _summary_numbers(again.stdout) == _summary_numbers(once.stdout)
    counts = _summary_numbers(again.stdout)
    assert counts["pages"] == "9" and counts["pa-archive"] == "31", counts
    # 10 originals, 9 OCR results, 9 PDFs, the 3 files' inventories: each once
    assert "9 scans from cache" in once.stdout


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test alone, for it restarts it."""
    root = searchable_tempdir("archive-restart-pg-")
    pg = LocalPostgres(root / "data", free_port())
    pg.start()
    pg.ensure_database("archive")
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_postgres_restarted_in_the_index_step_is_survived_by_its_retry(own_postgres, s3_url, monkeypatch, tmp_path):
    """The server restarts under the index step's transaction; Dagster's own runs and events are on
    it too, as in production, so the run's next event is written to a server that was away."""
    services = make_services(own_postgres.url("archive"), s3_url)
    own_postgres.ensure_database("dagster")
    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    real_load, restarts = stages.index.load_chunks, []

    def load_then_restart(cur, chunks):
        if not restarts:  # the first attempt, inside its transaction: the server goes away under it
            own_postgres.stop()
            own_postgres.start()
            restarts.append(1)
        return real_load(cur, chunks)

    monkeypatch.setattr(stages.index, "load_chunks", load_then_restart)
    resources = pipeline_resources(services, s3_url)
    dagster_storage = {"storage": {"postgres": {"postgres_url": own_postgres.url("dagster").replace(
        "postgresql://", "postgresql+psycopg2://")}}}
    with dg.DagsterInstance.local_temp(str(tmp_path), overrides=dagster_storage) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        instance.add_dynamic_partitions(scan_batches.name, [batch])
        result = dg.materialize(ASSETS, partition_key=batch, instance=instance, resources=resources,
                                raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert [e.step_key for e in retried] == ["index"] and restarts == [1]
        assert "was lost during a transaction" in str(retried[0].event_specific_data)
    assert batch_status(batch, services)["status"] == "archived"
    with psycopg2.connect(services.db.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT (source_sha256, source_page)) FROM pages")
        assert cur.fetchone() == (9, 9)  # every page once


def _tree(pid: int) -> list[int]:
    return [pid, *_children(pid)] if Path(f"/proc/{pid}").exists() else []


def test_daemon_run_whose_worker_is_killed_in_ocr_is_failed_retried_and_completes(demo_env, monkeypatch):  # noqa: F811
    """Under the Dagster daemon: the killed run is failed with its reason and its OCR slot freed;
    the run retry then completes the batch, every step skipping what was stored, nothing twice."""
    import yaml

    from devservices.instance import LocalInstance

    home = Path(demo_env["DAGSTER_HOME"])
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    config["run_monitoring"] |= {"poll_interval_seconds": 2, "free_slots_after_run_end_seconds": 1}  # test pace
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    local = LocalInstance(home, int(demo_env["ARCHIVE_PG_PORT"]))
    for key, value in {**demo_env, **local.environment()}.items():
        monkeypatch.setenv(key, value)
    ui = subprocess.Popen([*ARCHIVE, "ui", "--port", str(free_port())], env=os.environ.copy(), cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not local.postgres.running():
            assert time.monotonic() < deadline and ui.poll() is None, "the UI did not start PostgreSQL"
            time.sleep(0.5)
        time.sleep(2)  # its databases made
        handed = subprocess.run([*ARCHIVE, "upload", str(SAMPLE_BATCH)], env=os.environ.copy(), cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert handed.returncode == 0, handed.stderr[-2000:]
        batch = re.search(r"batch (\S+),", handed.stdout).group(1)
        database = os.environ["ARCHIVE_DATABASE_URL"]

        with dg.DagsterInstance.get() as instance:
            def runs() -> list[dg.DagsterRun]:
                return sorted(instance.get_runs(filters=dg.RunsFilter(tags={"batch": batch})),
                              key=lambda r: r.run_id == r.tags.get("dagster/root_run_id", r.run_id), reverse=True)

            deadline = time.monotonic() + 300
            while True:  # the sensor's run is OCR'ing a unit in its own worker
                first = next(iter(runs()), None)
                worker = first and first.tags.get(WORKER_TAG)
                if worker and any((e.step_key or "").startswith("ocr.ocr_unit_step") for e in instance.all_logs(
                        first.run_id, of_type=dg.DagsterEventType.STEP_START)):
                    break
                assert time.monotonic() < deadline, f"no run reached OCR: {runs()}"
                time.sleep(0.5)
            time.sleep(2)
            for pid in _tree(Worker.parse(worker).pid):  # the worker, its step processes, their OCR pool
                os.kill(pid, signal.SIGKILL)

            deadline = time.monotonic() + 400
            while not any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs()):
                assert time.monotonic() < deadline, [(r.run_id, r.status, [
                    (e.step_key, e.dagster_event_type, (e.message or "")[:300]) for e in instance.all_logs(r.run_id)
                    if e.dagster_event_type not in (None, "LOGS_CAPTURED")][-25:]) for r in runs()]
                time.sleep(2)
            killed, *retries = runs()
            assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
            assert len(retries) == 1 and retries[0].tags["dagster/parent_run_id"] == killed.run_id
            # the reason, in the killed run's log: the code server saw its run process end (with the
            # code server lost too, run monitoring's worker check says it: the test above)
            assert any(re.search(r"terminated by signal 9|is gone", e.message or "")
                       for e in instance.all_logs(killed.run_id)), [e.message for e in instance.all_logs(killed.run_id)]
            deadline = time.monotonic() + 60
            while instance.event_log_storage.get_concurrency_info("ocr").active_slot_count:
                assert time.monotonic() < deadline, "the OCR slot was never freed"
                time.sleep(1)

        with psycopg2.connect(database) as conn, conn.cursor() as cur:
            cur.execute("SELECT status FROM batches WHERE batch_id = %s", (batch,))
            assert cur.fetchone() == ("archived",)
            cur.execute("SELECT count(*), count(DISTINCT (source_sha256, source_page)) FROM pages")
            assert cur.fetchone() == (9, 9)
            cur.execute("SELECT role, count(*) FROM stored_objects GROUP BY role ORDER BY role")
            assert dict(cur.fetchall()) == {"inventory": 3, "ocr": 9, "original": 10, "searchable-pdf": 9}
        conn.close()
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(90)


def test_only_states_that_pass_are_retried_and_the_last_failure_is_still_known(monkeypatch):
    import pipeline.failures
    from errors import BatchRefused, known_cause
    from storage.db import DatabaseUnavailable

    monkeypatch.setattr(pipeline.failures, "RETRY_BASE_SECONDS", 0.01)
    def failing(raised: Exception, calls: list[int]) -> dg.AssetsDefinition:
        @dg.asset(name="step")
        @pipeline.failures.known_failures
        def step(context: dg.AssetExecutionContext) -> None:
            calls.append(context.retry_number)
            raise raised
        return step

    for raised, tries in ((DatabaseUnavailable("库不在", "database away"), 1 + pipeline.failures.MAX_RETRIES),
                          (BatchRefused("拒收", "refused"), 1), (KeyError("a bug"), 1)):
        calls: list[int] = []
        with pytest.raises(Exception) as failed:
            dg.materialize([failing(raised, calls)], instance=dg.DagsterInstance.ephemeral())
        assert calls == list(range(tries)), (raised, calls)
        # what `archive run` reports: the known state's sentence, even after the last retry
        assert known_cause(failed.value) is (None if isinstance(raised, KeyError) else raised)


def test_a_stage_that_fails_for_good_says_why_on_the_staff_web_until_a_stage_commits(services, monkeypatch, tmp_path):
    import pipeline.assets
    from tests.conftest import add_user, logged_in

    resources = pipeline_resources(services)
    other = tmp_path / "GZ2026-S008"
    shutil.copytree(SAMPLE_BATCH, other)
    (other / "pages" / "extra.note").write_text("another batch of the same files")
    refused = submit_folder(other, services).batch_id
    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    real_index = pipeline.assets.index_batch

    def index_fails(batch_id, svc):
        if batch_id == refused:  # a known state that no retry changes
            raise BatchRefused("编目与图像不符", "the catalog does not match the pages", item="manifest.csv")
        return {}["a bug"]

    monkeypatch.setattr(pipeline.assets, "index_batch", index_fails)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(scan_batches.name, [refused, batch])
        for b in (refused, batch):
            assert not dg.materialize(ASSETS, partition_key=b, instance=instance, resources=resources,
                                      raise_on_error=False).success
        failure = batch_status(refused, services)["failure"]
        assert failure["stage"] == "index" and failure["kind"] == "refused" and failure["item"] == "manifest.csv"
        assert failure["message_en"] == "the catalog does not match the pages" and failure["at"]
        bug = batch_status(batch, services)["failure"]
        assert bug["stage"] == "index" and bug["run_id"] in bug["message_en"] and "bug" in bug["message_en"]

        add_user(services, "staff-gz", "staff", services.agency)
        web = logged_in(services, "staff-gz")
        shown = {b["batch_id"]: b["failure"] for b in web.get("/api/batches").json()["batches"]}
        assert shown[batch]["message_zh"] == bug["message_zh"]

        monkeypatch.setattr(pipeline.assets, "index_batch", real_index)  # fixed: the next run clears it
        assert dg.materialize(ASSETS, partition_key=batch, instance=instance, resources=resources).success
        assert batch_status(batch, services)["failure"] is None


class _LosesEachWorker(Executor):
    """Dagster-celery's loop as it ends when a step's worker died each time the step was sent."""

    retries = RetryMode.DISABLED

    def execute(self, plan_context, execution_plan):
        raise StepWorkerLost("ocr.ocr_unit_step[0]", ["w1@host-a", "w2@host-b", "w1@host-a"])
        yield


@dg.op
def _nothing() -> None:
    pass


def _losing_job() -> dg.JobDefinition:
    executor = dg.ExecutorDefinition(name="losing", executor_creation_fn=lambda _: _RecordingWorker(_LosesEachWorker()))
    return dg.GraphDefinition(name=BATCH_JOB, node_defs=[_nothing]).to_job(executor_def=executor)


def test_a_run_that_ends_outside_its_steps_says_why_on_the_staff_web_once_no_retry_is_coming(services, tmp_path):
    from pipeline.definitions import defs
    from tests.conftest import add_user, logged_in

    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    overrides = {"run_launcher": {"module": "pipeline.launcher", "class": "ArchiveRunLauncher"},
                 "run_retries": {"enabled": True, "max_retries": 2}}
    sensor = next(s for s in defs.sensors if s.name == "failed_batch_runs")

    def sweep() -> None:  # one tick of the daemon's sensor, as the definitions wire it
        with dg.build_sensor_context(instance=instance, resources=pipeline_resources(services)) as context:
            sensor(context)

    with dg.DagsterInstance.local_temp(str(tmp_path), overrides=overrides) as instance:
        # the run worker killed: a retry of its run is coming, so the staff web waits for it
        retried = _started_run(instance, _dead_worker, batch)
        assert dead_runs_failed(instance, {}) and not record_failed_run(instance, services, retried.run_id)
        assert instance.get_run_by_id(retried.run_id).tags["dagster/will_retry"] == "true"
        sweep()
        assert batch_status(batch, services)["failure"] is None
        # ... unless no retry was launched long after it was decided on
        late = time.time() + RETRY_GRACE_SECONDS + 1
        assert record_failed_batches(instance, services, now=late) == [batch]
        assert batch_status(batch, services)["failure"]["run_id"] == retried.run_id

        # the last try (no retry left), failed by run monitoring: the sweep says why
        last = _started_run(instance, _dead_worker, batch, **{"dagster/max_retries": "0"})
        assert instance.run_launcher.check_run_worker_health(last).status.value == "FAILED"
        instance.report_run_failed(last, message="run monitoring: the worker is gone")
        sweep()
        failure = batch_status(batch, services)["failure"]
        assert failure["stage"] == "intake" and failure["run_id"] == last.run_id and failure["kind"] == "not_ready"
        assert "运行进程" in failure["message_zh"] and "is gone" in failure["message_en"]
        assert not record_failed_run(instance, services, last.run_id)  # once
        assert not record_failed_run(instance, services, retried.run_id, now=late)  # an older run: not over it

        # a step of the run that recorded its own reason keeps it
        own = _started_run(instance, _dead_worker, batch, **{"dagster/max_retries": "0"})
        record_failure(services, batch, "ocr", own.run_id, BatchRefused("页面无法识别", "pages unreadable"))
        assert dead_runs_failed(instance, {}) and not record_failed_run(instance, services, own.run_id)
        sweep()
        assert batch_status(batch, services)["failure"]["message_en"] == "pages unreadable"

        # a step's Celery worker lost each time: the run worker names it, for this caller and the web
        result = dg.execute_job(dg.reconstructable(_losing_job), instance,
                                tags={"batch": batch, "dagster/max_retries": "0"})
        assert not result.success
        lost = run_error(instance, result.run_id)
        assert isinstance(lost, NotReady) and lost.item == "ocr.ocr_unit_step[0]"
        assert record_failed_run(instance, services, result.run_id)
        failure = batch_status(batch, services)["failure"]
        assert failure["run_id"] == result.run_id and "w2@host-b" in failure["message_en"]
        assert "Celery 工作进程" in failure["message_zh"]
        # a worker check answering after the run ended leaves nothing; a reason left after the end is not its reason
        engine_events = len(instance.get_records_for_run(last.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records)
        assert instance.run_launcher.check_run_worker_health(last).status.value == "FAILED"  # `last` as first fetched
        assert len(instance.get_records_for_run(last.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records) \
            == engine_events
        report_run_error(instance, instance.get_run_by_id(result.run_id), RunWorkerGone(_dead_worker(result.run_id)))
        assert run_error(instance, result.run_id).item == "ocr.ocr_unit_step[0]"

        add_user(services, "staff-gz", "staff", services.agency)  # what the staff page shows
        listed = logged_in(services, "staff-gz").get("/api/batches").json()["batches"]
        shown = {b["batch_id"]: b["failure"] for b in listed}
        assert shown[batch]["message_zh"] == failure["message_zh"]
