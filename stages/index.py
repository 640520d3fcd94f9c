"""Index stage: the validated catalog and the OCR text into PostgreSQL, in bulk.

Rows are built a chunk of personnel files at a time, the next chunk in a thread while the
current one loads (the stage never holds more than two chunks' OCR text), and COPYed in
PostgreSQL's binary format: files and materials into temporary tables, then written set-wise
keyed by file number and (file, class, sequence); pages of materials new to the index straight
into `pages`. A material handed in again is one version if its catalog row, scans and OCR
results are the same (a rerun writes nothing) and a new version otherwise: the old one is kept
in `material_versions` (storage/migrations/0012), the pages replaced, and the searchable PDF
left for the archive stage to make anew."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg2.errors

from catalog import idnumber
from catalog.manifest import Material, PersonnelFile
from errors import NotReady
from search.terms import many_codes, many_page_codes, shard_of
from stages.intake import CATALOG_MATERIALS, load_catalog
from stages.ocr import OcrNotDone, load_ocr, result_keys
from stages.progress import advance
from stages.services import Services
from storage.db import copy_binary, copy_encoded, encode_fields, field_count
from storage.events import AGENT

CHUNK_FILES = 200  # personnel files per COPY round: ~10,000 pages of text at most in memory

class FileRow(NamedTuple):
    """A personnel file as indexed (FILE_COLUMNS)."""

    file_number: str
    name: str
    id_hash: str | None = None
    id_number_encrypted: str | None = None
    id_masked: str | None = None
    holding_agency: str | None = None
    batch_id: str | None = None         # None: received by transfer
    name_codes: Any = None              # the name's search codes (prepared adds them)


class MaterialRow(NamedTuple):
    """A material as indexed (MATERIAL_COLUMNS)."""

    file_number: str
    class_code: str
    seq: int
    title: str | None = None
    formed: str | None = None
    formed_on: Any = None               # the first day of `formed` (a date, or its ISO text)
    copies: int | None = None
    page_count: int | None = None
    remarks: str | None = None
    batch_id: str | None = None


class PageRow(NamedTuple):
    """A page as indexed (PAGE_COLUMNS)."""

    file_number: str
    class_code: str
    seq: int
    page_no: int | None = None
    source_sha256: str | None = None
    source_page: int | None = None
    source_path: str | None = None
    dpi: int | None = None
    width: int | None = None
    height: int | None = None
    ocr_text: str = ""
    ocr_confidence: float | None = None
    ocr_engine: str | None = None
    ocr_sha256: str | None = None
    term_codes: Any = None              # the text's search codes (prepared adds them)


# (column, type) of each load table, in the order the rows hold them; the tables are made from these.
FILE_COLUMNS = (("file_number", "text"), ("name", "text"), ("id_hash", "text"), ("id_number_encrypted", "text"),
                ("id_masked", "text"), ("holding_agency", "text"), ("batch_id", "text"), ("name_codes", "int4[]"))
MATERIAL_COLUMNS = (("file_number", "text"), ("class_code", "text"), ("seq", "int4"), ("title", "text"),
                    ("formed", "text"), ("formed_on", "date"), ("copies", "int4"), ("page_count", "int4"),
                    ("remarks", "text"), ("batch_id", "text"))
PAGE_COLUMNS = (("file_number", "text"), ("class_code", "text"), ("seq", "int4"), ("page_no", "int4"),
                ("source_sha256", "text"), ("source_page", "int4"), ("source_path", "text"), ("dpi", "int4"),
                ("width", "int4"), ("height", "int4"), ("ocr_text", "text"), ("ocr_confidence", "float4"),
                ("ocr_engine", "text"), ("ocr_sha256", "text"), ("term_codes", "int4[]"))
LOAD_TABLES = {"load_files": FILE_COLUMNS, "load_materials": MATERIAL_COLUMNS, "load_pages": PAGE_COLUMNS}
for _row, _columns in ((FileRow, FILE_COLUMNS), (MaterialRow, MATERIAL_COLUMNS), (PageRow, PAGE_COLUMNS)):
    assert _row._fields == tuple(c for c, _ in _columns), _row  # COPY sends a row's fields in column order

UPSERT_FILES = """
INSERT INTO personnel_files (file_number, name, id_hash, id_number_encrypted, id_masked, holding_agency, batch_id,
                             name_codes)
SELECT file_number, name, id_hash, id_number_encrypted, id_masked, holding_agency, batch_id, name_codes FROM load_files
ON CONFLICT (file_number) DO UPDATE SET name = EXCLUDED.name, id_hash = EXCLUDED.id_hash,
    id_number_encrypted = EXCLUDED.id_number_encrypted, id_masked = EXCLUDED.id_masked, batch_id = EXCLUDED.batch_id,
    name_codes = EXCLUDED.name_codes, indexed_at = now()
WHERE (personnel_files.name, personnel_files.id_hash, personnel_files.name_codes)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.id_hash, EXCLUDED.name_codes)
  AND personnel_files.holding_agency = EXCLUDED.holding_agency  -- another agency's file is never touched
  AND NOT EXISTS (SELECT 1 FROM batches later, batches this  -- an older batch run again changes nothing
                  WHERE later.batch_id = personnel_files.batch_id AND this.batch_id = EXCLUDED.batch_id
                    AND later.submitted_at > this.submitted_at)
"""
# Materials new to the index; one already indexed changes only by becoming a new version.
INSERT_MATERIALS = """
INSERT INTO materials (file_number, class_code, seq, title, formed, formed_on, copies, page_count, remarks, batch_id)
SELECT file_number, class_code, seq, title, formed, formed_on, copies, page_count, remarks, batch_id
FROM load_materials
ON CONFLICT (file_number, class_code, seq) DO NOTHING
RETURNING material_id, file_number, class_code, seq
"""
# The chunk's materials indexed before, locked against every other writer until the chunk
# commits (a concurrent loader of the same file waits, then compares with what this one wrote):
# the versioning below reads and replaces them over several statements. In id order, so two
# loaders never hold them crosswise within a chunk.
LOCK_INDEXED = """
SELECT m.material_id FROM materials m JOIN load_materials l USING (file_number, class_code, seq)
WHERE m.material_id <> ALL(%s) ORDER BY m.material_id FOR NO KEY UPDATE OF m
"""
# What a version is: its catalog row and its pages' scans and OCR results, in page order. Known
# materials the chunk brings otherwise are `changed_materials`; `outdated` when the version
# indexed came from a batch handed in later (an older batch run again must not bring its scans
# back).
CHANGED_MATERIALS = """
WITH incoming AS (
    SELECT file_number, class_code, seq,
           array_agg(ARRAY[page_no::text, source_sha256, source_page::text, ocr_sha256] ORDER BY page_no) AS pages
    FROM load_pages GROUP BY file_number, class_code, seq
), indexed AS (
    SELECT material_id,
           array_agg(ARRAY[page_no::text, source_sha256, source_page::text, ocr_sha256] ORDER BY page_no) AS pages
    FROM pages WHERE material_id = ANY(%(known)s) GROUP BY material_id
), compared AS (
    SELECT m.material_id, l.batch_id,
           (m.title, m.formed, m.copies, m.page_count, m.remarks)
               IS DISTINCT FROM (l.title, l.formed, l.copies, l.page_count, l.remarks) AS catalog_changed,
           i.pages IS DISTINCT FROM x.pages AS pages_changed,
           coalesce(cb.submitted_at > nb.submitted_at, false) AS outdated
    FROM load_materials l JOIN materials m USING (file_number, class_code, seq)
    LEFT JOIN incoming i USING (file_number, class_code, seq) LEFT JOIN indexed x ON x.material_id = m.material_id
    LEFT JOIN batches cb ON cb.batch_id = m.batch_id LEFT JOIN batches nb ON nb.batch_id = l.batch_id
    WHERE m.material_id = ANY(%(known)s)
)
INSERT INTO changed_materials SELECT * FROM compared WHERE catalog_changed OR pages_changed
"""
# The version being replaced, kept with where to find its objects; its event in the file's history.
SUPERSEDE = """
WITH kept AS (
    INSERT INTO material_versions (material_id, version, batch_id, title, formed, copies, page_count, remarks,
                                   pdf_sha256, pages, created_at, superseded_by)
    SELECT m.material_id, m.version, m.batch_id, m.title, m.formed, m.copies, m.page_count, m.remarks, m.pdf_sha256,
           coalesce((SELECT jsonb_agg(jsonb_build_object('page_no', p.page_no, 'source_sha256', p.source_sha256,
                                                         'source_page', p.source_page, 'source_path', p.source_path,
                                                         'ocr_sha256', p.ocr_sha256) ORDER BY p.page_no)
                     FROM pages p WHERE p.material_id = m.material_id), '[]'::jsonb),
           m.versioned_at, c.batch_id
    FROM changed_materials c JOIN materials m USING (material_id) WHERE NOT c.outdated
    RETURNING material_id
)
INSERT INTO events (event_type, outcome, agent, batch_id, file_number, object_sha256, detail)
SELECT 'superseded', 'success', %(agent)s, c.batch_id, m.file_number, m.pdf_sha256,
       jsonb_build_object('material', m.class_code || '-' || m.seq, 'version', m.version,
                          'new_version', m.version + 1, 'version_batch', m.batch_id, 'new_version_batch', c.batch_id,
                          'pages_changed', c.pages_changed, 'catalog_changed', c.catalog_changed)
FROM changed_materials c JOIN materials m USING (material_id) WHERE c.material_id IN (SELECT material_id FROM kept)
"""
NEW_VERSION = """
UPDATE materials m SET title = l.title, formed = l.formed, formed_on = l.formed_on, copies = l.copies,
    page_count = l.page_count, remarks = l.remarks, batch_id = l.batch_id, version = m.version + 1,
    versioned_at = now(), pdf_sha256 = NULL  -- the new version's PDF is the archive stage's to make
FROM load_materials l, changed_materials c
WHERE m.material_id = c.material_id AND NOT c.outdated
  AND (m.file_number, m.class_code, m.seq) = (l.file_number, l.class_code, l.seq)
"""
NEW_VERSION_PAGES = """
INSERT INTO pages (material_id, page_no, source_sha256, source_page, source_path, dpi, width, height,
                   ocr_text, ocr_confidence, ocr_engine, ocr_sha256, term_codes)
SELECT c.material_id, l.page_no, l.source_sha256, l.source_page, l.source_path, l.dpi, l.width, l.height,
       l.ocr_text, l.ocr_confidence, l.ocr_engine, l.ocr_sha256, l.term_codes
FROM load_pages l JOIN materials m USING (file_number, class_code, seq) JOIN changed_materials c USING (material_id)
WHERE NOT c.outdated
"""
# Pages of an unchanged version whose derived columns differ (search codes of a newer rule, say).
UPSERT_PAGES = """
INSERT INTO pages (material_id, page_no, source_sha256, source_page, source_path, dpi, width, height,
                   ocr_text, ocr_confidence, ocr_engine, ocr_sha256, term_codes)
SELECT m.material_id, l.page_no, l.source_sha256, l.source_page, l.source_path, l.dpi, l.width, l.height,
       l.ocr_text, l.ocr_confidence, l.ocr_engine, l.ocr_sha256, l.term_codes
FROM load_pages l JOIN materials m USING (file_number, class_code, seq)
WHERE m.material_id NOT IN (SELECT material_id FROM changed_materials)
ON CONFLICT (material_id, page_no) DO UPDATE SET source_path = EXCLUDED.source_path, dpi = EXCLUDED.dpi,
    width = EXCLUDED.width, height = EXCLUDED.height, ocr_text = EXCLUDED.ocr_text,
    ocr_confidence = EXCLUDED.ocr_confidence, ocr_engine = EXCLUDED.ocr_engine, term_codes = EXCLUDED.term_codes
WHERE (pages.ocr_text, pages.term_codes, pages.source_path)
    IS DISTINCT FROM (EXCLUDED.ocr_text, EXCLUDED.term_codes, EXCLUDED.source_path)
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
    """Rows of some personnel files."""

    files: list[FileRow]
    materials: list[MaterialRow]
    pages: list[PageRow]
    page_tails: list[bytes] | None = None  # each page row's binary COPY fields after (file, class, seq)


def formed_on(formed: str) -> str:
    """The first day of a formation date as precise as the catalog: 1998-07 → 1998-07-01."""
    parts = formed.split("-")
    return "-".join(parts + ["01"] * (3 - len(parts)))


def begin_load(cur) -> bool:
    """Prepares the transaction for load_chunk: the temporary tables chunks are COPYed into
    (dropped when it ends), and PostgreSQL's per-row foreign key checks off for the rest of it
    where the role may set session_replication_role (a superuser, or GRANT SET ON PARAMETER);
    returns whether they are off. Each check is an executor pass per row (a large share of the
    backend's time loading pages) re-proving what load_chunk proves set-wise under the
    same locks: pages go only under materials it has just inserted or has locked (LOCK_INDEXED),
    materials only under files and batches KEYS finds and locks. Replica mode fires no ordinary trigger either;
    none is defined on the loaded tables. Without the privilege the checks run: slower, same
    rows. The keys stay declared, enforced for every other writer."""
    for table, columns in LOAD_TABLES.items():
        cur.execute(f"CREATE TEMP TABLE {table} ({', '.join(f'{c} {t}' for c, t in columns)}) ON COMMIT DROP")
    cur.execute("CREATE TEMP TABLE changed_materials (material_id int8 PRIMARY KEY, batch_id text,"
                " catalog_changed bool, pages_changed bool, outdated bool) ON COMMIT DROP")
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
(SELECT 'personnel file held by another agency', l.file_number FROM load_files l
 JOIN personnel_files f USING (file_number) WHERE f.holding_agency <> l.holding_agency)
UNION ALL
(SELECT 'agency', holding_agency FROM load_files WHERE holding_agency NOT IN (SELECT code FROM agencies))
UNION ALL
(SELECT 'batch', batch_id FROM batch_ids
 WHERE batch_id IS NOT NULL AND batch_id NOT IN (SELECT batch_id FROM known_batches))
ORDER BY 1, 2 LIMIT 5
"""


class MissingParent(NotReady):
    """A chunk's row refers to a personnel file, batch or agency that is not in the index, or to
    a file another agency holds (intake refuses those; this catches a race with that agency)."""


NEW_PAGE_COLUMNS = (("material_id", "int8"),) + PAGE_COLUMNS[3:]  # straight into `pages`


def load_chunk(cur, chunk: Chunk) -> int:
    """COPY one chunk into PostgreSQL (in a transaction begin_load prepared); returns the rows
    inserted or changed. Files go through a load table and an upsert, materials through a load
    table, the references of both checked set-wise first (KEYS; MissingParent names what is
    missing). The pages of a material this chunk inserted (a new batch: nearly all) are COPYed
    straight into `pages`, sparing PostgreSQL a load table and an upsert. A material indexed
    before is locked and compared with what the chunk brings (new_versions): the same version
    writes nothing, another one supersedes it. Two loaders on the same new material: the
    second's insert waits for the first to commit, then it compares with what the first wrote."""
    cur.execute(f"TRUNCATE {', '.join(LOAD_TABLES)}")
    copy_binary(cur, "load_files", FILE_COLUMNS, chunk.files)
    copy_binary(cur, "load_materials", MATERIAL_COLUMNS, chunk.materials)
    cur.execute(UPSERT_FILES)
    written = cur.rowcount
    cur.execute(KEYS)
    if missing := cur.fetchall():
        named = ", ".join(f"{r['parent']} {r['key']}" for r in missing)
        raise MissingParent(f"入库数据引用了不存在或不属于本机构的对象：{named}",
                            f"rows refer to what is not indexed or not this agency's: {named}")
    cur.execute(INSERT_MATERIALS)
    inserted = cur.fetchall()
    written += len(inserted)
    count = field_count(NEW_PAGE_COLUMNS)
    heads = {(r["file_number"], r["class_code"], r["seq"]):  # a new page row up to its tail
             count + encode_fields(NEW_PAGE_COLUMNS[:1], [(r["material_id"],)])[0] for r in inserted}
    known = []
    if len(inserted) < len(chunk.materials):  # some were indexed before
        cur.execute(LOCK_INDEXED, ([r["material_id"] for r in inserted],))
        known = [r["material_id"] for r in cur.fetchall()]
    tails = chunk.page_tails or encode_fields(PAGE_COLUMNS[3:], [p[3:] for p in chunk.pages])
    new, old = [], []
    for page, tail in zip(chunk.pages, tails, strict=True):
        if head := heads.get(page[:3]):
            new.append(head + tail)
        else:  # a material indexed before; one of no material is dropped by the joins on materials
            old.append(page)
    copy_encoded(cur, "pages", NEW_PAGE_COLUMNS, new)
    written += len(new)
    if known:
        copy_binary(cur, "load_pages", PAGE_COLUMNS, old)
        written += new_versions(cur, known)
    return written


def new_versions(cur, known: list[int]) -> int:
    """Compares the indexed materials `known` with what load_materials and load_pages bring:
    each one whose catalog row, scans or OCR results differ becomes a new version (the old one
    kept in material_versions with a 'superseded' event, its pages replaced, its PDF to be made
    anew), unless the version indexed came from a batch handed in later; pages of an unchanged
    version get what else differs (search codes). Returns the rows written."""
    cur.execute("TRUNCATE changed_materials")
    cur.execute(CHANGED_MATERIALS, {"known": known})
    changed = 0
    if cur.rowcount:
        cur.execute(SUPERSEDE, {"agent": AGENT})
        cur.execute("DELETE FROM pages WHERE material_id IN"
                    " (SELECT material_id FROM changed_materials WHERE NOT outdated)")
        cur.execute(NEW_VERSION)
        changed = cur.rowcount
        cur.execute(NEW_VERSION_PAGES)
        changed += cur.rowcount
    cur.execute(UPSERT_PAGES)
    return changed + cur.rowcount


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


def named(chunk: Chunk) -> Chunk:
    """The chunk with each row its named type (rows made as plain tuples, in column order, too)."""
    def rows(kind: type, items: list) -> list:
        return items if not items or isinstance(items[0], kind) else [kind(*r) for r in items]
    return Chunk(rows(FileRow, chunk.files), rows(MaterialRow, chunk.materials), rows(PageRow, chunk.pages),
                 chunk.page_tails)


def search_codes(chunk: Chunk) -> tuple[list, list]:
    """The search codes of each file row's name and each page row's text (with its material's
    class and year, salted for its file's shard); rows need only file_number, name, the
    material's key and formed_on, and the page's key and text."""
    chunk = named(chunk)
    names = many_codes([f.name for f in chunk.files])
    # of formation: formed_on
    year = {(m.file_number, m.class_code, m.seq): int(str(m.formed_on)[:4]) for m in chunk.materials}
    pages = chunk.pages
    codes = many_page_codes([p.ocr_text for p in pages], [p.class_code for p in pages],
                            [year[p.file_number, p.class_code, p.seq] for p in pages],
                            [shard_of(p.file_number) for p in pages])
    return names, codes


def prepared(chunk: Chunk) -> Chunk:
    """The chunk with its search codes appended to each file row (its name's) and page row (its
    text's, its material's class and year, salted for its file's shard), computed for the whole
    chunk at once, and its pages' binary COPY fields, so that the thread building chunks does
    this work, not the one loading them."""
    chunk = named(chunk)
    names, codes = search_codes(chunk)
    pages = [p._replace(term_codes=c) for p, c in zip(chunk.pages, codes, strict=True)]
    # the COPY tail: every field after the material's key, in PAGE_COLUMNS order
    return Chunk([f._replace(name_codes=c) for f, c in zip(chunk.files, names, strict=True)], chunk.materials,
                 pages, encode_fields(PAGE_COLUMNS[3:], [p[3:] for p in pages]))


def _page_rows(pf: PersonnelFile, m: Material, sha_by_path: dict[str, str],
               read_ocr: Callable[[str], tuple]) -> Iterator[PageRow]:
    """One row but its codes per page of the material, numbered 1..n across its
    scan files; ID numbers in the text masked (the text is what search reads and shows: the OCR
    result in storage keeps it as read)."""
    page_no = 0
    for path in m.page_files:
        sha = sha_by_path[path]
        results, ocr_sha = read_ocr(sha)
        for source_page, r in enumerate(results):
            page_no += 1
            yield PageRow(pf.file_number, m.class_code, m.seq, page_no, sha, source_page, path, r.dpi, r.width,
                          r.height, idnumber.mask_ids(r.text), r.confidence, r.engine, ocr_sha)


def _chunks(batch_id: str, files: list[PersonnelFile], services: Services, sha_by_path: dict[str, str],
            agency: str) -> Iterator[Chunk]:
    key, cipher = services.id_hash_key, services.id_cipher
    results = result_keys(services, batch_id)
    path_of = {sha: path for path, sha in sha_by_path.items()}
    for start in range(0, len(files), CHUNK_FILES):
        chunk = Chunk([], [], [])
        ocr: dict[str, tuple] = {}  # one scan file may hold pages of several materials: read it once

        def read_ocr(sha: str, ocr: dict[str, tuple] = ocr) -> tuple:
            if sha not in ocr:
                if sha not in results:
                    raise OcrNotDone(batch_id, path_of.get(sha, sha))
                ocr[sha] = load_ocr(services, results[sha])
            return ocr[sha]

        for pf in files[start:start + CHUNK_FILES]:
            chunk.files.append(FileRow(pf.file_number, pf.name, idnumber.lookup_hash(pf.id_number, key),
                                       cipher.encrypt(pf.id_number, pf.file_number), idnumber.mask(pf.id_number),
                                       agency, batch_id))
            for m in pf.materials:
                chunk.materials.append(MaterialRow(pf.file_number, m.class_code, m.seq, m.title, m.formed,
                                                   formed_on(m.formed), m.copies, m.pages, m.remarks, batch_id))
                chunk.pages.extend(_page_rows(pf, m, sha_by_path, read_ocr))
        yield prepared(chunk)


class IndexedConcurrently(NotReady):
    """Another batch was indexing some of the same personnel files; nothing of this one was written."""

    transient = True


def index_batch(batch_id: str, services: Services) -> IndexResult:
    catalog = load_catalog(batch_id, services)
    try:
        with services.db.transaction() as cur:
            cur.execute("SELECT path, sha256 FROM batch_files WHERE batch_id = %s AND status = 'accepted'",
                        (batch_id,))
            sha_by_path = {r["path"]: r["sha256"] for r in cur.fetchall()}
            cur.execute("SELECT holding_agency FROM batches WHERE batch_id = %s", (batch_id,))
            agency = cur.fetchone()["holding_agency"]  # the files are the agency's that handed the batch in
            written, materials, pages = load_chunks(cur, _chunks(batch_id, catalog.files, services, sha_by_path,
                                                                 agency))
            advance(cur, batch_id, "indexed")
    except (psycopg2.errors.DeadlockDetected, psycopg2.errors.UniqueViolation) as exc:
        # two batches holding some of the same files' materials, each waiting for the other's
        raise IndexedConcurrently(f"批次 {batch_id} 与另一批次同时入库了相同的档案，本批次未写入，请重新运行",
                                  f"batch {batch_id} was indexed while another batch indexed some of the same "
                                  f"personnel files ({type(exc).__name__}); nothing of it was written: run it again",
                                  item=batch_id) from exc
    return IndexResult(batch_id, len(catalog.files), materials, pages, written)


LINK_CHECK = f"""
WITH listed AS ({CATALOG_MATERIALS})
SELECT l.file_number, l.class_code, l.seq, l.page_files, m.material_id, m.page_count,
       coalesce(array_agg(p.source_sha256 ORDER BY p.page_no) FILTER (WHERE p.page_id IS NOT NULL), '{{}}') AS scans,
       count(p.page_id) AS pages, coalesce(max(p.page_no), 0) AS last_page,
       coalesce(bool_or(later.submitted_at > this.submitted_at), false) AS superseded
FROM listed l LEFT JOIN materials m USING (file_number, class_code, seq) LEFT JOIN pages p USING (material_id)
LEFT JOIN batches later ON later.batch_id = m.batch_id LEFT JOIN batches this ON this.batch_id = %s
GROUP BY l.file_number, l.class_code, l.seq, l.page_files, m.material_id
"""


def link_problems(batch_id: str, services: Services) -> list[str]:
    """The catalog-to-image link (数据挂接), as indexed: every material of the batch's catalog
    has exactly its catalogued pages numbered 1..n, every page file the catalog lists is indexed
    under its material, and none under two. A material is checked in its current version, made
    by this batch or, when this batch brought it unchanged, by an earlier one; one that a batch
    handed in later has superseded is that batch's to check."""
    problems = []
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256 FROM batch_files WHERE batch_id = %s", (batch_id,))
        sha_of = {r["path"]: r["sha256"] for r in cur.fetchall()}
        cur.execute(LINK_CHECK, (batch_id, batch_id))
        rows = cur.fetchall()
    under: dict[str, set[int]] = {}
    for r in rows:
        code = f"{r['file_number']} {r['class_code']}-{r['seq']}"
        if r["material_id"] is None:
            problems.append(f"{code}: in the catalog but not indexed")
            continue
        if r["superseded"]:  # a later batch brought another version: that batch's check holds it
            continue
        if r["pages"] != r["page_count"] or r["last_page"] != r["pages"]:
            problems.append(f"{code}: catalog says {r['page_count']} pages, {r['pages']} indexed "
                            f"(last page number {r['last_page']})")
        for path in r["page_files"]:
            if sha_of.get(path) not in r["scans"]:
                problems.append(f"{path}: listed in the catalog but not indexed")
        for sha in r["scans"]:
            under.setdefault(sha, set()).add(r["material_id"])
    path_of = {sha: path for path, sha in sorted(sha_of.items(), reverse=True)}
    problems += [f"{path_of.get(sha, sha)}: indexed under {len(ids)} materials"
                 for sha, ids in sorted(under.items()) if len(ids) > 1]
    return problems
