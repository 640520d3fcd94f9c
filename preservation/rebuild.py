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
from preservation.inventory import PARTS, PREFIX, digest, file_of_key
from stages.index import Chunk, search_codes
from stages.services import Services
from storage.objects import sha256_hex
from storage.stored import StoredObject, record_verified

ORDER = ("agencies", "batches", *(t for t, _ in PARTS))
GROUP = 100   # files per transaction


@dataclass
class Rebuilt:
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)   # inventories that failed their digest, by key


def inventories(services: Services) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
    """(file number, key, bytes) of each file's newest inventory, and (key, bytes) of the older ones."""
    newest: dict[str, tuple[int, str, int]] = {}
    older: list[tuple[str, int]] = []
    for key, size in services.store.keys(services.archive_bucket, PREFIX):
        found = file_of_key(key)
        if not found:
            continue
        if found[1] > newest.get(found[0], (0, "", 0))[0]:
            if found[0] in newest:
                older.append(newest[found[0]][1:])
            newest[found[0]] = (found[1], key, size)
        else:
            older.append((key, size))
    return [(f, key, size) for f, (_, key, size) in sorted(newest.items())], older


def latest(services: Services) -> list[tuple[str, str, int]]:
    return inventories(services)[0]


def _jsonb(cur) -> dict[str, set[str]]:
    cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND data_type IN ('jsonb', 'json')")
    out: dict[str, set[str]] = {}
    for r in cur.fetchall():
        out.setdefault(r["table_name"], set()).add(r["column_name"])
    return out


def _value(v, as_json: bool):
    if as_json:
        return psycopg2.extras.Json(v)
    if isinstance(v, dict) and set(v) == {"$bytes"}:
        return bytes.fromhex(v["$bytes"])
    return v


def _insert(cur, table: str, rows: list[dict], jsonb: set[str]) -> int:
    if not rows:
        return 0
    cols = sorted({c for r in rows for c in r})
    values = [tuple(_value(r.get(c), c in jsonb) for c in cols) for r in rows]
    done = psycopg2.extras.execute_values(
        cur, f"INSERT INTO {table} ({', '.join(cols)}) VALUES %s ON CONFLICT DO NOTHING RETURNING 1", values,
        fetch=True, page_size=1000)
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


def _read(services: Services, key: str) -> tuple[dict, str]:
    raw = services.store.get(services.archive_bucket, key)
    doc = json.loads(raw)
    content = {k: v for k, v in doc.items() if k not in ("version", "written_at", "content_sha256")}
    if digest(content) != doc.get("content_sha256"):
        raise IntegrityFailure(f"清单 {key} 与其记载的摘要不符", f"inventory {key} does not match the digest it "
                               "carries", item=key)
    return doc, sha256_hex(raw)


def rebuild(services: Services, progress=None) -> Rebuilt:
    """Refuses (NotReady) a database that already indexes files: a rebuild never merges."""
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM personnel_files")
        if cur.fetchone()["n"]:
            raise NotReady("目标数据库中已有档案：重建索引只能写入空数据库", "the database already indexes personnel "
                           "files: rebuild-index only fills an empty one (ARCHIVE_DATABASE_URL)")
        jsonb = _jsonb(cur)
    result = Rebuilt()
    found, older = inventories(services)
    for start in range(0, len(found), GROUP):
        group = found[start:start + GROUP]
        docs = []
        for _, key, size in group:
            try:
                doc, sha = _read(services, key)
                docs.append((key, size, sha, doc))
            except (IntegrityFailure, ValueError) as exc:
                result.refused.append(f"{key}: {exc}")
        with services.db.transaction() as cur:
            for *_, doc in docs:
                _with_search_codes(doc["tables"])
            for table in ORDER:
                rows = [r for *_, doc in docs for r in doc["tables"].get(table, [])]
                result.rows[table] = result.rows.get(table, 0) + _insert(cur, table, rows, jsonb.get(table, set()))
            record_verified(cur, [StoredObject(services.archive_bucket, key, sha, size, "inventory", "application/json")
                                  for key, size, sha, _ in docs])
            if docs:
                psycopg2.extras.execute_values(
                    cur, "INSERT INTO inventories (file_number, version, sha256, key) VALUES %s ON CONFLICT DO NOTHING",
                    [(doc["file_number"], doc["version"], doc["content_sha256"], key) for key, _, _, doc in docs])
        result.files += len(docs)
        if progress:
            progress(result.files, len(found))
    with services.db.transaction() as cur:
        _advance_sequences(cur)
        # superseded inventory versions are preserved objects too: recorded, so they are audited
        record_verified(cur, [StoredObject(services.archive_bucket, key, info.sha256, size, "inventory",
                                           "application/json") for key, size in older
                              if (info := services.store.head(services.archive_bucket, key)) and info.sha256])
    return result


def _advance_sequences(cur) -> None:
    """Rows went in with their own ids: each serial column's sequence moved past the largest."""
    cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND column_default LIKE 'nextval(%%' AND table_name = ANY(%s)", (list(ORDER),))
    for r in cur.fetchall():
        t, c = r["table_name"], r["column_name"]
        cur.execute(f"SELECT setval(pg_get_serial_sequence(%s, %s), coalesce((SELECT max({c}) FROM {t}), 0) + 1,"
                    " false)", (t, c))
