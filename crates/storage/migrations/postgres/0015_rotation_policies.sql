-- Rotation policies: one set of rules per level (the workspace, a provider, a secret); the
-- workspace level's target is ''. And when a secret's rotation was last previewed (a dry run),
-- for policies that want a preview first.
CREATE TABLE rotation_policies (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    scope        TEXT NOT NULL,
    target       TEXT NOT NULL,
    rules        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX rotation_policies_level ON rotation_policies (workspace_id, scope, target);

ALTER TABLE rotation_configs ADD COLUMN previewed_at BIGINT;
