-- The audit entries clustered on their key, (workspace_id, idx): a WITHOUT ROWID table is one
-- b-tree ordered by that key, where a rowid table with a composite primary key is two (the rows
-- by rowid, and the key's index pointing into them). Each appended entry then writes three
-- b-trees instead of four, and reads by index range (export, verification, proofs) walk the
-- rows in order without a second lookup per row. An entry's line (a few hundred bytes) stays
-- well under what a page keeps in place.
CREATE TABLE audit_entries_new (
    workspace_id   TEXT NOT NULL,
    idx            BIGINT NOT NULL,
    id             TEXT NOT NULL,
    at             BIGINT NOT NULL,
    action         TEXT NOT NULL,
    actor_id       TEXT,
    application_id TEXT,
    outcome        TEXT NOT NULL,
    leaf_hash      BLOB NOT NULL,
    body           TEXT,
    PRIMARY KEY (workspace_id, idx)
) WITHOUT ROWID;
INSERT INTO audit_entries_new
    SELECT workspace_id, idx, id, at, action, actor_id, application_id, outcome, leaf_hash, body
    FROM audit_entries ORDER BY workspace_id, idx;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_new RENAME TO audit_entries;
CREATE UNIQUE INDEX audit_entries_id ON audit_entries (id);
CREATE INDEX audit_entries_at ON audit_entries (workspace_id, at);
