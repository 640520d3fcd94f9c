"""ID numbers at rest (issue 15): a personnel file's number and the numbers in the catalogs
intake kept encrypted by the application (access/idcipher.py, key from ARCHIVE_ID_KEYS), and
ID-like numbers in page text masked, with
the page's search codes recomputed from the masked text, so neither a search for the middle
digits nor a look at the table gives a number away. Only pages holding a run of 15 or more
digits are rewritten. The OCR results in preservation storage keep the text as read."""

import json

from access.idcipher import IdCipher
from catalog.idnumber import mask_ids
from search.terms import many_page_codes, shard_of
from settings import Settings


def migrate(cur) -> None:
    cipher = IdCipher.from_settings(Settings.from_env())
    cur.execute("ALTER TABLE personnel_files RENAME COLUMN id_number TO id_number_encrypted")
    cur.execute("SELECT file_number, id_number_encrypted FROM personnel_files")
    for row in cur.fetchall():
        cur.execute("UPDATE personnel_files SET id_number_encrypted = %s WHERE file_number = %s",
                    (cipher.encrypt(row["id_number_encrypted"], row["file_number"]), row["file_number"]))
    cur.execute("SELECT batch_id, catalog FROM batches WHERE catalog IS NOT NULL")
    for row in cur.fetchall():
        files = [{**{k: v for k, v in f.items() if k != "id_number"},
                  "id_number_encrypted": cipher.encrypt(f["id_number"], f["file_number"])} if "id_number" in f else f
                 for f in row["catalog"].get("files", [])]
        cur.execute("UPDATE batches SET catalog = %s WHERE batch_id = %s",
                    (json.dumps({**row["catalog"], "files": files}, ensure_ascii=False), row["batch_id"]))
    cur.execute("SELECT p.page_id, p.ocr_text, m.class_code, extract(year FROM m.formed_on)::int AS year,"
                " m.file_number FROM pages p JOIN materials m USING (material_id) WHERE p.ocr_text ~ '[0-9]{15}'")
    rows = cur.fetchall()
    texts = [mask_ids(r["ocr_text"]) for r in rows]
    codes = many_page_codes(texts, [r["class_code"] for r in rows], [r["year"] for r in rows],
                            [shard_of(r["file_number"]) for r in rows])
    for r, text, c in zip(rows, texts, codes, strict=True):
        cur.execute("UPDATE pages SET ocr_text = %s, term_codes = %s WHERE page_id = %s",
                    (text, c.tolist(), r["page_id"]))
