-- Durable jobs: background work that survives restarts and runs once across replicas. A job is
-- handed out by setting its lease (claimed rows are skipped by the others: `FOR UPDATE SKIP
-- LOCKED` on Postgres, the one writer on SQLite); a lease that runs out hands it out again.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    workspace_id TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    status       TEXT NOT NULL,
    run_at       BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    locked_by    TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    dedupe_key   TEXT UNIQUE,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX jobs_due ON jobs (status, run_at);

-- How a secret is rotated: the generator, the targets (provider and the provider's fields,
-- never a credential), the schedule and the loop's options.
CREATE TABLE rotation_configs (
    workspace_id         TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    vault_id             TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    secret_name          TEXT NOT NULL,
    generator            TEXT NOT NULL,
    targets              TEXT NOT NULL,
    schedule             TEXT,
    health_check_url     TEXT,
    redeploy             BOOLEAN NOT NULL,
    grace_period_seconds BIGINT NOT NULL,
    revision             BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    PRIMARY KEY (vault_id, secret_name)
);

-- Each rotation with its steps (JSON) and outcome; values never.
CREATE TABLE rotations (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    vault_id         TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    secret_name      TEXT NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT,
    requested_by     TEXT,
    decision         TEXT NOT NULL,
    steps            TEXT NOT NULL,
    previous_version BIGINT,
    new_version      BIGINT,
    error            TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX rotations_workspace ON rotations (workspace_id, id);
CREATE INDEX rotations_secret ON rotations (vault_id, secret_name, created_at);
