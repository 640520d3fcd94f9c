"""Parallel OCR by process, one loaded engine per worker.

Tesseract's OpenMP threads are 3.6-6x slower than single-threaded processes on 2 cores, so each
worker runs with OMP_THREAD_LIMIT=1 and parallelism comes from the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

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
        # spawn: the caller may have threads (Dagster does); fork would copy their locks.
        self._executor = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.config,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor:
            self._executor.shutdown(cancel_futures=True)

    def map(self, blobs: Iterable[bytes]) -> Iterator[list[PageResult]]:
        """Results in input order, with at most two files per worker in flight, so a large
        batch never sits in memory whole (Executor.map would read the whole iterable first)."""
        assert self._executor, "use OcrPool as a context manager"
        pending: deque[Future] = deque()
        for data in blobs:
            pending.append(self._executor.submit(_ocr_file, data))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
