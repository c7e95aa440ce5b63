-- The last scheduled occurrence the scheduler took (run or skipped): the next is counted from
-- it, and taking one is a compare-and-set, so replicas take each occurrence once.
ALTER TABLE rotation_configs ADD COLUMN scheduled_at BIGINT;
