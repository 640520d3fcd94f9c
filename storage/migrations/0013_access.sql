-- Who may do what (issue 15): agencies, users and their roles, login sessions, API tokens, and
-- the audit trail every read of personal data and every change is written to.

CREATE TABLE agencies (
    code        text PRIMARY KEY,              -- e.g. 520000: the province's division code, for its centre
    name        text NOT NULL UNIQUE,
    province    text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Files, batches and transfers were held by an agency named in text; the demo's agency gets its code.
INSERT INTO agencies (code, name, province)
SELECT CASE WHEN name = '贵州省人才交流服务中心' THEN '520000' ELSE name END, name,
       CASE WHEN name = '贵州省人才交流服务中心' THEN '贵州省' ELSE '' END
FROM (SELECT holding_agency AS name FROM batches UNION SELECT holding_agency FROM personnel_files
      UNION SELECT sending_agency FROM transfers) held
ON CONFLICT DO NOTHING;
UPDATE batches b SET holding_agency = a.code FROM agencies a WHERE b.holding_agency = a.name;
UPDATE personnel_files f SET holding_agency = a.code FROM agencies a WHERE f.holding_agency = a.name;
UPDATE transfers t SET sending_agency = a.code FROM agencies a WHERE t.sending_agency = a.name;
ALTER TABLE batches ADD FOREIGN KEY (holding_agency) REFERENCES agencies;
ALTER TABLE personnel_files ADD FOREIGN KEY (holding_agency) REFERENCES agencies;
CREATE INDEX personnel_files_agency ON personnel_files (holding_agency);
CREATE INDEX batches_agency ON batches (holding_agency, submitted_at);

CREATE TABLE users (
    user_id        bigserial PRIMARY KEY,
    username       text NOT NULL UNIQUE,
    display_name   text NOT NULL DEFAULT '',
    role           text NOT NULL CHECK (role IN ('staff', 'archivist', 'auditor', 'engineer', 'admin')),
    agency         text REFERENCES agencies,   -- staff and archivists belong to one; others may not
    password_hash  text NOT NULL,              -- Argon2id, PHC string
    disabled       boolean NOT NULL DEFAULT false,
    failed_logins  integer NOT NULL DEFAULT 0, -- in a row, since the last success
    locked_until   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (role NOT IN ('staff', 'archivist') OR agency IS NOT NULL)
);

-- A session's cookie holds a random token; only its sha256 is kept.
CREATE TABLE sessions (
    token_sha256  text PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,        -- absolute expiry; idle expiry is last_seen + setting
    ended_at      timestamptz,                 -- logout
    client        text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);

-- API tokens for machine clients: shown once, kept as sha256 only.
CREATE TABLE api_tokens (
    token_id      bigserial PRIMARY KEY,
    name          text NOT NULL,
    token_sha256  text NOT NULL UNIQUE,
    prefix        text NOT NULL,               -- the first characters, so a holder can tell tokens apart
    agency        text REFERENCES agencies,
    scopes        text[] NOT NULL,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- The audit trail: append-only, each row hash-chained to the one before (storage: access/audit.py
-- writes and verifies). seq is given by the writer, under a lock, so a gap is a deleted row.
CREATE TABLE audit_log (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,                -- user:NAME, token:ID, cli:OS-USER, anonymous
    actor_agency text,
    client       text NOT NULL,                -- address, or "cli"
    action       text NOT NULL,                -- search, report, file.view, page.download, login, ...
    outcome      text NOT NULL,                -- ok | denied | failed
    target       text NOT NULL DEFAULT '',     -- batch id, file number, user name, token id ...
    file_numbers text[] NOT NULL DEFAULT '{}', -- the personnel files shown
    detail       jsonb NOT NULL DEFAULT '{}',
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
CREATE INDEX audit_log_files ON audit_log USING gin (file_numbers);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
-- fire in every session, even one that set session_replication_role = replica (the index stage's)
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_update;
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
