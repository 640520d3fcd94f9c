"""Why a batch's run failed outside its steps, on the staff web once no retry is coming.

A step that fails records its own reason (pipeline/failures.py). A run can also end with no
step failing: its run worker killed (run monitoring, `archive run`'s own check), or a step's
Celery worker lost each time the step was sent. The process that fails such a run leaves the
known state in the run's log (`report_run_error`); once the run is the batch's newest and no
retry of it is coming, `record_failed_run` records it against the stage the batch had reached.
The daemon's sensor sweeps for such runs (`record_failed_batches`); `archive run` records its
own run as it ends.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.storage.dagster_run import RunRecord
from dagster._core.storage.tags import WILL_RETRY_TAG
from dagster._utils.tags import get_boolean_tag_value

from errors import ArchiveError
from pipeline.failures import error_from_metadata, error_metadata
from pipeline.partitions import BATCH_JOB
from stages.progress import record_run_failure, run_failure_wanted
from stages.services import Services

# the retry daemon launches a retry it decided on within seconds; past this after the failure, none is coming
RETRY_GRACE_SECONDS = 300
# how far back the daemon's sweep looks: a daemon stopped longer leaves those failures to the UI
SWEEP_DAYS, SWEEP_RUNS = 7, 1000


def report_run_error(instance: dg.DagsterInstance, run: dg.DagsterRun, error: ArchiveError) -> None:
    """Leaves a known state that ends the run outside its steps in the run's log, before the run's
    failure is reported, whichever process reports it."""
    instance.report_engine_event(str(error), run, EngineEventData(metadata=error_metadata(error)))


def run_error(instance: dg.DagsterInstance, run_id: str) -> ArchiveError | None:
    """The known state left for the run (`report_run_error`) before it failed, if any; one left
    after its failure (a health check racing the run's own end) is not its reason."""
    failed = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    before = failed[0].storage_id if failed else None
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT,
                                               ascending=False).records:
        if before is not None and record.storage_id > before:
            continue
        if known := error_from_metadata(record.event_log_entry.dagster_event.engine_event_data.metadata):
            return known
    return None


def _dagster_said(instance: dg.DagsterInstance, run_id: str) -> ArchiveError:
    """A run's failure as Dagster told it, for a reason no code of ours named."""
    ended = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    said = ended[-1].event_log_entry.dagster_event.message if ended else None
    return ArchiveError(f"运行 {run_id} 失败，且不会再自动重试；请工程人员查看 Dagster 界面中该运行的日志，"
                        "再重新运行该批次",
                        f"run {run_id} failed ({said or 'no reason given'}) and is not retried automatically: "
                        "see its log in the Dagster UI, then run the batch again", item=run_id)


def _retry_coming(instance: dg.DagsterInstance, record: RunRecord, now: float) -> bool:
    if not instance.run_retries_enabled:
        return False
    will = record.dagster_run.tags.get(WILL_RETRY_TAG)  # added just after the failure itself is stored
    if will is not None and not get_boolean_tag_value(will):
        return False
    ended = record.end_time or record.update_timestamp.timestamp()
    return now - ended < RETRY_GRACE_SECONDS


def _newest_run(instance: dg.DagsterInstance, batch_id: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=BATCH_JOB, tags={"batch": batch_id}), limit=1)
    return runs[0] if runs else None


def record_failed_run(instance: dg.DagsterInstance, services: Services, run_id: str,
                      now: float | None = None) -> bool:
    """Records why the batch's run failed, if it is the batch's newest run, failed, has no retry
    coming, and no step of it recorded its own reason; True if recorded."""
    record = instance.get_run_record_by_id(run_id)
    run = record.dagster_run if record else None
    batch = run.tags.get("batch") if run else None
    if run is None or run.job_name != BATCH_JOB or not batch or run.status != dg.DagsterRunStatus.FAILURE:
        return False
    newest = _newest_run(instance, batch)
    if newest is None or newest.run_id != run_id:  # a later run (its retry, say) has the batch now
        return False
    if _retry_coming(instance, record, time.time() if now is None else now):
        return False
    if not run_failure_wanted(services, batch, run_id):  # the sweep meets recorded runs each minute
        return False
    return record_run_failure(services, batch, run_id, run_error(instance, run_id) or _dagster_said(instance, run_id))


def record_failed_batches(instance: dg.DagsterInstance, services: Services, now: float | None = None) -> list[str]:
    """Records the reason for each batch whose newest run failed outside its steps, in the last
    SWEEP_DAYS, with no retry coming; those batches. Read from the runs each time, not from
    events as they pass, so that a failure seen too early (its run not yet marked failed) or a
    sweep that failed is taken up by the next."""
    now = time.time() if now is None else now
    failed = instance.get_runs(filters=dg.RunsFilter(
        job_name=BATCH_JOB, statuses=[dg.DagsterRunStatus.FAILURE],
        updated_after=datetime.fromtimestamp(now - SWEEP_DAYS * 86400, UTC)), limit=SWEEP_RUNS)
    newest_failed = {}  # per batch, newest first: an older failed run never counts over a newer one
    for run in failed:
        if run.tags.get("batch"):
            newest_failed.setdefault(run.tags["batch"], run.run_id)
    return [batch for batch, run_id in newest_failed.items() if record_failed_run(instance, services, run_id, now)]
