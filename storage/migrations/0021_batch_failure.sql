-- Why the batch's last run stopped, for the staff web: {stage, kind, message_zh, message_en,
-- run_id, at}. Written when a stage fails for good (after its retries), cleared when a stage of
-- the batch next commits.
ALTER TABLE batches ADD COLUMN failure jsonb;
