-- Stripe: each paying workspace's customer and subscription, and the webhook events already
-- processed (an event delivered again has no second effect).
CREATE TABLE stripe_customers (
    workspace_id    TEXT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    customer_id     TEXT NOT NULL UNIQUE,
    subscription_id TEXT,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
CREATE INDEX stripe_events_received ON stripe_events (received_at);
