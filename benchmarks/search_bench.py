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
    search.query.search, beside a naive LIKE '%q%' (or id_number =) baseline in the same run;
  - whether the hits are identical to the baseline's on every query of the sample.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psycopg2.extras import RealDictCursor  # noqa: E402

from access.audit import Actor  # noqa: E402
from catalog import idnumber  # noqa: E402
from devservices.postgres import LocalPostgres  # noqa: E402
from devservices.s3 import free_port  # noqa: E402
from sample_scans.people import APPRAISAL, AUTOBIOGRAPHY, SELF_ASSESSMENT, fill, history, make_person  # noqa: E402
from search.query import Filters, search  # noqa: E402
from stages.index import CHUNK_FILES, Chunk, load_chunks, prepared  # noqa: E402
from storage.db import Database, connect  # noqa: E402

KEY = b"bench-key"
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
        chunk.files.append((number, p.name, idnumber.lookup_hash(p.id_number, KEY), p.id_number,
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
        print(f"{'kind':<16} {'n':>3} | {'search':<32} | {'LIKE baseline':<32} | identical | truncated")
        all_same, slowest = True, []
        for kind, queries in kinds.items():
            fast, slow, same, truncated = [], [], True, 0
            for q, f in queries:
                t = time.perf_counter()
                result = search(db, q, f, limit=20, actor=BENCH, id_hash_key=KEY)
                hits = result.hits
                fast.append(time.perf_counter() - t)
                t = time.perf_counter()
                with db.transaction() as cur:
                    if kind == "ID lookup":
                        cur.execute("SELECT file_number FROM personnel_files WHERE id_number = %s", (q,))
                        base = {r["file_number"] for r in cur.fetchall()}
                    else:
                        f = f or Filters()
                        cur.execute("SELECT p.page_id FROM pages p JOIN materials m USING (material_id)"
                                    " WHERE p.ocr_text LIKE %s AND (%s::text IS NULL OR m.class_code = %s"
                                    " OR m.class_code LIKE %s || '-%%') AND m.formed_on BETWEEN"
                                    " coalesce(%s::date, '-infinity') AND coalesce(%s::date, 'infinity')",
                                    (f"%{q}%", f.class_code, f.class_code, f.class_code, f.formed_from, f.formed_to))
                        base = {r["page_id"] for r in cur.fetchall()}
                slow.append(time.perf_counter() - t)
                if kind == "ID lookup":
                    same &= {h.file_number for h in hits if h.kind == "id"} == base
                else:  # the whole result, unwindowed, must be exactly LIKE's
                    every = search(db, q, f, limit=10_000_000, actor=BENCH, id_hash_key=KEY, window=10_000_000)
                    same &= {h.page_id for h in every.hits if h.kind == "text"} == base
                    truncated += result.truncated
            all_same &= same
            print(f"{kind:<16} {len(queries):>3} | {_ms(fast):<32} | {_ms(slow):<32} | {'yes' if same else 'NO':<9}"
                  f" | {truncated}")
            worst = sorted(zip(fast, (q for q, _ in queries), strict=True), reverse=True)[:2]
            slowest.append(f"{kind}: " + ", ".join(f"{q} {s * 1000:.0f} ms" for s, q in worst))
        print(f"results identical to the baseline on every sampled query: {'yes' if all_same else 'NO'}")
        print("slowest searches:", "; ".join(slowest))
    finally:
        if pg and args.keep:
            print(f"the database is kept running: --database-url {url} --no-load; stop it with"
                  f" pg_ctl stop -D {pg.datadir}, then remove {pg.datadir.parent}")
        elif pg:
            pg.stop()
            shutil.rmtree(pg.datadir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
