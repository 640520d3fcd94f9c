-- What intake's check units found of each page file (stages/intake.py, check_unit): the file's
-- ScanInfo (NULL when unreadable) and its findings, under the rules version that found them.
-- The finishing step turns them into the batch's verdicts at once and deletes them; a unit that
-- ran before is not run again (a retried batch re-reads nothing).
CREATE TABLE scan_checks (
    batch_id       text NOT NULL,
    path           text NOT NULL,
    intake_version integer NOT NULL,
    info           jsonb,
    problems       jsonb NOT NULL,
    PRIMARY KEY (batch_id, path),
    FOREIGN KEY (batch_id, path) REFERENCES batch_files ON DELETE CASCADE
);
