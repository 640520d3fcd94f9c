"""The project's errors as Dagster sees them: a known state fails the step with its bilingual
sentence, and no retry unless the state is transient (running it again changes nothing until a
person or an earlier step acts); anything else is a bug and keeps Dagster's traceback."""

import functools
import inspect
from collections.abc import Callable

import dagster as dg

from errors import ArchiveError

MAX_RETRIES = 5
RETRY_BASE_SECONDS = 1.0


def _failure(exc: ArchiveError, context: dg.AssetExecutionContext | None) -> Exception:
    """A transient state asks for a retry (after 1, 2, 4, 8, 16 s: longer than a PostgreSQL restart),
    up to MAX_RETRIES; any other known state, or the last retry, fails the step without one. A
    bug (any other exception) is not retried: running it again would change nothing."""
    attempt = context.retry_number if context is not None else MAX_RETRIES
    if exc.transient and attempt < MAX_RETRIES:
        return dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=RETRY_BASE_SECONDS * 2 ** attempt)
    return dg.Failure(description=str(exc), allow_retries=False,
                      metadata={"kind": exc.kind, "item": exc.item or "", "message_zh": exc.message_zh,
                                "message_en": exc.message_en})


def _context(args: tuple) -> dg.AssetExecutionContext | None:
    return next((a for a in args if isinstance(a, dg.AssetExecutionContext)), None)


def known_failures(fn: Callable) -> Callable:
    """Wraps an asset's body (a function or a generator of results)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ArchiveError as exc:
                raise _failure(exc, _context(args)) from exc
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArchiveError as exc:
            raise _failure(exc, _context(args)) from exc
    return call
