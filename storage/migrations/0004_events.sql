-- Event history of objects and files, PREMIS-like: what happened, when, by which agent, with
-- what outcome. Written only when work is done, so a rerun adds nothing.
CREATE TABLE events (
    event_id       bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    event_type     text NOT NULL,   -- captured | validated | ocr | stored | transferred | fixity_checked
    outcome        text NOT NULL,   -- success | warning | failure
    agent          text NOT NULL,   -- software and version, or a person
    batch_id       text,
    file_number    text,
    object_sha256  text,
    detail         jsonb
);
CREATE INDEX events_object ON events (object_sha256, at);
CREATE INDEX events_file ON events (file_number, at);
CREATE INDEX events_batch ON events (batch_id, at);
