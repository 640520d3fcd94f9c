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

import psycopg2.extras

from errors import IntegrityFailure, NotReady
from preservation.copies import replicas
from preservation.inventory import PARTS, PREFIX, digest, file_of_key
from stages.index import Chunk, search_codes
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


def inventories(services: Services) -> dict[str, list[tuple[int, str, int]]]:
    """Each file's inventory versions in the store, newest first: (version, key, bytes)."""
    out: dict[str, list[tuple[int, str, int]]] = {}
    for key, size in services.store.keys(services.archive_bucket, PREFIX):
        if found := file_of_key(key):
            out.setdefault(found[0], []).append((found[1], key, size))
    return {f: sorted(v, reverse=True) for f, v in sorted(out.items())}


def latest(services: Services) -> list[tuple[str, str, int]]:
    """(file number, key, bytes) of each file's newest inventory."""
    return [(f, v[0][1], v[0][2]) for f, v in inventories(services).items()]


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
    names, codes = search_codes(Chunk(
        [(f["file_number"], f["name"]) for f in files],
        [(materials[i]["file_number"], materials[i]["class_code"], materials[i]["seq"], None, None,
          materials[i]["formed_on"]) for i in sorted(materials)],
        [(materials[p["material_id"]]["file_number"], materials[p["material_id"]]["class_code"],
          materials[p["material_id"]]["seq"], *([None] * 7), p["ocr_text"] or "") for p in pages]))
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


def _usable(services: Services, versions: list[tuple[int, str, int]], result: Rebuilt) -> tuple | None:
    """(key, bytes, sha256, doc) of the newest version of a file that passes its digest, from the
    primary store or else a replica's copy of the same key; each copy refused is reported."""
    others = replicas(services)
    for _, key, size in versions:
        for store, bucket in [(services.store, services.archive_bucket), *((c.store, c.bucket) for c in others)]:
            try:
                doc, sha = _read(store, bucket, key)
            except (IntegrityFailure, ObjectMissing) as exc:
                result.refused.append(f"{key}: {exc}")
                continue
            if (key, store) != (versions[0][1], services.store):
                result.fallbacks.append(f"{doc['file_number']}: {key} from {store.description}")
            return key, size, sha, doc
    return None


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
    found = [(f, v) for f, v in inventories(services).items() if f not in present]
    for start in range(0, len(found), GROUP):
        docs = []
        for file_number, versions in found[start:start + GROUP]:
            if (usable := _usable(services, versions, result)) is None:
                result.lost.append(file_number)
            else:
                docs.append((*usable, versions[0][0]))
        with services.db.transaction() as cur:
            for d in docs:
                _with_search_codes(d[3]["tables"])
            for table in ORDER:
                rows = [r for d in docs for r in d[3]["tables"].get(table, [])]
                result.rows[table] = result.rows.get(table, 0) + _insert(cur, table, rows, jsonb.get(table, set()))
            record_verified(cur, [StoredObject(services.archive_bucket, key, sha, size, "inventory", "application/json")
                                  for key, size, sha, _, _ in docs])
            if docs:  # the newest version number in the store, so the next one written is new
                psycopg2.extras.execute_values(
                    cur, "INSERT INTO inventories (file_number, version, sha256, key) VALUES %s ON CONFLICT DO NOTHING",
                    [(doc["file_number"], newest, doc["content_sha256"], key) for key, _, _, doc, newest in docs])
        result.files += len(docs)
        if progress:
            progress(result.files, len(found))
    # superseded inventory versions are preserved objects too: recorded (their bytes hashed) so
    # they are replicated and audited like the rest
    older = [(key, size) for _, versions in found for _, key, size in versions[1:]]
    with services.db.transaction() as cur:
        _advance_sequences(cur)
        for part in range(0, len(older), GROUP):
            record_verified(cur, [StoredObject(services.archive_bucket, key, _hash(services, key), size, "inventory",
                                               "application/json") for key, size in older[part:part + GROUP]])
    return result


def _hash(services: Services, key: str) -> str:
    return sha256_hex(services.store.get(services.archive_bucket, key))


def _advance_sequences(cur) -> None:
    """Rows went in with their own ids: each serial column's sequence moved past the largest."""
    cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND column_default LIKE 'nextval(%%' AND table_name = ANY(%s)", (list(ORDER),))
    for r in cur.fetchall():
        t, c = r["table_name"], r["column_name"]
        cur.execute(f"SELECT setval(pg_get_serial_sequence(%s, %s), coalesce((SELECT max({c}) FROM {t}), 0) + 1,"
                    " false)", (t, c))
