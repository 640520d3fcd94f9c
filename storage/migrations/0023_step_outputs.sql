-- What one Dagster step hands to another (the OCR units' scan lists and counts), where every
-- worker on every machine reads it: pipeline/step_outputs.py. Small JSON values only; kept
-- KEEP_DAYS for a run re-executed from failure, which reads its parent run's outputs.
CREATE TABLE step_outputs (
    output_key text PRIMARY KEY,          -- run id / step key / output name [/ mapping key]
    value      jsonb NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX step_outputs_written ON step_outputs (written_at);
