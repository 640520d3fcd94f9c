"""Search codes as the index stage now writes them (search/terms.py): with the year of the
material's formation among a page's terms, and salted for its personnel file's shard. Every
page gets its codes anew, a few thousand rows at a time through a server-side cursor, with the
term index dropped meanwhile and built after: kept up row by row, it costs far more."""

from search.terms import many_page_codes, shard_of
from storage.db import copy_binary

BATCH = 5000


def migrate(cur) -> None:
    cur.execute("DROP INDEX IF EXISTS pages_term_codes")
    cur.execute("CREATE TEMP TABLE new_codes (id int8 PRIMARY KEY, codes int4[])")
    with cur.connection.cursor(name="pages_to_code") as rows:
        rows.itersize = BATCH
        rows.execute("SELECT p.page_id, p.ocr_text, m.class_code, extract(year FROM m.formed_on)::int, m.file_number"
                     " FROM pages p JOIN materials m USING (material_id)")
        while batch := rows.fetchmany(BATCH):
            codes = many_page_codes([r[1] for r in batch], [r[2] for r in batch], [r[3] for r in batch],
                                    [shard_of(r[4]) for r in batch])
            copy_binary(cur, "new_codes", (("id", "int8"), ("codes", "int4[]")),
                        [(r[0], c) for r, c in zip(batch, codes, strict=True)])
            cur.execute("UPDATE pages p SET term_codes = n.codes FROM new_codes n WHERE p.page_id = n.id")
            cur.execute("TRUNCATE new_codes")
    cur.execute("DROP TABLE new_codes")
    cur.execute("CREATE INDEX pages_term_codes ON pages USING gin (term_codes)")
