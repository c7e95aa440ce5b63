-- Idempotency records of earlier versions kept whole answers in the clear (new keys and tokens
-- among them). Records are now sealed under the master key; the old ones, at most a day of
-- retries, are dropped rather than kept readable.
DELETE FROM idempotency_records;
