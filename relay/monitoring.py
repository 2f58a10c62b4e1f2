"""The monitoring functions regulators ask of a platform (platform-requirements.md), as
read functions ``fn(conn, ...) -> plain values`` run on the query pool.

* real-time view: vehicle list with filters, latest state of one vehicle;
* alarms: list, statistics, acknowledge / handle;
* hazard screening: long-offline vehicles, clustered parking, frequent alarms;
* data quality of a vehicle over a period;
* the vehicle archive (lifecycle record);
* storage watch (size, growth per day, months of room left).

Times are aware datetimes; days are counted in +08:00.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

#: days in +08:00 (the standard's zone), without relying on the server's tz database
DAY_SQL = "date_trunc('day', {col} AT TIME ZONE 'UTC' + interval '8 hours')"

#: plausible ranges for the out-of-range data-quality check (2016 ranges, the wider 2025 ones)
RANGES = {"speed_kmh": (0, 500), "soc_pct": (0, 100), "total_voltage_v": (0, 6000), "total_current_a": (-3000, 3000),
          "insulation_kohm": (0, 60000), "max_temp_c": (-40, 210), "min_temp_c": (-40, 210),
          "max_cell_v": (0, 15), "min_cell_v": (0, 15)}


def _page(limit: int, offset: int) -> tuple[int, int]:
    return max(1, min(int(limit), 1000)), max(0, int(offset))


def _rows(cur) -> list[dict]:
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


# --- real-time view ------------------------------------------------------------------

def vehicles(conn, *, now: datetime, online_seconds: float = 300.0, sector: str | None = None,
             region: str | None = None, owner: str | None = None, online: bool | None = None,
             charging: bool | None = None, min_alarm_level: int | None = None, limit: int = 100,
             offset: int = 0) -> dict:
    """Registered and seen vehicles with their latest state, filtered and paginated."""
    limit, offset = _page(limit, offset)
    where, args = [], []
    if sector:
        where.append("v.sector = %s")
        args.append(sector)
    if region:
        where.append("v.region_code LIKE %s")
        args.append(region + "%")
    if owner:
        where.append("v.owner = %s")
        args.append(owner)
    cutoff = now - timedelta(seconds=online_seconds)
    if online is not None:
        where.append("(l.received_at >= %s)" if online else "(l.received_at IS NULL OR l.received_at < %s)")
        args.append(cutoff)
    if charging is not None:
        where.append("l.charging_state IN ('parked_charging', 'driving_charging')" if charging else
                     "(l.charging_state IS NULL OR l.charging_state NOT IN ('parked_charging', 'driving_charging'))")
    if min_alarm_level is not None:
        where.append("l.alarm_level >= %s")
        args.append(min_alarm_level)
    cond = ("WHERE " + " AND ".join(where)) if where else ""
    base = f"FROM vehicles v LEFT JOIN latest l USING (vin) {cond}"
    with conn.transaction():
        total = conn.execute(f"SELECT count(*) {base}", args).fetchone()[0]
        cur = conn.execute(
            f"SELECT v.vin, v.sector, v.region_code, v.owner, v.model, v.plate, l.collected_at, l.received_at, "
            f"l.vehicle_state, l.charging_state, l.speed_kmh, l.soc_pct, l.odometer_km, l.longitude, l.latitude, "
            f"l.alarm_level, (l.received_at >= %s) AS online {base} ORDER BY v.vin LIMIT %s OFFSET %s",
            [cutoff, *args, limit, offset])
        items = _rows(cur)
    for it in items:
        it["online"] = bool(it["online"])
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def latest_state(conn, vin: str) -> dict | None:
    with conn.transaction():
        cur = conn.execute("SELECT l.*, v.sector, v.region_code, v.owner FROM latest l "
                           "LEFT JOIN vehicles v USING (vin) WHERE l.vin = %s", (vin,))
        rows = _rows(cur)
    return rows[0] if rows else None


def series(conn, vin: str, since: datetime, until: datetime, limit: int = 5000) -> list[dict]:
    """Time series of one vehicle for plots (speed, SOC, voltage, current, position)."""
    limit = max(1, min(int(limit), 100000))
    with conn.transaction():
        cur = conn.execute("SELECT collected_at, speed_kmh, soc_pct, total_voltage_v, total_current_a, longitude, "
                           "latitude, alarm_level FROM realtime WHERE vin = %s AND collected_at >= %s "
                           "AND collected_at < %s ORDER BY collected_at LIMIT %s", (vin, since, until, limit))
        return _rows(cur)


def positions(conn, limit: int = 20000) -> list[dict]:
    with conn.transaction():
        cur = conn.execute("SELECT vin, longitude, latitude, alarm_level, speed_kmh FROM latest "
                           "WHERE longitude IS NOT NULL ORDER BY vin LIMIT %s", (limit,))
        return _rows(cur)


# --- alarms --------------------------------------------------------------------------

def alarms(conn, *, vin: str | None = None, min_level: int | None = None, open_only: bool | None = None,
           since: datetime | None = None, until: datetime | None = None, limit: int = 100, offset: int = 0) -> dict:
    limit, offset = _page(limit, offset)
    where, args = [], []
    if vin:
        where.append("vin = %s")
        args.append(vin)
    if min_level is not None:
        where.append("max_level >= %s")
        args.append(min_level)
    if open_only is not None:
        where.append("closed_at IS NULL" if open_only else "closed_at IS NOT NULL")
    if since is not None:
        where.append("opened_at >= %s")
        args.append(since)
    if until is not None:
        where.append("opened_at < %s")
        args.append(until)
    cond = ("WHERE " + " AND ".join(where)) if where else ""
    with conn.transaction():
        total = conn.execute(f"SELECT count(*) FROM alarms {cond}", args).fetchone()[0]
        cur = conn.execute(f"SELECT * FROM alarms {cond} ORDER BY opened_at DESC, id DESC LIMIT %s OFFSET %s",
                           [*args, limit, offset])
        return {"items": _rows(cur), "total": total, "limit": limit, "offset": offset}


_STATS_BY = {
    "level": "a.max_level::text",
    "flag": "unnest(CASE WHEN cardinality(a.flags) = 0 THEN ARRAY['(faults only)'] ELSE a.flags END)",
    "owner": "coalesce(v.owner, '(unregistered)')",
    "model": "coalesce(nullif(v.model, ''), '(unknown)')",
    "sector": "coalesce(v.sector, '(unregistered)')",
    "day": "to_char(" + DAY_SQL.format(col="a.opened_at") + ", 'YYYY-MM-DD')",
}


def alarm_stats(conn, by: str, since: datetime, until: datetime) -> list[dict]:
    key = _STATS_BY.get(by)
    if key is None:
        raise ValueError(f"by must be one of {', '.join(_STATS_BY)}")
    with conn.transaction():
        cur = conn.execute(
            f"SELECT {key} AS key, count(*) AS alarms, count(DISTINCT a.vin) AS vehicles, "
            f"max(a.max_level) AS max_level, count(*) FILTER (WHERE a.closed_at IS NULL) AS open "
            f"FROM alarms a LEFT JOIN vehicles v USING (vin) WHERE a.opened_at >= %s AND a.opened_at < %s "
            f"GROUP BY 1 ORDER BY 2 DESC, 1", (since, until))
        return _rows(cur)


def alarm_update(conn, alarm_id: int, action: str, who: str, now: datetime, note: str = "") -> dict | None:
    """Acknowledge or mark handled (records who and when)."""
    column = {"acknowledge": "acknowledged", "handle": "handled"}.get(action)
    if column is None:
        raise ValueError("action must be acknowledge or handle")
    with conn.transaction():
        cur = conn.execute(
            f"UPDATE alarms SET {column}_by = %s, {column}_at = %s, note = CASE WHEN %s = '' THEN note "
            f"ELSE %s END WHERE id = %s RETURNING *", (who, now, note, note, alarm_id))
        rows = _rows(cur)
    return rows[0] if rows else None


# --- hazard screening -------------------------------------------------------------------

def offline(conn, *, now: datetime, public_days: float = 60.0, private_days: float = 90.0, limit: int = 100,
            offset: int = 0) -> dict:
    """Registered vehicles silent for longer than their class allows (non-private > 60 days,
    private > 90 days); a vehicle never seen is silent since its registration."""
    limit, offset = _page(limit, offset)
    q = ("FROM vehicles v LEFT JOIN latest l USING (vin) WHERE coalesce(l.received_at, v.registered_at) < "
         "CASE WHEN v.sector = 'private' THEN %s ELSE %s END")
    args = [now - timedelta(days=private_days), now - timedelta(days=public_days)]
    with conn.transaction():
        total = conn.execute(f"SELECT count(*) {q}", args).fetchone()[0]
        cur = conn.execute(f"SELECT v.vin, v.sector, v.region_code, v.owner, l.received_at AS last_seen, "
                           f"extract(epoch FROM (%s - coalesce(l.received_at, v.registered_at))) / 86400.0 AS days "
                           f"{q} ORDER BY days DESC, v.vin LIMIT %s OFFSET %s", [now, *args, limit, offset])
        items = _rows(cur)
    for it in items:
        it["days"] = round(float(it["days"]), 2)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _metres(lon1, lat1, lon2, lat2) -> float:
    """Equirectangular distance: exact enough at the scale of a car park."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return 6_371_000.0 * math.hypot(x, y)


def clusters(conn, *, now: datetime, radius_m: float = 100.0, min_vehicles: int = 10,
             min_hours: float = 2.0) -> list[dict]:
    """Groups of at least ``min_vehicles`` vehicles parked within ``radius_m`` of a centre
    vehicle, each parked (not seen moving) for at least ``min_hours``."""
    cutoff = now - timedelta(hours=min_hours)
    with conn.transaction():
        parked = conn.execute(
            "SELECT vin, longitude, latitude, coalesce(moving_at, collected_at) AS since FROM latest "
            "WHERE longitude IS NOT NULL AND position_valid AND coalesce(speed_kmh, 0) = 0 "
            "AND coalesce(moving_at, collected_at) <= %s", (cutoff,)).fetchall()
    # grid of cells of one radius: neighbours are in the 3x3 block around a vehicle's cell
    deg_lat = radius_m / 111_320.0
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (_, lon, lat, _) in enumerate(parked):
        deg_lon = deg_lat / max(0.01, math.cos(math.radians(lat)))
        cells.setdefault((int(lon // deg_lon), int(lat // deg_lat)), []).append(i)
    taken: set[int] = set()
    found = []
    order = sorted(range(len(parked)), key=lambda i: parked[i][0])
    for i in order:
        if i in taken:
            continue
        vin, lon, lat, _ = parked[i]
        deg_lon = deg_lat / max(0.01, math.cos(math.radians(lat)))
        cx, cy = int(lon // deg_lon), int(lat // deg_lat)
        members = [j for dx in (-1, 0, 1) for dy in (-1, 0, 1) for j in cells.get((cx + dx, cy + dy), ())
                   if j not in taken and _metres(lon, lat, parked[j][1], parked[j][2]) <= radius_m]
        if len(members) >= min_vehicles:
            taken.update(members)
            found.append({"centre": {"longitude": lon, "latitude": lat}, "vehicles": len(members),
                          "vins": sorted(parked[j][0] for j in members),
                          "parked_since": min(parked[j][3] for j in members)})
    found.sort(key=lambda c: -c["vehicles"])
    return found


def frequent_alarms(conn, *, now: datetime, count: int = 10, window_hours: float = 24.0) -> list[dict]:
    with conn.transaction():
        cur = conn.execute(
            "SELECT a.vin, count(*) AS alarms, max(a.max_level) AS max_level, min(a.opened_at) AS first, "
            "max(a.opened_at) AS last, v.sector, v.owner FROM alarms a LEFT JOIN vehicles v USING (vin) "
            "WHERE a.opened_at >= %s GROUP BY a.vin, v.sector, v.owner HAVING count(*) >= %s "
            "ORDER BY 2 DESC, 1", (now - timedelta(hours=window_hours), count))
        return _rows(cur)


# --- data quality ------------------------------------------------------------------------

def data_quality(conn, vin: str, since: datetime, until: datetime, interval_s: float = 10.0,
                 late_s: float = 60.0, gap_factor: float = 3.0, max_gaps: int = 50) -> dict:
    """Missing, late, interrupted, marked and out-of-range data of one vehicle over a period."""
    checks = ", ".join(f"count(*) FILTER (WHERE {col} < {lo} OR {col} > {hi}) AS {col}"
                       for col, (lo, hi) in RANGES.items())
    with conn.transaction():
        row = conn.execute(
            f"SELECT count(*) AS frames, count(*) FILTER (WHERE reissue) AS reissued, "
            f"count(*) FILTER (WHERE received_at - collected_at > %s * interval '1 second') AS late, "
            f"count(*) FILTER (WHERE invalid_fields > 0) AS frames_with_invalid, "
            f"coalesce(sum(invalid_fields), 0) AS invalid_fields, "
            f"count(*) FILTER (WHERE abnormal_fields > 0) AS frames_with_abnormal, "
            f"coalesce(sum(abnormal_fields), 0) AS abnormal_fields, min(collected_at) AS first, "
            f"max(collected_at) AS last, {checks} "
            f"FROM realtime WHERE vin = %s AND collected_at >= %s AND collected_at < %s",
            (late_s, vin, since, until))
        names = [d.name for d in row.description]
        values = dict(zip(names, row.fetchone()))
        gaps = conn.execute(
            "SELECT prev, collected_at, extract(epoch FROM collected_at - prev) AS seconds FROM ("
            "SELECT collected_at, lag(collected_at) OVER (ORDER BY collected_at) AS prev FROM realtime "
            "WHERE vin = %s AND collected_at >= %s AND collected_at < %s) t "
            "WHERE collected_at - prev > %s * interval '1 second' ORDER BY prev",
            (vin, since, until, interval_s * gap_factor)).fetchall()
    span = (until - since).total_seconds()
    expected = int(span // interval_s)
    frames = values["frames"]
    out_of_range = {col: values[col] for col in RANGES if values[col]}
    return {
        "vin": vin, "from": since, "to": until, "interval_s": interval_s,
        "frames": frames, "expected": expected, "missing": max(0, expected - frames),
        "completeness": round(min(1.0, frames / expected), 4) if expected else None,
        "not_transmitted": frames == 0,
        "late": values["late"], "reissued": values["reissued"],
        "interruptions": len(gaps),
        "interrupted_seconds": round(sum(float(g[2]) for g in gaps), 1),
        "gaps": [{"from": g[0], "to": g[1], "seconds": round(float(g[2]), 1)} for g in gaps[:max_gaps]],
        "frames_with_invalid": values["frames_with_invalid"], "invalid_fields": values["invalid_fields"],
        "frames_with_abnormal": values["frames_with_abnormal"], "abnormal_fields": values["abnormal_fields"],
        "out_of_range": out_of_range,
        "first": values["first"], "last": values["last"],
    }


# --- vehicle archive -----------------------------------------------------------------------

def archive(conn, vin: str, *, now: datetime, public_days: float = 60.0, private_days: float = 90.0,
            frequent: int = 10, window_hours: float = 24.0) -> dict | None:
    with conn.transaction():
        reg = _rows(conn.execute("SELECT * FROM vehicles WHERE vin = %s", (vin,)))
        seen = conn.execute("SELECT min(collected_at), max(collected_at), count(*) FROM realtime WHERE vin = %s",
                            (vin,)).fetchone()
        if not reg and not seen[2]:
            return None
        logins = _rows(conn.execute("SELECT event, serial, iccid, codes, collected_at, received_at, peer FROM logins "
                                    "WHERE vin = %s ORDER BY received_at DESC LIMIT 50", (vin,)))
        recent_alarms = _rows(conn.execute("SELECT * FROM alarms WHERE vin = %s ORDER BY opened_at DESC LIMIT 50",
                                           (vin,)))
        by_level = {str(level): n for level, n in conn.execute(
            "SELECT max_level, count(*) FROM alarms WHERE vin = %s GROUP BY 1 ORDER BY 1", (vin,))}
        odometer = _rows(conn.execute(
            f"SELECT to_char({DAY_SQL.format(col='collected_at')}, 'YYYY-MM-DD') AS day, "
            f"max(odometer_km) AS odometer_km FROM realtime WHERE vin = %s AND collected_at >= %s "
            f"GROUP BY 1 ORDER BY 1", (vin, now - timedelta(days=366))))
        latest = _rows(conn.execute("SELECT * FROM latest WHERE vin = %s", (vin,)))
        recent = conn.execute("SELECT count(*) FROM alarms WHERE vin = %s AND opened_at >= %s",
                              (vin, now - timedelta(hours=window_hours))).fetchone()[0]
    registry = reg[0] if reg else None
    private = registry is not None and registry["sector"] == "private"
    last = latest[0]["received_at"] if latest else None
    limit_days = private_days if private else public_days
    hazards = []
    # the same rule as offline(): silent (since last seen, or registration) longer than the limit
    silent_since = last if last is not None else (registry["registered_at"] if registry else None)
    if silent_since is not None and now - silent_since > timedelta(days=limit_days):
        hazards.append({"kind": "long_offline", "last_seen": last, "limit_days": limit_days})
    if recent >= frequent:
        hazards.append({"kind": "frequent_alarms", "alarms": recent, "window_hours": window_hours})
    quality = data_quality(conn, vin, now - timedelta(days=30), now, max_gaps=10)
    return {"vin": vin, "registry": registry, "first_seen": seen[0], "last_seen": seen[1], "frames": seen[2],
            "latest": latest[0] if latest else None, "logins": logins, "alarms": {"by_level": by_level,
                                                                                 "recent": recent_alarms},
            "hazards": hazards, "data_quality_30d": quality, "odometer_history": odometer}


# --- storage watch ---------------------------------------------------------------------------

def storage(conn, *, now: datetime, free_bytes: int | None, sample: bool = True) -> dict:
    """Database size, growth per day (from samples) and a warning when the free room is
    less than six months of growth at the current rate."""
    with conn.transaction():
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        if sample:
            conn.execute("INSERT INTO storage_samples (at, db_bytes, free_bytes) VALUES (%s, %s, %s) "
                         "ON CONFLICT (at) DO NOTHING", (now, size, free_bytes))
        first = conn.execute("SELECT at, db_bytes FROM storage_samples WHERE at >= %s ORDER BY at LIMIT 1",
                             (now - timedelta(days=30),)).fetchone()
    growth = None
    if first is not None and (now - first[0]).total_seconds() >= 3600:
        growth = max(0.0, (size - first[1]) / ((now - first[0]).total_seconds() / 86400.0))
    months_left = None
    warning = False
    if free_bytes is not None and growth:
        months = free_bytes / growth / 30.4
        warning = months < 6  # compared before rounding for display
        months_left = round(months, 1)
    return {"database_bytes": size, "free_bytes": free_bytes, "growth_bytes_per_day": growth,
            "months_of_room": months_left, "warning": warning}


def charging_overview(conn, *, now: datetime | None = None, offline_days: float = 7.0) -> dict:
    """Connector availability (idle, in use, faulted, offline) per station and operator,
    energy per day, connectors with frequent faults, and long-offline connectors (reported
    offline, or silent, for more than ``offline_days``)."""
    with conn.transaction():
        offline_piles = []
        if now is not None:
            # offline for more than the limit, or silent that long: the last report is older
            # (a connector that never reported counts from its station's static info)
            offline_piles = _rows(conn.execute(
                "SELECT c.operator_id, c.station_id, c.equipment_id, c.connector_id, c.status, c.status_at "
                "FROM charging_connectors c LEFT JOIN charging_stations s USING (operator_id, station_id) "
                "WHERE coalesce(c.status_at, s.updated_at) < %s "
                "ORDER BY coalesce(c.status_at, s.updated_at), c.operator_id, c.connector_id LIMIT 500",
                (now - timedelta(days=offline_days),)))
        stations = _rows(conn.execute(
            "SELECT c.operator_id, c.station_id, s.region_code, count(*) AS connectors, "
            "count(*) FILTER (WHERE c.status = 1) AS available, "
            "count(*) FILTER (WHERE c.status IN (2, 3, 4)) AS in_use, "
            "count(*) FILTER (WHERE c.status = 3) AS charging, count(*) FILTER (WHERE c.status = 255) AS faulted, "
            "count(*) FILTER (WHERE c.status = 0 OR c.status IS NULL) AS offline "
            "FROM charging_connectors c LEFT JOIN charging_stations s USING (operator_id, station_id) "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2"))
        energy = _rows(conn.execute(
            f"SELECT to_char({DAY_SQL.format(col='ended_at')}, 'YYYY-MM-DD') AS day, operator_id, "
            f"count(*) AS sessions, round(sum(energy_kwh)::numeric, 2) AS energy_kwh FROM charging_records "
            f"GROUP BY 1, 2 ORDER BY 1 DESC, 2 LIMIT 400"))
        faults = _rows(conn.execute(
            "SELECT operator_id, target_id, count(*) AS alarms, max(level) AS level FROM charging_alarms "
            "WHERE state = 1 GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 200"))
    return {"stations": stations, "energy_per_day": energy, "frequent_faults": faults,
            "long_offline_connectors": offline_piles}
