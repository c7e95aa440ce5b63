-- Team members with the operator role read the values of the vaults they are bound to (and
-- only those); owners and admins read every vault's. A binding goes with the membership.
CREATE TABLE vault_operators (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    vault_id     TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    member_id    TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (vault_id, member_id)
);
CREATE INDEX vault_operators_member ON vault_operators (member_id);
