-- Where a workspace's alerts go, and the alerts raised in it. A channel's secret part (a Slack
-- incoming webhook's URL, a webhook's signing secret) is stored only sealed under the master key.
CREATE TABLE alert_channels (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL,
    config            TEXT NOT NULL,
    sealed            TEXT,
    min_severity      TEXT NOT NULL,
    cooldown_seconds  BIGINT NOT NULL,
    last_delivered_at BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX alert_channels_workspace ON alert_channels (workspace_id, id);

CREATE TABLE alerts (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    title           TEXT NOT NULL,
    details         TEXT NOT NULL,
    dedupe_key      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT
);
CREATE INDEX alerts_workspace ON alerts (workspace_id, id);
CREATE INDEX alerts_dedupe ON alerts (workspace_id, dedupe_key, created_at);
