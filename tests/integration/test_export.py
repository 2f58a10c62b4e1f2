"""relay.export over a real PostgreSQL: rows of two vehicles across two month partitions,
CSV and JSON lines, the period [from, to), ordering, +08:00 rendering; the argument
checks; and the ``relay export`` command as a subprocess giving the same bytes.

Every expected line is written out by hand below.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from relay import export
from relay.store.partitions import Partitions, month_of

CST = timezone(timedelta(hours=8))
UTC = timezone.utc
E1, E2, E3 = "LEXPT000000000001", "LEXPT000000000002", "LEXPT000000000003"
SINCE = datetime(2026, 10, 31, 12, 0, 0, tzinfo=CST)
UNTIL = datetime(2026, 11, 2, 8, 0, 0, tzinfo=CST)

BASE = {"reissue": False, "vehicle_state": "started", "charging_state": "not_charging", "run_mode": "electric",
        "speed_kmh": 30.5, "odometer_km": 1234.5, "total_voltage_v": 350.5, "total_current_a": -10.25, "soc_pct": 80,
        "insulation_kohm": 5000, "gear": "D", "position_valid": True, "longitude": 118.796877, "latitude": 32.060255,
        "alarm_level": 0, "alarm_flags": [], "fault_codes": 0, "max_cell_v": 3.5, "min_cell_v": 3.25, "max_temp_c": 31,
        "min_temp_c": -5, "abnormal_fields": 0, "invalid_fields": 0}

ROWS = [  # inserted in this (scrambled) order
    # E2, 07:59:59 +08:00 on 2 November: the last second of the period
    {"vin": E2, "collected_at": datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC), "speed_kmh": 45.25},
    # E1, 00:00:00 +08:00 on 1 November (16:00 UTC on 31 October): November partition; a reissue
    {"vin": E1, "collected_at": datetime(2026, 10, 31, 16, 0, 0, tzinfo=UTC),
     "received_at": datetime(2026, 11, 1, 0, 10, 0, tzinfo=CST), "reissue": True, "vehicle_state": "stopped",
     "charging_state": "parked_charging", "speed_kmh": 0.0, "total_voltage_v": 360.0, "total_current_a": 20.0,
     "soc_pct": 81, "insulation_kohm": 4800, "gear": "P", "position_valid": False, "longitude": None,
     "latitude": None, "alarm_level": 2, "alarm_flags": ["insulation", "soc_low"], "fault_codes": 1,
     "max_cell_v": None, "min_cell_v": None, "max_temp_c": None, "min_temp_c": None, "abnormal_fields": 1,
     "invalid_fields": 2},
    # E1, 23:59:50 +08:00 on 31 October: October partition
    {"vin": E1, "collected_at": datetime(2026, 10, 31, 15, 59, 50, tzinfo=UTC)},
    # E1, one second before the period: out
    {"vin": E1, "collected_at": datetime(2026, 10, 31, 11, 59, 59, tzinfo=CST)},
    # E2, exactly the end of the period: out
    {"vin": E2, "collected_at": datetime(2026, 11, 2, 8, 0, 0, tzinfo=CST)},
    # E3 is not asked for
    {"vin": E3, "collected_at": datetime(2026, 11, 1, 0, 0, 5, tzinfo=CST)},
    # E1, 00:00:10 +08:00 on 1 November
    {"vin": E1, "collected_at": datetime(2026, 11, 1, 0, 0, 10, tzinfo=CST), "odometer_km": 1234.6},
    # E2, exactly the start of the period: in
    {"vin": E2, "collected_at": datetime(2026, 10, 31, 12, 0, 0, tzinfo=CST)},
]

HEADER = ("vin,collected_at,received_at,reissue,vehicle_state,charging_state,run_mode,speed_kmh,odometer_km,"
          "total_voltage_v,total_current_a,soc_pct,insulation_kohm,gear,position_valid,longitude,latitude,alarm_level,"
          "alarm_flags,fault_codes,max_cell_v,min_cell_v,max_temp_c,min_temp_c,abnormal_fields,invalid_fields")
TAIL = ("f,started,not_charging,electric,{speed},{odo},350.5,-10.25,80,5000,D,t,118.796877,32.060255,0,{{}},0,"
        "3.5,3.25,31,-5,0,0")
# by VIN, then collection time; received_at = collected_at unless given; times in +08:00
EXPECTED_CSV = "\n".join([
    HEADER,
    f"{E1},2026-10-31 23:59:50+08,2026-10-31 23:59:50+08," + TAIL.format(speed="30.5", odo="1234.5"),
    f"{E1},2026-11-01 00:00:00+08,2026-11-01 00:10:00+08,t,stopped,parked_charging,electric,0,1234.5,360,20,81,4800,"
    'P,f,,,2,"{insulation,soc_low}",1,,,,,1,2',
    f"{E1},2026-11-01 00:00:10+08,2026-11-01 00:00:10+08," + TAIL.format(speed="30.5", odo="1234.6"),
    f"{E2},2026-10-31 12:00:00+08,2026-10-31 12:00:00+08," + TAIL.format(speed="30.5", odo="1234.5"),
    f"{E2},2026-11-02 07:59:59+08,2026-11-02 07:59:59+08," + TAIL.format(speed="45.25", odo="1234.5"),
]) + "\n"


def _json(vin, collected, received=None, **changes):
    row = {"vin": vin, "collected_at": collected, "received_at": received or collected, **BASE, **changes}
    return {k: row[k] for k in export.COLUMNS}


EXPECTED_JSON = [
    _json(E1, "2026-10-31T23:59:50+08:00"),
    _json(E1, "2026-11-01T00:00:00+08:00", "2026-11-01T00:10:00+08:00", reissue=True, vehicle_state="stopped",
          charging_state="parked_charging", speed_kmh=0, total_voltage_v=360, total_current_a=20, soc_pct=81,
          insulation_kohm=4800, gear="P", position_valid=False, longitude=None, latitude=None, alarm_level=2,
          alarm_flags=["insulation", "soc_low"], fault_codes=1, max_cell_v=None, min_cell_v=None, max_temp_c=None,
          min_temp_c=None, abnormal_fields=1, invalid_fields=2),
    _json(E1, "2026-11-01T00:00:10+08:00", odometer_km=1234.6),
    _json(E2, "2026-10-31T12:00:00+08:00"),
    _json(E2, "2026-11-02T07:59:59+08:00", speed_kmh=45.25),
]


def _insert(dsn, rows):
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            Partitions().ensure(conn, {month_of(r["collected_at"]) for r in rows})
        for i, r in enumerate(rows):
            row = {**BASE, "received_at": r["collected_at"], "frame_id": i + 1, **r}
            names = list(row)
            conn.execute(f"INSERT INTO realtime ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
                         [row[n] for n in names])


@pytest.fixture
def data_dsn(db_dsn):
    _insert(db_dsn, ROWS)
    with psycopg.connect(db_dsn) as conn:
        # the rows really sit in two month partitions (+08:00 months)
        parts = dict(conn.execute("SELECT tableoid::regclass::text, count(*) FROM realtime GROUP BY 1").fetchall())
    assert parts == {"realtime_202610": 3, "realtime_202611": 5}
    return db_dsn


def _export(dsn, vins, fmt, since=SINCE, until=UNTIL):
    blocks = []
    with psycopg.connect(dsn) as conn:
        result = export.export(conn, vins, since, until, fmt, blocks.append)
    return result, blocks


def test_csv_export_worked_by_hand(data_dsn):
    result, blocks = _export(data_dsn, [E2, E1], "csv")
    data = b"".join(blocks)
    assert data.decode() == EXPECTED_CSV
    # 5 rows: E1 23:59:50, 00:00:00, 00:00:10; E2 12:00:00 (from, inclusive), 07:59:59 (to is exclusive)
    assert result == {"rows": 5, "bytes": len(data)}
    assert len(blocks) > 1  # handed on block by block, not as one built string


def test_jsonl_export_has_the_same_values(data_dsn):
    result, blocks = _export(data_dsn, [E1, E2], "jsonl")
    data = b"".join(blocks)
    lines = data.decode().splitlines()
    assert result == {"rows": 5, "bytes": len(data)} and data.endswith(b"\n")
    assert [json.loads(line) for line in lines] == EXPECTED_JSON
    # the same rows as the CSV, field by field (CSV renders times as "YYYY-MM-DD hh:mm:ss+08")
    csv_rows = [line.split(",")[:3] for line in EXPECTED_CSV.splitlines()[1:]]
    for js, cs in zip(map(json.loads, lines), csv_rows):
        assert js["vin"] == cs[0]
        assert datetime.fromisoformat(js["collected_at"]) == datetime.fromisoformat(cs[1] + ":00")


def test_export_of_one_vehicle_and_of_nothing(data_dsn):
    result, blocks = _export(data_dsn, [E1], "csv")
    lines = b"".join(blocks).decode().splitlines()
    assert result["rows"] == 3 and lines == EXPECTED_CSV.splitlines()[:4]
    # a period with no data: the header alone, 0 rows; JSON lines: nothing at all
    empty_since, empty_until = datetime(2026, 12, 1, tzinfo=CST), datetime(2026, 12, 2, tzinfo=CST)
    result, blocks = _export(data_dsn, [E1], "csv", empty_since, empty_until)
    assert result["rows"] == 0 and b"".join(blocks).decode() == HEADER + "\n"
    result, blocks = _export(data_dsn, [E1], "jsonl", empty_since, empty_until)
    assert result == {"rows": 0, "bytes": 0} and b"".join(blocks) == b""
    # a VIN with no data at all
    assert _export(data_dsn, ["LEXPT000000000009"], "jsonl")[0]["rows"] == 0


def test_jsonl_escapes_survive_copy(db_dsn):
    # a text value with a backslash, a quote, a tab and a non-ASCII character
    odd = 'a\\b "q"\tc 苏'
    _insert(db_dsn, [{"vin": E1, "collected_at": SINCE, "vehicle_state": odd}])
    _, blocks = _export(db_dsn, [E1], "jsonl")
    assert json.loads(b"".join(blocks))["vehicle_state"] == odd
    _, blocks = _export(db_dsn, [E1], "csv")
    rows = list(csv.reader(io.StringIO(b"".join(blocks).decode())))
    assert rows[1][4] == odd


@pytest.mark.parametrize(("vins", "since", "until", "fmt", "message"), [
    pytest.param([], SINCE, UNTIL, "csv", "give at least one VIN", id="no-vin"),
    pytest.param([E1], SINCE, SINCE, "csv", "the period is empty", id="from-equals-to"),
    pytest.param([E1], UNTIL, SINCE, "csv", "the period is empty", id="to-before-from"),
    pytest.param([E1], SINCE, UNTIL, "xml", "format must be one of csv, jsonl", id="bad-format"),
    pytest.param([f"V{i:016d}" for i in range(1001)], SINCE, UNTIL, "csv", "at most 1000 vehicles",
                 id="too-many-vins"),
])
def test_check_refuses_bad_requests(vins, since, until, fmt, message):
    with pytest.raises(export.ExportError, match=message):
        export.check(vins, since, until, fmt)
    # export() checks before it touches the connection (None here)
    with pytest.raises(export.ExportError, match=message):
        export.export(None, vins, since, until, fmt, lambda b: None)


def test_check_accepts_the_limits():
    export.check([f"V{i:016d}" for i in range(1000)], SINCE, SINCE + timedelta(microseconds=1), "jsonl")


# --- the command -------------------------------------------------------------------------------------------

def _relay(*args):
    exe = Path(sys.executable).with_name("relay")
    return subprocess.run([str(exe), *args], capture_output=True, timeout=60)


def _config(tmp_path, dsn) -> Path:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"role: enterprise\nnode_id: ENT01\ndatabase:\n  dsn: {json.dumps(dsn)}\n"
                   f"listeners:\n  terminals:\n    endpoint: \"tcp:0:interface=127.0.0.1\"\n", encoding="utf-8")
    return cfg


def test_cli_export_gives_the_same_bytes(data_dsn, tmp_path):
    cfg = _config(tmp_path, data_dsn)
    out = tmp_path / "out.csv"
    # --from without an offset is +08:00; --to with one
    proc = _relay("export", "--config", str(cfg), "--vin", E1, "--vin", E2, "--from", "2026-10-31T12:00:00",
                  "--to", "2026-11-02T08:00:00+08:00", "--format", "csv", "--out", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.read_bytes() == EXPECTED_CSV.encode() == b"".join(_export(data_dsn, [E1, E2], "csv")[1])
    summary = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert summary == {"rows": 5, "bytes": len(EXPECTED_CSV.encode())}
    # the same period in UTC, JSON lines to standard output
    proc = _relay("export", "--config", str(cfg), "--vin", E1, "--vin", E2, "--from", "2026-10-31T04:00:00+00:00",
                  "--to", "2026-11-02T00:00:00+00:00", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr.decode()
    assert [json.loads(line) for line in proc.stdout.decode().splitlines()] == EXPECTED_JSON


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--from", "2026-11-02T08:00:00", "--to", "2026-10-31T12:00:00"], "the period is empty",
                 id="empty-period"),
    pytest.param(["--from", "yesterday", "--to", "2026-10-31T12:00:00"], "--from/--to", id="bad-time"),
])
def test_cli_export_refuses_bad_arguments(db_dsn, tmp_path, args, message):
    cfg = _config(tmp_path, db_dsn)
    out = tmp_path / "out.csv"
    proc = _relay("export", "--config", str(cfg), "--vin", E1, *args, "--out", str(out))
    assert proc.returncode == 2 and message in proc.stderr.decode()
    assert not out.exists()
