-- A management key belongs to the member who created it (or the owner it was reassigned to):
-- it acts with at most that member's role and stops when they leave. NULL for the bootstrap
-- key, application keys and keys made before this migration.
ALTER TABLE api_keys ADD COLUMN created_by TEXT;
CREATE INDEX api_keys_created_by ON api_keys (workspace_id, created_by);
