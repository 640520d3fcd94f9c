-- A page's search terms also carry its material's class (cls:4, cls:4-1; search/terms.py), so a
-- class filter narrows the GIN lookup itself. Pages indexed before get theirs here, in the
-- same form the index stage writes, so re-indexing them later rewrites nothing.
UPDATE pages p
SET search_terms = concat_ws(' ', nullif(p.search_terms, ''), 'cls:' || split_part(m.class_code, '-', 1),
                             CASE WHEN m.class_code LIKE '%-%' THEN 'cls:' || m.class_code END)
FROM materials m
WHERE m.material_id = p.material_id AND p.search_terms NOT LIKE '%cls:%';
