-- 0001: registry, frame archive, decoded realtime data, latest state, logins, outbox, audit.
--
-- Time-series tables are partitioned by month of the data's collection time
-- (the writer creates a month on first use, relay/store/partitions.py). Times are timestamptz; the
-- standard's times are +08:00 and are stored as such instants.

CREATE TABLE vehicles (
    vin          text PRIMARY KEY,
    sector       text NOT NULL,            -- bus, taxi, ..., private
    region_code  text NOT NULL,            -- 6-digit administrative code (GB/T 2260)
    owner        text NOT NULL,            -- owning enterprise id
    model        text NOT NULL DEFAULT '',
    plate        text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vehicles_owner ON vehicles (owner);
CREATE INDEX vehicles_region ON vehicles (region_code);

-- every frame as received: the lifecycle archive from which anything can be re-decoded
CREATE SEQUENCE frames_id_seq;
CREATE TABLE frames (
    id           bigint      NOT NULL,
    collected_at timestamptz NOT NULL,     -- the data unit's time, or the receive time if it has none
    received_at  timestamptz NOT NULL,
    vin          text        NOT NULL,     -- header unique id (VIN, platform id or operator id)
    command      smallint    NOT NULL,
    response     smallint    NOT NULL,
    protocol     smallint    NOT NULL,     -- 2016 or 2025
    encryption   smallint    NOT NULL,
    peer         text        NOT NULL,     -- who sent it: terminal address or platform account
    kind         smallint    NOT NULL,     -- dedup class: realtime and reissue share 2
    digest       bytea       NOT NULL,     -- md5 of the (plain) data unit
    raw          bytea       NOT NULL,
    PRIMARY KEY (id, collected_at)
) PARTITION BY RANGE (collected_at);
-- a frame that arrives twice (re-sent backlog, realtime then reissue) is stored once
CREATE UNIQUE INDEX frames_dedup ON frames (vin, kind, collected_at, digest);
CREATE INDEX frames_received ON frames (received_at);

-- decoded realtime/reissue data, one row per data frame
CREATE TABLE realtime (
    vin             text        NOT NULL,
    collected_at    timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    frame_id        bigint      NOT NULL,
    reissue         boolean     NOT NULL,
    vehicle_state   text,
    charging_state  text,
    run_mode        text,
    speed_kmh       real,
    odometer_km     double precision,
    total_voltage_v real,
    total_current_a real,
    soc_pct         smallint,
    insulation_kohm integer,
    gear            text,
    position_valid  boolean,
    longitude       double precision,
    latitude        double precision,
    alarm_level     smallint,
    alarm_flags     text[],
    fault_codes     integer,
    max_cell_v      real,
    min_cell_v      real,
    max_temp_c      smallint,
    min_temp_c      smallint,
    abnormal_fields smallint NOT NULL DEFAULT 0,
    invalid_fields  smallint NOT NULL DEFAULT 0
) PARTITION BY RANGE (collected_at);
CREATE INDEX realtime_vin_time ON realtime (vin, collected_at);

-- the newest data of each vehicle (upserted)
CREATE TABLE latest (
    vin             text PRIMARY KEY,
    collected_at    timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    vehicle_state   text,
    charging_state  text,
    speed_kmh       real,
    odometer_km     double precision,
    total_voltage_v real,
    total_current_a real,
    soc_pct         smallint,
    position_valid  boolean,
    longitude       double precision,
    latitude        double precision,
    alarm_level     smallint,
    alarm_flags     text[]
);

-- vehicle logins and logouts
CREATE TABLE logins (
    id           bigserial PRIMARY KEY,
    vin          text        NOT NULL,
    event        text        NOT NULL,     -- login | logout
    serial       integer     NOT NULL,
    iccid        text        NOT NULL DEFAULT '',
    codes        text[]      NOT NULL DEFAULT '{}',
    collected_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    peer         text        NOT NULL
);
CREATE INDEX logins_vin ON logins (vin, received_at);

-- what waits to go to each upstream, in order; rows up to the cursor are delivered
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    upstream     text        NOT NULL,
    vin          text        NOT NULL,
    command      smallint    NOT NULL,
    collected_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    frame        bytea       NOT NULL     -- the frame as it may be forwarded (plain, no custom items)
);
CREATE INDEX outbox_upstream ON outbox (upstream, id);

CREATE TABLE outbox_cursors (
    upstream     text PRIMARY KEY,
    last_id      bigint      NOT NULL DEFAULT 0,
    delivered    bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- VINs that sent data but are missing from the registry (not forwarded)
CREATE TABLE unregistered (
    vin          text PRIMARY KEY,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    frames       bigint      NOT NULL DEFAULT 0
);

-- every login, refusal, API access and configuration change
CREATE TABLE audit (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL,
    action       text        NOT NULL,
    target       text        NOT NULL DEFAULT '',
    result       text        NOT NULL,
    detail       jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, at);
