-- One application's identity schema, version 1. Lives in the application's own database (or
-- schema); nothing here names the application, because the database is the boundary.

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL UNIQUE,
    name             TEXT,
    password_hash    TEXT,
    public_metadata  TEXT NOT NULL,
    private_metadata TEXT NOT NULL,
    disabled_at      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_sign_in_at  BIGINT
);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ip             TEXT,
    user_agent     TEXT,
    created_at     BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    -- The organization the user acts in; carried in access tokens as `org` / `orgRole`.
    active_org_id  TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, id);

CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- A key is published in JWKS from `created_at`, signs from `activates_at` until `retired_at`,
-- and is dropped from JWKS once every token it signed has expired.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    sealed_private TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    activates_at   BIGINT NOT NULL,
    retired_at     BIGINT
);

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL UNIQUE,
    metadata   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE org_memberships (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (organization_id, user_id)
);
CREATE INDEX org_memberships_user ON org_memberships (user_id);

CREATE TABLE org_invitations (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           TEXT NOT NULL,
    role            TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    accepted_at     BIGINT
);

-- Monthly active users: one row per user per calendar month (UTC), written at their first
-- authentication of the month.
CREATE TABLE monthly_active_users (
    month      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    first_at   BIGINT NOT NULL,
    PRIMARY KEY (month, user_id)
);
