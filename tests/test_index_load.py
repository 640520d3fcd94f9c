"""The index stage's bulk loader on a real PostgreSQL: COPY into load tables, set-wise upserts
that write nothing on a rerun, only what changed otherwise, and text that survives COPY."""

import re

from catalog import idnumber
from search.terms import PUNCT_PAIR_SQL, page_terms_text, terms, terms_text
from stages.index import Chunk, create_load_tables, load_chunk
from storage.db import Database, apply_migration, migrations

ID = "11010519491231002X"
AWKWARD = "第一行\t制表符\n第二行 \\N 反斜杠\\ 回车\r末尾"


def _chunk(text: str = "个人简历：张三。", title: str = "登记表") -> Chunk:
    return Chunk(
        files=[("GZ-L1", "张三", idnumber.lookup_hash(ID, b"k"), ID, idnumber.mask(ID), "机构", None,
                terms_text("张三"))],
        materials=[("GZ-L1", "1", 1, title, "2001-05", "2001-05-01", 1, 2, "", None),
                   ("GZ-L1", "4-1", 1, "自传", "2002", "2002-01-01", 1, 1, "", None)],
        pages=[("GZ-L1", "1", 1, 1, "a" * 64, 0, "p1.jpg", 300, 2480, 3508, text, 91.5, "e", "o1",
                page_terms_text(text, "1")),
               ("GZ-L1", "1", 1, 2, "b" * 64, 0, "p2.jpg", 300, 2480, 3508, AWKWARD, 90.0, "e", "o2",
                page_terms_text(AWKWARD, "1")),
               ("GZ-L1", "4-1", 1, 1, "c" * 64, 0, "p3.jpg", 300, 2480, 3508, "自传正文", 95.0, "e", "o3",
                page_terms_text("自传正文", "4-1"))])


def _load(db: Database, chunk: Chunk) -> int:
    with db.transaction() as cur:
        create_load_tables(cur)
        return load_chunk(cur, chunk)


def test_rerun_writes_nothing_and_a_changed_page_writes_one_row_and_stales_its_pdf(database_url):
    db = Database(database_url)
    db.migrate()
    assert _load(db, _chunk()) == 1 + 2 + 3
    with db.transaction() as cur:
        cur.execute("UPDATE materials SET pdf_sha256 = 'pdf'")  # as the archive stage leaves them
    assert _load(db, _chunk()) == 0
    assert _load(db, _chunk(text="个人简历 张三 更正")) == 1  # a new OCR result for one page
    assert _load(db, _chunk(text="个人简历 张三 更正", title="登记表（补）")) == 1  # the catalog title only
    with db.transaction() as cur:
        cur.execute("SELECT class_code, title, pdf_sha256 FROM materials ORDER BY class_code")
        rows = cur.fetchall()
        cur.execute("SELECT ocr_text FROM pages WHERE source_path = 'p2.jpg'")
        awkward = cur.fetchone()["ocr_text"]
    assert [(r["class_code"], r["title"], r["pdf_sha256"]) for r in rows] == [
        ("1", "登记表（补）", None), ("4-1", "自传", "pdf")]  # only the changed material's PDF is stale
    assert awkward == AWKWARD and db.count("pages") == 3 and db.count("personnel_files") == 1


def test_term_migrations_write_what_the_index_stage_writes(database_url):
    """Pages indexed before 0006 (class terms) and 0007 (CJK-punctuation pairs) get their terms
    in the very form the stage now writes, so re-indexing them rewrites nothing."""
    db = Database(database_url)
    db.migrate()
    old = _chunk()
    old.pages = [p[:14] + (_terms_before_0006(p[10]),) for p in old.pages]
    old.pages.append(("GZ-L1", "4-1", 1, 2, "d" * 64, 0, "p4.jpg", 300, 2480, 3508, "", 0.0, "e", "o4", ""))
    _load(db, old)
    with db.transaction() as cur:
        for name, source in migrations():
            if name.startswith(("0006_", "0007_")):
                apply_migration(cur, name, source)
        cur.execute("SELECT ocr_text, search_terms, m.class_code FROM pages JOIN materials m USING (material_id)")
        rows = cur.fetchall()
    assert len(rows) == 4 and any("，" in r["ocr_text"] or "。" in r["ocr_text"] for r in rows)
    assert all(r["search_terms"] == page_terms_text(r["ocr_text"], r["class_code"]) for r in rows)
    new = _chunk()
    new.pages.append(("GZ-L1", "4-1", 1, 2, "d" * 64, 0, "p4.jpg", 300, 2480, 3508, "", 0.0, "e", "o4",
                      page_terms_text("", "4-1")))
    assert _load(db, new) == 0


def _terms_before_0006(text: str) -> str:
    """Terms as the stage wrote them before 0006: no class terms, no CJK-punctuation pairs."""
    return " ".join(t for t in terms(text) if not re.search(PUNCT_PAIR_SQL, t))
