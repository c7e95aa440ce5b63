-- Rotations held for a second person's approval.
CREATE TABLE rotation_approvals (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    rotation_id     TEXT NOT NULL REFERENCES rotations (id) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    reason          TEXT,
    decided_by      TEXT,
    decision_reason TEXT,
    break_glass     BOOLEAN NOT NULL,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    decided_at      BIGINT
);
CREATE INDEX rotation_approvals_workspace ON rotation_approvals (workspace_id, id);
CREATE INDEX rotation_approvals_pending ON rotation_approvals (status, expires_at);
