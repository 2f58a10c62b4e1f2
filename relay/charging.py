"""Charging facilities inside a node: storing messages 0xC1-0xC5 and routing them upstream.

* :func:`store_rows` is a writer hook: for every newly stored charging frame it writes the
  facility tables (stations, equipment, connectors with their latest status) and the
  time-series tables (status history, measurements, records, alarms) in the writer's
  transaction.
* :class:`FacilityIndex` knows, per operator, which station each connector and equipment
  belongs to, and each station's region and type; the router asks it where a message goes
  (public stations of the upstream's regions; private/dedicated ones only where the upstream
  allows). A message about a facility whose static info (0xC1) never arrived is not
  forwarded.
"""

from __future__ import annotations

import structlog

from codec import ChargingMessage, Command

from .policy import Route, charging_routes

log = structlog.get_logger("relay.charging")

PUBLIC_STATION = 1


class FacilityIndex:
    def __init__(self) -> None:
        #: (operator, station) -> (region_code, public)
        self.stations: dict[tuple[str, str], tuple[str, bool]] = {}
        #: (operator, connector or equipment id) -> station id
        self.members: dict[tuple[str, str], str] = {}
        self.unknown: set[tuple[str, str]] = set()

    def learn(self, operator: str, msg: ChargingMessage) -> None:
        d = msg.data
        station = d["station_id"]
        self.stations[(operator, station)] = (d["region_code"], d["station_type"] == PUBLIC_STATION)
        for eq in d.get("equipment") or []:
            self.members[(operator, eq["equipment_id"])] = station
            for con in eq.get("connectors") or []:
                self.members[(operator, con["connector_id"])] = station

    def station_of(self, operator: str, msg: ChargingMessage) -> tuple[str, bool] | None:
        if msg.kind == Command.CHARGING_STATIC:
            return self.stations.get((operator, msg.data["station_id"]))
        station = self.members.get((operator, msg.subject_id))
        return self.stations.get((operator, station)) if station is not None else None

    def routes(self, frame, routes: tuple[Route, ...]) -> list[str]:
        msg = frame.body
        if not isinstance(msg, ChargingMessage):
            return []
        if msg.kind == Command.CHARGING_STATIC:
            self.learn(frame.vin, msg)
        where = self.station_of(frame.vin, msg)
        if where is None:
            key = (frame.vin, msg.subject_id)
            if key not in self.unknown:
                self.unknown.add(key)
                log.warning("charging_facility_unknown", operator=frame.vin, facility=msg.subject_id,
                            note="no static info (0xC1) yet: stored, not forwarded")
            return []
        return charging_routes(where[0], where[1], routes)


def load_index(conn) -> FacilityIndex:
    index = FacilityIndex()
    with conn.transaction():
        for op, st, region, stype in conn.execute(
                "SELECT operator_id, station_id, region_code, station_type FROM charging_stations"):
            index.stations[(op, st)] = (region, stype == PUBLIC_STATION)
        for op, member, st in conn.execute(
                "SELECT operator_id, equipment_id, station_id FROM charging_equipment "
                "UNION ALL SELECT operator_id, connector_id, station_id FROM charging_connectors"):
            index.members[(op, member)] = st
    return index


def store_rows(cur, inserted: list) -> None:
    """Writer hook: facility and time-series rows for newly stored charging frames."""
    statics, equipment, connectors, statuses, latest, measures, records, alarms = ([] for _ in range(8))
    for fid, item in inserted:
        frame = item.frame
        msg = frame.body
        if frame.is_answer or not isinstance(msg, ChargingMessage):
            continue
        op, d, at = frame.vin, msg.data, msg.collected_at
        if msg.kind == Command.CHARGING_STATIC:
            statics.append((op, d["station_id"], d["station_name"], d["region_code"], d["address"], d["longitude"],
                            d["latitude"], d["station_type"], d["station_status"], d["service_hours"], at))
            for eq in d["equipment"]:
                equipment.append((op, eq["equipment_id"], d["station_id"], eq["equipment_type"], eq["rated_power_kw"],
                                  eq["manufacturer"], eq["model"], eq["production_date"]))
                for con in eq["connectors"]:
                    connectors.append((op, con["connector_id"], eq["equipment_id"], d["station_id"],
                                       con["connector_type"], con["voltage_upper_v"], con["voltage_lower_v"],
                                       con["current_a"], con["power_kw"], con["national_standard"]))
        elif msg.kind == Command.CHARGING_STATUS:
            statuses.append((op, d["connector_id"], at, d["status"], d["park_status"], d["lock_status"], fid))
            latest.append((d["status"], d["park_status"], d["lock_status"], at, op, d["connector_id"]))
        elif msg.kind == Command.CHARGING_MEASUREMENT:
            measures.append((op, d["connector_id"], d["session_id"], at, d["voltage_v"], d["current_a"],
                             d["power_kw"], d["energy_kwh"], d["soc_pct"], d["elapsed_s"], fid))
        elif msg.kind == Command.CHARGING_RECORD:
            records.append((op, d["session_id"], d["connector_id"], d["started_at"], d["ended_at"], d["energy_kwh"],
                            d["meter_start_kwh"], d["meter_end_kwh"], d["stop_reason"], d["vin"], at, fid))
        elif msg.kind == Command.CHARGING_ALARM:
            alarms.append((op, d["target_id"], d["code"], d["level"], d["state"], d["started_at"], d["ended_at"],
                           d["description"], at, fid))
    if statics:
        cur.executemany(
            "INSERT INTO charging_stations (operator_id, station_id, name, region_code, address, longitude, latitude, "
            "station_type, station_status, service_hours, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (operator_id, station_id) DO UPDATE SET name = EXCLUDED.name, "
            "region_code = EXCLUDED.region_code, address = EXCLUDED.address, longitude = EXCLUDED.longitude, "
            "latitude = EXCLUDED.latitude, station_type = EXCLUDED.station_type, "
            "station_status = EXCLUDED.station_status, service_hours = EXCLUDED.service_hours, "
            "updated_at = EXCLUDED.updated_at WHERE charging_stations.updated_at <= EXCLUDED.updated_at", statics)
    if equipment:
        cur.executemany(
            "INSERT INTO charging_equipment (operator_id, equipment_id, station_id, equipment_type, rated_power_kw, "
            "manufacturer, model, production_date) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (operator_id, equipment_id) DO UPDATE SET station_id = EXCLUDED.station_id, "
            "equipment_type = EXCLUDED.equipment_type, rated_power_kw = EXCLUDED.rated_power_kw, "
            "manufacturer = EXCLUDED.manufacturer, model = EXCLUDED.model, "
            "production_date = EXCLUDED.production_date", equipment)
    if connectors:
        cur.executemany(
            "INSERT INTO charging_connectors (operator_id, connector_id, equipment_id, station_id, connector_type, "
            "voltage_upper_v, voltage_lower_v, current_a, power_kw, national_standard) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (operator_id, connector_id) DO UPDATE SET "
            "equipment_id = EXCLUDED.equipment_id, station_id = EXCLUDED.station_id, "
            "connector_type = EXCLUDED.connector_type, voltage_upper_v = EXCLUDED.voltage_upper_v, "
            "voltage_lower_v = EXCLUDED.voltage_lower_v, current_a = EXCLUDED.current_a, "
            "power_kw = EXCLUDED.power_kw, national_standard = EXCLUDED.national_standard", connectors)
    if statuses:
        cur.executemany("INSERT INTO connector_status (operator_id, connector_id, collected_at, status, park_status, "
                        "lock_status, frame_id) VALUES (%s,%s,%s,%s,%s,%s,%s)", statuses)
        cur.executemany("UPDATE charging_connectors SET status = %s, park_status = %s, lock_status = %s, "
                        "status_at = %s WHERE operator_id = %s AND connector_id = %s "
                        "AND (status_at IS NULL OR status_at <= %s)", [r + (r[3],) for r in latest])
    if measures:
        cur.executemany("INSERT INTO charging_measurements (operator_id, connector_id, session_id, collected_at, "
                        "voltage_v, current_a, power_kw, energy_kwh, soc_pct, elapsed_s, frame_id) "
                        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", measures)
    if records:
        cur.executemany("INSERT INTO charging_records (operator_id, session_id, connector_id, started_at, ended_at, "
                        "energy_kwh, meter_start_kwh, meter_end_kwh, stop_reason, vin, collected_at, frame_id) "
                        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (operator_id, session_id) "
                        "DO NOTHING", records)
    if alarms:
        cur.executemany("INSERT INTO charging_alarms (operator_id, target_id, code, level, state, started_at, "
                        "ended_at, description, collected_at, frame_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                        alarms)


def charging_counts(conn) -> dict:
    with conn.transaction():
        row = conn.execute(
            "SELECT (SELECT count(*) FROM charging_stations), (SELECT count(*) FROM charging_connectors), "
            "(SELECT count(*) FROM frames WHERE command BETWEEN 193 AND 197 AND response = 254)").fetchone()
    return {"stations": row[0], "connectors": row[1], "messages": row[2]}
