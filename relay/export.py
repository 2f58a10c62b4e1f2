"""Export of vehicle data: any set of vehicles and period, CSV or JSON lines, streamed.

PostgreSQL's ``COPY (SELECT ...) TO STDOUT`` produces the bytes; they are handed on block
by block (to a file, stdout or an HTTP response), so nothing is built in memory whatever
the size. Times are written in +08:00.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from psycopg import sql

COLUMNS = ("vin", "collected_at", "received_at", "reissue", "vehicle_state", "charging_state", "run_mode",
           "speed_kmh", "odometer_km", "total_voltage_v", "total_current_a", "soc_pct", "insulation_kohm", "gear",
           "position_valid", "longitude", "latitude", "alarm_level", "alarm_flags", "fault_codes", "max_cell_v",
           "min_cell_v", "max_temp_c", "min_temp_c", "abnormal_fields", "invalid_fields")
FORMATS = ("csv", "jsonl")
MAX_VEHICLES = 1000


class ExportError(ValueError):
    pass


def _select(vins: list[str], since: datetime, until: datetime) -> sql.Composed:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
    return sql.SQL("SELECT {} FROM realtime WHERE vin = ANY({}) AND collected_at >= {} AND collected_at < {} "
                   "ORDER BY vin, collected_at").format(cols, sql.Literal(list(vins)), sql.Literal(since),
                                                         sql.Literal(until))


def check(vins: list[str], since: datetime, until: datetime, fmt: str) -> None:
    if not vins:
        raise ExportError("give at least one VIN")
    if len(vins) > MAX_VEHICLES:
        raise ExportError(f"at most {MAX_VEHICLES} vehicles per export")
    if until <= since:
        raise ExportError("the period is empty (to must be after from)")
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")


def export(conn, vins: list[str], since: datetime, until: datetime, fmt: str,
           write: Callable[[bytes], None]) -> dict:
    """Stream rows to ``write`` (called with blocks of bytes); return rows and bytes written."""
    check(vins, since, until, fmt)
    select = _select(vins, since, until)
    if fmt == "csv":
        copy_sql = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(select)
    else:
        copy_sql = sql.SQL("COPY (SELECT row_to_json(r) FROM ({}) r) TO STDOUT").format(select)
    rows = 0
    written = 0
    with conn.transaction():
        conn.execute("SET LOCAL TIME ZONE INTERVAL '+08:00' HOUR TO MINUTE")
        with conn.cursor().copy(copy_sql) as copy:
            for block in copy:
                data = bytes(block)
                if fmt == "jsonl":
                    # COPY's text format doubles backslashes; JSON text has no other escapes to undo
                    data = data.replace(b"\\\\", b"\\")
                rows += data.count(b"\n")
                written += len(data)
                write(data)
    if fmt == "csv" and rows:
        rows -= 1  # the header line
    return {"rows": rows, "bytes": written}
