"""The project's errors as Dagster sees them: a known state fails the step with its bilingual
sentence, and no retry unless the state is transient (running it again changes nothing until a
person or an earlier step acts); anything else is a bug and keeps Dagster's traceback."""

import functools
import inspect
from collections.abc import Callable

import dagster as dg

from errors import ArchiveError


def _failure(exc: ArchiveError) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=exc.transient,
                      metadata={"kind": exc.kind, "item": exc.item or "", "message_zh": exc.message_zh,
                                "message_en": exc.message_en})


# Steps are idempotent by content, so a retry redoes only what did not commit. The delays (1, 2,
# 4, 8, 16 s, ±50%) outlast a PostgreSQL restart.
RETRY_POLICY = dg.RetryPolicy(max_retries=5, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def known_failures(fn: Callable) -> Callable:
    """Wraps an asset's body (a function or a generator of results)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ArchiveError as exc:
                raise _failure(exc) from exc
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArchiveError as exc:
            raise _failure(exc) from exc
    return call
