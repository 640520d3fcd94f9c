-- The national platform hears of every step of every transfer (issue 18): each state change
-- writes its record into this outbox in the transaction that takes the step, and a deliverer
-- sends them, one transfer's in order, each under its record id as idempotency key.

ALTER TABLE transfers ADD COLUMN person_ref text;  -- HMAC of the ID number under the platform's key

CREATE TABLE platform_outbox (
    record_id        uuid PRIMARY KEY,            -- also the idempotency key the platform de-duplicates by
    transfer_id      uuid NOT NULL REFERENCES transfers ON DELETE CASCADE,
    sequence         integer NOT NULL,            -- 1 for the request, +1 a step: the order they must arrive in
    status           text NOT NULL,               -- the transfer's state the record reports
    body             jsonb NOT NULL,              -- the record as the step wrote it, unsigned
    signed           jsonb,                       -- signed at its first attempt and kept: every later attempt
                                                  -- sends the same bytes, whatever key is current by then
    created_at       timestamptz NOT NULL DEFAULT now(),   -- the state change's own time
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    answer           jsonb,                       -- what the platform answered when it took the record
    failure_code     text,                        -- failed: the platform's (or our own check's) reason
    failure          text,
    UNIQUE (transfer_id, sequence)
);
CREATE INDEX platform_outbox_due ON platform_outbox (next_attempt_at) WHERE state = 'pending';

CREATE TABLE platform_attempts (
    attempt_id   bigserial PRIMARY KEY,
    record_id    uuid NOT NULL REFERENCES platform_outbox ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL,                   -- delivered | duplicate | retry | refused
    http_status  integer,                         -- NULL: no answer (down, reset, timeout)
    detail       text NOT NULL DEFAULT '',
    seconds      real NOT NULL
);
CREATE INDEX platform_attempts_record ON platform_attempts (record_id);

-- Receiving side: what the platform's feed has said, kept by its sequence number there, and
-- where reading it stopped.
CREATE TABLE platform_feed (
    platform_seq  bigint PRIMARY KEY,
    record_id     uuid NOT NULL UNIQUE,
    transfer_id   uuid NOT NULL,
    sender        text NOT NULL,
    receiver      text NOT NULL,
    status        text NOT NULL,
    sequence      integer NOT NULL,
    body          jsonb NOT NULL,
    verified      boolean NOT NULL,               -- its signature holds with the key our registry has for the sender
    problem       text,                           -- why not, or why it breaks the schema
    seen_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX platform_feed_transfer ON platform_feed (transfer_id, sequence);
