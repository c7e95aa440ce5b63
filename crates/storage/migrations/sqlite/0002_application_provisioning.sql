-- Provisioning state of an application's own database: when it became ready, how many attempts
-- it took, and the last error while it is still provisioning.
ALTER TABLE applications ADD COLUMN provisioned_at BIGINT;
ALTER TABLE applications ADD COLUMN provision_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE applications ADD COLUMN provision_error TEXT;
