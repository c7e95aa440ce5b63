-- The expiry alerts' scan: secrets whose credential expires soon.
CREATE INDEX vault_secrets_expiry ON vault_secrets (expires_at);
