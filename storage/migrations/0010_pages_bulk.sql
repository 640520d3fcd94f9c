-- Pages are written in bulk, ~10,000 rows a COPY (stages/index.py); two per-row costs of that
-- COPY go, measured with perf on the backend loading 100,000 pages.
--
-- 1. The foreign key to materials. PostgreSQL checks it with one executor run per inserted page
--    (27% of the backend's samples). The index stage writes pages only under materials its own
--    transaction has just inserted or upserted (ON CONFLICT DO UPDATE locks every conflicting
--    row, changed or not), and it takes the lock the check took, KEY SHARE, once per material
--    (stages/index.py MATERIAL_IDS), so no material can go while its pages are written. Deleting
--    materials (a personnel file's cascade) deletes their pages in one statement, as ON DELETE
--    CASCADE did. A per-statement check over a transition table instead gave back 4-10 µs a page
--    of the 5-16 saved (six rounds of 50,000 pages), so it is not kept.
-- 2. Compression. A page row (on average ~0.6 KB of text and ~1.2 KB of search codes here; more
--    on a dense page) often crosses the 2 KB toast threshold; pglz then tries the text, fails
--    (Chinese UTF-8 hardly compresses: 0 of 50,000 pages compressed) and moves it out of line
--    (5.5 MiB of toast for 50,000 pages; pglz alone 4.7% of the backend's samples).
--    Rows now stay inline and uncompressed up to a heap page, which also spares a search that
--    reads page text the detoasting.
-- Together: the index stage's load_chunk 52-60 -> 37-46 µs a page (five interleaved rounds of
-- 50,000 pages, GIN index dropped as for a first load).
ALTER TABLE pages SET (toast_tuple_target = 8160);

ALTER TABLE pages DROP CONSTRAINT IF EXISTS pages_material_id_fkey;

CREATE FUNCTION delete_pages_of_materials() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pages p USING gone_materials g WHERE p.material_id = g.material_id;
    RETURN NULL;
END $$;

CREATE TRIGGER materials_delete_pages AFTER DELETE ON materials
    REFERENCING OLD TABLE AS gone_materials FOR EACH STATEMENT EXECUTE FUNCTION delete_pages_of_materials();
