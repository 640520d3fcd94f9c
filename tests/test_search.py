"""Chinese search on a real PostgreSQL: names and phrases of every length, filters, ranking,
lookups by ID number (through its hash) and file number, results identical to LIKE, masking."""

import json
import random
import re

import pytest

from access.audit import Actor
from catalog import idnumber
from search.query import Filters, search
from search.terms import (
    SHARDS,
    class_code_term,
    class_terms,
    many_page_codes,
    page_codes,
    query_codes,
    salted,
    shard_of,
    term_code,
    text_codes,
)
from stages.index import Chunk, begin_load, load_chunk, prepared
from storage.db import Database

KEY = b"test-key"
PEOPLE = [("GZ-1", "张三", "1", "2001-05-01", "姓名 张三 性别 男 在贵州大学法学专业学习"),
          ("GZ-2", "张三丰", "2", "2003-07-01", "我叫张三丰，出生于湖南省长沙市。毕业后到贵阳市某建筑工程有限公司工作"),
          ("GZ-3", "李四", "4-1", "2010-01-15", "普通高等学校毕业生登记表 李四 英语 CET4 通过 2009年"),
          ("GZ-4", "王五", "9-1", "2015-03-01", "职工工资标准审批表 王五 原工资标准3750元 同意张三同志的意见")]

T = Actor("user:test", "test")


def _id(n: int) -> str:
    first17 = f"52010219900101{n:03d}"
    return first17 + idnumber.check_digit(first17)


@pytest.fixture
def db(database_url):
    db = Database(database_url)
    db.migrate()
    with db.transaction() as cur:
        cur.execute("INSERT INTO agencies (code, name) VALUES ('520000', '贵州省人才交流服务中心'),"
                    " ('440000', '别的机构')")
    rng = random.Random(4)
    filler = "在校期间刻苦钻研专业知识积极参加社会实践活动工作中服从安排认真负责多次受到单位表扬"
    rows = list(PEOPLE) + [(f"GZ-F{i}", rng.choice("赵钱孙周吴郑") + rng.choice("伟芳娜敏静强磊军"), "3",
                            f"20{rng.randint(10, 20)}-01-01", filler[rng.randrange(8):]) for i in range(40)]
    chunk = Chunk([], [], [])
    for n, (number, name, cls, formed, text) in enumerate(rows):
        chunk.files.append((number, name, idnumber.lookup_hash(_id(n), KEY), _id(n), idnumber.mask(_id(n)),
                            "520000", None, text_codes(name)))
        chunk.materials.append((number, cls, 1, "材料", formed, formed, 1, 1, "", None))
        chunk.pages.append((number, cls, 1, 1, f"{n:064d}", 0, "p.jpg", None, None, None, text, None, None, None,
                            page_codes(text, cls, int(formed[:4]), shard_of(number))))
    with db.transaction() as cur:  # through the index stage's own bulk loader
        begin_load(cur)
        assert load_chunk(cur, chunk) == 3 * len(rows)
    return db


def _keys(hits):
    return [(h.kind, h.file_number) for h in hits]


def test_two_character_name_found_and_exact_name_ranked_first(db):
    hits = search(db, "张三", actor=T).hits
    assert _keys(hits)[:2] == [("name", "GZ-1"), ("name", "GZ-2")]  # 张三 above 张三丰
    assert ("text", "GZ-4") in _keys(hits)  # mentioned in another person's material
    text_hit = next(h for h in hits if h.file_number == "GZ-4")
    assert "【张三】" in text_hit.snippet and text_hit.material == "9-1-1"


def test_one_three_and_long_queries_and_mixed_scripts(db):
    assert ("name", "GZ-3") in _keys(search(db, "李", actor=T).hits)
    assert _keys(search(db, "张三丰", actor=T).hits)[0] == ("name", "GZ-2")
    assert _keys(search(db, "贵阳市某建筑工程", actor=T).hits) == [("text", "GZ-2")]
    assert _keys(search(db, "CET4", actor=T).hits) == [("text", "GZ-3")]
    assert _keys(search(db, "标准3750元", actor=T).hits) == [("text", "GZ-4")]
    assert search(db, "不存在的词语", actor=T).hits == []


def test_filters(db):
    assert {h.file_number for h in search(db, "张三", Filters(class_code="9"), actor=T).hits} == {"GZ-4"}
    assert _keys(search(db, "李四", Filters(class_code="4"), actor=T).hits)[0] == ("name", "GZ-3")  # 4 covers 4-1
    assert search(db, "李四", Filters(class_code="7"), actor=T).hits == []
    dated = search(db, "张三", Filters(formed_from="2002-01-01", formed_to="2012-12-31"), actor=T).hits
    assert {h.file_number for h in dated} == {"GZ-2"}


def test_lookup_by_id_number_and_file_number_masked(db):
    hits = search(db, _id(2), actor=T, id_hash_key=KEY).hits
    assert _keys(hits) == [("id", "GZ-3")]
    assert _keys(search(db, "GZ-4", actor=T).hits)[0] == ("file_number", "GZ-4")
    out = json.dumps([h.to_dict() for h in hits + search(db, "张三", actor=T).hits], ensure_ascii=False)
    assert idnumber.mask(_id(2)) in out
    assert not any(_id(n) in out for n in range(44))  # never unmasked in search output
    with db.transaction() as cur:
        cur.execute("SELECT actor, detail->>'query' AS query, file_numbers FROM audit_log ORDER BY seq")
        log = cur.fetchall()
    assert log[0]["query"] == idnumber.mask(_id(2)) and log[0]["file_numbers"] == ["GZ-3"]
    assert log[0]["actor"] == "user:test"
    assert not any(_id(n) in json.dumps(log, default=str) for n in range(44))  # nor in the audit trail


def test_paging_is_consistent(db):
    everything = search(db, "专业", limit=100, actor=T).hits
    assert len(everything) > 10
    pages = search(db, "专业", limit=5, actor=T).hits + search(db, "专业", limit=5, offset=5, actor=T).hits
    assert _keys(pages) == _keys(everything[:10])


def test_common_phrase_is_ranked_within_a_window_and_says_so(db):
    wide = search(db, "专业", limit=100, actor=T, window=10)
    assert wide.truncated and len(wide.hits) == 11  # 10 + the one over the window
    assert not search(db, "专业", limit=100, actor=T).truncated


def test_common_phrases_read_by_page_or_by_material_give_exactly_what_the_index_gives(db, monkeypatch):
    from search import query as search_query

    sources, choose = [], search_query._pages_source

    def spied(cur, params: dict) -> tuple[str, list[int]]:
        sources.append(choose(cur, params))
        return sources[-1]

    monkeypatch.setattr(search_query, "_pages_source", spied)
    cases = [("专业", None), ("张三", None), ("工资标准", Filters(class_code="9")), ("专业", Filters(class_code="3")),
             ("积极参加", Filters(formed_from="2015-01-01")), ("刻苦", Filters(agency="440000"))]
    for q, f in cases:
        results = {}
        for share, hits, below in ((0.0, 0, 1e9), (2.0, 2, 0.0)):  # every phrase counts as common (read), or none
            monkeypatch.setattr(search_query, "SCAN_FROM_SHARE", share)
            monkeypatch.setattr(search_query, "PROBE_MIN_HITS", hits)
            monkeypatch.setattr(search_query, "MATERIALS_BELOW", below)
            for window in (5, search_query.RANK_WINDOW):
                r = search(db, q, f, limit=100, actor=T, window=window)
                hits_ = {(h.kind, h.file_number, h.page_id) for h in r.hits}
                results.setdefault(window, []).append((len(r.hits), r.truncated, hits_ if not r.truncated else None))
        for window, (read, indexed) in results.items():
            assert read == indexed, (q, f, window)  # same count and flag; same hits when all fit
    assert {search_query.SCANNED_PAGES, search_query.MATERIAL_PAGES, search_query.INDEXED_PAGES} == {
        source for source, _ in sources}


def test_materials_are_read_when_their_filter_allows_fewer_pages_than_the_index_gives(db):
    from search import query as search_query

    def source(q: str, f: Filters) -> str:
        codes = query_codes(q) + ([class_code_term(f.class_code)] if f.class_code else [])
        params = {"page_codes": codes, "like": f"%{q}%", "window": search_query.RANK_WINDOW, "agency": None,
                  "class": f.class_code, "from": f.formed_from, "to": f.formed_to, "batch": None,
                  "on_materials": f.on_materials, "years": search_query._years(f)}
        with db.transaction() as cur:
            return search_query._pages_source(cur, params)[0]

    since = Filters(formed_from="2016-06-01")  # a third of the 44 pages; open-ended: no code asks for it
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM materials WHERE formed_on >= '2016-06-01'")
        assert 0 < cur.fetchone()["n"] < 20
    assert source("专业", since) == search_query.MATERIAL_PAGES  # on 41 pages: the dates narrow
    assert source("法学", since) == search_query.INDEXED_PAGES  # on one page: the phrase narrows
    assert source("专业", Filters(class_code="3")) == search_query.INDEXED_PAGES  # the class is a code
    year = Filters(formed_from="2015-01-01", formed_to="2015-12-31")  # so is a year
    assert source("专业", year) == search_query.INDEXED_PAGES
    with db.transaction() as cur:
        cur.execute("SELECT p.page_id FROM pages p JOIN materials m USING (material_id)"
                    " WHERE p.ocr_text LIKE '%%专业%%' AND m.formed_on BETWEEN '2015-01-01' AND '2015-12-31'")
        baseline = {r["page_id"] for r in cur.fetchall()}
    assert baseline and {h.page_id for h in search(db, "专业", year, limit=100, actor=T).hits
                         if h.kind == "text"} == baseline


def test_a_code_on_nearly_every_page_is_not_looked_up_and_the_hits_stay_likes(db):
    from search import query as search_query

    with db.transaction() as cur:
        cur.execute("ANALYZE pages")  # 专业 is on 41 of 44 pages, 法学 on one
    params = {"page_codes": query_codes("法学专业"), "window": 10_000}
    with db.transaction() as cur:
        source, codes = search_query._pages_source(cur, params)
    assert source == search_query.INDEXED_PAGES and set(codes) == _codes("法学", "学专")
    with db.transaction() as cur:
        source, codes = search_query._pages_source(cur, {"page_codes": query_codes("专业知识"), "window": 10_000})
    assert set(codes) == _codes("专业", "业知", "知识")  # all on nearly every page: all looked up
    for q in ("法学专业", "专业知识", "法学"):
        with db.transaction() as cur:
            cur.execute("SELECT page_id FROM pages WHERE ocr_text LIKE %s", (f"%{q}%",))
            baseline = {r["page_id"] for r in cur.fetchall()}
        assert {h.page_id for h in search(db, q, limit=100, actor=T).hits if h.kind == "text"} == baseline, q
    with db.transaction() as cur:  # kept per process until ANALYZE changes the table's estimate
        cur.execute("DELETE FROM pages WHERE ocr_text LIKE '%%刻苦%%'")
        cur.execute("ANALYZE pages")
    with db.transaction() as cur:
        assert set(search_query._pages_source(cur, params)[1]) == _codes("法学", "学专", "专业")


def test_pages_of_every_shard_are_found_and_a_full_window_reads_only_the_first_shards(db):
    from search import query as search_query

    numbers = {}
    for n in range(1000):  # three files in each shard
        numbers.setdefault(shard_of(f"GZ-S{n}"), []).append(f"GZ-S{n}")
    assert sorted(numbers) == list(range(SHARDS))
    chunk = Chunk([], [], [])
    for shard, files in numbers.items():
        for i, number in enumerate(files[:3]):
            text = f"分片{shard}第{i}页 同一句话在每个分片 贵州大学法学"
            chunk.files.append((number, "某人", "h", "x", "x", "520000", None))
            chunk.materials.append((number, "3", 1, "材料", "2001-01", "2001-01-01", 1, 1, "", None))
            chunk.pages.append((number, "3", 1, 1, f"{shard}{i:063d}", 0, "p.jpg", None, None, None, text,
                                None, None, None))
    with db.transaction() as cur:
        begin_load(cur)
        load_chunk(cur, prepared(chunk))  # salted as the index stage salts them
    for q in ("同一句话在每个分片", "贵州大学法学", "分片5第", "法学"):
        with db.transaction() as cur:
            cur.execute("SELECT page_id FROM pages WHERE ocr_text LIKE %s", (f"%{q}%",))
            baseline = {r["page_id"] for r in cur.fetchall()}
        assert {h.page_id for h in search(db, q, limit=100, actor=T, window=10_000).hits if h.kind == "text"} \
            == baseline, q
    codes = query_codes("同一句话在每个分片")  # on 3 pages of every shard: a window of 5 reads shards 0 and 1
    params = {"like": "%同一句话在每个分片%", "window": 5, "shards": SHARDS, "agency": None, "class": None,
              "from": None, "to": None, "batch": None, "shard_codes": [salted(codes, s) for s in range(SHARDS)],
              "year_codes": None}
    with db.transaction() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")  # 68 pages: a scan would be cheaper
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + search_query.INDEXED_PAGES, params)
        plan = json.dumps(cur.fetchone()["QUERY PLAN"])
    assert re.findall(r'"Node Type": "Bitmap Index Scan".*?"Actual Loops": (\d+)', plan) == ["2"]


def test_phrase_search_uses_the_term_index(db):
    from search import query as search_query

    with db.transaction() as cur:  # the statement search() runs for a rare phrase, as it builds it
        sql, params = search_query.text_statement(cur, "张三", Filters(), limit=20, offset=0)
        assert search_query.INDEXED_PAGES in sql
        cur.execute("SET LOCAL enable_seqscan = off")  # 44 pages: a scan would be cheaper
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r["QUERY PLAN"] for r in cur.fetchall())
    assert re.search(r"Bitmap Index Scan on pages_term_codes|Index Scan using pages_term_codes", plan), plan


def test_results_identical_to_like_baseline(db):
    rng = random.Random(9)
    with db.transaction() as cur:
        cur.execute("SELECT ocr_text FROM pages")
        texts = [r["ocr_text"].replace(" ", "") for r in cur.fetchall()]
    queries = {t[i:i + n] for t in rng.sample(texts, 10) for n in (1, 2, 3, 5) for i in [rng.randrange(len(t) - n)]}
    with_hits = 0
    for q in queries:
        with db.transaction() as cur:
            cur.execute("SELECT p.page_id FROM pages p WHERE p.ocr_text LIKE %s", (f"%{q}%",))
            baseline = {r["page_id"] for r in cur.fetchall()}
        found = {h.page_id for h in search(db, q, limit=10_000, actor=T).hits if h.kind == "text"}
        assert found == baseline, q
        with_hits += bool(baseline)
    # both sides finding nothing proves nothing: the phrases are cut from the pages, so most are on one
    assert len(queries) >= 20 and with_hits >= 0.8 * len(queries), (with_hits, len(queries))


def _codes(*terms: str) -> set[int]:
    return {term_code(t) for t in terms}


def test_query_asks_for_its_pairs_and_only_the_words_it_holds_whole():
    # 能力。不: a common bigram and 不, on nearly every page; the pairs beside 。 are rare
    assert set(query_codes("能力。不")) == _codes("能力", "力。", "。不")
    assert set(query_codes("“三好学生”")) == _codes("“三", "三好", "好学", "学生", "生”")
    # digits at the edge may be part of a longer number (学习2005): their pairs, not the word
    assert set(query_codes("学习200")) == _codes("学习", "习2", "20", "00")
    cet4 = term_code("CET4")
    assert set(query_codes("英语 CET4 通过")) == _codes("英语", "CE", "ET", "T4", "通过") | {cet4}
    assert query_codes("张") == [ord("张")] and query_codes("7") == query_codes("。") == []


def _reference_codes(text: str, cls: str, year: int) -> set[int]:
    """The term rules written out one by one, slowly (search/terms.py's docstring)."""
    def in_pairs(ch: str) -> bool:
        return not ch.isspace() and 0x20 <= ord(ch) <= 0xFFFF and not 0xD800 <= ord(ch) < 0xE000 and ch != "\uffff"

    cjk = {ch for ch in text if "\u3400" <= ch <= "\u4dbf" or "\u4e00" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"
           or "\U00020000" <= ch <= "\U0002fa1f" or "\U00030000" <= ch <= "\U0003134f"}
    pairs = {a + b for a, b in zip(text, text[1:], strict=False) if in_pairs(a) and in_pairs(b)}
    words = set(re.findall("[0-9A-Za-z]{3,}", text)) | set(class_terms(cls)) | {f"yr:{year}"}
    return {term_code(t) for t in cjk | pairs | words}


def test_codes_follow_the_rules_and_a_whole_chunk_at_once_gives_the_same():
    rng = random.Random(3)
    alphabet = "张三丰李四。，“”（） \n\t\u3000年月日0123456789ABCxyz-/.𠇔𪚥\uffff"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 5, 63, 64, 65, 200))))
             for _ in range(200)]
    classes = [rng.choice(("1", "4-1", "9-2")) for _ in texts]
    years = [rng.randrange(1950, 2030) for _ in texts]
    together = many_page_codes(texts, classes, years, [0] * len(texts))
    for text, cls, year, codes in zip(texts, classes, years, together, strict=True):
        assert len(set(codes.tolist())) == len(codes), text  # distinct
        assert set(codes.tolist()) == _reference_codes(text, cls, year) == set(page_codes(text, cls, year, 0).tolist())
    salted_ = many_page_codes(texts, classes, years, [5] * len(texts))  # shard 5: each code XOR its salt
    assert all(set(s.tolist()) == set(salted(c.tolist(), 5)) for s, c in zip(salted_, together, strict=True))


def test_a_text_holds_the_codes_of_every_query_it_contains():
    rng = random.Random(5)
    alphabet = "张三丰李四工作单位。，：“”（）《》—…、 \n0123456789ABCxyz-/.𠇔𪚥"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
        codes = set(page_codes(text, "4-1", 2001, 0).tolist())
        for i in range(len(text)):
            for j in range(i + 1, min(len(text), i + 8) + 1):
                assert set(query_codes(text[i:j])) <= codes, (text, text[i:j])


def test_phrases_across_punctuation_and_digits_match_like(db):
    for q in ("张三丰，出", "，出生", "长沙市。毕业", "市。", "。毕", "，", "标准375", "50元", "3", "CE", "2009年"):
        with db.transaction() as cur:
            cur.execute("SELECT p.page_id FROM pages p WHERE p.ocr_text LIKE %s", (f"%{q}%",))
            baseline = {r["page_id"] for r in cur.fetchall()}
        found = {h.page_id for h in search(db, q, limit=10_000, actor=T).hits if h.kind == "text"}
        assert found == baseline and (baseline or q == "，"), q


def test_http_endpoint_paged_and_masked(db):
    from fastapi.testclient import TestClient

    from access import accounts
    from stages.services import Services
    from storage.localstore import LocalObjectStore
    from web.app import create_app

    services = Services(db, LocalObjectStore("/nonexistent"), "s", "a", id_hash_key=KEY)
    with db.transaction() as cur:
        _, token = accounts.create_token(cur, "reader", ["files:search"], 1, "test", agency="520000")
    client = TestClient(create_app(services), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {token}"})
    r = client.get("/api/search", params={"q": "专业", "limit": 5}, headers={"X-Archive-Actor": "staff-01"})
    assert r.status_code == 200
    body = r.json()
    assert len(body["hits"]) == 5 and body["next_offset"] == 5
    more = client.get("/api/search", params={"q": "专业", "limit": 5, "offset": 5}).json()
    assert {h["page_id"] for h in more["hits"]}.isdisjoint({h["page_id"] for h in body["hits"]})
    by_id = client.get("/api/search", params={"q": _id(0)}).json()
    assert by_id["hits"][0]["file_number"] == "GZ-1" and _id(0) not in r.text + json.dumps(by_id)
    assert client.get("/api/search", params={"q": "张三", "class": "4-x"}).status_code == 422
    assert client.get("/api/search", params={"q": ""}).status_code == 422
    with db.transaction() as cur:  # the token, not the header that names someone
        cur.execute("SELECT actor FROM audit_log WHERE action = 'search' ORDER BY seq LIMIT 1")
        assert cur.fetchone()["actor"].startswith("token:")
