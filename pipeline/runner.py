"""Runs a batch's assets, or a transfer's package, in-process: `archive demo`, `archive serve
--process`, `archive transfer request --package`, tests."""

import logging
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.execution.execution_result import ExecutionResult

from errors import ArchiveError, NotReady
from pipeline.assets import ASSETS
from pipeline.failures import known_failure
from pipeline.launch import claim_batch_run, release_claim, run_key_tags
from pipeline.partitions import BATCH_JOB, transfers
from pipeline.run_failures import record_failed_run, run_error
from pipeline.transfer_assets import transfer_package_asset
from pipeline.workers import dead_runs_failed, free_slots_of_ended_runs, live_runs, run_worker, worker_tags
from settings import Settings
from stages.services import Services

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def run_batch(batch_id: str, resources: dict, instance: dg.DagsterInstance,
              run_config: dict | None = None, say: Callable[[str], None] = log.info) -> dg.ExecuteInProcessResult:
    """Registers the batch's partition (idempotent) and materializes intake → archive.

    NotReady while another live run has the batch; runs whose workers were killed are failed
    first, and their slots freed, so they hold up nothing."""
    tags = {"batch": batch_id}
    fail_dead_runs(instance, tags, say)
    _refuse_if_running(instance, tags, f"批次 {batch_id}", f"batch {batch_id}")
    wait_for_pool(instance, "ocr", say)
    # claimed after the wait, so that the run is made at once: the claim covers that moment
    run_id, services = str(uuid.uuid4()), resources["services"].services()
    if holder := claim_batch_run(services, instance, batch_id, run_id):
        _refuse(f"批次 {batch_id}", f"batch {batch_id}", holder.run_id, holder.state)
    try:
        return _execute(ASSETS, BATCH_JOB, batch_id, {**tags, **run_key_tags(batch_id)}, resources, instance,
                        run_config, run_id)
    except Exception:
        _recorded_failure(instance, services, run_id)  # no daemon may be there to say why on the staff web
        raise
    finally:
        release_claim(services, batch_id, run_id)


def _recorded_failure(instance: dg.DagsterInstance, services: Services, run_id: str) -> None:
    try:
        record_failed_run(instance, services, run_id)
    except Exception as unrecorded:  # noqa: BLE001  the database may be what failed: the run's own error goes up
        log.warning("the failure of run %s could not be recorded for the staff web: %s", run_id, unrecorded)


def run_transfer(transfer_id: str, resources: dict, instance: dg.DagsterInstance,
                 run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Registers the transfer's partition and materializes its package."""
    if not instance.has_dynamic_partition(transfers.name, transfer_id):
        instance.add_dynamic_partitions(transfers.name, [transfer_id])
    tags = {"transfer": transfer_id}
    fail_dead_runs(instance, tags, log.info)
    _refuse_if_running(instance, tags, f"移交 {transfer_id}", f"transfer {transfer_id}")
    return _execute([transfer_package_asset], "package_transfer", transfer_id, tags, resources, instance,
                    run_config, str(uuid.uuid4()))


def _execute(assets: list, job_name: str, partition_key: str, tags: dict[str, str], resources: dict,
             instance: dg.DagsterInstance, run_config: dict | None, run_id: str) -> ExecutionResult:
    """`dg.materialize`, but with the run id chosen by the caller, so that this process is
    recorded as the run's worker from its start (pipeline/workers.py). With ARCHIVE_EXECUTOR set to
    multiprocess or celery (and a persistent instance, which step processes and workers share) the
    steps run as that executor runs them: a process each, or on the Celery workers."""
    if Settings.from_env().executor in ("multiprocess", "celery") and not instance.is_ephemeral:
        return _execute_on_workers(job_name, partition_key, tags, instance, run_config, run_id)
    defs = dg.Definitions(jobs=[dg.define_asset_job(job_name)], assets=assets, resources=resources)
    return defs.resolve_job_def(job_name).execute_in_process(
        run_config=run_config, instance=instance, partition_key=partition_key, raise_on_error=True, run_id=run_id,
        # no run retry: the daemon cannot relaunch a run made outside a code location
        tags={**tags, **worker_tags(run_id), "dagster/max_retries": "0"})


def _execute_on_workers(job_name: str, partition_key: str, tags: dict[str, str], instance: dg.DagsterInstance,
                        run_config: dict | None, run_id: str) -> ExecutionResult:
    """The job of the code location (pipeline.definitions, its configured executor) run with this
    process as the run worker, as the daemon's run worker would; a step's known state is raised
    as its ArchiveError, rebuilt from the failure's sentences."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run

    job = ReconstructableRepository.for_module("pipeline.definitions", "defs", str(REPO)).get_reconstructable_job(
        job_name)
    run = instance.create_run_for_job(job.get_definition(), run_id=run_id, run_config=run_config,
                                      tags={**tags, **worker_tags(run_id), "dagster/max_retries": "0",
                                            "dagster/partition": partition_key},
                                      job_code_origin=job.get_python_origin())
    with warnings.catch_warnings():  # dagster-celery registers its task once per step: Celery warns each time
        warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered")
        result = execute_run(job, run, instance)
    if not result.success:
        raise known_failure(instance, run_id) or run_error(instance, run_id) or DagsterRunFailed(run_id)
    return result


class DagsterRunFailed(ArchiveError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"运行 {run_id} 失败，详见 Dagster 界面中该运行的日志",
                         f"run {run_id} failed: see its log in the Dagster UI", item=run_id)


def fail_dead_runs(instance: dg.DagsterInstance, own: dict[str, str], say: Callable[[str], None]) -> None:
    """Fails every unfinished run whose worker is gone, and frees its slots, saying which. No run
    retry is launched for those with the `own` tags (this process is about to run that batch
    itself); the others are retried as run monitoring would have."""
    for run in dead_runs_failed(instance, own, retry=False) + dead_runs_failed(instance, {}):
        worker = run_worker(run)
        say(f"运行 {run.run_id} 的进程（pid {worker.pid}）已不在，标记为失败 / run {run.run_id}'s worker "
            f"(pid {worker.pid}) is gone: marked failed")


def _refuse_if_running(instance: dg.DagsterInstance, tags: dict[str, str], what_zh: str, what_en: str) -> None:
    if running := live_runs(instance, tags):
        _refuse(what_zh, what_en, running[0].run_id, running[0].status.value)


def _refuse(what_zh: str, what_en: str, run_id: str, state: str) -> None:
    raise NotReady(f"{what_zh} 正由运行 {run_id} 处理（{state}），请等它结束",
                   f"{what_en} is being processed by run {run_id} ({state}): wait for it to end, or stop it in "
                   "the Dagster UI", item=run_id)


def wait_for_pool(instance: dg.DagsterInstance, pool: str, say: Callable[[str], None],
                  poll_seconds: float = 2.0) -> None:
    """Waits while live runs hold every slot of `pool`, saying once which; a signal ends the wait
    (Dagster's own wait for a slot defers SIGTERM until the run ends)."""
    said = False
    while True:
        info = instance.event_log_storage.get_concurrency_info(pool)
        if info.limit is None or info.active_slot_count < info.limit:
            return
        # a holder that died meanwhile, or ended without its slots freed (no daemon to free them)
        if dead_runs_failed(instance, {}) or free_slots_of_ended_runs(instance, pool):
            continue
        if not said:
            holders = ", ".join(sorted(info.active_run_ids))
            say(f"等待：{pool} 槽位被运行 {holders} 占用 / waiting: the {pool} slot is held by run {holders}")
            said = True
        time.sleep(poll_seconds)


class BatchQueue:
    """Runs handed-in batches and requested transfers one after another on a background thread,
    for a server that processes its own uploads (`archive serve --process`) instead of leaving
    them to the daemon's sensors. A failed run is logged in Dagster like any other and the queue
    goes on."""

    def __init__(self, resources: dict, instance: dg.DagsterInstance, run_config: dict | None = None) -> None:
        self._resources, self._instance, self._run_config = resources, instance, run_config
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="batch-queue", daemon=True)
        self._thread.start()

    def __call__(self, batch_id: str) -> None:
        self._queue.put(("batch", batch_id))

    def transfer(self, transfer_id: str) -> None:
        self._queue.put(("transfer", transfer_id))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            kind, key = item
            try:
                (run_batch if kind == "batch" else run_transfer)(key, self._resources, self._instance,
                                                                 self._run_config)
            except Exception:  # the run's failure is in Dagster's event log; the next one still runs
                log.exception("run of %s %s failed", kind, key)

    def close(self, timeout: float | None = None) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
