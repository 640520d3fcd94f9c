"""Search benchmark: N synthetic pages into a fresh database, then query latency against LIKE.

    .venv/bin/python benchmarks/search_bench.py [--pages 1000000] [--queries 20] [--loaders 2] [--keep]
    .venv/bin/python benchmarks/search_bench.py --database-url URL --no-load   # query again

Starts a private PostgreSQL in a temp folder (or uses --database-url), generates personnel
files of ~50 pages of realistic Chinese text (names, dates, places, forms and prose), and prints
  - load: rows generated first (not timed), then the index stage's work on them in pages/s
    (stages.index.load_chunks: search codes, binary COPY), batches of 2,000 files, --loaders
    of them at once; then the GIN index build;
  - p50/p95 latency of each query kind (2-char name, 3-char name, 4+-char phrase, ID lookup,
    phrase filtered by class, phrase filtered by a year of formation dates) through
    search.query.search, beside a LIKE baseline in the same run (like_search below), and the
    ratio of their p50s;
  - whether each untruncated query's page of hits is the baseline's, and whether the whole
    unwindowed result is exactly LIKE's on every query of the sample.

The baseline asks the same question of the same columns without the search's indexes: the ID
number's keyed hash against personnel_files.id_hash with index scans off; names and phrases by
`LIKE '%q%'` on personnel_files.name and pages.ocr_text, the same filters, the pages read until
the same window (RANK_WINDOW + 1) is full, ranked by the same score and order, the same LIMIT,
snippets made and the search written to the audit trail as search() does; both without JIT, on
the same kept connection. Each query runs --warmup times through each side untimed, then once
timed; the side that goes first alternates from query to query.
"""

from __future__ import annotations

import argparse
import pickle
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psycopg2.extras import RealDictCursor  # noqa: E402

from access import audit  # noqa: E402
from access.audit import Actor  # noqa: E402
from access.idcipher import IdCipher  # noqa: E402
from catalog import idnumber  # noqa: E402
from devservices.postgres import LocalPostgres  # noqa: E402
from devservices.s3 import free_port  # noqa: E402
from sample_scans.people import APPRAISAL, AUTOBIOGRAPHY, SELF_ASSESSMENT, fill, history, make_person  # noqa: E402
from search.query import (  # noqa: E402
    MATERIAL_FILTER,
    PAGE_FILTER,
    RANK_WINDOW,
    Filters,
    Hit,
    escape_like,
    mask_query,
    search,
    snippet,
)
from stages.index import CHUNK_FILES, Chunk, load_chunks, prepared  # noqa: E402
from storage.db import Database, connect  # noqa: E402

KEY = b"bench-key"
CIPHER = IdCipher("bench", {"bench": bytes(range(32))})
BENCH = Actor("bench", "bench")
PAGES_PER_FILE = 50
BATCH_CHUNKS = 10  # chunks of 200 files: batches of 2,000 files, 100,000 pages
CLASSES = ["1", "2", "3", "4-1", "4-2", "6", "7", "9-1", "9-2", "10"]


def _batch_of(file_no: int) -> str:
    """The scan batch of a file: one per BATCH_CHUNKS chunks, as staff hand them in."""
    return f"bench-{file_no // (CHUNK_FILES * BATCH_CHUNKS):04d}"


def _file_rows(args: tuple[int, int, str, int]) -> str:
    """Rows of files [start, stop) as the index stage builds them, without their search codes
    (the timed load computes those, as the stage does), materials of `per_material` pages,
    pickled to a file; deterministic per file number."""
    start, stop, folder, per_material = args
    chunk = Chunk([], [], [])
    batch = _batch_of(start)
    for n in range(start, stop):
        rng = random.Random(n)
        p = make_person(rng)
        number = f"GZ-{n:07d}"
        chunk.files.append((number, p.name, idnumber.lookup_hash(p.id_number, KEY), CIPHER.encrypt(p.id_number, number),
                            idnumber.mask(p.id_number), "520000", batch))
        for m in range(PAGES_PER_FILE // per_material):
            cls = CLASSES[m % len(CLASSES)]
            formed = f"{p.graduated.year + m % 9}-0{1 + m % 9}-01"
            chunk.materials.append((number, cls, m + 1, f"材料{m + 1}", formed, formed, 1, per_material, "", batch))
            for k in range(per_material):
                body = fill(rng.sample(AUTOBIOGRAPHY + APPRAISAL + SELF_ASSESSMENT, 4), p, rng, p.graduated.year + k)
                text = f"姓名 {p.name} 性别 {p.gender} 籍贯 {p.native_place}\n" + "\n".join(body + history(p, rng)[:2])
                chunk.pages.append((number, cls, m + 1, k + 1, f"{n:048d}{m:08d}{k:08d}", 0, "p.jpg", None, None, None,
                                    text, None, None, None))
    path = Path(folder) / f"{start:08d}.pickle"
    path.write_bytes(pickle.dumps(chunk))
    return str(path)


def _load_batch(args: tuple[str, list[str]]) -> tuple[int, float]:
    """One batch as an index run loads it (stages.index.load_chunks: search codes and COPY
    encoding in a thread, binary COPY), on its own connection, in one transaction; returns
    (pages, seconds the thread spent on codes and encoding)."""
    url, paths = args
    built = 0.0

    def chunks() -> Iterator[Chunk]:
        nonlocal built
        for path in paths:
            chunk = pickle.loads(Path(path).read_bytes())
            Path(path).unlink()
            t = time.perf_counter()
            chunk = prepared(chunk)
            built += time.perf_counter() - t
            yield chunk

    conn = connect(url)
    try:
        with conn.cursor(cursor_factory=RealDictCursor) as cur:
            pages = load_chunks(cur, chunks())[2]
        conn.commit()
    finally:
        conn.close()
    return pages, built


def load(url: str, n_pages: int, loaders: int, per_material: int = 5) -> None:
    """Generates the rows first (not timed: they stand for the OCR stage's output), then times
    what the index stage does with them, batches of 2,000 files, `loaders` batches at once in
    processes of their own, as Dagster runs the index step of several batch partitions at once
    (dagster.yaml: up to 4 runs). The search indexes are dropped first and built after, as the
    first migration of a province's files would."""
    n_files = max(1, n_pages // PAGES_PER_FILE)
    folder = tempfile.mkdtemp(prefix="search-bench-rows-")
    chunks = [(s, min(s + CHUNK_FILES, n_files), folder, per_material) for s in range(0, n_files, CHUNK_FILES)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        paths = list(pool.map(_file_rows, chunks))
    print(f"generated {n_pages:,} pages ({n_files:,} files, materials of {per_material} pages) in"
          f" {time.perf_counter() - t0:.0f} s (not timed below)")
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("DROP INDEX IF EXISTS pages_term_codes, personnel_files_name_codes, personnel_files_id_hash")
        cur.execute("INSERT INTO agencies (code, name) VALUES ('520000', '贵州省人才交流服务中心')"
                    " ON CONFLICT DO NOTHING")
        for batch in sorted({_batch_of(start) for start, *_ in chunks}):
            cur.execute("INSERT INTO batches (batch_id, name, content_sha256, holding_agency)"
                        " VALUES (%s, %s, %s, '520000')", (batch, batch, batch.ljust(64, "0")))
    conn.commit()
    batches = [(url, paths[s:s + BATCH_CHUNKS]) for s in range(0, len(paths), BATCH_CHUNKS)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(loaders) as pool:
        done = list(pool.map(_load_batch, batches))
    load_s = time.perf_counter() - t0
    built_s = sum(built for _, built in done)
    Path(folder).rmdir()
    t1 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("SET max_parallel_maintenance_workers = 2")
        cur.execute("CREATE INDEX pages_term_codes ON pages USING gin (term_codes)")
        cur.execute("CREATE INDEX personnel_files_name_codes ON personnel_files USING gin (name_codes)")
        cur.execute("CREATE INDEX personnel_files_id_hash ON personnel_files (id_hash)")
        cur.execute("ANALYZE")
    conn.commit()
    index_s = time.perf_counter() - t1
    with conn.cursor() as cur:
        cur.execute("SELECT pg_total_relation_size('pages'), pg_relation_size('pages_term_codes')")
        table_bytes, gin_bytes = cur.fetchone()
    conn.close()
    print(f"loaded {n_pages:,} pages: {n_pages / load_s:,.0f} pages/s, {loaders} batch(es) at once (codes and"
          f" COPY encoding alone, in a loader's thread: {n_pages / built_s:,.0f} pages/s);"
          f" GIN and lookup indexes built in {index_s:.0f} s;"
          f" searchable {n_pages / (load_s + index_s):,.0f} pages/s overall; pages {table_bytes / 2**20:,.0f} MiB"
          f" with indexes, of which the term index {gin_bytes / 2**20:,.0f} MiB")


# search.query.SEARCH_SQL with LIKE alone in place of the term codes and the probe's choice of
# way: names by a scan of personnel_files, pages read until the window is full.
LIKE_SQL = f"""
SELECT * FROM (
    SELECT 'name' AS kind, f.file_number, f.name, f.id_masked,
           CASE WHEN f.name = %(q)s THEN 1000 WHEN f.name LIKE %(prefix)s THEN 500 ELSE 300 END AS score,
           NULL::text AS class_code, NULL::int AS seq, NULL::text AS title, NULL::text AS formed,
           NULL::int AS page_no, NULL::bigint AS page_id, NULL::text AS text, NULL::bigint AS candidates
    FROM personnel_files f
    WHERE f.name LIKE %(like)s AND (%(agency)s::text IS NULL OR f.holding_agency = %(agency)s)
      AND (NOT %(on_materials)s OR EXISTS (SELECT 1 FROM materials m WHERE m.file_number = f.file_number
                                           AND {MATERIAL_FILTER}))
    UNION ALL
    SELECT 'text', file_number, name, id_masked,
           (length(ocr_text) - length(replace(ocr_text, %(q)s, ''))) / length(%(q)s),
           class_code, seq, title, formed, page_no, page_id, ocr_text, count(*) OVER ()
    FROM (SELECT f.file_number, f.name, f.id_masked, m.class_code, m.seq, m.title, m.formed,
                 p.page_no, p.page_id, p.ocr_text
          FROM pages p JOIN materials m ON m.material_id = p.material_id
          JOIN personnel_files f ON f.file_number = m.file_number
          WHERE p.ocr_text LIKE %(like)s AND {PAGE_FILTER}
          LIMIT %(window)s + 1) window_
) hits
ORDER BY score DESC, file_number, page_id NULLS FIRST
LIMIT %(limit)s"""


def like_search(db: Database, q: str, f: Filters, id_lookup: bool, limit: int = 20,
                window: int = RANK_WINDOW, snippets: bool = True) -> tuple[list[Hit], bool]:
    """The baseline: what search() returns for `q`, asked of the same columns without the search's
    indexes (module docstring), with the same work around it (hits, snippets, the audit row)."""
    hits: list[Hit] = []
    truncated = False
    with db.transaction() as cur:
        cur.execute("SET LOCAL jit = off")
        if id_lookup:  # the same keyed hash, the same column, its b-tree unused
            cur.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off;"
                        " SET LOCAL enable_indexonlyscan = off")
            cur.execute("SELECT file_number, name, id_masked FROM personnel_files WHERE id_hash = %s"
                        " AND (%s::text IS NULL OR holding_agency = %s)",
                        (idnumber.lookup_hash(q, KEY), f.agency, f.agency))
            hits += [Hit("id", r["file_number"], r["name"], r["id_masked"], 10_000) for r in cur.fetchall()]
            cur.execute("RESET enable_indexscan; RESET enable_bitmapscan; RESET enable_indexonlyscan")
        cur.execute("SELECT file_number, name, id_masked FROM personnel_files WHERE file_number = %s"
                    " AND (%s::text IS NULL OR holding_agency = %s)", (q, f.agency, f.agency))
        hits += [Hit("file_number", r["file_number"], r["name"], r["id_masked"], 5_000) for r in cur.fetchall()]
        if not id_lookup:
            cur.execute(LIKE_SQL, {"q": q, "like": f"%{escape_like(q)}%", "prefix": f"{escape_like(q)}%",
                                   "agency": f.agency, "class": f.class_code, "from": f.formed_from,
                                   "to": f.formed_to, "batch": f.batch_id, "on_materials": f.on_materials,
                                   "limit": limit, "window": window})
            rows = cur.fetchall()
            truncated = any((r["candidates"] or 0) > window for r in rows)
            hits += [Hit(r["kind"], r["file_number"], r["name"], r["id_masked"], float(r["score"]),
                         f"{r['class_code']}-{r['seq']}" if r["class_code"] else None, r["title"], r["formed"],
                         r["page_no"], r["page_id"], snippet(r["text"], q) if r["text"] and snippets else None)
                     for r in rows]
        hits = hits[:limit]
        audit.record(cur, BENCH, "search", file_numbers=[h.file_number for h in hits],
                     detail={"query": mask_query(q), "filters": {k: v for k, v in asdict(f).items() if v},
                             "hits": len(hits)})
    return hits, truncated


def _keys(hits: list[Hit]) -> list[tuple]:
    return [(h.kind, h.file_number, h.page_id) for h in hits]


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"p50 {statistics.median(s) * 1000:7.1f} ms  p95 {s[max(0, int(len(s) * 0.95) - 1)] * 1000:7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--loaders", type=int, default=2, help="batches loaded at once (default: one per core here)")
    ap.add_argument("--material-pages", type=int, default=5, choices=(1, 2, 5, 10),
                    help="pages a material (default 5; real files have many one-sheet materials)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of every query through each side first")
    ap.add_argument("--database-url")
    ap.add_argument("--no-load", action="store_true", help="query the already loaded --database-url again")
    ap.add_argument("--keep", action="store_true", help="leave the private database running to query it again")
    args = ap.parse_args()
    pg = None
    url = args.database_url
    if not url:
        root = Path(tempfile.mkdtemp(prefix="search-bench-"))
        root.chmod(0o755)
        pg = LocalPostgres(root / "data", free_port())
        pg.start()
        pg.ensure_database("bench")
        url = pg.url("bench")
    try:
        db = Database(url, keep=1)  # as the web server keeps its connections
        db.migrate()
        if not args.no_load:
            load(url, args.pages, args.loaders, args.material_pages)
        rng = random.Random(7)
        n_files = max(1, args.pages // PAGES_PER_FILE)
        people = [make_person(random.Random(n)) for n in rng.sample(range(n_files), min(n_files, 400))]
        two = [p.name for p in people if len(p.name) == 2][: args.queries]
        three = [p.name for p in people if len(p.name) == 3][: args.queries]
        with db.transaction() as cur:
            # by the digest the generator gives each page (file, material, page), not by block or
            # page id, which parallel loaders interleave: the same phrases in every run, so runs compare
            cur.execute("SELECT ocr_text FROM (SELECT ocr_text, row_number() OVER (ORDER BY source_sha256) AS n"
                        " FROM pages) p WHERE n % 397 = 0 ORDER BY n LIMIT 500")
            texts = ["".join(r["ocr_text"].split()) for r in cur.fetchall()]
        phrases = []
        for t in rng.sample(texts, min(len(texts), args.queries)):
            i = rng.randrange(len(t) - 6)
            phrases.append(t[i:i + rng.choice((4, 5, 6))])
        kinds = {
            "2-char name": [(q, None) for q in two],
            "3-char name": [(q, None) for q in three],
            "4+-char phrase": [(q, None) for q in phrases],
            "ID lookup": [(p.id_number, None) for p in people[: args.queries]],
            "filtered phrase": [(q, Filters(class_code=rng.choice(CLASSES))) for q in phrases],
        }
        # drawn after the others, so that theirs are the same as in runs before this kind
        kinds["dated phrase"] = [(q, Filters(formed_from=f"{y}-01-01", formed_to=f"{y}-12-31"))
                                 for q in phrases for y in [rng.randrange(1995, 2025)]]
        kinds = {kind: [(q, f or Filters()) for q, f in queries] for kind, queries in kinds.items()}

        def ours(kind: str, q: str, f: Filters) -> tuple[list[Hit], bool]:
            result = search(db, q, f, limit=20, actor=BENCH, id_hash_key=KEY)
            return result.hits, result.truncated

        def theirs(kind: str, q: str, f: Filters) -> tuple[list[Hit], bool]:
            return like_search(db, q, f, kind == "ID lookup")

        # warm both sides alike: every query through each, untimed, the first side alternating
        for _ in range(args.warmup):
            for i, (kind, q, f) in enumerate((k, q, f) for k, qs in kinds.items() for q, f in qs):
                for side in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
                    side(kind, q, f)
        print(f"{'kind':<16} {'n':>3} | {'search':<32} | {'LIKE baseline':<32} | {'x p50':>6} | same page"
              f" | truncated")
        all_pages, slowest, checks = True, [], []
        for kind, queries in kinds.items():
            fast, slow, same, truncated = [], [], 0, 0
            for i, (q, f) in enumerate(queries):
                timed = {}
                for side in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
                    t = time.perf_counter()
                    got = side(kind, q, f)
                    timed[side] = (time.perf_counter() - t, got)
                fast.append(timed[ours][0])
                slow.append(timed[theirs][0])
                (hits, cut), (base, base_cut) = timed[ours][1], timed[theirs][1]
                if cut or base_cut:  # the windows hold different pages: each side reads them in its own order
                    truncated += 1
                else:
                    same += _keys(hits) == _keys(base)
            untruncated = len(queries) - truncated
            all_pages &= same == untruncated
            ratio = statistics.median(slow) / statistics.median(fast)
            print(f"{kind:<16} {len(queries):>3} | {_ms(fast):<32} | {_ms(slow):<32} | {ratio:>5.1f}x |"
                  f" {same:>3}/{untruncated:<5} | {truncated}")
            worst = sorted(zip(fast, (q for q, _ in queries), strict=True), reverse=True)[:2]
            slowest.append(f"{kind}: " + ", ".join(f"{q} {s * 1000:.0f} ms" for s, q in worst))
            checks += [(kind, q, f) for q, f in queries]
        print(f"every untruncated page of hits the baseline's: {'yes' if all_pages else 'NO'}")
        print("slowest searches:", "; ".join(slowest))
        # after the timing, so that neither side is warmed by it: the whole result, unwindowed
        all_same = True
        for kind, q, f in checks:
            if kind == "ID lookup":
                ours_all = {h.file_number for h in ours(kind, q, f)[0] if h.kind == "id"}
                theirs_all = {h.file_number for h in theirs(kind, q, f)[0] if h.kind == "id"}
            else:
                every = search(db, q, f, limit=10_000_000, actor=BENCH, id_hash_key=KEY, window=10_000_000)
                ours_all = set(_keys(every.hits))
                theirs_all = set(_keys(like_search(db, q, f, False, 10_000_000, 10_000_000, snippets=False)[0]))
            all_same &= ours_all == theirs_all
        print(f"whole results, unwindowed, identical to LIKE's on every sampled query: {'yes' if all_same else 'NO'}")
    finally:
        if pg and args.keep:
            print(f"the database is kept running: --database-url {url} --no-load; stop it with"
                  f" pg_ctl stop -D {pg.datadir}, then remove {pg.datadir.parent}")
        elif pg:
            pg.stop()
            shutil.rmtree(pg.datadir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
