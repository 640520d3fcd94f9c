"""The index stage's bulk loader on a real PostgreSQL: COPY into load tables, set-wise upserts
that write nothing on a rerun, only what changed otherwise, and text that survives COPY."""

import uuid

import psycopg2
import psycopg2.extras
import pytest

from catalog import idnumber
from search.terms import page_codes, shard_of, text_codes
from stages.index import Chunk, MissingParent, begin_load, load_chunk, load_chunks, prepared
from storage.db import Database

ID = "11010519491231002X"
AWKWARD = "第一行\t制表符\n第二行 \\N 反斜杠\\ 回车\r末尾"


def _chunk(text: str = "个人简历：张三。", title: str = "登记表", batch: str | None = None, ocr: str = "o1") -> Chunk:
    shard = shard_of("GZ-L1")  # 2: salted codes
    return Chunk(
        files=[("GZ-L1", "张三", idnumber.lookup_hash(ID, b"k"), ID, idnumber.mask(ID), "机构", batch,
                text_codes("张三"))],
        materials=[("GZ-L1", "1", 1, title, "2001-05", "2001-05-01", 1, 2, "", batch),
                   ("GZ-L1", "4-1", 1, "自传", "2002", "2002-01-01", 1, 1, "", batch)],
        pages=[("GZ-L1", "1", 1, 1, "a" * 64, 0, "p1.jpg", 300, 2480, 3508, text, 91.5, "e", ocr,
                page_codes(text, "1", 2001, shard)),
               ("GZ-L1", "1", 1, 2, "b" * 64, 0, "p2.jpg", 300, 2480, 3508, AWKWARD, 90.0, "e", "o2",
                page_codes(AWKWARD, "1", 2001, shard)),
               ("GZ-L1", "4-1", 1, 1, "c" * 64, 0, "p3.jpg", 300, 2480, 3508, "自传正文", 95.0, "e", "o3",
                page_codes("自传正文", "4-1", 2002, shard))])


def _agency(db: Database) -> None:
    with db.transaction() as cur:
        cur.execute("INSERT INTO agencies (code, name) VALUES ('机构', '机构') ON CONFLICT DO NOTHING")


def _load(db: Database, chunk: Chunk) -> int:
    with db.transaction() as cur:
        begin_load(cur)
        return load_chunk(cur, chunk)


def test_rerun_writes_nothing_and_a_changed_material_becomes_a_new_version(database_url):
    db = Database(database_url)
    db.migrate()
    _agency(db)
    assert _load(db, _chunk()) == 1 + 2 + 3
    with db.transaction() as cur:
        cur.execute("UPDATE materials SET pdf_sha256 = 'pdf'")  # as the archive stage leaves them
    assert _load(db, _chunk()) == 0
    # a new OCR result for one page: its material is version 2, both its pages written anew
    assert _load(db, _chunk(text="个人简历 张三 更正", ocr="o1b")) == 1 + 2
    assert _load(db, _chunk(text="个人简历 张三 更正", ocr="o1b", title="登记表（补）")) == 1 + 2  # the title only
    assert _load(db, _chunk(text="个人简历 张三", ocr="o1b", title="登记表（补）")) == 1  # derived text: no version
    with db.transaction() as cur:
        cur.execute("SELECT class_code, title, version, pdf_sha256 FROM materials ORDER BY class_code")
        rows = cur.fetchall()
        cur.execute("SELECT version, title, pdf_sha256, pages->0->>'ocr_sha256' AS ocr FROM material_versions"
                    " ORDER BY version")
        kept = cur.fetchall()
        cur.execute("SELECT detail FROM events WHERE event_type = 'superseded' ORDER BY event_id")
        superseded = [r["detail"] for r in cur.fetchall()]
        cur.execute("SELECT ocr_text FROM pages WHERE source_path = 'p2.jpg'")
        awkward = cur.fetchone()["ocr_text"]
    assert [(r["class_code"], r["title"], r["version"], r["pdf_sha256"]) for r in rows] == [
        ("1", "登记表（补）", 3, None), ("4-1", "自传", 1, "pdf")]  # only the changed material's PDF is gone
    assert [(k["version"], k["title"], k["pdf_sha256"], k["ocr"]) for k in kept] == [
        (1, "登记表", "pdf", "o1"), (2, "登记表", None, "o1b")]
    assert [(d["material"], d["pages_changed"], d["catalog_changed"]) for d in superseded] == [
        ("1-1", True, False), ("1-1", False, True)]
    assert awkward == AWKWARD and db.count("pages") == 3 and db.count("personnel_files") == 1


def test_a_rescan_with_fewer_pages_leaves_none_of_the_old_ones(database_url):
    db = Database(database_url)
    db.migrate()
    _agency(db)
    _load(db, _chunk())
    shorter = _chunk()
    shorter.materials[0] = shorter.materials[0][:7] + (1,) + shorter.materials[0][8:]
    shorter.pages.pop(1)
    assert _load(db, shorter) == 1 + 1
    with db.transaction() as cur:
        cur.execute("SELECT p.page_no FROM pages p JOIN materials m USING (material_id) WHERE m.class_code = '1'")
        assert [r["page_no"] for r in cur.fetchall()] == [1]


def test_code_migrations_write_what_the_index_stage_writes(database_url):
    """Pages and names indexed with text terms (before 0008) get the very codes the stage now
    writes, salted for their file's shard (0009), so re-indexing them rewrites nothing."""
    db = Database(database_url)
    db.migrate(upto="0007")
    batch = "B-1"
    chunk = _chunk(batch=batch)
    chunk.pages.append(("GZ-L1", "4-1", 1, 2, "d" * 64, 0, "p4.jpg", 300, 2480, 3508, "", 0.0, "e", "o4",
                        page_codes("", "4-1", 2002, shard_of("GZ-L1"))))
    with db.transaction() as cur:  # as the stage wrote them before: terms as text
        cur.execute("INSERT INTO batches (batch_id, name, content_sha256, holding_agency) VALUES (%s, %s, %s, '机构')",
                    (batch, batch, "0" * 64))
        f = chunk.files[0]
        cur.execute("INSERT INTO personnel_files (file_number, name, id_hash, id_number, id_masked, holding_agency,"
                    " batch_id, name_terms) VALUES (%s, %s, %s, %s, %s, %s, %s, '张 张三 三')", f[:7])
        for m in chunk.materials:
            cur.execute("INSERT INTO materials (file_number, class_code, seq, title, formed, formed_on, copies,"
                        " page_count, remarks, batch_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", m)
        for p in chunk.pages:
            cur.execute("INSERT INTO pages (material_id, page_no, source_sha256, source_page, source_path, dpi, width,"
                        " height, ocr_text, ocr_confidence, ocr_engine, ocr_sha256, search_terms)"
                        " SELECT material_id, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'old terms'"
                        " FROM materials WHERE (file_number, class_code, seq) = (%s, %s, %s)", p[3:14] + p[:3])
    assert db.migrate()[:2] == ["0008_term_codes.py", "0009_term_years_shards.py"]
    with db.transaction() as cur:
        cur.execute("SELECT page_no, term_codes, m.class_code, m.seq FROM pages JOIN materials m USING (material_id)")
        pages = {(r["class_code"], r["seq"], r["page_no"]): r["term_codes"] for r in cur.fetchall()}
        cur.execute("SELECT name, name_codes FROM personnel_files")
        names = cur.fetchall()
    # the index stage's own codes: computed by prepared() from rows without them
    bare = Chunk([f[:-1] for f in chunk.files], chunk.materials, [p[:-1] for p in chunk.pages])
    assert pages == {p[1:4]: p[-1].tolist() for p in prepared(bare).pages}
    assert pages[("1", 1, 1)] != page_codes(chunk.pages[0][10], "1", 2001, 0).tolist()  # salted: not shard 0's
    assert [r["name_codes"] for r in names] == [text_codes("张三").tolist()]
    assert _load(db, chunk) == 0


def test_chunks_load_while_the_next_is_built_and_a_failure_loses_the_whole_batch(database_url):
    db = Database(database_url)
    db.migrate()
    _agency(db)

    def chunks():
        yield _chunk()
        raise RuntimeError("OCR result of p9.jpg missing")

    with pytest.raises(RuntimeError, match="p9.jpg"), db.transaction() as cur:
        load_chunks(cur, chunks())
    assert db.count("pages") == 0 and db.count("personnel_files") == 0
    with db.transaction() as cur:
        assert load_chunks(cur, iter([_chunk(), _chunk(text="第二次")])) == (6 + 1, 4, 6)
    assert db.count("pages") == 3


def test_deleting_a_file_deletes_its_materials_and_pages_and_long_pages_stay_inline(database_url):
    """Deleting a file takes its materials and their pages with it (0010 replaced the pages' key
    by a trigger, 0011 restored it), and only theirs; a long page is stored as it came."""
    db = Database(database_url)
    db.migrate()
    _agency(db)
    dense = "个人简历：张三，一九八五年生于贵州省遵义市。" * 60  # ~4 KB: compressed before 0010
    _load(db, _chunk(text=dense))
    other = _chunk()
    other.files = [("GZ-L2",) + other.files[0][1:]]
    other.materials = [("GZ-L2",) + m[1:] for m in other.materials]
    other.pages = [("GZ-L2",) + p[1:] for p in other.pages]
    _load(db, other)
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pages WHERE pg_column_compression(ocr_text) IS NOT NULL"
                    " OR pg_column_size(ocr_text) < octet_length(ocr_text)")
        assert cur.fetchone()["n"] == 0
        cur.execute("SELECT pg_relation_size(reltoastrelid) AS toast FROM pg_class WHERE relname = 'pages'")
        assert cur.fetchone()["toast"] == 0
        cur.execute("DELETE FROM personnel_files WHERE file_number = 'GZ-L1'")
        cur.execute("SELECT DISTINCT m.file_number FROM pages p JOIN materials m USING (material_id)")
        assert [r["file_number"] for r in cur.fetchall()] == ["GZ-L2"]
    assert db.count("pages") == 3 and db.count("materials") == 2


def test_the_loader_checks_its_keys_set_wise_and_the_database_for_everyone_else(database_url):
    """The loader turns PostgreSQL's per-row key checks off in its transaction (a superuser here)
    and checks the same references itself: a material of a file or batch not in the index is
    refused by name and nothing is written; a page written by anyone else still meets the key."""
    db = Database(database_url)
    db.migrate()
    _agency(db)
    orphan = _chunk()
    orphan.materials.append(("GZ-NOFILE", "1", 1, "登记表", "2001", "2001-01-01", 1, 1, "", None))
    unregistered = _chunk(batch="B-NONE")
    for chunk, name in ((orphan, "personnel file GZ-NOFILE"), (unregistered, "batch B-NONE")):
        with pytest.raises(MissingParent, match=name), db.transaction() as cur:
            assert begin_load(cur) is True
            load_chunk(cur, chunk)
    assert db.count("personnel_files") == 0 and db.count("materials") == 0
    _load(db, _chunk())
    with pytest.raises(psycopg2.errors.ForeignKeyViolation), db.transaction() as cur:
        cur.execute("INSERT INTO pages (material_id, page_no, source_sha256, source_path)"
                    " VALUES (-1, 1, 'x', 'x.jpg')")


def test_a_role_that_may_not_skip_the_checks_loads_the_same_rows_checked(database_url):
    role = f"loader_{uuid.uuid4().hex[:8]}"
    admin = Database(database_url)
    admin.migrate()
    _agency(admin)
    with admin.transaction() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        cur.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    loader = Database(database_url.replace("//archive@", f"//{role}@"))
    try:
        with loader.transaction() as cur:
            assert begin_load(cur) is False  # the checks run
            assert load_chunk(cur, _chunk()) == 1 + 2 + 3
        with admin.transaction() as cur:
            cur.execute(f"GRANT SET ON PARAMETER session_replication_role TO {role}")
        with loader.transaction() as cur:
            assert begin_load(cur) is True
            assert load_chunk(cur, _chunk(text="第二次")) == 1
        assert admin.count("pages") == 3
    finally:
        with admin.transaction() as cur:
            cur.execute(f"DROP OWNED BY {role}")
            cur.execute(f"DROP ROLE {role}")


def test_two_loaders_of_the_same_material_take_turns(database_url):
    """The second loader waits on the first's lock, then compares with what it wrote: two
    versions in order, no unique violation."""
    import threading

    db = Database(database_url)
    db.migrate()
    _agency(db)
    _load(db, _chunk())
    first = psycopg2.connect(database_url)
    cur = first.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    begin_load(cur)
    load_chunk(cur, _chunk(ocr="o1b"))  # holds material 1-1 locked, uncommitted
    second: dict = {}
    t = threading.Thread(target=lambda: second.setdefault("written", _load(db, _chunk(ocr="o1c"))))
    t.start()
    t.join(1.5)
    assert t.is_alive()  # waiting for the first loader
    first.commit()
    first.close()
    t.join(30)
    assert second["written"] == 1 + 2
    with db.transaction() as c:
        c.execute("SELECT version FROM material_versions ORDER BY version")
        kept = [r["version"] for r in c.fetchall()]
        c.execute("SELECT m.version, p.ocr_sha256 FROM materials m JOIN pages p USING (material_id)"
                  " WHERE m.class_code = '1' AND p.page_no = 1")
        row = c.fetchone()
    assert kept == [1, 2] and (row["version"], row["ocr_sha256"]) == (3, "o1c")
