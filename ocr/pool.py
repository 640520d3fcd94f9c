"""Parallel OCR by process, one loaded engine per worker.

Tesseract's OpenMP threads are several times slower than single-threaded processes, so each
worker runs with OMP_THREAD_LIMIT=1 and parallelism comes from the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from ocr.engine import EngineConfig, PageResult
from ocr.images import load_pages
from ocr.pipeline import PageOcr

_engine: PageOcr | None = None


def _init_worker(config: EngineConfig) -> None:
    global _engine
    os.environ["OMP_THREAD_LIMIT"] = "1"
    _engine = PageOcr(config)
    _engine.engine(config.primary)  # load the model now, not inside the first page's timing


def _ocr_file(data: bytes) -> list[PageResult]:
    assert _engine is not None, "worker not initialised"
    return [_engine.run(img, dpi) for img, dpi in load_pages(data)]


def ordered_map(executor: Executor, fn: Callable[..., Any], arg_tuples: Iterable[tuple], in_flight: int) -> Iterator:
    """fn(*args) for each args, results in input order, at most `in_flight` submitted and not yet
    taken: a large batch never sits in memory whole (Executor.map reads the whole iterable first)."""
    pending: deque[Future] = deque()
    for args in arg_tuples:
        pending.append(executor.submit(fn, *args))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def _watched_init(parent: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    # A worker process whose parent was killed (a Celery worker's SIGKILL, the OOM killer) would
    # wait on its task queue for ever, models in memory: it holds that queue's write end itself,
    # so it never reads an end of file. It leaves once it has another parent.
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def spawn_pool(workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple = (),
               **kwargs: Any) -> ProcessPoolExecutor:
    """Worker processes that end with this one, even when it is killed."""
    # spawn: the caller may have threads (Dagster does); fork would copy their locks.
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_watched_init,
                               initargs=(os.getpid(), initializer, initargs), **kwargs)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class OcrPool:
    """`with OcrPool() as pool: pool.map(blobs)` -> one list of PageResult per scan file."""

    def __init__(self, config: EngineConfig | None = None, workers: int | None = None) -> None:
        self.config = config or EngineConfig()
        self.workers = workers or default_workers()
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> OcrPool:
        os.environ["OMP_THREAD_LIMIT"] = "1"
        self._executor = spawn_pool(self.workers, initializer=_init_worker, initargs=(self.config,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor:
            self._executor.shutdown(cancel_futures=True)

    def map(self, blobs: Iterable[bytes]) -> Iterator[list[PageResult]]:
        """Results in input order, at most two files per worker in flight."""
        assert self._executor, "use OcrPool as a context manager"
        yield from ordered_map(self._executor, _ocr_file, ((data,) for data in blobs), 2 * self.workers)
