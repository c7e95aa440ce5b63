-- Control-plane schema, version 1. Times are Unix milliseconds (BIGINT) and ids TEXT on both
-- backends, so one set of queries serves SQLite and Postgres alike.

CREATE TABLE system_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    id            TEXT COLLATE "C" PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT,
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE control_sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX control_sessions_expiry ON control_sessions (expires_at);

CREATE TABLE workspaces (
    id             TEXT COLLATE "C" PRIMARY KEY,
    name           TEXT NOT NULL,
    slug           TEXT NOT NULL UNIQUE,
    plan           TEXT NOT NULL,
    status         TEXT NOT NULL,
    kyc_status     TEXT NOT NULL,
    payment_status TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    limits         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE members (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    account_id   TEXT COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, account_id)
);
CREATE INDEX members_account ON members (account_id);

CREATE TABLE invitations (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    member_id    TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    accepted_at  BIGINT
);
CREATE INDEX invitations_member ON invitations (member_id);

CREATE TABLE applications (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    slug         TEXT NOT NULL,
    environment  TEXT NOT NULL,
    tenancy      TEXT NOT NULL,
    status       TEXT NOT NULL,
    region       TEXT NOT NULL,
    config       TEXT NOT NULL,
    upstreams    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    deleted_at   BIGINT,
    purge_at     BIGINT
);
CREATE INDEX applications_workspace ON applications (workspace_id, id);
CREATE UNIQUE INDEX applications_live_slug ON applications (workspace_id, slug) WHERE deleted_at IS NULL;
CREATE INDEX applications_purge ON applications (purge_at) WHERE purge_at IS NOT NULL;

CREATE TABLE api_keys (
    id             TEXT COLLATE "C" PRIMARY KEY,
    workspace_id   TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    application_id TEXT COLLATE "C" REFERENCES applications (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    mode           TEXT NOT NULL,
    name           TEXT,
    scopes         TEXT NOT NULL,
    role           TEXT,
    hash           TEXT NOT NULL UNIQUE,
    last4          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    expires_at     BIGINT,
    revoked_at     BIGINT,
    rolled_to      TEXT
);
CREATE INDEX api_keys_owner ON api_keys (workspace_id, application_id, id);

-- Responses remembered for `Idempotency-Key` retries, for 24 hours.
CREATE TABLE idempotency_records (
    scope        TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER,
    body         TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_records_age ON idempotency_records (created_at);
