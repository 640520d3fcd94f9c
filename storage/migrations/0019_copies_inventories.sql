-- Preservation copies and the store's own description of each file.
--
-- object_copies: every copy of each preserved object, the primary store's and each replica's
-- (ARCHIVE_REPLICAS), with what the last read of it found. A replica's row exists once the
-- object was copied there and read back; an object without one is behind on that replica.
CREATE TABLE object_copies (
    bucket       text NOT NULL,        -- the object's bucket and key in the primary store
    key          text NOT NULL,
    copy         text NOT NULL,        -- 'primary' or a replica's name
    state        text NOT NULL,        -- verified | missing | corrupt
    verified_at  timestamptz,          -- last time its bytes were read and had the object's sha256
    checked_at   timestamptz,          -- last fixity check, whatever it found
    PRIMARY KEY (bucket, key, copy),
    FOREIGN KEY (bucket, key) REFERENCES stored_objects ON DELETE CASCADE
);
CREATE INDEX object_copies_state ON object_copies (copy, state);
INSERT INTO object_copies (bucket, key, copy, state, verified_at)
    SELECT bucket, key, 'primary', 'verified', verified_at FROM stored_objects;

-- when every copy of the object was last re-read (NULL: not since it was stored)
ALTER TABLE stored_objects ADD COLUMN checked_at timestamptz;
CREATE INDEX stored_objects_due ON stored_objects ((checked_at IS NOT NULL), (coalesce(checked_at, verified_at)));
-- replication walks the objects in the order they were stored
CREATE INDEX stored_objects_stored ON stored_objects (verified_at, bucket, key);

-- inventories: the newest inventory object written for each personnel file (inventory/<file>/<version>.json
-- in the archive bucket), so a change to the file writes a new version and a rerun writes none.
CREATE TABLE inventories (
    file_number  text PRIMARY KEY,
    version      integer NOT NULL,
    sha256       text NOT NULL,        -- of the inventory's content, without its own version and time
    key          text NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    described_at timestamptz NOT NULL DEFAULT now()   -- last looked at, whether or not it changed
);
CREATE INDEX inventories_described ON inventories (described_at);
