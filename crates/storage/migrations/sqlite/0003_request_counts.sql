-- Customer-API requests per application, key and hour (Unix hours), for metering and quotas.
-- Written in batches by each replica (counts add up), never once per request.
CREATE TABLE request_counts (
    application_id TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    hour           BIGINT NOT NULL,
    requests       BIGINT NOT NULL,
    PRIMARY KEY (application_id, key_id, hour)
);
CREATE INDEX request_counts_hour ON request_counts (application_id, hour);
