-- Escalation: an alert delivered on a channel and still unacknowledged after
-- `escalate_after_minutes` goes on to the channel `escalate_to` (of the same workspace). A
-- channel with `escalation_only` receives alerts only that way.
ALTER TABLE alert_channels ADD COLUMN escalate_to TEXT REFERENCES alert_channels (id) ON DELETE SET NULL;
ALTER TABLE alert_channels ADD COLUMN escalate_after_minutes BIGINT;
ALTER TABLE alert_channels ADD COLUMN escalation_only BOOLEAN NOT NULL DEFAULT FALSE;
