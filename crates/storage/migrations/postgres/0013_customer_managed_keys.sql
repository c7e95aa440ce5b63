-- A workspace key-encryption key wrapped by the customer's AWS KMS key (enterprise) instead of
-- the deployment's master key: the key's ARN; `sealed` is then KMS ciphertext.
ALTER TABLE vault_keks ADD COLUMN kms_key_id TEXT;
