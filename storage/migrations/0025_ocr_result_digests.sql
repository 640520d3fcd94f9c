-- The digest and size of the OCR result the ocr stage recorded for each scan (beside ocr_key),
-- so that the archive stage knows what to copy and what it has copied without a round trip to
-- the store for each result. NULL for rows recorded before; those are looked up in the store.
ALTER TABLE batch_files ADD COLUMN ocr_sha256 text, ADD COLUMN ocr_bytes bigint;
