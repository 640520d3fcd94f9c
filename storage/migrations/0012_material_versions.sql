-- Versions of a material. A material handed in again with other scans, other OCR results or
-- another catalog row (a re-scan of a dark page, a corrected title) becomes a new version: its
-- `materials` row and its pages are the current version (what search and transfer read), and
-- the version it replaced is kept here with everything needed to find it in preservation
-- storage. Objects are never deleted, so a superseded version's originals, OCR results and
-- searchable PDF stay where they were stored.
ALTER TABLE materials ADD COLUMN version integer NOT NULL DEFAULT 1;
-- when the current version became current; unknown (NULL) for materials indexed before 0012
ALTER TABLE materials ADD COLUMN versioned_at timestamptz;
ALTER TABLE materials ALTER COLUMN versioned_at SET DEFAULT now();

CREATE TABLE material_versions (
    material_id       bigint NOT NULL REFERENCES materials ON DELETE CASCADE,
    version           integer NOT NULL,
    batch_id          text REFERENCES batches,     -- the batch that handed this version in
    title             text NOT NULL,
    formed            text NOT NULL,
    copies            integer NOT NULL,
    page_count        integer NOT NULL,
    remarks           text NOT NULL,
    pdf_sha256        text,                        -- its searchable PDF, if one was made
    pages             jsonb NOT NULL,              -- [{page_no, source_sha256, source_page, source_path, ocr_sha256}]
    created_at        timestamptz,                 -- when it became current (NULL: before 0012)
    superseded_at     timestamptz NOT NULL DEFAULT now(),
    superseded_by     text REFERENCES batches,     -- the batch whose version replaced it
    PRIMARY KEY (material_id, version)
);
