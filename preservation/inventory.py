"""The store describes itself: one inventory object per personnel file, in the archive bucket.

An inventory holds the file's rows as the database has them (its catalog entry, materials and
their superseded versions, pages with their text, the objects and copies that preserve them,
the batches and agencies they name, its transfers, and every event of its history), so that
`archive rebuild-index` can recreate the archive's tables from the store alone. Only what is
computed from those rows is left out (the search codes), and recomputed by the same functions
when rebuilt.

Inventories are never overwritten: each change is a new version under
inventory/<file number>/<version>.json, written and read back like any preserved object, and
recorded in `stored_objects` so it is replicated and audited too. A file whose inventory would
say the same as the last one written gets no new version.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import logging
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import NamedTuple

import psycopg2

from errors import ArchiveError
from stages.services import Services
from storage.db import xact_lock
from storage.objects import put_verified
from storage.stored import StoredObject, record_verified

log = logging.getLogger(__name__)
FORMAT = 1
PREFIX = "inventory/"

# The file's rows, table by table in the order they can be inserted (parents first). Each
# condition sees %(file)s, %(objects)s (the sha256 of every object any version of it holds),
# %(bucket)s and %(keys)s (its transfers' packages and records) and %(transfers)s (their ids);
# each is an index lookup, so describing a file costs the same at 10^8 objects as at 10^3.
_FILE_MATERIALS = "material_id IN (SELECT material_id FROM materials WHERE file_number = %(file)s)"
_FILE_OBJECTS = "(sha256 = ANY(%(objects)s) OR (bucket = %(bucket)s AND key = ANY(%(keys)s)))"
PARTS: tuple[tuple[str, str], ...] = (
    ("personnel_files", "file_number = %(file)s"),
    ("materials", "file_number = %(file)s"),
    ("material_versions", _FILE_MATERIALS),
    ("pages", _FILE_MATERIALS),
    ("stored_objects", _FILE_OBJECTS),
    ("object_copies", f"(bucket, key) IN (SELECT bucket, key FROM stored_objects WHERE {_FILE_OBJECTS})"),
    # stages/history.py's rule: the file's own events, and those of its objects
    ("events", "file_number = %(file)s OR (object_sha256 = ANY(%(objects)s) AND (batch_id IS NULL OR batch_id IN"
               " (SELECT batch_id FROM batches WHERE holding_agency = %(agency)s)))"),
    ("transfers", "file_number = %(file)s"),
    ("transfer_events", "transfer_id = ANY(%(transfers)s::uuid[])"),
    ("received_transfers", "file_number = %(file)s"),
)
# Not carried: what the index stage's functions compute from the other columns (the search
# codes), the batch's intake working state, and when a copy was last read (the fixity audit's
# schedule, which would otherwise make a new version of every file every few days; a rebuilt
# database has every object checked first).
DERIVED = {"personnel_files": ("name_codes", "name_terms"), "pages": ("term_codes", "search_terms"),
           "batches": ("catalog", "findings"), "stored_objects": ("checked_at",),
           "object_copies": ("verified_at", "checked_at")}
STALE_MARGIN = "1 hour"   # a change committed while a file was being described is caught by the next sweep
ORDER = {"events": "event_id", "transfer_events": "event_id", "pages": "page_id", "materials": "material_id",
         "material_versions": "material_id, version", "stored_objects": "bucket, key",
         "object_copies": "bucket, key, copy"}


@dataclass(frozen=True)
class Written:
    file_number: str
    version: int
    key: str
    sha256: str


def inventory_key(file_number: str, version: int) -> str:
    return f"{PREFIX}{urllib.parse.quote(file_number, safe='')}/{version:08d}.json"


class InventoryKey(NamedTuple):
    file_number: str
    version: int


def file_of_key(key: str) -> InventoryKey | None:
    """The file number and version of an inventory key, or None for any other key."""
    parts = key[len(PREFIX):].split("/") if key.startswith(PREFIX) else []
    if len(parts) != 2 or not parts[1].endswith(".json") or not parts[1][:-5].isdigit():
        return None
    return InventoryKey(urllib.parse.unquote(parts[0]), int(parts[1][:-5]))


def _plain(value):
    """A row value as JSON keeps it; PostgreSQL reads each back from its text form."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, memoryview | bytes):
        return {"$bytes": bytes(value).hex()}
    return value


def _columns(cur, table: str, known: dict[str, list[str]]) -> list[str]:
    """The table's described columns, looked up once per `known` (one refresh: a migration
    that adds a column is seen by the next)."""
    if table not in known:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                    " AND table_name = %s ORDER BY ordinal_position", (table,))
        known[table] = [r["column_name"] for r in cur.fetchall() if r["column_name"] not in DERIVED.get(table, ())]
    return known[table]


def _rows(cur, table: str, where: str, args: dict, known: dict[str, list[str]]) -> list[dict]:
    cols = _columns(cur, table, known)
    cur.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {where} ORDER BY {ORDER.get(table, '1')}", args)
    return [{k: _plain(v) for k, v in r.items()} for r in cur.fetchall()]


def describe(cur, file_number: str, agency: str, bucket: str, known: dict[str, list[str]] | None = None) -> dict | None:
    """The file's inventory content (without version and time), or None if it is not indexed.
    `known`: the tables' columns looked up so far (for many files in a row)."""
    known = {} if known is None else known
    cur.execute("SELECT 1 FROM personnel_files WHERE file_number = %s", (file_number,))
    if cur.fetchone() is None:
        return None
    cur.execute("SELECT array_agg(DISTINCT s) AS s FROM (SELECT unnest(ARRAY[p.source_sha256, p.ocr_sha256]) s"
                " FROM pages p JOIN materials m USING (material_id) WHERE m.file_number = %(f)s"
                " UNION SELECT pdf_sha256 FROM materials WHERE file_number = %(f)s"
                " UNION SELECT unnest(ARRAY[pg->>'source_sha256', pg->>'ocr_sha256']) FROM material_versions v"
                " JOIN materials m USING (material_id), jsonb_array_elements(v.pages) pg WHERE m.file_number = %(f)s"
                " UNION SELECT v.pdf_sha256 FROM material_versions v JOIN materials m USING (material_id)"
                " WHERE m.file_number = %(f)s) x WHERE s IS NOT NULL", {"f": file_number})
    objects = set(cur.fetchone()["s"] or [])
    # the manifests of the batches that handed its materials in: the catalog it was described by
    cur.execute("SELECT sha256 FROM batch_files WHERE role = 'manifest' AND batch_id IN (SELECT batch_id FROM"
                " personnel_files WHERE file_number = %(f)s UNION SELECT batch_id FROM materials WHERE file_number"
                " = %(f)s UNION SELECT v.batch_id FROM material_versions v JOIN materials m USING (material_id)"
                " WHERE m.file_number = %(f)s)", {"f": file_number})
    objects = sorted(objects | {r["sha256"] for r in cur.fetchall()})
    cur.execute("SELECT transfer_id::text AS t, package_key, record_key FROM transfers WHERE file_number = %s UNION"
                " SELECT transfer_id::text, NULL, NULL FROM received_transfers WHERE file_number = %s",
                (file_number, file_number))
    sent = cur.fetchall()
    transfers = sorted({r["t"] for r in sent})
    keys = sorted({k for r in sent for k in (r["package_key"], r["record_key"]) if k}
                  | {f"received/{t}/{t}.tar" for t in transfers})   # stages/transfer.py's, stages/receive.py's
    args = {"file": file_number, "objects": objects, "transfers": transfers, "agency": agency, "bucket": bucket,
            "keys": keys}
    tables = {table: _rows(cur, table, where, args, known) for table, where in PARTS}
    batch_ids = sorted({r["batch_id"] for t in ("personnel_files", "materials", "material_versions", "events")
                        for r in tables[t] if r.get("batch_id")}
                       | {r["superseded_by"] for r in tables["material_versions"] if r.get("superseded_by")})
    batches = _rows(cur, "batches", "batch_id = ANY(%(b)s)", {"b": batch_ids}, known)
    codes = sorted({r["holding_agency"] for r in tables["personnel_files"] + batches}
                   | {r[k] for r in tables["transfers"] for k in ("sending_agency", "receiving_agency")})
    agencies = _rows(cur, "agencies", "code = ANY(%(c)s)", {"c": codes}, known)
    return {"format": FORMAT, "file_number": file_number, "described_by": agency,
            "tables": {"agencies": agencies, "batches": batches, **tables}}


def digest(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def refresh(services: Services, file_numbers: list[str]) -> list[Written]:
    """A new inventory version for each of these files whose description changed; returns those
    written."""
    out, known = [], {}
    for file_number in sorted(set(file_numbers)):
        # One writer per file at a time, from its description to its row: two (the archive
        # stage and the sweep) would otherwise write different content under one version's key.
        with services.db.transaction() as cur:
            xact_lock(cur, f"inventory:{file_number}")
            content = describe(cur, file_number, services.agency, services.archive_bucket, known)
            cur.execute("SELECT version, sha256 FROM inventories WHERE file_number = %s", (file_number,))
            last = cur.fetchone()
            sha = digest(content) if content is not None else ""
            if content is None:
                continue
            if last and last["sha256"] == sha:   # looked at: the sweep leaves it until it changes again
                cur.execute("UPDATE inventories SET described_at = now() WHERE file_number = %s", (file_number,))
                continue
            # past the newest in the store too: a version written whose row was then lost (the
            # transaction failing after the write) is never overwritten
            folder = inventory_key(file_number, 0).rsplit("/", 1)[0] + "/"
            in_store = [found.version for k, _ in services.store.keys(services.archive_bucket, folder)
                        if (found := file_of_key(k)) and found.file_number == file_number]
            version = max([last["version"] if last else 0, *in_store]) + 1
            key = inventory_key(file_number, version)
            body = json.dumps({**content, "version": version, "written_at": dt.datetime.now(dt.UTC).isoformat(),
                               "content_sha256": sha}, ensure_ascii=False, indent=1).encode()
            stored = put_verified(services.store, services.archive_bucket, key, body, "application/json")
            record_verified(cur, [StoredObject(services.archive_bucket, key, stored, len(body), "inventory",
                                               "application/json")])
            cur.execute("INSERT INTO inventories (file_number, version, sha256, key) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (file_number) DO UPDATE SET version = excluded.version, sha256 = excluded.sha256,"
                        " key = excluded.key, written_at = now(), described_at = now()",
                        (file_number, version, sha, key))
        out.append(Written(file_number, version, key, sha))
    return out


def keep_current(services: Services, file_numbers: list[str]) -> None:
    """After a step that changed these files (a transfer step, an import): their inventories,
    unless the store is down, in which case the `inventories` sweep writes them later and the
    step, already committed, is not failed for it."""
    try:
        refresh(services, file_numbers)
    except ArchiveError as exc:
        log.warning("inventories of %s left for the sweep: %s", ", ".join(file_numbers), exc.message_en)
    except psycopg2.Error as exc:
        log.warning("inventories of %s left for the sweep: %s", ", ".join(file_numbers), exc)


def stale(services: Services, limit: int = 10_000) -> list[str]:
    """Files with no inventory yet, or with events or transfer steps since their last one."""
    with services.db.transaction() as cur:
        cur.execute("SELECT f.file_number FROM personnel_files f LEFT JOIN (SELECT file_number, described_at,"
                    f" described_at - interval '{STALE_MARGIN}' AS since FROM inventories) i USING (file_number)"
                    " WHERE i.file_number IS NULL"
                    " OR EXISTS (SELECT 1 FROM events e WHERE e.file_number = f.file_number AND e.at >= i.since)"
                    " OR EXISTS (SELECT 1 FROM transfers t WHERE t.file_number = f.file_number"
                    " AND t.updated_at >= i.since)"
                    " OR EXISTS (SELECT 1 FROM materials m WHERE m.file_number = f.file_number"
                    " AND m.versioned_at >= i.since)"
                    " ORDER BY i.described_at NULLS FIRST, f.file_number LIMIT %s", (limit,))
        return [r["file_number"] for r in cur.fetchall()]


def files_holding(services: Services, objects: list[str]) -> list[str]:
    """Personnel files one of whose versions holds one of these objects."""
    if not objects:
        return []
    with services.db.transaction() as cur:
        cur.execute("SELECT m.file_number FROM pages p JOIN materials m USING (material_id)"
                    " WHERE p.source_sha256 = ANY(%(o)s) OR p.ocr_sha256 = ANY(%(o)s)"
                    " UNION SELECT file_number FROM materials WHERE pdf_sha256 = ANY(%(o)s)"
                    " UNION SELECT m.file_number FROM material_versions v JOIN materials m USING (material_id),"
                    " jsonb_array_elements(v.pages) pg WHERE pg->>'source_sha256' = ANY(%(o)s)"
                    " OR pg->>'ocr_sha256' = ANY(%(o)s) OR v.pdf_sha256 = ANY(%(o)s)", {"o": objects})
        return sorted(r["file_number"] for r in cur.fetchall())


def refresh_batch(services: Services, batch_id: str) -> list[Written]:
    with services.db.transaction() as cur:
        cur.execute("SELECT file_number FROM personnel_files WHERE batch_id = %(b)s UNION SELECT file_number"
                    " FROM materials WHERE batch_id = %(b)s UNION SELECT m.file_number FROM material_versions v"
                    " JOIN materials m USING (material_id) WHERE v.batch_id = %(b)s", {"b": batch_id})
        files = [r["file_number"] for r in cur.fetchall()]
    return refresh(services, files)
