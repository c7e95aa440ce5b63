-- Secret keys can sign requests (HMAC-SHA256): the server keeps the key itself sealed under the
-- master key (ChaCha20-Poly1305, bound to the key id). Keys created before this have none and
-- cannot sign; rolling one gives a key that can.
ALTER TABLE api_keys ADD COLUMN signing_secret TEXT;
