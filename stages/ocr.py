"""OCR stage: every accepted scan file of a batch, once per content and engine version.

Results go to staging as JSON keyed by (engine key, sha256): that key is the cache, so a rerun
or the same page in another batch is not OCR'd again. The stage records each scan's result key in
`batch_files.ocr_key`; later stages read that (result_keys, load_ocr), never the engine settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

from errors import NotReady
from ocr import EngineConfig, OcrPool, PageResult
from ocr.gates import GATES
from stages.intake import CATALOG_MATERIALS
from stages.progress import advance
from stages.services import Services
from storage import events
from storage.events import AGENT, Event
from storage.objects import put_if_absent, sha256_hex


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


def accepted_scans(batch_id: str, services: Services) -> list[dict]:
    """The accepted scan files of the materials intake let go on; a file outside the catalog is
    kept in staging but not processed, as its finding says."""
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256, staging_key, ocr_key FROM batch_files WHERE batch_id = %s AND role = 'page'"
                    " AND status = 'accepted' AND path IN"
                    f" (SELECT jsonb_array_elements_text(page_files) FROM ({CATALOG_MATERIALS}) c) ORDER BY path",
                    (batch_id, batch_id))
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


def load_ocr(services: Services, key: str) -> tuple[list[PageResult], str]:
    """The OCR pages of one scan file, from the result key the ocr stage recorded, and the sha256
    of the stored result."""
    data = services.store.get(services.staging_bucket, key)
    return [PageResult.from_dict(p) for p in json.loads(data)["pages"]], sha256_hex(data)


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


def ocr_batch(batch_id: str, services: Services, config: EngineConfig | None = None,
              workers: int | None = None) -> OcrResult:
    config = config or EngineConfig()
    scans = accepted_scans(batch_id, services)
    todo, cached = [], 0
    seen: set[str] = set()
    for s in scans:
        if s["sha256"] in seen or services.store.head(services.staging_bucket, ocr_key(config.key, s["sha256"])):
            cached += 1
        else:
            todo.append(s)
        seen.add(s["sha256"])

    t0 = time.perf_counter()
    pages, fallback, done = 0, 0, []
    failures: dict[str, list[str]] = {gate: [] for gate in GATES}
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
                review_gates = sorted({g for r in results for g in r.failed_gates})
                done.append(Event("ocr", "warning" if review_gates else "success", batch_id,
                                  object_sha256=scan["sha256"], agent=f"{AGENT}; {config.key}",
                                  detail={"pages": len(results), "result_sha256": sha256_hex(body),
                                          "confidence": [r.confidence for r in results], "review": review_gates}))
                pages += len(results)
                for i, r in enumerate(results):
                    for gate in r.failed_gates:
                        failures[gate].append(f"{scan['path']}#{i + 1}")
                    fallback += any(f.startswith("fallback:") for f in r.flags)
    with services.db.transaction() as cur:
        events.record(cur, done)
        cur.execute("UPDATE batch_files b SET ocr_key = k.key FROM unnest(%s::text[], %s::text[]) AS k(path, key)"
                    " WHERE b.batch_id = %s AND b.path = k.path",  # one statement however many scans
                    ([s["path"] for s in scans], [ocr_key(config.key, s["sha256"]) for s in scans], batch_id))
        advance(cur, batch_id, "ocr_done")
    return OcrResult(batch_id, len(todo), cached, pages, failures, fallback, time.perf_counter() - t0)
