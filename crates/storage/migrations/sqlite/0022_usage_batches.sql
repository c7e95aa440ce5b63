-- Usage batches already applied: each replica flushes its counts as a batch with an id of its
-- own and retries a failed flush with the same id, so a batch applied twice counts once.
CREATE TABLE usage_batches (
    id         TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
CREATE INDEX usage_batches_applied ON usage_batches (applied_at);
