-- Who last asked for a run of each batch (the inbox sensor, `archive run`, the web's own runner),
-- taken under a per-batch lock by pipeline/launch.py: two callers at the same moment start one
-- run. A claim holds until its run exists (then the run's own state says the batch is busy) or
-- for CLAIM_SECONDS, whichever is first.
CREATE TABLE batch_run_claims (
    batch_id   text PRIMARY KEY REFERENCES batches (batch_id),
    claimed_by text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
