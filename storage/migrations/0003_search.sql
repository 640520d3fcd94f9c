-- Chinese search: CJK unigrams and bigrams plus Latin/digit words of each page's text and each
-- person's name (search/terms.py), stored space-joined (COPY parses plain text 3x faster than
-- a text[] literal) and indexed as arrays through string_to_array; class and date filters; a
-- log of reads.
ALTER TABLE pages ADD COLUMN search_terms text NOT NULL DEFAULT '';
CREATE INDEX pages_search_terms ON pages USING gin (string_to_array(search_terms, ' '));

ALTER TABLE personnel_files ADD COLUMN name_terms text NOT NULL DEFAULT '';
CREATE INDEX personnel_files_name_terms ON personnel_files USING gin (string_to_array(name_terms, ' '));

CREATE INDEX materials_class_formed ON materials (class_code, formed_on);
CREATE INDEX materials_batch ON materials (batch_id);

-- Every read of personal data: who asked what and which files they were shown.
CREATE TABLE access_log (
    access_id     bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    action        text NOT NULL,
    query         text NOT NULL,            -- ID numbers in it are masked
    file_numbers  text[] NOT NULL
);
