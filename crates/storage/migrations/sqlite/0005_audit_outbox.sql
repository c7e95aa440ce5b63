-- Audit events committed with their control-plane write, until the audit writer moves them
-- into the workspace's log (see storage::outbox).
CREATE TABLE audit_outbox (
    id         TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
