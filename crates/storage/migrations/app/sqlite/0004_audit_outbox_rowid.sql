-- The outbox as a plain rowid table, without the index its text primary key brought: an audited
-- write then adds one b-tree page to the write-ahead log instead of two. Ids stay unique by
-- construction (one row per event, written once with its write), and the writer deletes rows by
-- id from a table it keeps near empty, where a scan costs less than the index did.
CREATE TABLE audit_outbox_new (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO audit_outbox_new (id, body, created_at)
    SELECT id, body, created_at FROM audit_outbox ORDER BY created_at, id;
DROP TABLE audit_outbox;
ALTER TABLE audit_outbox_new RENAME TO audit_outbox;
