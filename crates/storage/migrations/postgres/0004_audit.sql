-- The tamper-evident audit log: one append-only log per workspace.
-- audit_logs is each log's head: its size, the chain hash of its last entry, and the Merkle
-- tree's compact range (the perfect-subtree roots, enough to append and compute the root).
-- Appends are optimistic: UPDATE ... WHERE size = <the size the writer read>.
CREATE TABLE audit_logs (
    workspace_id      TEXT PRIMARY KEY,
    size              BIGINT NOT NULL,
    head_hash         BYTEA NOT NULL,
    compact_range     BYTEA NOT NULL,
    -- The key of the per-workspace HMAC of identifying values, sealed under the master key.
    hmac_key          TEXT NOT NULL,
    -- Entries below this index have had their bodies pruned (retention); hashes stay.
    first_kept        BIGINT NOT NULL DEFAULT 0,
    checkpoint_size   BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL
);

-- body is the entry's canonical line: the Merkle leaf is SHA-256(0x00 || body), kept in
-- leaf_hash so proofs never re-read bodies. The other columns are copies for filtering.
CREATE TABLE audit_entries (
    workspace_id   TEXT NOT NULL,
    idx            BIGINT NOT NULL,
    id             TEXT NOT NULL,
    at             BIGINT NOT NULL,
    action         TEXT NOT NULL,
    actor_id       TEXT,
    application_id TEXT,
    outcome        TEXT NOT NULL,
    leaf_hash      BYTEA NOT NULL,
    body           TEXT,
    PRIMARY KEY (workspace_id, idx)
);
CREATE UNIQUE INDEX audit_entries_id ON audit_entries (id);
CREATE INDEX audit_entries_at ON audit_entries (workspace_id, at);

-- Signed checkpoints (C2SP signed notes), one per tree size that was checkpointed.
CREATE TABLE audit_checkpoints (
    workspace_id TEXT NOT NULL,
    size         BIGINT NOT NULL,
    root_hash    BYTEA NOT NULL,
    at           BIGINT NOT NULL,
    key_id       TEXT NOT NULL,
    note         TEXT NOT NULL,
    PRIMARY KEY (workspace_id, size)
);

-- The deployment's checkpoint signing keys; retired keys stay so old checkpoints verify.
CREATE TABLE audit_signing_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    public_key  BYTEA NOT NULL,
    sealed_seed TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
-- At most one active key: concurrent first starts cannot both create one.
CREATE UNIQUE INDEX audit_signing_keys_one_active ON audit_signing_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;
