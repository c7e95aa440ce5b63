-- Provider configurations: per workspace and provider, where AuthSome gets the credential it
-- acts with (hosted | kms | oauth | api_key) and the mode's settings. No credential is stored
-- here in the clear: hosted, oauth and api_key keep theirs as vault secrets; kms keeps only the
-- ciphertext under the customer's key.
CREATE TABLE provider_configs (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider     TEXT NOT NULL,
    mode         TEXT NOT NULL,
    config       TEXT NOT NULL,
    ciphertext   BYTEA,
    revision     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, provider)
);
