"""The project's one error model: a known state, told in Chinese and English, with its exit status.

Every error the code raises on purpose is an ArchiveError; anything else is a bug and shows its
traceback. The CLI (cli/main.py), the web (web/app.py) and the Dagster assets
(pipeline/failures.py) each map it to their own form in one place.

Exit statuses of `archive` (also in the README):
  0  done
  1  bad input: a path, batch, file number or option that is wrong or unknown
  2  setup: a missing package, an unreachable database or object store, bad configuration
  3  not ready: a known state that a later step or a person resolves (a file not yet preserved)
  4  refused: nothing of a batch can go on (its report says why, item by item)
  5  integrity: stored content does not match its digest
"""

from __future__ import annotations

from collections.abc import Iterator


class ArchiveError(Exception):
    """A known state: `message_zh` for staff, `message_en` for the log and engineers."""

    exit_code = 1
    http_status = 400
    kind = "error"
    label = "错误 / error"
    # a state that passes by itself (a database restarting, a concurrent writer): a step failing
    # with it is retried by Dagster's retry policy; any other known state is not
    transient = False

    def __init__(self, message_zh: str, message_en: str, *, item: str | None = None) -> None:
        from catalog.idnumber import mask_ids  # messages reach logs and screens: no ID number whole

        message_zh, message_en, item = mask_ids(message_zh), mask_ids(message_en), mask_ids(item) if item else item
        super().__init__(f"{message_zh} / {message_en}")
        self.message_zh = message_zh
        self.message_en = message_en
        self.item = item

    def __str__(self) -> str:
        return f"{self.message_zh} / {self.message_en}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message_zh": self.message_zh, "message_en": self.message_en, "item": self.item,
                "exit_code": self.exit_code}


class BadInput(ArchiveError):
    http_status = 422
    kind = "bad_input"
    label = "输入错误 / bad input"


class NotFound(BadInput):
    http_status = 404
    kind = "not_found"
    label = "未找到 / not found"


class SetupError(ArchiveError):
    """A missing package or service, or configuration that cannot work; says how to fix it."""

    exit_code = 2
    http_status = 503
    kind = "setup"
    label = "配置错误 / setup problem"


class NotReady(ArchiveError):
    exit_code = 3
    http_status = 409
    kind = "not_ready"
    label = "尚未就绪 / not ready"


class BatchRefused(ArchiveError):
    exit_code = 4
    http_status = 422
    kind = "refused"
    label = "无法处理 / refused"


class IntegrityFailure(ArchiveError):
    exit_code = 5
    http_status = 500
    kind = "integrity"
    label = "完整性错误 / integrity failure"


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        # Dagster wraps what an asset raised (DagsterExecutionStepExecutionError.user_exception)
        exc = getattr(exc, "user_exception", None) or exc.__cause__


def known_cause(exc: BaseException) -> ArchiveError | None:
    """The ArchiveError behind `exc`, looking through wrappers and causes; None for a bug."""
    return next((e for e in _chain(exc) if isinstance(e, ArchiveError)), None)


def _kinds(cls: type[ArchiveError]) -> Iterator[type[ArchiveError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _kinds(sub)


def from_kind(kind: str, message_zh: str, message_en: str, item: str | None = None) -> ArchiveError:
    """The error a known state's kind names, rebuilt from its sentences: a step that failed in
    another process (a Celery worker) reports its state this way, not as an exception object."""
    cls = next((c for c in _kinds(ArchiveError) if c.kind == kind), ArchiveError)  # the base class of the kind
    return cls(message_zh, message_en, item=item or None)


def run_command(func, args) -> int:
    """A CLI command's exit status: a known state is its message on stderr and its status; a
    bug keeps its traceback."""
    import sys

    try:
        return func(args)
    except Exception as exc:
        known = known_cause(exc)
        if known is None:
            raise
        print(f"{known.label}: {known}", file=sys.stderr)
        return known.exit_code
