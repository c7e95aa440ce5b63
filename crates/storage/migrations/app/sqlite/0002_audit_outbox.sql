-- Audit events committed with this application's writes, until the audit writer moves them
-- into the workspace's log in the control plane (see storage::outbox).
CREATE TABLE audit_outbox (
    id         TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
