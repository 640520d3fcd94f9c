"""Search terms as int4 codes instead of space-joined text (search/terms.py): GIN over int4[]
builds faster, the rows are smaller, and the index stage COPYs them
in binary. Every page gets the codes of its text and class, every name those of the name, a few
thousand rows at a time through a server-side cursor (a province's pages never sit in memory);
0009 adds what pages have carried since. The text terms and their indexes go."""

from search.terms import class_terms, many_codes
from storage.db import copy_binary

BATCH = 5000


def _fill(cur, table: str, key: tuple[str, str], column: str, select: str, codes) -> None:
    """Sets `column` of every row `select` gives (its key, then what `codes` makes the codes of,
    a batch of rows at a time)."""
    name, kind = key
    cur.execute(f"CREATE TEMP TABLE new_codes (id {kind} PRIMARY KEY, codes int4[])")
    with cur.connection.cursor(name=f"{table}_to_code") as rows:
        rows.itersize = BATCH
        rows.execute(select)
        while batch := rows.fetchmany(BATCH):
            new = zip((r[0] for r in batch), codes([r[1:] for r in batch]), strict=True)
            copy_binary(cur, "new_codes", (("id", kind), ("codes", "int4[]")), list(new))
            cur.execute(f"UPDATE {table} t SET {column} = n.codes FROM new_codes n WHERE t.{name} = n.id")
            cur.execute("TRUNCATE new_codes")
    cur.execute("DROP TABLE new_codes")


def migrate(cur) -> None:
    cur.execute("DROP INDEX IF EXISTS pages_search_terms, personnel_files_name_terms")
    cur.execute("ALTER TABLE pages DROP COLUMN IF EXISTS search_terms,"
                " ADD COLUMN term_codes int4[] NOT NULL DEFAULT '{}'")
    cur.execute("ALTER TABLE personnel_files DROP COLUMN IF EXISTS name_terms,"
                " ADD COLUMN name_codes int4[] NOT NULL DEFAULT '{}'")
    _fill(cur, "pages", ("page_id", "int8"), "term_codes",
          "SELECT p.page_id, p.ocr_text, m.class_code FROM pages p JOIN materials m USING (material_id)",
          lambda rows: many_codes([text for text, _ in rows], [class_terms(cls) for _, cls in rows]))
    _fill(cur, "personnel_files", ("file_number", "text"), "name_codes",
          "SELECT file_number, name FROM personnel_files",
          lambda rows: many_codes([name for name, in rows]))
    cur.execute("CREATE INDEX pages_term_codes ON pages USING gin (term_codes)")
    cur.execute("CREATE INDEX personnel_files_name_codes ON personnel_files USING gin (name_codes)")
