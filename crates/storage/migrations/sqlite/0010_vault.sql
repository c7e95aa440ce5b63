-- The credential vault. Values are stored only as envelopes (authsome-vault): sealed with a
-- data key wrapped by a workspace key-encryption key, itself kept only sealed under the master
-- key. A destroyed KEK or version keeps its row with the key material or envelope removed.

CREATE TABLE vault_keks (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    sealed       BLOB,
    created_at   BIGINT NOT NULL,
    destroyed_at BIGINT,
    PRIMARY KEY (workspace_id, version)
);

CREATE TABLE vaults (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT,
    max_versions BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE vault_secrets (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    vault_id       TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    description    TEXT,
    tags           TEXT NOT NULL,
    expires_at     BIGINT,
    latest_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    deleted_at     BIGINT,
    UNIQUE (vault_id, name)
);
CREATE INDEX vault_secrets_workspace ON vault_secrets (workspace_id, vault_id, name);

CREATE TABLE vault_secret_versions (
    secret_id    TEXT NOT NULL REFERENCES vault_secrets (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    version      BIGINT NOT NULL,
    kek_version  BIGINT NOT NULL,
    envelope     BLOB,
    -- With AUTHSOME_VAULT_BACKEND=redis the envelope is in Redis instead, under a key ending
    -- in this reference (unique per write, so a lost race never leaves its bytes under the
    -- winner's name).
    envelope_ref TEXT,
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    -- When the value was last sealed under a fresh data key (a rekey seals it again).
    sealed_at    BIGINT NOT NULL,
    destroyed_at BIGINT,
    PRIMARY KEY (secret_id, version)
);
CREATE INDEX vault_secret_versions_kek ON vault_secret_versions (workspace_id, kek_version);

-- Work asked of a workspace's keyring: values sealed before `rekey_requested_at` are sealed
-- again under fresh data keys, in the background.
CREATE TABLE vault_keyrings (
    workspace_id       TEXT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    rekey_requested_at BIGINT,
    destroyed_at       BIGINT
);

-- Machine principals and the vaults they are bound to.
CREATE TABLE principals (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    public_key   BLOB,
    created_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE principal_bindings (
    principal_id TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    vault_id     TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    permissions  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (principal_id, vault_id)
);

-- External identity issuers a workspace trusts for one of its principals.
CREATE TABLE trusted_issuers (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    issuer       TEXT NOT NULL,
    jwks_uri     TEXT NOT NULL,
    audience     TEXT NOT NULL,
    principal_id TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    claims       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX trusted_issuers_issuer ON trusted_issuers (issuer);
CREATE INDEX trusted_issuers_workspace ON trusted_issuers (workspace_id, id);
