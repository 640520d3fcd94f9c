-- The national platform's own database: its registry of agencies and their signing keys (the
-- same tables an installation keeps, so transfer/registry.py reads both), the tokens it issued
-- them, and every record it accepted, numbered in the order it accepted them.

CREATE TABLE agencies (
    code        text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    province    text NOT NULL DEFAULT '',
    endpoint    text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agency_keys (
    agency       text NOT NULL REFERENCES agencies ON DELETE CASCADE,
    key_id       text NOT NULL,
    algorithm    text NOT NULL DEFAULT 'Ed25519',
    public_key   text NOT NULL,
    valid_from   timestamptz NOT NULL,
    valid_until  timestamptz,
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency, key_id)
);

CREATE TABLE platform_tokens (
    token_sha256  text PRIMARY KEY,           -- tokens are 256-bit random: a plain digest suffices
    agency        text NOT NULL REFERENCES agencies,
    name          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE records (
    platform_seq  bigserial PRIMARY KEY,      -- the feed's order: taken under a lock, so commit order too
    record_id     uuid NOT NULL UNIQUE,       -- the idempotency key
    transfer_id   uuid NOT NULL,
    sequence      integer NOT NULL,
    sender        text NOT NULL REFERENCES agencies,
    receiver      text NOT NULL REFERENCES agencies,
    status        text NOT NULL,
    body          jsonb NOT NULL,
    body_sha256   text NOT NULL,              -- of its canonical JSON: the same id twice must be the same record
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sender, transfer_id, sequence)   -- a transfer id is its sender's: no other agency can take it
);
CREATE INDEX records_receiver ON records (receiver, platform_seq);
CREATE INDEX records_sender ON records (sender, platform_seq);

CREATE TABLE refusals (
    refusal_id  bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    agency      text,                         -- the caller, when its token was good
    record_id   text,
    code        text NOT NULL,
    detail      text NOT NULL
);

-- Every read of personal data (names, masked ID numbers) and every refusal, by whom.
CREATE TABLE access_log (
    access_id  bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    agency     text,
    action     text NOT NULL,
    target     text NOT NULL DEFAULT '',
    status     integer NOT NULL,
    rows       integer NOT NULL DEFAULT 0
);
