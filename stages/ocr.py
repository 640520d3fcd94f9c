"""OCR stage: every accepted scan file of a batch, once per content and engine version.

The stage is three steps, so that a large batch spreads over many workers and a failed part
retries alone: `plan_units` splits the scans still to read into units of about UNIT_PAGES pages,
`ocr_unit` reads one unit (any number of them at once, on any machine), `finish_ocr` checks that
every scan has its result and records the result keys. `ocr_batch` does all three in one process.

Results go to staging as JSON keyed by (engine key, sha256): that key is the cache, so a rerun
or the same page in another batch is not OCR'd again. The stage records each scan's result key in
`batch_files.ocr_key`; later stages read that (result_keys, load_ocr), never the engine settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from errors import NotReady
from ocr import EngineConfig, OcrPool, PageResult
from ocr.gates import GATES
from stages.intake import CATALOG_MATERIALS
from stages.progress import advance
from stages.services import Services
from stages.units import pack
from storage import events
from storage.db import xact_lock
from storage.events import AGENT, Event
from storage.objects import ObjectMissing, put_if_absent, sha256_hex

UNIT_PAGES = 50  # pages per unit: tens of seconds on one core, against a unit's own start-up
READERS = 8      # threads reading stored results: object-store round trips, not CPU


@dataclass
class OcrResult:
    batch_id: str
    files_ocred: int
    files_cached: int
    pages_ocred: int
    gate_failures: dict[str, list[str]]  # gate -> "path#page" of pages failing it even after the fallback
    fallback_pages: int      # pages the fallback engine was tried on
    seconds: float

    @property
    def review_pages(self) -> list[str]:
        """Pages a person must look at: some gate still fails."""
        return sorted({p for pages in self.gate_failures.values() for p in pages})

    @property
    def pages_per_second(self) -> float:
        return self.pages_ocred / self.seconds if self.seconds and self.pages_ocred else 0.0


def ocr_key(engine_key: str, sha256: str) -> str:
    return f"ocr/{engine_key}/{sha256[:2]}/{sha256}.json"


def accepted_scans(batch_id: str, services: Services, paths: list[str] | None = None) -> list[dict]:
    """The accepted scan files of the materials intake let go on (of `paths` only, if given); a
    file outside the catalog is kept in staging but not processed, as its finding says."""
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256, staging_key, ocr_key, page_count FROM batch_files"
                    " WHERE batch_id = %s AND role = 'page' AND (%s::text[] IS NULL OR path = ANY(%s::text[]))"
                    " AND status = 'accepted' AND path IN"
                    f" (SELECT jsonb_array_elements_text(page_files) FROM ({CATALOG_MATERIALS}) c) ORDER BY path",
                    (batch_id, paths, paths, batch_id))
        return cur.fetchall()


class OcrNotDone(NotReady):
    """A scan file the ocr stage has not read (or read before its result keys were recorded)."""

    def __init__(self, batch_id: str, path: str) -> None:
        super().__init__(f"批次 {batch_id} 的 {path} 尚无识别结果记录，请先对该批次运行识别阶段"
                         "（已有结果会复用，不会重复识别）",
                         f"{path} of batch {batch_id} has no OCR result recorded: run the ocr stage first, for "
                         "that batch (results already made are reused, nothing is OCR'd twice)", item=path)


def result_keys(services: Services, batch_id: str) -> dict[str, str]:
    """sha256 -> staging key of the OCR result the ocr stage recorded, for the batch's scans it read."""
    with services.db.transaction() as cur:
        cur.execute("SELECT DISTINCT sha256, ocr_key FROM batch_files WHERE batch_id = %s AND ocr_key IS NOT NULL",
                    (batch_id,))
        return {r["sha256"]: r["ocr_key"] for r in cur.fetchall()}


class StoredResult(NamedTuple):
    pages: list[PageResult]
    sha256: str   # of the stored result's bytes
    bytes: int


def _read_result(services: Services, key: str) -> StoredResult:
    data = services.store.get(services.staging_bucket, key)
    return StoredResult([PageResult.from_dict(p) for p in json.loads(data)["pages"]], sha256_hex(data), len(data))


def load_ocr(services: Services, key: str) -> tuple[list[PageResult], str]:
    """The OCR pages of one scan file, from the result key the ocr stage recorded, and the sha256
    of the stored result."""
    result = _read_result(services, key)
    return result.pages, result.sha256


class OcrWorkerLost(NotReady):
    """An OCR worker process died (killed, out of memory); the results already stored are kept."""

    transient = True


@contextmanager
def _worker_loss(batch_id: str) -> Iterator[None]:
    try:
        yield
    except BrokenProcessPool as exc:
        raise OcrWorkerLost(f"批次 {batch_id} 的识别进程意外终止（被杀死或内存不足），已存的结果保留",
                            f"an OCR worker process of batch {batch_id} died (killed or out of memory); the "
                            "results already stored are kept and the step is run again", item=batch_id) from exc


class OcrUnit(NamedTuple):
    """Scan files one step reads: about UNIT_PAGES pages, a larger file alone."""

    number: int
    paths: list[str]
    pages: int


@dataclass
class UnitResult:
    files_ocred: int
    pages_ocred: int
    files_cached: int       # stored meanwhile (another batch, or this unit's earlier attempt)
    started: float          # wall clock (time.time), so that units on several machines add up
    ended: float


def plan_units(batch_id: str, services: Services, config: EngineConfig | None = None,
               unit_pages: int = UNIT_PAGES) -> list[OcrUnit]:
    """The batch's scans with no stored result yet, in path order, split into units; the same
    content twice in the batch is read once."""
    config = config or EngineConfig()
    seen: set[str] = set()

    def missing() -> Iterator[tuple[str, int]]:
        for s in accepted_scans(batch_id, services):
            if s["sha256"] in seen or services.store.head(services.staging_bucket, ocr_key(config.key, s["sha256"])):
                continue
            seen.add(s["sha256"])
            yield s["path"], s["page_count"] or 1

    return [OcrUnit(n, paths, pages) for n, (paths, pages) in enumerate(pack(missing(), unit_pages))]


def _event(batch_id: str, config: EngineConfig, sha256: str, results: list[PageResult], body: bytes) -> Event:
    review_gates = sorted({g for r in results for g in r.failed_gates})
    return Event("ocr", "warning" if review_gates else "success", batch_id, object_sha256=sha256,
                 agent=f"{AGENT}; {config.key}",
                 detail={"pages": len(results), "result_sha256": sha256_hex(body),
                         "confidence": [r.confidence for r in results], "review": review_gates})


def _without_event(cur, config: EngineConfig, sha256s: list[str]) -> set[str]:
    """Of these scans, those no OCR event with this engine records: their result was stored by an
    attempt killed before it committed its events, or by one still running beside this one."""
    cur.execute("SELECT DISTINCT object_sha256 FROM events WHERE event_type = 'ocr'"
                " AND object_sha256 = ANY(%s) AND agent LIKE %s", (sha256s, f"%; {config.key}"))
    return set(sha256s) - {r["object_sha256"] for r in cur.fetchall()}


def _stored_event(batch_id: str, services: Services, config: EngineConfig, sha256: str) -> Event:
    body = services.store.get(services.staging_bucket, ocr_key(config.key, sha256))
    return _event(batch_id, config, sha256, [PageResult.from_dict(p) for p in json.loads(body)["pages"]], body)


def _stored_result(services: Services, key: str) -> StoredResult | None:
    try:
        return _read_result(services, key)
    except ObjectMissing:
        return None


def ocr_unit(batch_id: str, services: Services, paths: list[str], config: EngineConfig | None = None,
             workers: int | None = None) -> UnitResult:
    """OCRs the unit's scans that have no stored result, stores each result and records its event.
    Run again (a retry after a killed worker), it reads only what is still missing, and records
    the events an earlier attempt stored results for but did not commit."""
    config = config or EngineConfig()
    scans = {s["sha256"]: s for s in accepted_scans(batch_id, services, paths)}
    stored = {sha for sha in scans if services.store.head(services.staging_bucket, ocr_key(config.key, sha))}
    todo = [s for sha, s in scans.items() if sha not in stored]
    with services.db.transaction() as cur:
        unrecorded = _without_event(cur, config, sorted(stored)) if stored else set()
    done = [_stored_event(batch_id, services, config, sha) for sha in sorted(unrecorded)]
    started, pages = time.time(), 0
    if todo:
        def blobs() -> Iterator[bytes]:
            for s in todo:
                yield services.store.get(services.staging_bucket, s["staging_key"])

        with OcrPool(config, workers) as pool, _worker_loss(batch_id):
            for scan, results in zip(todo, pool.map(blobs()), strict=True):
                body = json.dumps({"sha256": scan["sha256"], "engine": config.key,
                                   "pages": [r.to_dict() for r in results]}, ensure_ascii=False).encode()
                put_if_absent(services.store, services.staging_bucket, ocr_key(config.key, scan["sha256"]),
                              body, sha256_hex(body), "application/json")
                done.append(_event(batch_id, config, scan["sha256"], results, body))
                pages += len(results)
    with services.db.transaction() as cur:
        # two attempts of one unit at once (a dead run's Celery task still running beside its
        # retry's) both OCR a scan: under this lock, the first to commit records its event
        xact_lock(cur, f"ocr-events:{config.key}")
        unrecorded = _without_event(cur, config, [e.object_sha256 for e in done])
        events.record(cur, [e for e in done if e.object_sha256 in unrecorded])
    return UnitResult(len(todo), pages, len(stored), started, time.time())


@dataclass
class GateReport:
    failures: dict[str, list[str]]  # gate -> "path#page" of pages failing it even after the fallback
    fallback_pages: int             # pages the fallback engine was tried on


def finish_ocr(batch_id: str, services: Services, config: EngineConfig | None = None,
               units: list[UnitResult] | None = None) -> OcrResult:
    """Records every scan's result key and moves the batch on; OcrNotDone naming the first scan
    without a stored result (a unit that has not run), so the batch is never OCR'd with a page
    missing. The gate report covers every page of the batch, cached or not."""
    config = config or EngineConfig()
    units = units or []
    scans = accepted_scans(batch_id, services)
    keys = [ocr_key(config.key, s["sha256"]) for s in scans]
    with ThreadPoolExecutor(READERS) as readers:
        stored = list(readers.map(lambda key: _stored_result(services, key), keys))
    for scan, result in zip(scans, stored, strict=True):
        if result is None:
            raise OcrNotDone(batch_id, scan["path"])
    report = _gates(scans, [r.pages for r in stored])
    with services.db.transaction() as cur:
        cur.execute("UPDATE batch_files b SET ocr_key = k.key, ocr_sha256 = k.sha256, ocr_bytes = k.bytes"
                    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) AS k(path, key, sha256, bytes)"
                    " WHERE b.batch_id = %s AND b.path = k.path",  # one statement however many scans
                    ([s["path"] for s in scans], keys, [r.sha256 for r in stored], [r.bytes for r in stored],
                     batch_id))
        advance(cur, batch_id, "ocr_done")
    ocred, busy = sum(u.files_ocred for u in units), [u for u in units if u.pages_ocred]
    # from the first unit's start to the last one's end: the stage's own time, however many workers
    seconds = max(u.ended for u in busy) - min(u.started for u in busy) if busy else 0.0
    return OcrResult(batch_id, ocred, len(scans) - ocred, sum(u.pages_ocred for u in units), report.failures,
                     report.fallback_pages, seconds)


def _gates(scans: list[dict], results: list[list[PageResult]]) -> GateReport:
    failures: dict[str, list[str]] = {gate: [] for gate in GATES}
    fallback = 0
    for scan, pages in zip(scans, results, strict=True):
        for i, r in enumerate(pages):
            for gate in r.failed_gates:
                failures[gate].append(f"{scan['path']}#{i + 1}")
            fallback += any(f.startswith("fallback:") for f in r.flags)
    return GateReport(failures, fallback)


def ocr_batch(batch_id: str, services: Services, config: EngineConfig | None = None,
              workers: int | None = None, unit_pages: int = UNIT_PAGES) -> OcrResult:
    """The whole stage in this process, unit after unit (the CLI's stages, tests, benchmarks)."""
    done = [ocr_unit(batch_id, services, unit.paths, config, workers)
            for unit in plan_units(batch_id, services, config, unit_pages)]
    return finish_ocr(batch_id, services, config, done)
