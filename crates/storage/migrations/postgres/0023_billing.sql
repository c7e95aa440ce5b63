-- Billing. The plan history: each workspace's plan from its creation and every change since,
-- which prices a month's fee by the days on each plan.
CREATE TABLE plan_history (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    since        BIGINT NOT NULL,
    plan         TEXT NOT NULL
);
CREATE INDEX plan_history_workspace ON plan_history (workspace_id, since);
INSERT INTO plan_history (workspace_id, since, plan) SELECT id, created_at, plan FROM workspaces;

-- One sample a day of each application's database size (day: days since the Unix epoch, UTC).
CREATE TABLE storage_samples (
    application_id TEXT COLLATE "C" NOT NULL,
    workspace_id   TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    day            BIGINT NOT NULL,
    bytes          BIGINT NOT NULL,
    PRIMARY KEY (application_id, day)
);
CREATE INDEX storage_samples_workspace ON storage_samples (workspace_id, day);
CREATE INDEX storage_samples_day ON storage_samples (day);

-- Invoices: a draft per workspace for the running month, closed (and never changed again)
-- once the month is over. body: the invoice as JSON.
CREATE TABLE invoices (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    month        TEXT COLLATE "C" NOT NULL,
    status       TEXT NOT NULL,
    body         TEXT NOT NULL,
    total_cents  BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    closed_at    BIGINT,
    UNIQUE (workspace_id, month)
);
CREATE INDEX invoices_workspace ON invoices (workspace_id, id);
