-- Which OCR result the ocr stage made or reused for each scan file (its staging key). The index
-- and archive stages read it, so an engine configured differently between stages cannot make
-- them look for results under another engine's key. NULL until the ocr stage has read the scan.
ALTER TABLE batch_files ADD COLUMN ocr_key text;
