"""The project's errors as Dagster sees them: a known state fails the step with its bilingual
sentence, and no retry unless the state is transient (running it again changes nothing until a
person or an earlier step acts); anything else is a bug and keeps Dagster's traceback. A batch's
stage that fails for good says why on the staff web (a run that ends outside its steps:
pipeline/run_failures.py)."""

import functools
import inspect
from collections.abc import Callable

import dagster as dg

from errors import ArchiveError, from_kind
from pipeline.partitions import scan_batches
from stages.progress import record_failure

MAX_RETRIES = 5
RETRY_BASE_SECONDS = 1.0


def _failure(exc: ArchiveError, context: dg.AssetExecutionContext | None) -> Exception:
    """A transient state asks for a retry (after 1, 2, 4, 8, 16 s: longer than a PostgreSQL restart),
    up to MAX_RETRIES; any other known state, or the last retry, fails the step without one. A
    bug (any other exception) is not retried: running it again would change nothing."""
    attempt = context.retry_number if context is not None else MAX_RETRIES
    if exc.transient and attempt < MAX_RETRIES:
        return dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=RETRY_BASE_SECONDS * 2 ** attempt)
    return dg.Failure(description=str(exc), allow_retries=False, metadata=error_metadata(exc))


def error_metadata(exc: ArchiveError) -> dict[str, str]:
    """A known state as event metadata, which a process other than the one that raised it reads back."""
    return {"kind": exc.kind, "item": exc.item or "", "message_zh": exc.message_zh, "message_en": exc.message_en}


def error_from_metadata(metadata) -> ArchiveError | None:
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
        if known := error_from_metadata(failure.metadata if failure else {}):
            return known
    return None
