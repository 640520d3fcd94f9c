"""Search: exact lookups (ID number through its hash, file number), names, phrases in OCR text.

Ranking: an ID or file-number match first, then names (exact, then starting with the query,
then containing it), then pages by how often the phrase occurs. Pages are ranked within the
first RANK_WINDOW matching pages: a phrase on more pages than that (工作单位 is on every form)
comes back marked `truncated`, for the user to narrow with filters, instead of ranking a
province's worth of pages per keystroke. Below the window the hits are exactly LIKE's.
ID numbers are only ever shown masked (page text is stored masked: stages/index.py), and
every search is written to the audit trail with the files it showed (access/audit.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from access import audit
from access.audit import Actor
from catalog import idnumber
from catalog.idnumber import mask_ids
from search.terms import SHARDS, class_code_term, query_codes, salted, salted_all, year_codes
from storage.db import Database

_ID_LIKE = re.compile(r"^\d{17}[\dXx]$")
SNIPPET_CONTEXT = 15
# Each ranked page is a heap read, so the window bounds what a common phrase costs
# (docs/benchmarks.md).
RANK_WINDOW = 500


@dataclass
class Filters:
    class_code: str | None = None     # `4` covers 4-1 ... 4-4
    formed_from: str | None = None    # ISO date, inclusive
    formed_to: str | None = None
    agency: str | None = None
    batch_id: str | None = None

    @property
    def on_materials(self) -> bool:
        return any((self.class_code, self.formed_from, self.formed_to, self.batch_id))


@dataclass
class Hit:
    kind: str                   # id | file_number | name | text
    file_number: str
    name: str
    id_masked: str
    score: float
    material: str | None = None  # class-sequence, e.g. 4-1-2
    title: str | None = None
    formed: str | None = None
    page_no: int | None = None
    page_id: int | None = None
    snippet: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def snippet(text: str, query: str) -> str:
    flat = mask_ids(" ".join(text.split()))
    at = flat.find(query)
    if at < 0:
        return flat[: 2 * SNIPPET_CONTEXT]
    start, end = max(0, at - SNIPPET_CONTEXT), at + len(query) + SNIPPET_CONTEXT
    return (("…" if start else "") + flat[start:at] + f"【{query}】" + flat[at + len(query):end]
            + ("…" if end < len(flat) else ""))


CLASS_FILTER = "(%(class)s::text IS NULL OR m.class_code = %(class)s OR m.class_code LIKE %(class)s || '-%%')"
MATERIAL_FILTER = f"""
    {CLASS_FILTER}
    AND (%(from)s::date IS NULL OR m.formed_on >= %(from)s::date)
    AND (%(to)s::date IS NULL OR m.formed_on <= %(to)s::date)
    AND (%(batch)s::text IS NULL OR m.batch_id = %(batch)s)"""

PAGE_FILTER = f"""
    (%(agency)s::text IS NULL OR f.holding_agency = %(agency)s) AND {MATERIAL_FILTER}"""

# Pages containing the phrase, three ways to the same rows; each page's material and file are
# looked up by key (OFFSET 0 keeps the planner from turning that into a hash of every material
# the filters allow, which costs more than the lookups).
_OF_PAGE = f"""CROSS JOIN LATERAL (
        SELECT f.file_number, f.name, f.id_masked, m.class_code, m.seq, m.title, m.formed
        FROM materials m JOIN personnel_files f USING (file_number)
        WHERE m.material_id = p.material_id AND {PAGE_FILTER} OFFSET 0) mf"""
# Indexed: the GIN index of terms gives the pages holding every code, LIKE keeps the exact
# ones; best when few pages match. Shard by shard (search/terms.py), each with its salted codes,
# until the window is full: a common phrase's candidates are collected from one shard, not all.
INDEXED_PAGES = f"""
    SELECT mf.*, p.page_no, p.page_id, p.ocr_text
    FROM generate_series(1, %(shards)s) s CROSS JOIN LATERAL (
        SELECT p.material_id, p.page_no, p.page_id, p.ocr_text FROM pages p
        WHERE p.term_codes @> (%(shard_codes)s::int4[])[s:s]
          AND (%(year_codes)s::int4[] IS NULL OR p.term_codes && (%(year_codes)s::int4[])[s:s])
          AND p.ocr_text LIKE %(like)s) p
    {_OF_PAGE}
    LIMIT %(window)s + 1"""
# Scanned: pages read in storage order until the window is full; best when the phrase is
# common (form labels, set phrases), where the index would first collect every match.
SCANNED_PAGES = f"""
    SELECT mf.*, p.page_no, p.page_id, p.ocr_text
    FROM pages p {_OF_PAGE}
    WHERE p.ocr_text LIKE %(like)s
    LIMIT %(window)s + 1"""
# By material: the materials the filters allow, in storage order, then each one's pages by key
# until the window is full; best when the filter narrows more than the index can (exact dates, a
# batch), since GIN must collect every match before the first row. The fence (OFFSET 0) keeps
# the file lookup after the pages, so only a material with a match has its file looked up.
MATERIAL_PAGES = f"""
    SELECT f.file_number, f.name, f.id_masked, mp.class_code, mp.seq, mp.title, mp.formed,
           mp.page_no, mp.page_id, mp.ocr_text
    FROM (SELECT m.file_number, m.class_code, m.seq, m.title, m.formed, p.page_no, p.page_id, p.ocr_text
          FROM materials m CROSS JOIN LATERAL (
              SELECT p.page_no, p.page_id, p.ocr_text FROM pages p
              WHERE p.material_id = m.material_id AND p.ocr_text LIKE %(like)s ORDER BY p.page_no) p
          WHERE {MATERIAL_FILTER} OFFSET 0) mp
    CROSS JOIN LATERAL (  -- after the pages: only a material with a match needs its file
        SELECT f.file_number, f.name, f.id_masked FROM personnel_files f
        WHERE f.file_number = mp.file_number AND (%(agency)s::text IS NULL OR f.holding_agency = %(agency)s)
        OFFSET 0) f
    LIMIT %(window)s + 1"""
# How common the phrase is: among ~PROBE_PAGES pages drawn from blocks all over the table,
# those the filters allow, those of them holding the phrase, and the pages holding it that the
# index hands back (those of the class and years asked for, which are codes; exact dates and
# batches are not). The first pages alone belong to a few files and can misjudge a phrase
# specific to them and send it to a full scan. REPEATABLE: the same table gives the same
# choice, so paging through is stable.
PROBE_SQL = """
SELECT count(*) AS sampled, count(*) FILTER (WHERE kind & 2 > 0) AS allowed,
       count(*) FILTER (WHERE kind & 2 > 0 AND hit) AS n, count(*) FILTER (WHERE kind & 1 > 0 AND hit) AS indexed
FROM (SELECT p.ocr_text LIKE %(like)s AS hit, CASE WHEN NOT %(filtered)s THEN 3 ELSE (
          SELECT (PAGE_FILTER)::int * 2
                 + (CLASS_FILTER AND (%(years)s::int[] IS NULL OR extract(year FROM m.formed_on) = ANY(%(years)s)))::int
          FROM materials m JOIN personnel_files f USING (file_number) WHERE m.material_id = p.material_id)
      END AS kind  -- one lookup a sampled page: allowed (2), handed back by the index (1)
      FROM pages p TABLESAMPLE SYSTEM (%(percent)s) REPEATABLE (7)
      OFFSET 0) sampled""".replace("PAGE_FILTER", PAGE_FILTER).replace("CLASS_FILTER", CLASS_FILTER)
# (the fence, OFFSET 0: `kind` is computed once a page, not once a count)
PROBE_PAGES = 300  # it runs before every query, so it stays small: ~3 ms warm at 1M pages
# Without a filter on materials, pages are read when at least this share of those read match:
# the window then fills within RANK_WINDOW / SCAN_FROM_SHARE pages, about where reading
# overtakes the index (docs/benchmarks.md).
SCAN_FROM_SHARE = 0.1
# ...and when at least this many sampled pages match: a filter leaves a few dozen of the
# sampled pages, where one match by chance would send a rare phrase through a whole class.
PROBE_MIN_HITS = 2
# With a filter on materials, their pages are read when fewer pages are allowed than the index
# would hand back (times this): then the filter is what narrows, as a range of formation dates
# does, which the index cannot ask for. A class filter is a code, so what the index hands back
# is allowed and the index stays the way for it (docs/benchmarks.md).
MATERIALS_BELOW = 1.0
# A filter on formation dates within this many years asks the index for a page of one of them.
YEAR_CODES = 10
# Codes ANALYZE last found on at least EVERYWHERE of the pages (most_common_elems, summed over
# their salted forms): such a code (a pair of digits from the dates on every page) narrows
# nothing, while GIN decodes its whole list to intersect it. Reading the statistics costs a
# query of a thousand elements through pg_stats, so each process keeps them for as long as
# the table's identity, row estimate and size, which every ANALYZE (or VACUUM) rewrites, stay
# the same; a stale set could only make a search slower, never change its hits.
TABLE_SQL = """
SELECT c.oid, c.reltuples, c.relpages FROM pg_class c WHERE c.oid = 'pages'::regclass"""
COMMON_CODES_SQL = """
SELECT s.most_common_elems::text::int4[] AS codes, s.most_common_elem_freqs AS shares FROM pg_stats s
WHERE s.schemaname = current_schema() AND s.tablename = 'pages' AND s.attname = 'term_codes'"""
EVERYWHERE = 0.9
_common: dict[str, tuple[tuple, dict[int, float]]] = {}  # by connection string: (table state, share by code)


def _codes_everywhere(cur, table: dict, codes: list[int]) -> set[int]:
    """Those of `codes` on nearly every page, as the table's statistics last said; none if it
    was never analyzed."""
    if table["reltuples"] < 0:
        return set()
    state = (table["oid"], table["reltuples"], table["relpages"])
    dsn = cur.connection.dsn
    if dsn not in _common or _common[dsn][0] != state:
        cur.execute(COMMON_CODES_SQL)
        row = cur.fetchone() or {"codes": None, "shares": None}
        # the shares end with 3 summary values, beyond the codes
        _common[dsn] = (state, dict(zip(row["codes"] or [], row["shares"] or [], strict=False)))
    share = _common[dsn][1]
    return {c for c in codes if sum(share.get(s, 0.0) for s in salted_all(c)) >= EVERYWHERE}


SEARCH_SQL = """
SELECT * FROM (
    SELECT 'name' AS kind, f.file_number, f.name, f.id_masked,
           CASE WHEN f.name = %(q)s THEN 1000 WHEN f.name LIKE %(prefix)s THEN 500 ELSE 300 END AS score,
           NULL::text AS class_code, NULL::int AS seq, NULL::text AS title, NULL::text AS formed,
           NULL::int AS page_no, NULL::bigint AS page_id, NULL::text AS text, NULL::bigint AS candidates
    FROM personnel_files f
    WHERE f.name_codes @> %(codes)s::int4[] AND f.name LIKE %(like)s
      AND (%(agency)s::text IS NULL OR f.holding_agency = %(agency)s)
      AND (NOT %(on_materials)s OR EXISTS (SELECT 1 FROM materials m WHERE m.file_number = f.file_number
                                           AND MATERIAL_FILTER))
    UNION ALL
    SELECT 'text', file_number, name, id_masked,
           (length(ocr_text) - length(replace(ocr_text, %(q)s, ''))) / length(%(q)s) AS score,
           class_code, seq, title, formed, page_no, page_id, ocr_text, count(*) OVER () AS candidates
    FROM (__PAGES__) window_  -- one over the window tells that more match
) hits
ORDER BY score DESC, file_number, page_id NULLS FIRST
LIMIT %(limit)s OFFSET %(offset)s
""".replace("MATERIAL_FILTER", MATERIAL_FILTER)


def _pages_source(cur, params: dict) -> tuple[str, list[int]]:
    """Reading pages for a phrase common enough for the window to fill early, or by material
    under a filter on materials that allows fewer pages than the index would hand back; the
    index otherwise. With it, the codes to look up in the index: all but those on nearly every
    page, unless that leaves none."""
    codes = params["page_codes"]
    if not codes:  # a lone digit or mark: no term to look up
        return SCANNED_PAGES, codes
    cur.execute(TABLE_SQL)
    table = cur.fetchone()
    everywhere = _codes_everywhere(cur, table, codes)
    lookup = [c for c in codes if c not in everywhere] or codes
    if params["window"] > RANK_WINDOW:  # asked for every match (tests, benchmark): the index
        return INDEXED_PAGES, lookup
    pages = max(table["reltuples"], 0)
    percent = 100.0 if pages < PROBE_PAGES else 100.0 * PROBE_PAGES / pages
    on_materials = params["on_materials"]
    cur.execute(PROBE_SQL, {**params, "percent": percent, "filtered": on_materials or params["agency"] is not None})
    probe = cur.fetchone()
    if on_materials:
        narrower = probe["allowed"] < MATERIALS_BELOW * probe["indexed"]
        return (MATERIAL_PAGES, codes) if narrower else (INDEXED_PAGES, lookup)
    if probe["n"] < max(PROBE_MIN_HITS, SCAN_FROM_SHARE * probe["allowed"]):
        return INDEXED_PAGES, lookup
    return SCANNED_PAGES, codes


def _years(filters: Filters) -> list[int] | None:
    """The years of formation a filter on dates spans, when they are few enough (YEAR_CODES) for
    the index to ask for one of them."""
    try:
        first, last = int(filters.formed_from[:4]), int(filters.formed_to[:4])
    except (TypeError, ValueError):  # an open end: too many years
        return None
    return list(range(first, last + 1)) if 0 < last - first + 1 <= YEAR_CODES else None


def text_statement(cur, q: str, filters: Filters, limit: int, offset: int,
                   window: int = RANK_WINDOW) -> tuple[str, dict]:
    """The statement and parameters that find names and pages for `q` (search() runs exactly
    these), with the way to the pages chosen for this query and these filters (_pages_source)."""
    codes = query_codes(q)
    params = {
        "q": q, "like": f"%{escape_like(q)}%", "prefix": f"{escape_like(q)}%", "codes": codes,
        "page_codes": codes + ([class_code_term(filters.class_code)] if filters.class_code else []),
        "agency": filters.agency, "class": filters.class_code, "from": filters.formed_from,
        "to": filters.formed_to, "batch": filters.batch_id, "on_materials": filters.on_materials,
        "years": _years(filters),
        "limit": limit, "offset": offset, "window": window}
    source, lookup = _pages_source(cur, params)
    if source is INDEXED_PAGES:  # the codes as each shard stores them
        years = year_codes(params["years"]) if params["years"] else None
        params.update(shards=SHARDS, shard_codes=[salted(lookup, s) for s in range(SHARDS)],
                      year_codes=[salted(years, s) for s in range(SHARDS)] if years else None)
    return SEARCH_SQL.replace("__PAGES__", source), params


@dataclass
class SearchResult:
    hits: list[Hit]
    truncated: bool  # more pages match than were ranked (RANK_WINDOW): narrow the search


def search(db: Database, query: str, filters: Filters | None = None, limit: int = 20, offset: int = 0,
           actor: Actor | None = None, id_hash_key: bytes | None = None, window: int = RANK_WINDOW) -> SearchResult:
    """One page of hits for `query` (ID number, file number, name or phrase), best first; only
    files of `filters.agency` when it is given (the web always gives the caller's). The search
    and the files it showed are one audit row, written in the same transaction."""
    q = query.strip()
    if not q:
        return SearchResult([], False)
    truncated = False
    filters = filters or Filters()
    hits: list[Hit] = []
    with db.transaction() as cur:
        cur.execute("SET LOCAL jit = off")  # a sharded plan looks costly enough to JIT; compiling outlasts the search
        if offset == 0 and _ID_LIKE.match(q) and id_hash_key is not None:
            cur.execute("SELECT file_number, name, id_masked FROM personnel_files WHERE id_hash = %s"
                        " AND (%s::text IS NULL OR holding_agency = %s)",
                        (idnumber.lookup_hash(q, id_hash_key), filters.agency, filters.agency))
            hits += [Hit("id", r["file_number"], r["name"], r["id_masked"], 10_000) for r in cur.fetchall()]
        if offset == 0:
            cur.execute("SELECT file_number, name, id_masked FROM personnel_files WHERE file_number = %s"
                        " AND (%s::text IS NULL OR holding_agency = %s)", (q, filters.agency, filters.agency))
            hits += [Hit("file_number", r["file_number"], r["name"], r["id_masked"], 5_000) for r in cur.fetchall()]
        if not _ID_LIKE.match(q):  # an ID number is looked up by its hash only, never as text
            cur.execute(*text_statement(cur, q, filters, limit, offset, window))
            rows = cur.fetchall()
            truncated = any((r["candidates"] or 0) > window for r in rows)
            for r in rows:
                hits.append(Hit(r["kind"], r["file_number"], r["name"], r["id_masked"], float(r["score"]),
                                f"{r['class_code']}-{r['seq']}" if r["class_code"] else None, r["title"],
                                r["formed"], r["page_no"], r["page_id"],
                                snippet(r["text"], q) if r["text"] else None))
        hits = hits[:limit]
        audit.record(cur, actor or Actor("unknown", "unknown"), "search", file_numbers=[h.file_number for h in hits],
                     detail={"query": mask_query(q), "filters": {k: v for k, v in asdict(filters).items() if v},
                             "hits": len(hits)})
    return SearchResult(hits, truncated)


def mask_query(query: str) -> str:
    """A query as it may be logged: anything shaped like an ID number is masked."""
    return mask_ids(query)
