"""The project's errors as Dagster sees them: a known state fails the step with its bilingual
sentence and no retry (running it again changes nothing until a person or an earlier step acts);
anything else is a bug and keeps Dagster's traceback."""

import functools
import inspect
from collections.abc import Callable

import dagster as dg

from errors import ArchiveError


def _failure(exc: ArchiveError) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=False,
                      metadata={"kind": exc.kind, "item": exc.item or "", "message_zh": exc.message_zh,
                                "message_en": exc.message_en})


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
