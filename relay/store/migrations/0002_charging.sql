-- 0002: charging facilities (NB/T 33017 data items as carried by commands 0xC1-0xC5).
-- Identifiers are unique within an operator, so every key starts with operator_id.

CREATE TABLE charging_stations (
    operator_id    text NOT NULL,
    station_id     text NOT NULL,
    name           text NOT NULL DEFAULT '',
    region_code    text NOT NULL,
    address        text NOT NULL DEFAULT '',
    longitude      double precision,
    latitude       double precision,
    station_type   smallint NOT NULL,          -- 1 public, 50 private, 100 bus, 101 sanitation, ...
    station_status smallint NOT NULL,
    service_hours  text NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (operator_id, station_id)
);

CREATE TABLE charging_equipment (
    operator_id     text NOT NULL,
    equipment_id    text NOT NULL,
    station_id      text NOT NULL,
    equipment_type  smallint NOT NULL,         -- 1 DC, 2 AC, 3 AC/DC, 4 wireless, 5 other
    rated_power_kw  real,
    manufacturer    text NOT NULL DEFAULT '',
    model           text NOT NULL DEFAULT '',
    production_date text NOT NULL DEFAULT '',
    PRIMARY KEY (operator_id, equipment_id)
);

-- connectors with their latest status
CREATE TABLE charging_connectors (
    operator_id       text NOT NULL,
    connector_id      text NOT NULL,
    equipment_id      text NOT NULL,
    station_id        text NOT NULL,
    connector_type    smallint,
    voltage_upper_v   integer,
    voltage_lower_v   integer,
    current_a         integer,
    power_kw          real,
    national_standard smallint,
    status            smallint,                -- 0 offline, 1 idle, 2 occupied, 3 charging, 4 reserved, 255 fault
    park_status       smallint,
    lock_status       smallint,
    status_at         timestamptz,
    PRIMARY KEY (operator_id, connector_id)
);

CREATE TABLE connector_status (
    operator_id  text NOT NULL,
    connector_id text NOT NULL,
    collected_at timestamptz NOT NULL,
    status       smallint NOT NULL,
    park_status  smallint,
    lock_status  smallint,
    frame_id     bigint NOT NULL
) PARTITION BY RANGE (collected_at);
CREATE INDEX connector_status_key ON connector_status (operator_id, connector_id, collected_at);

CREATE TABLE charging_measurements (
    operator_id  text NOT NULL,
    connector_id text NOT NULL,
    session_id   text NOT NULL,
    collected_at timestamptz NOT NULL,
    voltage_v    real,
    current_a    real,
    power_kw     real,
    energy_kwh   double precision,
    soc_pct      smallint,
    elapsed_s    integer,
    frame_id     bigint NOT NULL
) PARTITION BY RANGE (collected_at);
CREATE INDEX charging_measurements_key ON charging_measurements (operator_id, connector_id, collected_at);

CREATE TABLE charging_records (
    operator_id     text NOT NULL,
    session_id      text NOT NULL,
    connector_id    text NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz NOT NULL,
    energy_kwh      double precision,
    meter_start_kwh double precision,
    meter_end_kwh   double precision,
    stop_reason     smallint,
    vin             text NOT NULL DEFAULT '',
    collected_at    timestamptz NOT NULL,
    frame_id        bigint NOT NULL,
    PRIMARY KEY (operator_id, session_id)
);
CREATE INDEX charging_records_day ON charging_records (ended_at);

CREATE TABLE charging_alarms (
    id           bigserial PRIMARY KEY,
    operator_id  text NOT NULL,
    target_id    text NOT NULL,
    code         text NOT NULL,
    level        smallint NOT NULL,
    state        smallint NOT NULL,             -- 1 raised, 2 cleared
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    description  text NOT NULL DEFAULT '',
    collected_at timestamptz NOT NULL,
    frame_id     bigint NOT NULL
);
CREATE INDEX charging_alarms_target ON charging_alarms (operator_id, target_id, started_at);
