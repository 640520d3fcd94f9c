"""Intake: validate a submitted batch and register what goes on to OCR.

Reads the batch's files from staging, checks the manifest, every scan file (by content) and
the catalog-to-image link, and records per file accepted/rejected with bilingual findings.
Bad items never sink the batch: the good materials go on.

Reading every page is most of the work, so it is done in units that several workers share:
`plan_checks` splits the page files into units, `check_unit` inspects one (keeping what it found
in `scan_checks`), and `finish_intake` checks the manifest and the catalog link and records every
file's verdict at once. `intake_batch` does all three in one process.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from catalog.findings import Finding, Severity, error
from catalog.manifest import Catalog, parse_manifest
from errors import NotFound, NotReady
from intake.linkage import check_linkage
from intake.scanfile import ScanInfo, inspect_scan, too_large
from ocr.pool import default_workers, ordered_map, spawn_pool
from stages.progress import advance
from stages.services import Services
from stages.units import pack
from storage import events
from storage.db import xact_lock
from storage.events import Event


@dataclass
class IntakeResult:
    batch_id: str
    accepted: int
    rejected: int
    warnings: int
    files: int            # personnel files with at least one accepted material
    materials: int
    findings: list[Finding] = field(default_factory=list)
    reused: bool = False  # True when an earlier validation of the same content was reused


# Bump when validation rules change: batches validated by older rules are validated again.
INTAKE_VERSION = 5
INTAKE_UNIT_FILES = 200  # page files per check unit: seconds on one core, against a step's start-up
# Below this many page files, starting worker processes (~1 s) costs more than it saves.
PARALLEL_FROM = 24


class UnknownBatch(NotFound):
    """No batch of that id was handed in, or it has not reached the stage asked for."""


def _previous(batch_id: str, services: Services) -> IntakeResult | None:
    """The stored result when this batch (immutable: its id is its content) was validated by these rules."""
    with services.db.transaction() as cur:
        cur.execute("SELECT catalog, findings FROM batches WHERE batch_id = %s AND intake_version = %s",
                    (batch_id, INTAKE_VERSION))
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute("SELECT count(*) FILTER (WHERE status = 'accepted') AS ok,"
                    " count(*) FILTER (WHERE status = 'rejected') AS bad FROM batch_files"
                    " WHERE batch_id = %s AND role = 'page'", (batch_id,))
        counts = cur.fetchone()
    findings = [Finding.from_dict(f) for f in row["findings"]]
    catalog = Catalog.from_dict(opened(row["catalog"], services))
    return IntakeResult(batch_id, counts["ok"], counts["bad"],
                        sum(1 for f in findings if f.severity is Severity.WARNING), len(catalog.files),
                        sum(len(f.materials) for f in catalog.files), findings, reused=True)


class CheckUnit(NamedTuple):
    """Page files one step checks: about `unit_files` of them."""

    number: int
    paths: list[str]
    files: int


@dataclass
class UnitChecked:
    checked: int   # page files inspected now
    reused: int    # checked before (an earlier attempt of the unit), not read again
    started: float  # wall clock (time.time), so that units on several machines add up
    ended: float


class ChecksNotDone(NotReady):
    """A page file intake's check units have not read: one of them has not run (or failed)."""

    def __init__(self, batch_id: str, path: str) -> None:
        super().__init__(f"批次 {batch_id} 的 {path} 尚未检查，请重新运行接收阶段（已检查的文件不会重读）",
                         f"{path} of batch {batch_id} has not been checked: run the intake stage again (files "
                         "checked already are not read again)", item=path)


def _files(batch_id: str, services: Services, paths: list[str] | None = None) -> list[dict]:
    """The batch's files (at `paths` only, if given), in path order; UnknownBatch for none at all."""
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256, bytes, staging_key, role, findings FROM batch_files WHERE batch_id = %s"
                    " AND (%s::text[] IS NULL OR path = ANY(%s::text[])) ORDER BY path", (batch_id, paths, paths))
        rows = cur.fetchall()
    if not rows:
        raise UnknownBatch(f"批次 {batch_id} 从未提交", f"batch {batch_id} was never submitted (no files registered)",
                           item=batch_id)
    return rows


def _triage(rows: list[dict]) -> tuple[list[tuple[str, list[Finding]]], list[dict]]:
    """(the page files refused unread, each with its reason; the page files to inspect), in path order."""
    refused, to_inspect = [], []
    first_with: dict[str, str] = {}  # sha256 -> the first page file with that content
    for r in rows:
        if r["role"] != "page":
            continue
        if first := first_with.get(r["sha256"]):  # a repeated page (DA/T 31): the same scan twice
            refused.append((r["path"], [error("scan.duplicate", r["path"], f"与 {first} 内容完全相同（重复页）",
                                              f"identical to {first} (repeated page)")]))
            continue
        first_with[r["sha256"]] = r["path"]
        if oversized := too_large(r["bytes"], r["path"]):  # a 5 GB "page" must not be pulled into memory
            refused.append((r["path"], [oversized]))
        else:
            to_inspect.append(r)
    return refused, to_inspect


def _checks(batch_id: str, services: Services, paths: list[str] | None = None) -> dict[str, tuple]:
    """path -> (ScanInfo or None, findings) of the files a check unit read under these rules."""
    with services.db.transaction() as cur:
        cur.execute("SELECT path, info, problems FROM scan_checks WHERE batch_id = %s AND intake_version = %s"
                    " AND (%s::text[] IS NULL OR path = ANY(%s::text[]))", (batch_id, INTAKE_VERSION, paths, paths))
        return {r["path"]: (ScanInfo(**r["info"]) if r["info"] else None,
                            [Finding.from_dict(f) for f in r["problems"]]) for r in cur.fetchall()}


def _validated(cur, batch_id: str) -> bool:
    """Whether the batch was validated by these rules."""
    cur.execute("SELECT 1 FROM batches WHERE batch_id = %s AND intake_version = %s", (batch_id, INTAKE_VERSION))
    return cur.fetchone() is not None


def plan_checks(batch_id: str, services: Services, unit_files: int = INTAKE_UNIT_FILES) -> list[CheckUnit]:
    """The page files still to inspect, in path order, split into units (none when the batch was
    validated by these rules)."""
    with services.db.transaction() as cur:
        if _validated(cur, batch_id):
            return []
    _, to_inspect = _triage(_files(batch_id, services))
    checked = _checks(batch_id, services).keys()
    todo = ((r["path"], 1) for r in to_inspect if r["path"] not in checked)
    return [CheckUnit(n, paths, files) for n, (paths, files) in enumerate(pack(todo, unit_files))]


def check_unit(batch_id: str, services: Services, paths: list[str], workers: int | None = None) -> UnitChecked:
    """Inspects the unit's page files by content (format, resolution, size, blank, skew) and keeps
    what it found for `finish_intake`; a retry reads only the files not yet checked. `workers`:
    processes (None: one per core)."""
    started = time.time()
    done = _checks(batch_id, services, paths).keys()
    wanted = sorted(set(paths) - done)
    # only page files under the byte cap, whoever wrote the unit's list: the rest are refused unread
    rows = [r for r in (_files(batch_id, services, wanted) if wanted else [])
            if r["role"] == "page" and too_large(r["bytes"], r["path"]) is None]
    found = [(r["path"], json.dumps(asdict(info), ensure_ascii=False) if info else None,
              json.dumps([p.to_dict() for p in problems], ensure_ascii=False))
             for r, (info, problems) in zip(rows, _inspect(rows, services, workers), strict=True)]
    with services.db.transaction() as cur:
        cur.executemany("INSERT INTO scan_checks (batch_id, path, intake_version, info, problems)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (batch_id, path) DO UPDATE"
                        " SET intake_version = EXCLUDED.intake_version, info = EXCLUDED.info,"
                        " problems = EXCLUDED.problems WHERE scan_checks.intake_version <> EXCLUDED.intake_version",
                        [(batch_id, path, INTAKE_VERSION, info, problems) for path, info, problems in found])
    return UnitChecked(len(rows), len(paths) - len(wanted), started, time.time())


def finish_intake(batch_id: str, services: Services) -> IntakeResult:
    """Every page file checked: the manifest, the agency's own files and the catalog-to-image link
    checked, each file's verdict and event recorded and the catalog kept, in one transaction.
    ChecksNotDone naming the first page file without its check, so no batch goes on half-read."""
    previous = _previous(batch_id, services)
    if previous:
        return previous
    rows = _files(batch_id, services)
    # what the zip it came in refused (unsafe names, bombs, links) was found at hand-in
    findings: list[Finding] = [Finding.from_dict(f) for r in rows if r["role"] in ("container", "ignored")
                               for f in (r["findings"] or [])]
    manifests = [r for r in rows if r["role"] == "manifest"]
    catalog, manifest_path = Catalog(), "manifest.csv"
    if len(manifests) != 1:
        findings.append(error("batch.manifest", batch_id,
                              "批次中应有且仅有一个目录文件 manifest.csv" if not manifests else "批次中有多个目录文件",
                              "the batch needs exactly one manifest.csv" if not manifests else "several manifests"))
    else:
        manifest_path = manifests[0]["path"]
        data = services.store.get(services.staging_bucket, manifests[0]["staging_key"])
        catalog, problems = parse_manifest(data, manifest_path)
        findings += problems
        catalog, foreign = _own_files(catalog, batch_id, manifest_path, services)
        findings += foreign

    updates: list[FileVerdict] = []
    page_counts: dict = {}
    refused, to_inspect = _triage(rows)
    checks = _checks(batch_id, services)
    for path, problems in refused:
        _record(updates, page_counts, findings, batch_id, path, None, problems)
    for r in to_inspect:
        if r["path"] not in checks:
            raise ChecksNotDone(batch_id, r["path"])
        _record(updates, page_counts, findings, batch_id, r["path"], *checks[r["path"]])
    updates.sort(key=lambda u: u.path)

    kept, link_findings = check_linkage(catalog, page_counts, manifest_path)
    findings += link_findings
    by_path = {r["path"]: r["sha256"] for r in rows}
    codes_of: dict[str, list[str]] = {}
    for f in findings:
        codes_of.setdefault(f.item, []).append(f.code)
    validated = []
    for u in updates:
        codes = codes_of.get(u.path, [])
        outcome = "failure" if u.status == "rejected" else "warning" if codes else "success"
        validated.append(Event("validated", outcome, batch_id, object_sha256=by_path[u.path],
                               detail={"path": u.path, "findings": codes}))
    with services.db.transaction() as cur:
        # two finishes at once (a dead run's step beside its retry's): the second records nothing
        xact_lock(cur, f"intake:{batch_id}")
        first = not _validated(cur, batch_id)
        if first:
            events.record(cur, validated)
            cur.executemany(UPDATE_FILE, updates)
            cur.execute("UPDATE batches SET catalog = %s, findings = %s, intake_version = %s WHERE batch_id = %s",
                        (json.dumps(sealed(kept.to_dict(), services), ensure_ascii=False),
                         json.dumps([f.to_dict() for f in findings], ensure_ascii=False), INTAKE_VERSION, batch_id))
            advance(cur, batch_id, "validated")
            # what the units found now lives in the verdicts: at 10^8 pages the checks kept would be GBs
            cur.execute("DELETE FROM scan_checks WHERE batch_id = %s", (batch_id,))
    if not first:
        return _previous(batch_id, services)
    accepted = sum(1 for u in updates if u.status == "accepted")
    return IntakeResult(batch_id, accepted, len(updates) - accepted,
                        sum(1 for f in findings if f.severity is Severity.WARNING),
                        len(kept.files), sum(len(f.materials) for f in kept.files), findings)


def intake_batch(batch_id: str, services: Services, workers: int | None = None) -> IntakeResult:
    """The whole stage in this process (the CLI's stages, tests): every check in one unit, on
    `workers` processes (None: one per core)."""
    if previous := _previous(batch_id, services):
        return previous
    for unit in plan_checks(batch_id, services, unit_files=sys.maxsize):
        check_unit(batch_id, services, unit.paths, workers)
    return finish_intake(batch_id, services)


def _own_files(catalog: Catalog, batch_id: str, manifest_path: str,
               services: Services) -> tuple[Catalog, list[Finding]]:
    """The catalog without the files another agency holds, and a refusal for each: a batch must
    never change, or add materials to, another agency's file (the file number is named, the
    agency that holds it is not)."""
    numbers = [f.file_number for f in catalog.files]
    with services.db.transaction() as cur:
        cur.execute("SELECT f.file_number FROM personnel_files f JOIN batches b ON b.batch_id = %s"
                    " WHERE f.file_number = ANY(%s) AND f.holding_agency <> b.holding_agency", (batch_id, numbers))
        foreign = {r["file_number"] for r in cur.fetchall()}
    findings = [error("catalog.file_of_another_agency", f"{manifest_path} {number}",
                      f"档号 {number} 已由其他机构持有，本批次中该档案的材料已拒收",
                      f"file number {number} is held by another agency: its materials in this batch are refused")
                for number in sorted(foreign)]
    return Catalog([f for f in catalog.files if f.file_number not in foreign]), findings


def _inspect(rows: list[dict], services: Services,
             workers: int | None = None) -> Iterator[tuple[ScanInfo | None, list[Finding]]]:
    """inspect_scan of each row's staged file, in order; in worker processes for many files
    (decoding is most of intake's time), reading from staging only as fast as they work."""
    jobs = ((services.store.get(services.staging_bucket, r["staging_key"]), r["path"]) for r in rows)
    workers = workers or default_workers()
    if len(rows) < PARALLEL_FROM or workers == 1:
        yield from (inspect_scan(data, path) for data, path in jobs)
        return
    with spawn_pool(workers) as pool:
        yield from ordered_map(pool, inspect_scan, jobs, 2 * workers)


class FileVerdict(NamedTuple):
    """What intake found of one page file: the parameters of UPDATE_FILE, in its order."""

    status: str                 # accepted | rejected
    media_type: str | None
    page_count: int | None
    dpi: int | None
    width: int | None
    height: int | None
    skew_degrees: float | None
    findings: str | None        # JSON of the file's findings
    batch_id: str
    path: str


UPDATE_FILE = ("UPDATE batch_files SET status = %s, media_type = %s, page_count = %s, dpi = %s, width = %s, "
               "height = %s, skew_degrees = %s, findings = %s WHERE batch_id = %s AND path = %s")


def _record(updates: list[FileVerdict], page_counts: dict, findings: list[Finding], batch_id: str, path: str,
            info: ScanInfo | None, problems: list[Finding]) -> None:
    """One page file's verdict: accepted unless unreadable or any error."""
    findings += problems
    rejected = info is None or any(p.severity is Severity.ERROR for p in problems)
    page_counts[path] = None if rejected else info.page_count
    updates.append(FileVerdict(
        "rejected" if rejected else "accepted",
        info.media_type if info else None, info.page_count if info else None,
        info.dpi if info else None, info.width if info else None, info.height if info else None,
        info.skew if info else None,
        json.dumps([p.to_dict() for p in problems], ensure_ascii=False) if problems else None,
        batch_id, path))


# The materials of a batch's catalog as intake kept it, a row each, for the stages after it to
# join on (file_number, class_code, seq); the batch id is its one parameter.
CATALOG_MATERIALS = """
SELECT f->>'file_number' AS file_number, m->>'class_code' AS class_code, (m->>'seq')::int AS seq,
       m->'page_files' AS page_files
FROM batches b, jsonb_array_elements(b.catalog->'files') f, jsonb_array_elements(f->'materials') m
WHERE b.batch_id = %s
"""


def load_catalog(batch_id: str, services: Services) -> Catalog:
    """The validated catalog intake left for the later stages."""
    with services.db.transaction() as cur:
        cur.execute("SELECT catalog FROM batches WHERE batch_id = %s", (batch_id,))
        row = cur.fetchone()
    if not row or row["catalog"] is None:
        raise UnknownBatch(f"批次 {batch_id} 尚未校验", f"batch {batch_id} has not been through intake", item=batch_id)
    return Catalog.from_dict(opened(row["catalog"], services))


def sealed(catalog: dict, services: Services) -> dict:
    """The catalog as it is kept in PostgreSQL: each person's ID number encrypted (id_number_encrypted)."""
    cipher = services.id_cipher
    return {**catalog, "files": [{**{k: v for k, v in f.items() if k != "id_number"},
                                  "id_number_encrypted": cipher.encrypt(f["id_number"], f["file_number"])}
                                 for f in catalog["files"]]}


def opened(catalog: dict, services: Services) -> dict:
    """The catalog as the stages read it: ID numbers decrypted."""
    cipher = services.id_cipher
    return {**catalog, "files": [{**{k: v for k, v in f.items() if k != "id_number_encrypted"},
                                  "id_number": cipher.decrypt(f["id_number_encrypted"], f["file_number"])
                                  if "id_number_encrypted" in f else f["id_number"]} for f in catalog["files"]]}
