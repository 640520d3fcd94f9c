-- The searchable PDF of each material (image plus invisible text), by its sha256 in preservation
-- storage; NULL when a page changed since it was made.
ALTER TABLE materials ADD COLUMN pdf_sha256 text;
