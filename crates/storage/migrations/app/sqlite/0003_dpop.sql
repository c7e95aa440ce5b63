-- RFC 9449: a session whose tokens are bound to a client key (DPoP) keeps the key's thumbprint.
ALTER TABLE sessions ADD COLUMN dpop_jkt TEXT;
