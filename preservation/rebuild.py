"""`archive rebuild-index`: the archive's tables recreated from the inventories in the store.

Into an empty database (migrated, nothing indexed): the newest inventory of each file is read,
checked against the digest it carries, and its rows inserted with their own ids, parents first;
rows two files share (a batch, an agency, an object, an event) go in once. The search codes are
computed by the index stage's own function, so the rebuilt index answers as the lost one did.
What is not a file's (accounts, sessions, keys, the platform outbox) is not in an inventory:
docs/operations.md says how those are restored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import NamedTuple

import psycopg2.extras

from errors import IntegrityFailure, NotReady
from preservation.copies import PRIMARY, copies
from preservation.inventory import PARTS, PREFIX, digest, file_of_key
from stages.index import Chunk, FileRow, MaterialRow, PageRow, search_codes
from stages.services import Services
from storage.objects import ObjectMissing, sha256_hex
from storage.stored import StoredObject, record_verified

ORDER = ("agencies", "batches", *(t for t, _ in PARTS))
GROUP = 100   # files per transaction


@dataclass
class Rebuilt:
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)    # inventory copies that failed their digest: key and why
    fallbacks: list[str] = field(default_factory=list)  # files rebuilt from a replica's copy or an older version
    lost: list[str] = field(default_factory=list)       # files no copy of any version of which could be used


class Version(NamedTuple):
    """One stored inventory version of a file."""

    version: int
    key: str
    bytes: int


class Latest(NamedTuple):
    file_number: str
    key: str
    bytes: int


class GoodCopy(NamedTuple):
    doc: dict
    sha256: str
    copy: str       # PRIMARY or a replica's name


def inventories(services: Services) -> dict[str, list[Version]]:
    """Each file's inventory versions in the store, newest first."""
    out: dict[str, list[Version]] = {}
    for key, size in services.store.keys(services.archive_bucket, PREFIX):
        if found := file_of_key(key):
            out.setdefault(found.file_number, []).append(Version(found.version, key, size))
    return {f: sorted(v, reverse=True) for f, v in sorted(out.items())}


def latest(services: Services) -> list[Latest]:
    """Each file's newest inventory."""
    return [Latest(f, v[0].key, v[0].bytes) for f, v in inventories(services).items()]


def _jsonb(cur) -> dict[str, set[str]]:
    cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND data_type IN ('jsonb', 'json')")
    out: dict[str, set[str]] = {}
    for r in cur.fetchall():
        out.setdefault(r["table_name"], set()).add(r["column_name"])
    return out


def _value(v, as_json: bool):
    if as_json:
        return None if v is None else psycopg2.extras.Json(v)   # SQL NULL stays NULL, not jsonb 'null'
    if isinstance(v, dict) and set(v) == {"$bytes"}:
        return bytes.fromhex(v["$bytes"])
    return v


# Rows two files share may differ between their inventories (written at different times): a
# copy any of them knew to be damaged is taken as damaged, so the next audit reads it first
# rather than a rebuild hiding what was known.
MERGE = {"object_copies": "ON CONFLICT (bucket, key, copy) DO UPDATE SET state = excluded.state"
                          " WHERE excluded.state <> 'verified'"}


def _insert(cur, table: str, rows: list[dict], jsonb: set[str]) -> int:
    if table == "object_copies":   # one row per copy in a statement, the damaged one if any says so
        merged: dict[tuple, dict] = {}
        for r in rows:
            k = (r["bucket"], r["key"], r["copy"])
            if k not in merged or r["state"] != "verified":
                merged[k] = r
        rows = list(merged.values())
    if not rows:
        return 0
    cols = sorted({c for r in rows for c in r})
    values = [tuple(_value(r.get(c), c in jsonb) for c in cols) for r in rows]
    done = psycopg2.extras.execute_values(
        cur, f"INSERT INTO {table} ({', '.join(cols)}) VALUES %s {MERGE.get(table, 'ON CONFLICT DO NOTHING')}"
             " RETURNING 1", values, fetch=True, page_size=1000)
    return len(done)


def _with_search_codes(tables: dict[str, list[dict]]) -> None:
    """Adds what DERIVED left out: the name's and each page's search codes, as the index stage makes them."""
    materials = {m["material_id"]: m for m in tables["materials"]}
    files = tables["personnel_files"]
    pages = [p for p in tables["pages"] if p["material_id"] in materials]
    def key(material_id: int) -> tuple:
        m = materials[material_id]
        return m["file_number"], m["class_code"], m["seq"]

    names, codes = search_codes(Chunk(
        [FileRow(f["file_number"], f["name"]) for f in files],
        [MaterialRow(*key(i), formed_on=materials[i]["formed_on"]) for i in sorted(materials)],
        [PageRow(*key(p["material_id"]), ocr_text=p["ocr_text"] or "") for p in pages]))
    for f, c in zip(files, names, strict=True):
        f["name_codes"] = [int(x) for x in c]
    for p, c in zip(pages, codes, strict=True):
        p["term_codes"] = [int(x) for x in c]


def _read(store, bucket: str, key: str) -> tuple[dict, str]:
    raw = store.get(bucket, key)
    try:
        doc = json.loads(raw)
        content = {k: v for k, v in doc.items() if k not in ("version", "written_at", "content_sha256")}
        good = digest(content) == doc.get("content_sha256")
    except (ValueError, AttributeError):
        good = False
    if not good:
        raise IntegrityFailure(f"清单 {key} 与其记载的摘要不符", f"inventory {key} in {store.description} does not "
                               "match the digest it carries", item=key)
    return doc, sha256_hex(raw)


@dataclass(frozen=True)
class Usable:
    key: str
    bytes: int
    sha256: str
    doc: dict
    copy: str          # which copy's bytes passed: primary or a replica's name
    newest: int        # the newest version number of the file in the store


def _good_copy(services: Services, key: str, result: Rebuilt) -> GoodCopy | None:
    """The first copy of `key` that passes its digest: the primary's, then
    each replica's; each refusal is reported."""
    for c in copies(services):
        try:
            doc, sha = _read(c.store, c.bucket, key)
            return GoodCopy(doc, sha, c.name)
        except (IntegrityFailure, ObjectMissing) as exc:
            result.refused.append(f"{key}: {exc}")
    return None


def _usable(services: Services, versions: list[Version], result: Rebuilt) -> Usable | None:
    """The newest version of a file that passes its digest in some copy."""
    newest = versions[0]
    for _, key, size in versions:
        if good := _good_copy(services, key, result):
            if key != newest.key or good.copy != PRIMARY:
                result.fallbacks.append(f"{good.doc['file_number']}: {key} from {good.copy}")
            return Usable(key, size, good.sha256, good.doc, good.copy, newest.version)
    return None


def _record_inventories(cur, services: Services, used: list[Usable]) -> None:
    """The inventory objects read as preserved objects; one whose primary copy failed its digest
    is recorded with the good bytes' sha256 and its primary copy corrupt, so the next audit
    rewrites it from the replica that had it right."""
    record_verified(cur, [StoredObject(services.archive_bucket, u.key, u.sha256, u.bytes, "inventory",
                                       "application/json") for u in used])
    for u in used:
        if u.copy != PRIMARY:
            cur.execute("UPDATE object_copies SET state = 'corrupt', verified_at = NULL WHERE bucket = %s AND"
                        " key = %s AND copy = 'primary'", (services.archive_bucket, u.key))
            cur.execute("INSERT INTO object_copies (bucket, key, copy, state, verified_at) VALUES"
                        " (%s, %s, %s, 'verified', now()) ON CONFLICT DO NOTHING", (services.archive_bucket, u.key,
                                                                                     u.copy))


def rebuild(services: Services, progress=None, resume: bool = False) -> Rebuilt:
    """Refuses (NotReady) a database that already indexes files, a rebuild never merges; with
    `resume`, one a rebuild left part way (the files it holds are skipped)."""
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM personnel_files")
        if cur.fetchone()["n"] and not resume:
            raise NotReady("目标数据库中已有档案：重建索引只能写入空数据库（中断后继续：--resume）",
                           "the database already indexes personnel files: rebuild-index only fills an empty one "
                           "(ARCHIVE_DATABASE_URL), or goes on with one it left part way (--resume)")
        cur.execute("SELECT file_number FROM personnel_files")
        present = {r["file_number"] for r in cur.fetchall()}
        jsonb = _jsonb(cur)
    result = Rebuilt()
    listed = inventories(services)
    found = [(f, v) for f, v in listed.items() if f not in present]
    for start in range(0, len(found), GROUP):
        docs = []
        for file_number, versions in found[start:start + GROUP]:
            if (usable := _usable(services, versions, result)) is None:
                result.lost.append(file_number)
            else:
                docs.append(usable)
        with services.db.transaction() as cur:
            for u in docs:
                _with_search_codes(u.doc["tables"])
            for table in ORDER:
                rows = [r for u in docs for r in u.doc["tables"].get(table, [])]
                result.rows[table] = result.rows.get(table, 0) + _insert(cur, table, rows, jsonb.get(table, set()))
            _record_inventories(cur, services, docs)
            if docs:  # the newest version number in the store, so the next one written is new
                psycopg2.extras.execute_values(
                    cur, "INSERT INTO inventories (file_number, version, sha256, key) VALUES %s ON CONFLICT DO NOTHING",
                    [(u.doc["file_number"], u.newest, u.doc["content_sha256"], u.key) for u in docs])
            _advance_sequences(cur)   # with each group: a writer after a crash takes no id a later group brings
        result.files += len(docs)
        if progress:
            progress(result.files, len(found))
    # superseded inventory versions are preserved objects too, of every file (those a resumed
    # rebuild skipped included): recorded from a copy that passes its digest, so they are
    # replicated and audited like the rest
    older = [(key, size) for versions in listed.values() for _, key, size in versions[1:]]
    for part in range(0, len(older), GROUP):
        used = []
        for key, size in older[part:part + GROUP]:
            if good := _good_copy(services, key, result):
                used.append(Usable(key, size, good.sha256, good.doc, good.copy, 0))
        with services.db.transaction() as cur:
            _record_inventories(cur, services, used)
    return result


def _advance_sequences(cur) -> None:
    """Rows went in with their own ids: each serial column's sequence moved past the largest."""
    cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND column_default LIKE 'nextval(%%' AND table_name = ANY(%s)", (list(ORDER),))
    for r in cur.fetchall():
        t, c = r["table_name"], r["column_name"]
        cur.execute(f"SELECT setval(pg_get_serial_sequence(%(t)s, %(c)s), greatest(coalesce((SELECT max({c}) FROM {t}),"
                    " 0) + 1, nextval(pg_get_serial_sequence(%(t)s, %(c)s))), false)", {"t": t, "c": c})
