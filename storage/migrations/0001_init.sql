-- Batches as handed in, the catalog they describe, the objects preserved, and transfers.

CREATE TABLE batches (
    batch_id        text PRIMARY KEY,              -- name plus a prefix of content_sha256
    name            text NOT NULL,
    content_sha256  text NOT NULL UNIQUE,          -- over the sorted (path, sha256) list
    holding_agency  text NOT NULL,
    status          text NOT NULL DEFAULT 'submitted',
    submitted_at    timestamptz NOT NULL DEFAULT now(),
    catalog         jsonb,                         -- normalised manifest, written by intake
    findings        jsonb,                         -- intake findings, written by intake
    intake_version  integer                        -- rules version that produced them
);

-- Every file handed in, kept verbatim in the staging bucket under its sha256.
CREATE TABLE batch_files (
    batch_id     text NOT NULL REFERENCES batches ON DELETE CASCADE,
    path         text NOT NULL,                    -- relative path inside the batch
    sha256       text NOT NULL,
    bytes        bigint NOT NULL,
    staging_key  text NOT NULL,
    role         text NOT NULL DEFAULT 'page',     -- page | manifest | other
    status       text NOT NULL DEFAULT 'received', -- received | accepted | rejected
    media_type   text,
    page_count   integer,
    dpi          integer,
    width        integer,
    height       integer,
    findings     jsonb,
    PRIMARY KEY (batch_id, path)
);
CREATE INDEX batch_files_sha256 ON batch_files (sha256);

CREATE TABLE personnel_files (
    file_number     text PRIMARY KEY,              -- 档号
    name            text NOT NULL,
    id_hash         text NOT NULL,                 -- keyed hash, for exact lookup
    id_number       text NOT NULL,                 -- never logged or listed unmasked
    id_masked       text NOT NULL,
    holding_agency  text NOT NULL,
    batch_id        text REFERENCES batches,
    indexed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX personnel_files_id_hash ON personnel_files (id_hash);

CREATE TABLE materials (
    material_id  bigserial PRIMARY KEY,
    file_number  text NOT NULL REFERENCES personnel_files ON DELETE CASCADE,
    class_code   text NOT NULL,
    seq          integer NOT NULL,
    title        text NOT NULL,
    formed       text NOT NULL,                    -- as precise as the catalog: YYYY[-MM[-DD]]
    formed_on    date NOT NULL,                    -- its first day, for range filters
    copies       integer NOT NULL DEFAULT 1,
    page_count   integer NOT NULL,
    remarks      text NOT NULL DEFAULT '',
    batch_id     text REFERENCES batches,
    UNIQUE (file_number, class_code, seq)
);

CREATE TABLE pages (
    page_id         bigserial PRIMARY KEY,
    material_id     bigint NOT NULL REFERENCES materials ON DELETE CASCADE,
    page_no         integer NOT NULL,              -- 1.. within the material
    source_sha256   text NOT NULL,                 -- the scan file (image or PDF)
    source_page     integer NOT NULL DEFAULT 0,    -- page inside that file
    source_path     text NOT NULL,
    dpi             integer,
    width           integer,
    height          integer,
    ocr_text        text,
    ocr_confidence  real,
    ocr_engine      text,
    ocr_sha256      text,                          -- the OCR result object of the source file
    UNIQUE (material_id, page_no)
);
CREATE INDEX pages_source ON pages (source_sha256, source_page);

-- Every object in preservation storage, with the digest it was verified against.
CREATE TABLE stored_objects (
    bucket       text NOT NULL,
    key          text NOT NULL,
    sha256       text NOT NULL,
    bytes        bigint NOT NULL,
    role         text NOT NULL,                    -- original | ocr | transfer-record
    media_type   text,
    verified_at  timestamptz NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE INDEX stored_objects_sha256 ON stored_objects (sha256);

CREATE TABLE transfers (
    transfer_id       uuid PRIMARY KEY,
    file_number       text NOT NULL REFERENCES personnel_files,
    sending_agency    text NOT NULL,
    receiving_agency  text NOT NULL,
    status            text NOT NULL,
    record            jsonb NOT NULL,
    record_sha256     text NOT NULL,
    record_key        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transfer_events (
    event_id     bigserial PRIMARY KEY,
    transfer_id  uuid NOT NULL REFERENCES transfers ON DELETE CASCADE,
    status       text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    detail       jsonb
);
