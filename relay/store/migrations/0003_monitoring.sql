-- 0003: monitoring functions: alarm events and their handling, movement tracking for
-- parking analysis, storage growth samples.

-- one row per alarm episode of a vehicle: opened when a level/flag/fault appears in the
-- realtime alarm block, closed when the block is clear again
CREATE TABLE alarms (
    id              bigserial PRIMARY KEY,
    vin             text        NOT NULL,
    opened_at       timestamptz NOT NULL,     -- collection time of the first frame showing it
    last_seen       timestamptz NOT NULL,
    closed_at       timestamptz,              -- collection time of the first clear frame
    max_level       smallint    NOT NULL,
    flags           text[]      NOT NULL DEFAULT '{}',
    fault_codes     bigint[]    NOT NULL DEFAULT '{}',
    frames          integer     NOT NULL DEFAULT 1,
    acknowledged_by text,
    acknowledged_at timestamptz,
    handled_by      text,
    handled_at      timestamptz,
    note            text        NOT NULL DEFAULT ''
);
CREATE INDEX alarms_vin ON alarms (vin, opened_at);
CREATE INDEX alarms_open ON alarms (vin) WHERE closed_at IS NULL;
CREATE INDEX alarms_opened ON alarms (opened_at);

-- last time each vehicle was seen moving (speed > 0), for clustered-parking screening
ALTER TABLE latest ADD COLUMN moving_at timestamptz;

-- database size samples, for growth per day and the capacity warning
CREATE TABLE storage_samples (
    at          timestamptz PRIMARY KEY,
    db_bytes    bigint NOT NULL,
    free_bytes  bigint
);
