"""Index stage: the validated catalog and the OCR text into PostgreSQL, in bulk.

Rows are built a chunk of personnel files at a time, the next chunk in a thread while the
current one loads (the stage never holds more than two chunks' OCR text), and COPYed in
PostgreSQL's binary format: files and materials into temporary tables, then upserted set-wise
keyed by file number and (file, class, sequence); pages of materials new to the index straight
into `pages`, the others upserted keyed by (material, page number). A row whose content did not
change is not rewritten, so a rerun writes nothing; a material whose pages changed loses its
searchable PDF, which the archive stage then makes anew."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from catalog import idnumber
from catalog.manifest import Material, PersonnelFile
from search.terms import many_codes, many_page_codes, shard_of
from stages.intake import load_catalog
from stages.ocr import load_ocr
from stages.progress import advance
from stages.services import Services
from storage.db import copy_binary, copy_encoded, encode_fields, field_count

CHUNK_FILES = 200  # personnel files per COPY round: ~10,000 pages of text at most in memory

# (column, type) of each load table, in the order the rows hold them; the tables are made from these.
FILE_COLUMNS = (("file_number", "text"), ("name", "text"), ("id_hash", "text"), ("id_number", "text"),
                ("id_masked", "text"), ("holding_agency", "text"), ("batch_id", "text"), ("name_codes", "int4[]"))
MATERIAL_COLUMNS = (("file_number", "text"), ("class_code", "text"), ("seq", "int4"), ("title", "text"),
                    ("formed", "text"), ("formed_on", "date"), ("copies", "int4"), ("page_count", "int4"),
                    ("remarks", "text"), ("batch_id", "text"))
PAGE_COLUMNS = (("file_number", "text"), ("class_code", "text"), ("seq", "int4"), ("page_no", "int4"),
                ("source_sha256", "text"), ("source_page", "int4"), ("source_path", "text"), ("dpi", "int4"),
                ("width", "int4"), ("height", "int4"), ("ocr_text", "text"), ("ocr_confidence", "float4"),
                ("ocr_engine", "text"), ("ocr_sha256", "text"), ("term_codes", "int4[]"))
LOAD_TABLES = {"load_files": FILE_COLUMNS, "load_materials": MATERIAL_COLUMNS, "load_pages": PAGE_COLUMNS}

UPSERT_FILES = """
INSERT INTO personnel_files (file_number, name, id_hash, id_number, id_masked, holding_agency, batch_id, name_codes)
SELECT file_number, name, id_hash, id_number, id_masked, holding_agency, batch_id, name_codes FROM load_files
ON CONFLICT (file_number) DO UPDATE SET name = EXCLUDED.name, id_hash = EXCLUDED.id_hash,
    id_number = EXCLUDED.id_number, id_masked = EXCLUDED.id_masked, batch_id = EXCLUDED.batch_id,
    name_codes = EXCLUDED.name_codes, indexed_at = now()
WHERE (personnel_files.name, personnel_files.id_hash, personnel_files.name_codes)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.id_hash, EXCLUDED.name_codes)
"""
UPSERT_MATERIALS = """
INSERT INTO materials (file_number, class_code, seq, title, formed, formed_on, copies, page_count, remarks, batch_id)
SELECT file_number, class_code, seq, title, formed, formed_on, copies, page_count, remarks, batch_id
FROM load_materials
ON CONFLICT (file_number, class_code, seq) DO UPDATE SET title = EXCLUDED.title, formed = EXCLUDED.formed,
    formed_on = EXCLUDED.formed_on, copies = EXCLUDED.copies, page_count = EXCLUDED.page_count,
    remarks = EXCLUDED.remarks, batch_id = EXCLUDED.batch_id
WHERE (materials.title, materials.formed, materials.copies, materials.page_count, materials.remarks)
    IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.formed, EXCLUDED.copies, EXCLUDED.page_count, EXCLUDED.remarks)
"""
UPSERT_PAGES = """
WITH written AS (
    INSERT INTO pages (material_id, page_no, source_sha256, source_page, source_path, dpi, width, height,
                       ocr_text, ocr_confidence, ocr_engine, ocr_sha256, term_codes)
    SELECT m.material_id, l.page_no, l.source_sha256, l.source_page, l.source_path, l.dpi, l.width, l.height,
           l.ocr_text, l.ocr_confidence, l.ocr_engine, l.ocr_sha256, l.term_codes
    FROM load_pages l JOIN materials m USING (file_number, class_code, seq)
    ON CONFLICT (material_id, page_no) DO UPDATE SET source_sha256 = EXCLUDED.source_sha256,
        source_page = EXCLUDED.source_page, source_path = EXCLUDED.source_path, dpi = EXCLUDED.dpi,
        width = EXCLUDED.width, height = EXCLUDED.height, ocr_text = EXCLUDED.ocr_text,
        ocr_confidence = EXCLUDED.ocr_confidence, ocr_engine = EXCLUDED.ocr_engine,
        ocr_sha256 = EXCLUDED.ocr_sha256, term_codes = EXCLUDED.term_codes
    WHERE (pages.source_sha256, pages.source_page, pages.ocr_sha256, pages.term_codes)
        IS DISTINCT FROM (EXCLUDED.source_sha256, EXCLUDED.source_page, EXCLUDED.ocr_sha256, EXCLUDED.term_codes)
    RETURNING material_id
), stale AS (  -- their searchable PDFs no longer match the pages
    UPDATE materials SET pdf_sha256 = NULL WHERE material_id IN (SELECT material_id FROM written)
)
SELECT count(*) AS n FROM written
"""


@dataclass
class IndexResult:
    batch_id: str
    files: int
    materials: int
    pages: int
    rows_written: int  # inserted or changed; 0 on a rerun


@dataclass
class Chunk:
    """Rows of some personnel files, shaped as FILE_COLUMNS, MATERIAL_COLUMNS and PAGE_COLUMNS."""

    files: list[tuple]
    materials: list[tuple]
    pages: list[tuple]
    page_tails: list[bytes] | None = None  # each page row's binary COPY fields after (file, class, seq)


def _formed_on(formed: str) -> str:
    parts = formed.split("-")
    return "-".join(parts + ["01"] * (3 - len(parts)))


def begin_load(cur) -> bool:
    """Prepares the transaction for load_chunk: the temporary tables chunks are COPYed into
    (dropped when it ends), and PostgreSQL's per-row foreign key checks off for the rest of it
    where the role may set session_replication_role (a superuser, or GRANT SET ON PARAMETER);
    returns whether they are off. Each check is an executor pass per row (27% of the backend's
    time loading pages, ~16 µs a material) re-proving what load_chunk proves set-wise under the
    same locks: pages go only under materials it has just upserted and locked, materials only
    under files and batches KEYS finds and locks. Replica mode fires no ordinary trigger either;
    none is defined on the loaded tables. Without the privilege the checks run: slower, same
    rows. The keys stay declared, enforced for every other writer."""
    for table, columns in LOAD_TABLES.items():
        cur.execute(f"CREATE TEMP TABLE {table} ({', '.join(f'{c} {t}' for c, t in columns)}) ON COMMIT DROP")
    cur.execute("SELECT has_parameter_privilege('session_replication_role', 'SET') AS may")
    if may := cur.fetchone()["may"]:
        cur.execute("SET LOCAL session_replication_role = replica")
    return may


# The foreign keys of a chunk's files and materials, checked set-wise under the lock a per-row
# check takes (KEY SHARE): the parents missing, if any.
KEYS = """
WITH files AS (
    SELECT file_number FROM personnel_files
    WHERE file_number IN (SELECT file_number FROM load_materials) FOR KEY SHARE
), batch_ids AS (
    SELECT batch_id FROM load_files UNION SELECT batch_id FROM load_materials
), known_batches AS (
    SELECT batch_id FROM batches WHERE batch_id IN (SELECT batch_id FROM batch_ids) FOR KEY SHARE
)
(SELECT DISTINCT 'personnel file' AS parent, file_number AS key FROM load_materials
 WHERE file_number NOT IN (SELECT file_number FROM files))
UNION ALL
(SELECT 'batch', batch_id FROM batch_ids
 WHERE batch_id IS NOT NULL AND batch_id NOT IN (SELECT batch_id FROM known_batches))
ORDER BY 1, 2 LIMIT 5
"""


class MissingParent(ValueError):
    """A chunk's row refers to a personnel file or batch that is not in the index."""


NEW_PAGE_COLUMNS = (("material_id", "int8"),) + PAGE_COLUMNS[3:]  # straight into `pages`

# KEY SHARE: no material can be deleted while pages are written under it, the lock the
# foreign key check takes once a page (the upsert above already holds most).
MATERIAL_IDS = """
SELECT m.material_id, m.file_number, m.class_code, m.seq,
       EXISTS (SELECT 1 FROM pages p WHERE p.material_id = m.material_id) AS has_pages
FROM materials m WHERE m.file_number = ANY(%s)
FOR KEY SHARE OF m
"""


def load_chunk(cur, chunk: Chunk) -> int:
    """COPY one chunk into PostgreSQL (in a transaction begin_load prepared); returns the rows
    inserted or changed. Files and materials go through load tables and upserts, the references
    of both checked set-wise first (KEYS; MissingParent names what is missing). The pages of a
    material that has none yet (a new batch: nearly all) are COPYed straight into `pages`, which
    spares PostgreSQL a load table and an upsert (53 µs a page on 100,000 pages; the load table
    and upsert took ~61, their encoding taken out); those of a material with pages go through
    the upsert, which rewrites only what changed. Two loaders racing on the same new material:
    one fails on its unique (material, page number), and running it again takes the upsert."""
    cur.execute(f"TRUNCATE {', '.join(LOAD_TABLES)}")
    copy_binary(cur, "load_files", FILE_COLUMNS, chunk.files)
    copy_binary(cur, "load_materials", MATERIAL_COLUMNS, chunk.materials)
    cur.execute(UPSERT_FILES)
    written = cur.rowcount
    cur.execute(KEYS)
    if missing := cur.fetchall():
        raise MissingParent("rows refer to what is not indexed: " + ", ".join(f"{r['parent']} {r['key']}"
                                                                             for r in missing))
    cur.execute(UPSERT_MATERIALS)
    written += cur.rowcount
    cur.execute(MATERIAL_IDS, (sorted({f[0] for f in chunk.files} | {p[0] for p in chunk.pages}),))
    count = field_count(NEW_PAGE_COLUMNS)
    heads = {(r["file_number"], r["class_code"], r["seq"]):  # a new page row up to its tail
             count + encode_fields(NEW_PAGE_COLUMNS[:1], [(r["material_id"],)])[0]
             for r in cur.fetchall() if not r["has_pages"]}
    tails = chunk.page_tails or encode_fields(PAGE_COLUMNS[3:], [p[3:] for p in chunk.pages])
    new, known = [], []
    for page, tail in zip(chunk.pages, tails, strict=True):
        if head := heads.get(page[:3]):
            new.append(head + tail)
        else:  # a material with pages already; an unknown one is dropped by the upsert's join
            known.append(page)
    copy_encoded(cur, "pages", NEW_PAGE_COLUMNS, new)
    written += len(new)
    if known:
        copy_binary(cur, "load_pages", PAGE_COLUMNS, known)
        cur.execute(UPSERT_PAGES)
        written += cur.fetchone()["n"]
    return written


def load_chunks(cur, chunks: Iterable[Chunk]) -> tuple[int, int, int]:
    """Loads chunks in order (load_chunk) while a thread builds the next one, so building rows
    (OCR results read, search codes) and PostgreSQL's work overlap; returns (rows written,
    materials, pages)."""
    begin_load(cur)
    written = materials = pages = 0
    for chunk in _prefetched(chunks):
        written += load_chunk(cur, chunk)
        materials += len(chunk.materials)
        pages += len(chunk.pages)
    return written, materials, pages


def _prefetched(items: Iterable[Chunk]) -> Iterator[Chunk]:
    """The items, each next one built in a thread while the caller works on the current one."""
    done = object()
    it = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="index-rows") as pool:
        future = pool.submit(next, it, done)
        while (item := future.result()) is not done:
            future = pool.submit(next, it, done)
            yield item


def prepared(chunk: Chunk) -> Chunk:
    """The chunk with its search codes appended to each file row (its name's) and page row (its
    text's, its material's class and year, salted for its file's shard), computed for the whole
    chunk at once, and its pages' binary COPY fields, so that the thread building chunks does
    this work, not the one loading them."""
    names = many_codes([f[1] for f in chunk.files])
    year = {m[:3]: int(str(m[5])[:4]) for m in chunk.materials}  # of formation: formed_on
    codes = many_page_codes([p[10] for p in chunk.pages], [p[1] for p in chunk.pages],
                            [year[p[:3]] for p in chunk.pages], [shard_of(p[0]) for p in chunk.pages])
    pages = [p + (c,) for p, c in zip(chunk.pages, codes, strict=True)]
    return Chunk([f + (c,) for f, c in zip(chunk.files, names, strict=True)], chunk.materials, pages,
                 encode_fields(PAGE_COLUMNS[3:], [p[3:] for p in pages]))


def _page_rows(pf: PersonnelFile, m: Material, sha_by_path: dict[str, str],
               read_ocr: Callable[[str], tuple]) -> Iterator[tuple]:
    """One PAGE_COLUMNS row but its codes per page of the material, numbered 1..n across its
    scan files."""
    page_no = 0
    for path in m.page_files:
        sha = sha_by_path[path]
        results, ocr_sha = read_ocr(sha)
        for source_page, r in enumerate(results):
            page_no += 1
            yield (pf.file_number, m.class_code, m.seq, page_no, sha, source_page, path, r.dpi, r.width, r.height,
                   r.text, r.confidence, r.engine, ocr_sha)


def _chunks(batch_id: str, files: list[PersonnelFile], services: Services, engine_key: str,
            sha_by_path: dict[str, str]) -> Iterator[Chunk]:
    key = services.id_hash_key
    for start in range(0, len(files), CHUNK_FILES):
        chunk = Chunk([], [], [])
        ocr: dict[str, tuple] = {}  # one scan file may hold pages of several materials: read it once

        def read_ocr(sha: str, ocr: dict[str, tuple] = ocr) -> tuple:
            if sha not in ocr:
                ocr[sha] = load_ocr(services, engine_key, sha)
            return ocr[sha]

        for pf in files[start:start + CHUNK_FILES]:
            chunk.files.append((pf.file_number, pf.name, idnumber.lookup_hash(pf.id_number, key), pf.id_number,
                                idnumber.mask(pf.id_number), services.agency, batch_id))
            for m in pf.materials:
                chunk.materials.append((pf.file_number, m.class_code, m.seq, m.title, m.formed, _formed_on(m.formed),
                                        m.copies, m.pages, m.remarks, batch_id))
                chunk.pages.extend(_page_rows(pf, m, sha_by_path, read_ocr))
        yield prepared(chunk)


def index_batch(batch_id: str, services: Services, engine_key: str) -> IndexResult:
    catalog = load_catalog(batch_id, services)
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256 FROM batch_files WHERE batch_id = %s AND status = 'accepted'", (batch_id,))
        sha_by_path = {r["path"]: r["sha256"] for r in cur.fetchall()}
        written, materials, pages = load_chunks(cur, _chunks(batch_id, catalog.files, services, engine_key,
                                                             sha_by_path))
        advance(cur, batch_id, "indexed")
    return IndexResult(batch_id, len(catalog.files), materials, pages, written)


LINK_CHECK = """
SELECT m.file_number, m.class_code, m.seq, m.page_count, count(p.page_id) AS pages,
       coalesce(max(p.page_no), 0) AS last_page
FROM materials m LEFT JOIN pages p USING (material_id)
WHERE m.batch_id = %s
GROUP BY m.material_id
HAVING count(p.page_id) <> m.page_count OR coalesce(max(p.page_no), 0) <> count(p.page_id)
"""


def link_problems(batch_id: str, services: Services) -> list[str]:
    """The catalog-to-image link (数据挂接), as indexed: every material has exactly its catalogued
    pages numbered 1..n, and every page file the catalog lists is indexed under one material."""
    problems = []
    with services.db.transaction() as cur:
        cur.execute(LINK_CHECK, (batch_id,))
        for r in cur.fetchall():
            problems.append(f"{r['file_number']} {r['class_code']}-{r['seq']}: catalog says {r['page_count']} pages, "
                            f"{r['pages']} indexed (last page number {r['last_page']})")
        cur.execute("SELECT catalog FROM batches WHERE batch_id = %s", (batch_id,))
        row = cur.fetchone()
        listed = {p for f in (row["catalog"] or {}).get("files", []) for m in f["materials"] for p in m["page_files"]} \
            if row else set()
        cur.execute("SELECT p.source_path, count(DISTINCT p.material_id) AS n FROM pages p JOIN materials m"
                    " USING (material_id) WHERE m.batch_id = %s GROUP BY p.source_path", (batch_id,))
        indexed = {r["source_path"]: r["n"] for r in cur.fetchall()}
    problems += [f"{path}: listed in the catalog but not indexed" for path in sorted(listed - set(indexed))]
    problems += [f"{path}: indexed under {n} materials" for path, n in sorted(indexed.items()) if n > 1]
    return problems
