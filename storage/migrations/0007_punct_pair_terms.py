"""Pages indexed before a CJK character beside a punctuation mark became a search term
(search/terms.py) get those terms, computed by the very function the index stage uses, so
re-indexing them later rewrites nothing. Only pages with such a pair are read and rewritten,
a few thousand at a time through a server-side cursor (a province's pages never sit in memory).
"""

from search.terms import PUNCT_PAIR_SQL, page_terms_text
from storage.db import copy_rows

BATCH = 5000


def migrate(cur) -> None:
    cur.execute("CREATE TEMP TABLE new_terms (page_id bigint PRIMARY KEY, search_terms text) ON COMMIT DROP")
    with cur.connection.cursor(name="pages_to_reterm") as pages:
        pages.itersize = BATCH
        pages.execute("SELECT p.page_id, p.ocr_text, m.class_code FROM pages p JOIN materials m USING (material_id)"
                      " WHERE p.ocr_text ~ %s", (PUNCT_PAIR_SQL,))
        while rows := pages.fetchmany(BATCH):
            copy_rows(cur, "new_terms", ("page_id", "search_terms"),
                      [(page_id, page_terms_text(text, cls)) for page_id, text, cls in rows])
            cur.execute("UPDATE pages p SET search_terms = n.search_terms FROM new_terms n"
                        " WHERE p.page_id = n.page_id AND p.search_terms IS DISTINCT FROM n.search_terms")
            cur.execute("TRUNCATE new_terms")
