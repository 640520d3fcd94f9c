-- The pages -> materials foreign key again, declared and enforced for every writer (manual SQL,
-- any later code) with its own cascade; 0010's delete trigger goes. The index stage, for whose
-- COPY 0010 dropped the key (its per-page check was 27% of the backend's time), now turns the
-- per-row checks off in its own transaction instead, where the role may, having checked the
-- same references set-wise under the same locks (stages/index.py begin_load, KEYS).
-- Validating existing pages is one join, once.
DROP TRIGGER IF EXISTS materials_delete_pages ON materials;
DROP FUNCTION IF EXISTS delete_pages_of_materials();

ALTER TABLE pages ADD CONSTRAINT pages_material_id_fkey
    FOREIGN KEY (material_id) REFERENCES materials ON DELETE CASCADE;
