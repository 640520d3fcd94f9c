-- Transfers a receiving agency fetches, verifies and receipts (issue 16): the agency registry
-- with its signing keys, transfers as requests moving through their states, and what a
-- receiving installation has received (so a record is never accepted twice).

ALTER TABLE agencies ADD COLUMN endpoint text NOT NULL DEFAULT '';  -- its pull API, https://...

-- The trust anchor: a sender's signature is checked against the key the registry holds for it,
-- valid when the record was signed; never a key the record carries.
CREATE TABLE agency_keys (
    agency       text NOT NULL REFERENCES agencies ON DELETE CASCADE,
    key_id       text NOT NULL,
    algorithm    text NOT NULL DEFAULT 'Ed25519',
    public_key   text NOT NULL,              -- base64 of the raw public key
    valid_from   timestamptz NOT NULL,
    valid_until  timestamptz,                -- NULL: until replaced
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency, key_id)
);

-- The receiving agency was a name; it is a registered agency now (an unknown name registered as is).
INSERT INTO agencies (code, name)
SELECT DISTINCT receiving_agency, receiving_agency FROM transfers
WHERE receiving_agency NOT IN (SELECT code FROM agencies) AND receiving_agency NOT IN (SELECT name FROM agencies)
ON CONFLICT DO NOTHING;
UPDATE transfers t SET receiving_agency = a.code FROM agencies a WHERE t.receiving_agency = a.name;
ALTER TABLE transfers ADD FOREIGN KEY (receiving_agency) REFERENCES agencies;
ALTER TABLE transfers ADD FOREIGN KEY (sending_agency) REFERENCES agencies;

ALTER TABLE transfers ALTER COLUMN record DROP NOT NULL;          -- a request has no record yet
ALTER TABLE transfers ALTER COLUMN record_sha256 DROP NOT NULL;
ALTER TABLE transfers ALTER COLUMN record_key DROP NOT NULL;
ALTER TABLE transfers ADD COLUMN reason text NOT NULL DEFAULT '';
ALTER TABLE transfers ADD COLUMN handler text NOT NULL DEFAULT '';      -- 经办人
ALTER TABLE transfers ADD COLUMN requested_by text NOT NULL DEFAULT '';  -- the audit trail's actor
ALTER TABLE transfers ADD COLUMN notice jsonb;                  -- 档案转递通知单, as the record carries it
ALTER TABLE transfers ADD COLUMN record_id uuid UNIQUE;
ALTER TABLE transfers ADD COLUMN package_key text;
ALTER TABLE transfers ADD COLUMN package_sha256 text;
ALTER TABLE transfers ADD COLUMN package_bytes bigint;
ALTER TABLE transfers ADD COLUMN expires_at timestamptz;
ALTER TABLE transfers ADD COLUMN receipt jsonb;                 -- the receiver's signed receipt or rejection
ALTER TABLE transfers ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE transfers ADD COLUMN overdue_at timestamptz;        -- flagged: no receipt in time
ALTER TABLE transfers ADD CONSTRAINT transfers_status CHECK (status IN (
    'prepared', 'requested', 'packaged', 'available', 'fetched', 'received', 'rejected', 'cancelled', 'expired'));
-- one active transfer a file at a time
CREATE UNIQUE INDEX transfers_one_active ON transfers (file_number)
    WHERE status IN ('requested', 'packaged', 'available', 'fetched');
CREATE INDEX transfers_receiver ON transfers (receiving_agency, status);

-- Receiving side: every record verified here, by its id (a replay is refused), and what became of it.
CREATE TABLE received_transfers (
    record_id       uuid PRIMARY KEY,
    transfer_id     uuid NOT NULL,
    sender          text NOT NULL,
    file_number     text NOT NULL,
    record          jsonb NOT NULL,
    package_sha256  text NOT NULL,
    outcome         text NOT NULL,              -- verified (receipt not yet taken by the sender) | received | rejected
    checks          jsonb NOT NULL,             -- every check, passed or failed, with its reason
    verified_at     timestamptz NOT NULL DEFAULT now(),
    imported_at     timestamptz
);
