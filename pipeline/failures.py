"""The project's errors as Dagster sees them: a known state fails the step with its bilingual
sentence, and no retry unless the state is transient (running it again changes nothing until a
person or an earlier step acts); anything else is a bug and keeps Dagster's traceback. A batch
that fails for good says why on the staff web, whether a step failed or the run ended outside
its steps."""

import functools
import inspect
from collections.abc import Callable

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import WILL_RETRY_TAG
from dagster._utils.tags import get_boolean_tag_value

from errors import ArchiveError, from_kind
from pipeline.partitions import BATCH_JOB, scan_batches
from stages.progress import record_failure, record_run_failure
from stages.services import Services

MAX_RETRIES = 5
RETRY_BASE_SECONDS = 1.0


def _failure(exc: ArchiveError, context: dg.AssetExecutionContext | None) -> Exception:
    """A transient state asks for a retry (after 1, 2, 4, 8, 16 s: longer than a PostgreSQL restart),
    up to MAX_RETRIES; any other known state, or the last retry, fails the step without one. A
    bug (any other exception) is not retried: running it again would change nothing."""
    attempt = context.retry_number if context is not None else MAX_RETRIES
    if exc.transient and attempt < MAX_RETRIES:
        return dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=RETRY_BASE_SECONDS * 2 ** attempt)
    return dg.Failure(description=str(exc), allow_retries=False, metadata=_metadata(exc))


def _metadata(exc: ArchiveError) -> dict[str, str]:
    """A known state as event metadata, which a process other than the one that raised it reads back."""
    return {"kind": exc.kind, "item": exc.item or "", "message_zh": exc.message_zh, "message_en": exc.message_en}


def _known(metadata) -> ArchiveError | None:
    meta = {k: v.value for k, v in metadata.items()}
    if "message_en" not in meta:
        return None
    return from_kind(meta.get("kind", "error"), meta["message_zh"], meta["message_en"], meta.get("item"))


def _context(args: tuple) -> dg.AssetExecutionContext | dg.OpExecutionContext | None:
    return next((a for a in args if isinstance(a, (dg.AssetExecutionContext, dg.OpExecutionContext))), None)


def _ended(exc: Exception, args: tuple, kwargs: dict) -> Exception:
    """What the step raises for `exc`; a batch's stage that fails for good says why on the staff
    web too (batches.failure), a retry does not."""
    known = exc if isinstance(exc, ArchiveError) else None
    context = _context(args)
    raised = _failure(known, context) if known else exc
    services = kwargs.get("services")
    if context is None or isinstance(raised, dg.RetryRequested) or services is None \
            or not context.has_partition_key or context.assets_def.partitions_def != scan_batches:
        return raised
    try:
        record_failure(services.services(), context.partition_key, context.assets_def.key.to_user_string(),
                       context.run.run_id, known)
    except ArchiveError as unrecorded:  # the database itself may be what failed
        context.log.warning(f"the failure could not be recorded for the staff web: {unrecorded}")
    return raised


def known_failures(fn: Callable) -> Callable:
    """Wraps an asset's body (a function or a generator of results)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ArchiveError as exc:
                raise _ended(exc, args, kwargs) from exc
            except Exception as exc:
                _ended(exc, args, kwargs)  # a bug: recorded, and raised as it is
                raise
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArchiveError as exc:
            raise _ended(exc, args, kwargs) from exc
        except Exception as exc:
            _ended(exc, args, kwargs)
            raise
    return call


def known_failure(instance: dg.DagsterInstance, run_id: str) -> ArchiveError | None:
    """The known state a failed step of the run ended with (its Failure's metadata), if any: a
    step run in another process cannot hand its exception to the run worker's caller."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        failure = record.event_log_entry.dagster_event.step_failure_data.user_failure_data
        if known := _known(failure.metadata if failure else {}):
            return known
    return None


def report_run_error(instance: dg.DagsterInstance, run: dg.DagsterRun, error: ArchiveError) -> None:
    """Leaves a known state that ends a run outside its steps (its worker gone, a step's worker
    lost each time) in the run's log, for `record_failed_run` to read whichever process fails it."""
    instance.report_engine_event(str(error), run, EngineEventData(metadata=_metadata(error)))


def run_error(instance: dg.DagsterInstance, run_id: str) -> ArchiveError | None:
    """The known state that ended the run outside its steps (`report_run_error`), if any."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT,
                                               ascending=False).records:
        if known := _known(record.event_log_entry.dagster_event.engine_event_data.metadata):
            return known
    return None


def _stopped(instance: dg.DagsterInstance, run_id: str) -> ArchiveError:
    """A run's failure as Dagster told it, for a reason no code of ours named."""
    ended = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    said = ended[-1].event_log_entry.dagster_event.message if ended else None
    return ArchiveError(f"运行 {run_id} 失败，自动重试已用完；请工程人员查看 Dagster 界面中该运行的日志，"
                        "再重新运行该批次",
                        f"run {run_id} failed ({said or 'no reason given'}) and its automatic retries are used "
                        "up: see its log in the Dagster UI, then run the batch again", item=run_id)


def record_failed_run(instance: dg.DagsterInstance, services: Services, run: dg.DagsterRun) -> bool:
    """Records for the staff web why a batch's run failed, once no retry follows and if none of
    its steps recorded its own reason (pipeline.sensors and the CLI's runner call it); True if
    recorded. A step that fails records itself; this covers what ends a run outside its steps."""
    run = instance.get_run_by_id(run.run_id) or run  # the retry decision is a tag added as it failed
    batch = run.tags.get("batch")
    if run.job_name != BATCH_JOB or not batch or run.status != dg.DagsterRunStatus.FAILURE \
            or get_boolean_tag_value(run.tags.get(WILL_RETRY_TAG), default_value=False):
        return False
    return record_run_failure(services, batch, run.run_id,
                              run_error(instance, run.run_id) or _stopped(instance, run.run_id))
