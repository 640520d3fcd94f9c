"""Index stage: the validated catalog and the OCR text into PostgreSQL.

Upserts keyed by file number, (file, class, sequence) and (material, page number); a row
whose content did not change is not rewritten, so a rerun writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog import idnumber
from catalog.manifest import Material, PersonnelFile
from search.terms import terms_text
from stages.intake import load_catalog
from stages.ocr import load_ocr
from stages.progress import advance
from stages.services import Services

UPSERT_FILE = """
INSERT INTO personnel_files (file_number, name, id_hash, id_number, id_masked, holding_agency, batch_id, name_terms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (file_number) DO UPDATE SET name = EXCLUDED.name, id_hash = EXCLUDED.id_hash,
    id_number = EXCLUDED.id_number, id_masked = EXCLUDED.id_masked, batch_id = EXCLUDED.batch_id,
    name_terms = EXCLUDED.name_terms, indexed_at = now()
WHERE (personnel_files.name, personnel_files.id_hash, personnel_files.name_terms)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.id_hash, EXCLUDED.name_terms)
"""
UPSERT_MATERIAL = """
INSERT INTO materials (file_number, class_code, seq, title, formed, formed_on, copies, page_count, remarks, batch_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (file_number, class_code, seq) DO UPDATE SET title = EXCLUDED.title, formed = EXCLUDED.formed,
    formed_on = EXCLUDED.formed_on, copies = EXCLUDED.copies, page_count = EXCLUDED.page_count,
    remarks = EXCLUDED.remarks, batch_id = EXCLUDED.batch_id
WHERE (materials.title, materials.formed, materials.copies, materials.page_count, materials.remarks)
    IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.formed, EXCLUDED.copies, EXCLUDED.page_count, EXCLUDED.remarks)
RETURNING material_id
"""
UPSERT_PAGE = """
INSERT INTO pages (material_id, page_no, source_sha256, source_page, source_path, dpi, width, height,
                   ocr_text, ocr_confidence, ocr_engine, ocr_sha256, search_terms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (material_id, page_no) DO UPDATE SET source_sha256 = EXCLUDED.source_sha256,
    source_page = EXCLUDED.source_page, source_path = EXCLUDED.source_path, dpi = EXCLUDED.dpi,
    width = EXCLUDED.width, height = EXCLUDED.height, ocr_text = EXCLUDED.ocr_text,
    ocr_confidence = EXCLUDED.ocr_confidence, ocr_engine = EXCLUDED.ocr_engine, ocr_sha256 = EXCLUDED.ocr_sha256,
    search_terms = EXCLUDED.search_terms
WHERE (pages.source_sha256, pages.source_page, pages.ocr_sha256, pages.search_terms)
    IS DISTINCT FROM (EXCLUDED.source_sha256, EXCLUDED.source_page, EXCLUDED.ocr_sha256, EXCLUDED.search_terms)
"""


@dataclass
class IndexResult:
    batch_id: str
    files: int
    materials: int
    pages: int
    rows_written: int  # inserted or changed; 0 on a rerun


def _formed_on(formed: str) -> str:
    parts = formed.split("-")
    return "-".join(parts + ["01"] * (3 - len(parts)))


class _Indexer:
    def __init__(self, batch_id: str, services: Services, engine_key: str, cur) -> None:
        self.batch_id, self.services, self.engine_key, self.cur = batch_id, services, engine_key, cur
        cur.execute("SELECT path, sha256 FROM batch_files WHERE batch_id = %s AND status = 'accepted'", (batch_id,))
        self.sha_by_path = {r["path"]: r["sha256"] for r in cur.fetchall()}
        self.ocr: dict[str, tuple] = {}
        self.written = self.pages = self.materials = 0

    def file(self, pf: PersonnelFile) -> None:
        key = self.services.id_hash_key
        self.cur.execute(UPSERT_FILE, (pf.file_number, pf.name, idnumber.lookup_hash(pf.id_number, key),
                                       pf.id_number, idnumber.mask(pf.id_number), self.services.agency,
                                       self.batch_id, terms_text(pf.name)))
        self.written += self.cur.rowcount
        for m in pf.materials:
            self.material(pf.file_number, m)

    def material(self, file_number: str, m: Material) -> None:
        self.materials += 1
        self.cur.execute(UPSERT_MATERIAL, (file_number, m.class_code, m.seq, m.title, m.formed, _formed_on(m.formed),
                                           m.copies, m.pages, m.remarks, self.batch_id))
        row = self.cur.fetchone()
        if row:
            self.written += 1
        else:  # unchanged: ON CONFLICT ... WHERE returned nothing
            self.cur.execute("SELECT material_id FROM materials WHERE file_number = %s AND class_code = %s"
                             " AND seq = %s", (file_number, m.class_code, m.seq))
            row = self.cur.fetchone()
        page_no, changed = 0, False
        for path in m.page_files:
            sha = self.sha_by_path[path]
            if sha not in self.ocr:
                self.ocr[sha] = load_ocr(self.services, self.engine_key, sha)
            results, ocr_sha = self.ocr[sha]
            for source_page, r in enumerate(results):
                page_no += 1
                self.pages += 1
                self.cur.execute(UPSERT_PAGE, (row["material_id"], page_no, sha, source_page, path, r.dpi, r.width,
                                               r.height, r.text, r.confidence, r.engine, ocr_sha, terms_text(r.text)))
                self.written += self.cur.rowcount
                changed |= self.cur.rowcount > 0
        if changed:  # its searchable PDF is out of date: the archive stage makes a new one
            self.cur.execute("UPDATE materials SET pdf_sha256 = NULL WHERE material_id = %s", (row["material_id"],))


def index_batch(batch_id: str, services: Services, engine_key: str) -> IndexResult:
    catalog = load_catalog(batch_id, services)
    with services.db.transaction() as cur:
        indexer = _Indexer(batch_id, services, engine_key, cur)
        for pf in catalog.files:
            indexer.file(pf)
        advance(cur, batch_id, "indexed")
    return IndexResult(batch_id, len(catalog.files), indexer.materials, indexer.pages, indexer.written)


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
