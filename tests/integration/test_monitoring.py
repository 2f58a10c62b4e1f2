"""The monitoring functions of relay/monitoring.py (and the alarm tracker behind them) over a
real PostgreSQL, with data inserted by hand and every expected figure worked out by hand
in the test (the comments show the arithmetic).

``NOW`` is fixed; every function gets it as an argument, so nothing depends on the clock.
Days are +08:00 days, the standard's zone.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
import pytest_twisted
from structlog.testing import capture_logs
from twisted.internet import reactor

import codec
from relay import monitoring
from relay.alarms import AlarmTracker
from relay.ingest import Received
from relay.store.partitions import Partitions, month_of
from relay.store.writer import BatchWriter, Router
from tests.support.fixtures import data_frame, small_items

CST = timezone(timedelta(hours=8))
UTC = timezone.utc
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=CST)
DAY = timedelta(days=1)
TIMEOUT = 15.0


# --- helpers: rows inserted by hand ------------------------------------------------------------

@pytest.fixture
def conn(db_dsn):
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c


def register(conn, vin, sector="bus", region="320102", owner="ENT01", model="", plate="", updated_at=None):
    """``updated_at`` is when the row was registered (both registered_at and updated_at)."""
    at = updated_at or NOW - 400 * DAY
    conn.execute("INSERT INTO vehicles (vin, sector, region_code, owner, model, plate, updated_at, registered_at) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", (vin, sector, region, owner, model, plate, at, at))


LATEST_DEFAULTS = {"vehicle_state": "started", "charging_state": "not_charging", "speed_kmh": 0.0,
                   "odometer_km": 1000.0, "total_voltage_v": 350.0, "total_current_a": 0.0, "soc_pct": 80,
                   "position_valid": True, "longitude": 118.8, "latitude": 32.05, "alarm_level": 0,
                   "alarm_flags": [], "moving_at": None}


def put_latest(conn, vin, received_at, collected_at=None, **cols):
    row = {**LATEST_DEFAULTS, **cols, "vin": vin, "received_at": received_at,
           "collected_at": collected_at or received_at}
    names = list(row)
    conn.execute(f"INSERT INTO latest ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
                 [row[n] for n in names])


RT_DEFAULTS = {"reissue": False, "vehicle_state": "started", "charging_state": "not_charging", "run_mode": "electric",
               "speed_kmh": 30.0, "odometer_km": 1000.0, "total_voltage_v": 350.0, "total_current_a": 10.0,
               "soc_pct": 80, "insulation_kohm": 5000, "gear": "D", "position_valid": True, "longitude": 118.8,
               "latitude": 32.05, "alarm_level": 0, "alarm_flags": [], "fault_codes": 0, "max_cell_v": 3.5,
               "min_cell_v": 3.4, "max_temp_c": 30, "min_temp_c": 25, "abnormal_fields": 0, "invalid_fields": 0}


def put_realtime(conn, rows: list[dict]) -> None:
    """Realtime rows (``vin`` and ``collected_at`` required); the month partitions first."""
    with conn.transaction():
        Partitions().ensure(conn, {month_of(r["collected_at"]) for r in rows})
    full = []
    for i, r in enumerate(rows):
        row = {**RT_DEFAULTS, "received_at": r["collected_at"], "frame_id": i + 1, **r}
        full.append(row)
    names = list(full[0])
    with conn.transaction():
        conn.cursor().executemany(
            f"INSERT INTO realtime ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
            [[row[n] for n in names] for row in full])


def put_alarm(conn, vin, opened_at, level=1, flags=(), closed_at=None, codes=()) -> int:
    return conn.execute("INSERT INTO alarms (vin, opened_at, last_seen, closed_at, max_level, flags, fault_codes) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                        (vin, opened_at, closed_at or opened_at, closed_at, level, list(flags),
                         list(codes))).fetchone()[0]


def vins(result) -> list[str]:
    return [it["vin"] for it in result["items"]]


# --- 1. long-offline vehicles ---------------------------------------------------------------------

def _offline_fleet(conn):
    # public vehicles: limit 60 days of silence; private: 90 days (received_at is what counts)
    register(conn, "LOFF0PUB061000001", "bus")
    put_latest(conn, "LOFF0PUB061000001", NOW - 61 * DAY - timedelta(hours=6))  # 61.25 days > 60: listed
    register(conn, "LOFF0PUB059000001", "taxi")
    put_latest(conn, "LOFF0PUB059000001", NOW - 59 * DAY)                        # 59 < 60: not
    register(conn, "LOFF0PUB060000001", "bus")
    put_latest(conn, "LOFF0PUB060000001", NOW - 60 * DAY)                        # exactly 60: not "longer than"
    register(conn, "LOFF0PRV089000001", "private")
    put_latest(conn, "LOFF0PRV089000001", NOW - 89 * DAY)                        # 89 < 90: not
    register(conn, "LOFF0PRV091000001", "private")
    put_latest(conn, "LOFF0PRV091000001", NOW - 91 * DAY)                        # 91 > 90: listed
    # registered, never seen: silence counts from vehicles.registered_at
    register(conn, "LOFF0NEVER7000001", "bus", updated_at=NOW - 70 * DAY)        # 70 > 60: listed
    register(conn, "LOFF0NEVER1000001", "bus", updated_at=NOW - 10 * DAY)        # 10 < 60: not
    register(conn, "LOFF0NEVPRV000001", "private", updated_at=NOW - 80 * DAY)    # 80 < 90 (private): not
    # seen but not registered: not a registry vehicle, never listed
    put_latest(conn, "LOFF0UNREG0000001", NOW - 200 * DAY)


def test_offline_lists_vehicles_silent_longer_than_their_class_allows(conn):
    _offline_fleet(conn)
    got = monitoring.offline(conn, now=NOW)
    # ordered by days of silence, longest first: 91.0, 70.0, 61.25 (= 61 + 6/24)
    assert vins(got) == ["LOFF0PRV091000001", "LOFF0NEVER7000001", "LOFF0PUB061000001"]
    assert [it["days"] for it in got["items"]] == [91.0, 70.0, 61.25]
    assert got["total"] == 3 and got["limit"] == 100 and got["offset"] == 0
    by_vin = {it["vin"]: it for it in got["items"]}
    assert by_vin["LOFF0NEVER7000001"]["last_seen"] is None
    assert by_vin["LOFF0PRV091000001"]["last_seen"] == NOW - 91 * DAY
    assert by_vin["LOFF0PRV091000001"]["sector"] == "private"


@pytest.mark.parametrize(("public_days", "private_days", "expected"), [
    # 58/88: add the 59- and 60-day public ones and the 89-day private one
    pytest.param(58, 88, ["LOFF0PRV091000001", "LOFF0PRV089000001", "LOFF0NEVER7000001", "LOFF0PUB061000001",
                          "LOFF0PUB060000001", "LOFF0PUB059000001"], id="lower-limits"),
    # 61.25 days is not > 61.25 (strict), 70 > 61.25 stays; private 91 is not > 91
    pytest.param(61.25, 91, ["LOFF0NEVER7000001"], id="limits-at-the-values"),
    # 79/79: the private never-seen one (80 days) now counts, the 70-day one does not
    pytest.param(79, 79, ["LOFF0PRV091000001", "LOFF0PRV089000001", "LOFF0NEVPRV000001"], id="equal-limits"),
])
def test_offline_thresholds_come_from_the_arguments(conn, public_days, private_days, expected):
    _offline_fleet(conn)
    got = monitoring.offline(conn, now=NOW, public_days=public_days, private_days=private_days)
    assert vins(got) == expected and got["total"] == len(expected)


def test_offline_never_seen_vehicle_stays_listed_after_a_registry_reimport(conn):
    from relay import registry

    # registry.upsert stamps the database's now(), so this test's "now" is the database clock
    db_now = conn.execute("SELECT now()").fetchone()[0]
    row = ("LOFF0REIMPORT0001", "bus", "320102", "ENT01", "E12", "")
    registry.upsert(conn, [row])
    conn.execute("UPDATE vehicles SET registered_at = %s, updated_at = %s WHERE vin = %s",
                 (db_now - 100 * DAY, db_now - 100 * DAY, row[0]))
    # registered 100 days ago, never seen: 100 > 60
    assert vins(monitoring.offline(conn, now=db_now)) == [row[0]]
    registry.upsert(conn, [row])  # the same registry file imported again
    assert vins(monitoring.offline(conn, now=db_now + timedelta(minutes=1))) == [row[0]]


def test_offline_pagination(conn):
    _offline_fleet(conn)
    first = monitoring.offline(conn, now=NOW, limit=2, offset=0)
    second = monitoring.offline(conn, now=NOW, limit=2, offset=2)
    assert vins(first) == ["LOFF0PRV091000001", "LOFF0NEVER7000001"] and first["total"] == 3
    assert vins(second) == ["LOFF0PUB061000001"] and second["total"] == 3 and second["offset"] == 2
    past = monitoring.offline(conn, now=NOW, limit=2, offset=3)
    assert past["items"] == [] and past["total"] == 3
    # limit is clamped to 1..1000, offset to >= 0
    clamped = monitoring.offline(conn, now=NOW, limit=0, offset=-5)
    assert clamped["limit"] == 1 and clamped["offset"] == 0 and vins(clamped) == ["LOFF0PRV091000001"]
    assert monitoring.offline(conn, now=NOW, limit=5000)["limit"] == 1000


# --- 2. clustered parking ----------------------------------------------------------------------------

LON0, LAT0 = 118.8, 32.05
# at latitude 32.05: 1e-4 degree of latitude = 6371000 * pi/180 * 1e-4 = 11.12 m;
# 1e-4 degree of longitude = 11.12 m * cos(32.05 deg) = 11.12 * 0.8476 = 9.43 m


def _park(conn, vin, lon, lat, since, speed=0.0, valid=True, collected_at=None):
    put_latest(conn, vin, collected_at or NOW - timedelta(minutes=1), speed_kmh=speed, position_valid=valid,
               longitude=lon, latitude=lat, moving_at=since)


def _cluster_scene(conn) -> list[str]:
    """12 vehicles on a 4 x 3 grid around (LON0, LAT0), steps 2e-4 degree: longitude offsets
    -3, -1, +1, +3 e-4 (-28.3, -9.4, +9.4, +28.3 m), latitude offsets -2, 0, +2 e-4 (-22.2, 0,
    +22.2 m). The farthest from the point: sqrt(28.3^2 + 22.2^2) = 36.0 m (within ~50 m); the
    farthest pair (opposite corners): sqrt(56.6^2 + 44.5^2) = 72.0 m < 100 m radius."""
    group = []
    n = 0
    for dlon in (-3e-4, -1e-4, 1e-4, 3e-4):
        for dlat in (-2e-4, 0.0, 2e-4):
            n += 1
            vin = f"LCLUS0A{n:010d}"
            group.append(vin)
            # parked 3 h, except the last one, parked exactly 2 h (the min_hours boundary: counted)
            since = NOW - timedelta(hours=2) if n == 12 else NOW - timedelta(hours=3)
            _park(conn, vin, LON0 + dlon, LAT0 + dlat, since)
    # 500 m north: 500 / 111195 m per degree = 0.0045 degree
    _park(conn, "LCLUS0FAR00000001", LON0, LAT0 + 0.0045, NOW - timedelta(hours=5))
    # at the point but parked only 1 h: not counted
    for i in range(3):
        _park(conn, f"LCLUS0SHORT000{i:03d}", LON0, LAT0 + i * 1e-5, NOW - timedelta(hours=1))
    # at the point, parked 3 h ago by moving_at but moving now (speed 12): not counted
    _park(conn, "LCLUS0MOVING00001", LON0, LAT0, NOW - timedelta(hours=3), speed=12.0)
    # at the point, parked 3 h, but position invalid: not counted
    _park(conn, "LCLUS0NOFIX000001", LON0, LAT0, NOW - timedelta(hours=3), valid=False)
    return group


def test_clusters_find_twelve_vehicles_parked_together(conn):
    group = _cluster_scene(conn)
    got = monitoring.clusters(conn, now=NOW, radius_m=100.0, min_vehicles=10, min_hours=2.0)
    assert len(got) == 1
    cluster = got[0]
    assert cluster["vehicles"] == 12 and cluster["vins"] == sorted(group)
    assert "LCLUS0FAR00000001" not in cluster["vins"]
    # the centre is the first candidate in VIN order: LCLUS0A0000000001 at (-3e-4, -2e-4)
    assert cluster["centre"] == {"longitude": pytest.approx(LON0 - 3e-4), "latitude": pytest.approx(LAT0 - 2e-4)}
    assert cluster["parked_since"] == NOW - timedelta(hours=3)
    # 12 vehicles are not 13
    assert monitoring.clusters(conn, now=NOW, radius_m=100.0, min_vehicles=13, min_hours=2.0) == []
    # one more hour of parking asked for: the one parked exactly 2 h drops out: 11 left
    got = monitoring.clusters(conn, now=NOW, radius_m=100.0, min_vehicles=10, min_hours=2.5)
    assert [c["vehicles"] for c in got] == [11]
    # a radius of 15 m: neighbours on the grid are 18.9 m (2e-4 lon) or 22.2 m (2e-4 lat) apart: no group
    assert monitoring.clusters(conn, now=NOW, radius_m=15.0, min_vehicles=10, min_hours=2.0) == []


def test_clusters_vehicles_parked_only_one_hour_are_not_counted(conn):
    _cluster_scene(conn)
    # with min_hours 0.5 the 3 short-parked cars (1 h) join the group at the point: 12 + 3 = 15
    got = monitoring.clusters(conn, now=NOW, radius_m=100.0, min_vehicles=10, min_hours=0.5)
    assert [c["vehicles"] for c in got] == [15]
    assert not any("SHORT" in v for v in monitoring.clusters(conn, now=NOW, min_vehicles=10)[0]["vins"])


def test_clusters_two_groups_are_ordered_by_size(conn):
    _cluster_scene(conn)
    # 9 more around the far vehicle (500 m north), each 1e-4 degree of longitude (9.4 m) apart: 1 + 9 = 10
    for i in range(1, 10):
        _park(conn, f"LCLUS0B{i:010d}", LON0 + i * 1e-4, LAT0 + 0.0045, NOW - timedelta(hours=4))
    got = monitoring.clusters(conn, now=NOW, radius_m=100.0, min_vehicles=10, min_hours=2.0)
    assert [c["vehicles"] for c in got] == [12, 10]
    assert "LCLUS0FAR00000001" in got[1]["vins"]
    assert got[1]["parked_since"] == NOW - timedelta(hours=5)
    assert [c["vehicles"] for c in monitoring.clusters(conn, now=NOW, min_vehicles=11)] == [12]


# --- 3. frequent alarms --------------------------------------------------------------------------

def test_frequent_alarms_count_in_the_window(conn):
    register(conn, "LFREQ000000000005", "bus", owner="ENT01")
    register(conn, "LFREQ000000000004", "taxi", owner="ENT02")
    # 5 in the last 24 h (the oldest exactly 24 h ago: the window is [now - 24 h, now]): listed
    for h, level in ((1, 1), (2, 2), (5, 1), (23, 1), (24, 3)):
        put_alarm(conn, "LFREQ000000000005", NOW - timedelta(hours=h), level=level)
    # 4 in the window + 3 older (24 h 1 s, 30 h, 48 h): 4 < 5, not listed though 7 in all
    for h in (1, 3, 6, 12):
        put_alarm(conn, "LFREQ000000000004", NOW - timedelta(hours=h), level=1)
    for delta in (timedelta(hours=24, seconds=1), timedelta(hours=30), timedelta(hours=48)):
        put_alarm(conn, "LFREQ000000000004", NOW - delta, level=3)
    # 6 in the window, vehicle not registered
    for m in range(6):
        put_alarm(conn, "LFREQ000000000006", NOW - timedelta(minutes=10 * m + 5), level=2)

    got = monitoring.frequent_alarms(conn, now=NOW, count=5, window_hours=24)
    assert [(r["vin"], r["alarms"]) for r in got] == [("LFREQ000000000006", 6), ("LFREQ000000000005", 5)]
    five = got[1]
    assert five["max_level"] == 3 and five["first"] == NOW - timedelta(hours=24)
    assert five["last"] == NOW - timedelta(hours=1) and five["sector"] == "bus" and five["owner"] == "ENT01"
    assert got[0]["sector"] is None and got[0]["owner"] is None
    # count 4: the 4-in-window vehicle now qualifies (still 4, not 7)
    got = monitoring.frequent_alarms(conn, now=NOW, count=4, window_hours=24)
    assert [(r["vin"], r["alarms"]) for r in got] == [("LFREQ000000000006", 6), ("LFREQ000000000005", 5),
                                                      ("LFREQ000000000004", 4)]
    # a 48 h window: 4 + 3 = 7 for the second vehicle, 5 for the first, 6 for the third
    got = monitoring.frequent_alarms(conn, now=NOW, count=5, window_hours=48)
    assert [(r["vin"], r["alarms"]) for r in got] == [("LFREQ000000000004", 7), ("LFREQ000000000006", 6),
                                                      ("LFREQ000000000005", 5)]
    assert monitoring.frequent_alarms(conn, now=NOW, count=7, window_hours=24) == []


# --- 4. alarm episodes through the real writer -------------------------------------------------------

class NoRoutes(Router):
    def routes(self, frame):
        return [], True


def _alarm_items(level=0, flags=(), battery=()):
    items = small_items()
    items["alarm"] = {"max_level": level, "flags": list(flags), "battery_faults": list(battery), "motor_faults": [],
                      "engine_faults": [], "other_faults": []}
    return items


def _received(vin, when, reissue=False, **alarm) -> Received:
    """A frame as a terminal session hands it over: encoded and decoded by the codec."""
    frame = data_frame(vin, when, reissue=reissue, items=_alarm_items(**alarm))
    [decoded] = codec.FrameReader().feed(codec.encode_frame(frame))
    return Received(decoded, "tcp:127.0.0.1:40000", when + timedelta(seconds=1))


async def _write_one_by_one(dsn, items, tracker):
    writer = BatchWriter(reactor, dsn, NoRoutes(), interval=0.005, extra=[tracker])
    await writer.start().addTimeout(TIMEOUT, reactor)
    try:
        for item in items:  # one batch each, in the order given
            await writer.accept(item).addTimeout(TIMEOUT, reactor)
    finally:
        await writer.stop().addTimeout(TIMEOUT, reactor)


def _episodes(dsn, vin):
    with psycopg.connect(dsn) as c:
        cur = c.execute("SELECT opened_at, last_seen, closed_at, max_level, flags, fault_codes, frames FROM alarms "
                        "WHERE vin = %s ORDER BY opened_at", (vin,))
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


T = datetime(2026, 11, 25, 10, 0, 0, tzinfo=CST)
AVIN = "LALARM00000000001"


def _sequence():
    return [_received(AVIN, T),                                                        # clear
            _received(AVIN, T + timedelta(seconds=10), level=1, flags=["temperature_difference"]),
            _received(AVIN, T + timedelta(seconds=20), level=3, flags=["insulation"], battery=[7]),
            _received(AVIN, T + timedelta(seconds=30)),                                # clear
            _received(AVIN, T + timedelta(seconds=40), level=2, flags=["soc_low"])]


@pytest_twisted.ensureDeferred
async def test_alarm_tracker_makes_episodes_from_realtime_frames(db_dsn):
    tracker = AlarmTracker()
    with capture_logs() as logs:
        await _write_one_by_one(db_dsn, _sequence(), tracker)
    first, second = _episodes(db_dsn, AVIN)
    # episode 1: opened by the level-1 frame (T+10), extended by the level-3 frame (T+20),
    # closed by the clear frame (T+30); max level 3, flags in order of appearance, codes union
    assert first["opened_at"] == T + timedelta(seconds=10)
    assert first["last_seen"] == T + timedelta(seconds=20)
    assert first["closed_at"] == T + timedelta(seconds=30)
    assert first["max_level"] == 3
    assert first["flags"] == ["temperature_difference", "insulation"] and first["fault_codes"] == [7]
    # episode 2: opened by the level-2 frame (T+40), still open
    assert second["opened_at"] == second["last_seen"] == T + timedelta(seconds=40)
    assert second["closed_at"] is None and second["max_level"] == 2 and second["flags"] == ["soc_low"]
    assert tracker.opened == 2 and tracker.closed == 1
    # the level-3 frame is logged at once, once
    level3 = [e for e in logs if e["event"] == "alarm_level3"]
    assert len(level3) == 1
    assert level3[0]["vin"] == AVIN and level3[0]["level"] == 3 and level3[0]["log_level"] == "warning"
    assert level3[0]["flags"] == ["insulation"] and level3[0]["codes"] == [7]
    assert level3[0]["collected_at"] == (T + timedelta(seconds=20)).isoformat()

    # a late reissue (T+25, older than the open episode's last_seen T+40), level 3 with a new
    # flag: stored, but it neither reopens episode 1 nor changes episode 2, and is not logged
    with capture_logs() as logs:
        await _write_one_by_one(db_dsn, [_received(AVIN, T + timedelta(seconds=25), reissue=True, level=3,
                                                   flags=["brake_system"])], tracker)
    assert _episodes(db_dsn, AVIN) == [first, second]
    assert [e for e in logs if e["event"] == "alarm_level3"] == []
    with psycopg.connect(db_dsn) as c:
        assert c.execute("SELECT count(*), count(*) FILTER (WHERE reissue) FROM realtime").fetchone() == (6, 1)


@pytest_twisted.ensureDeferred
async def test_alarm_tracker_same_sequence_in_one_batch_and_after_a_restart(db_dsn):
    # the same five frames accepted at once (one batch, the tracker sorts by time) ...
    tracker = AlarmTracker()
    writer = BatchWriter(reactor, db_dsn, NoRoutes(), interval=0.005, extra=[tracker])
    await writer.start().addTimeout(TIMEOUT, reactor)
    try:
        ds = [writer.accept(item) for item in reversed(_sequence())]
        for d in ds:
            await d.addTimeout(TIMEOUT, reactor)
    finally:
        await writer.stop().addTimeout(TIMEOUT, reactor)
    rows = _episodes(db_dsn, AVIN)
    assert [(r["opened_at"], r["closed_at"], r["max_level"]) for r in rows] == [
        (T + timedelta(seconds=10), T + timedelta(seconds=30), 3), (T + timedelta(seconds=40), None, 2)]
    # ... and a fresh tracker (a restarted node) finds the open episode in the database:
    # level 3 at T+50 extends episode 2 (max 3, logged), a clear at T+60 closes it
    fresh = AlarmTracker()
    with capture_logs() as logs:
        await _write_one_by_one(db_dsn, [_received(AVIN, T + timedelta(seconds=50), level=3, flags=["soc_low"]),
                                         _received(AVIN, T + timedelta(seconds=60))], fresh)
    rows = _episodes(db_dsn, AVIN)
    assert len(rows) == 2 and fresh.opened == 0 and fresh.closed == 1
    assert rows[1]["max_level"] == 3 and rows[1]["last_seen"] == T + timedelta(seconds=50)
    assert rows[1]["closed_at"] == T + timedelta(seconds=60)
    assert [e["collected_at"] for e in logs if e["event"] == "alarm_level3"] == [
        (T + timedelta(seconds=50)).isoformat()]


@pytest_twisted.ensureDeferred
async def test_alarm_episode_frames_counts_each_alarm_frame_once(db_dsn):
    await _write_one_by_one(db_dsn, _sequence(), AlarmTracker())
    first, second = _episodes(db_dsn, AVIN)
    # episode 1 was shown by two frames (T+10 level 1, T+20 level 3); episode 2 by one (T+40)
    assert (first["frames"], second["frames"]) == (2, 1)


@pytest_twisted.ensureDeferred
async def test_alarm_late_reissue_after_close_does_not_open_an_episode(db_dsn):
    # clear, level 1 (T+10), clear (T+20): one closed episode; then a reissue of T+15 with level 2
    await _write_one_by_one(db_dsn, [_received(AVIN, T), _received(AVIN, T + timedelta(seconds=10), level=1),
                                     _received(AVIN, T + timedelta(seconds=20))], AlarmTracker())
    before = _episodes(db_dsn, AVIN)
    assert len(before) == 1 and before[0]["closed_at"] == T + timedelta(seconds=20)
    await _write_one_by_one(db_dsn, [_received(AVIN, T + timedelta(seconds=15), reissue=True, level=2)],
                            AlarmTracker())
    # the vehicle reported clear at T+20, later than T+15: no open alarm should appear
    assert _episodes(db_dsn, AVIN) == before


# --- 5. alarm statistics and handling --------------------------------------------------------------

def _stats_scene(conn) -> dict:
    register(conn, "LSTAT000000000001", "bus", owner="ENT01", model="E12")
    register(conn, "LSTAT000000000002", "taxi", owner="ENT01", model="")
    register(conn, "LSTAT000000000003", "bus", owner="ENT02", model="E12")
    # LSTAT000000000004 is not registered
    ids = {}
    ids["a1"] = put_alarm(conn, "LSTAT000000000001", datetime(2026, 11, 24, 9, 0, tzinfo=CST), 1,
                          ["temperature_difference"], closed_at=datetime(2026, 11, 24, 9, 5, tzinfo=CST))
    # 23:59:59 +08:00 = 15:59:59 UTC: still 24 November in +08:00
    ids["a2"] = put_alarm(conn, "LSTAT000000000001", datetime(2026, 11, 24, 15, 59, 59, tzinfo=UTC), 3,
                          ["insulation", "battery_high_temperature"])
    # 16:00:00 UTC = 00:00 +08:00 on 25 November
    ids["a3"] = put_alarm(conn, "LSTAT000000000002", datetime(2026, 11, 24, 16, 0, 0, tzinfo=UTC), 2,
                          ["insulation"], closed_at=datetime(2026, 11, 25, 0, 10, tzinfo=CST))
    ids["a4"] = put_alarm(conn, "LSTAT000000000003", datetime(2026, 11, 25, 8, 0, tzinfo=CST), 1, [], codes=[9])
    ids["a5"] = put_alarm(conn, "LSTAT000000000004", datetime(2026, 11, 25, 10, 0, tzinfo=CST), 2, ["soc_low"],
                          closed_at=datetime(2026, 11, 25, 10, 1, tzinfo=CST))
    # outside [24 Nov 00:00, 26 Nov 00:00) +08:00: one second before, and exactly at the end
    put_alarm(conn, "LSTAT000000000001", datetime(2026, 11, 23, 23, 59, 59, tzinfo=CST), 3, ["insulation"])
    put_alarm(conn, "LSTAT000000000002", datetime(2026, 11, 26, 0, 0, 0, tzinfo=CST), 1, ["temperature_difference"])
    return ids


SINCE, UNTIL = datetime(2026, 11, 24, tzinfo=CST), datetime(2026, 11, 26, tzinfo=CST)


def _stats(conn, by):
    return {r["key"]: (r["alarms"], r["vehicles"], r["max_level"], r["open"])
            for r in monitoring.alarm_stats(conn, by, SINCE, UNTIL)}


def test_alarm_stats_by_level_flag_owner_day(conn):
    _stats_scene(conn)
    # in the period: a1 (V1 L1 closed), a2 (V1 L3 open), a3 (V2 L2 closed), a4 (V3 L1 open), a5 (V4 L2 closed)
    # key: (alarms, vehicles, max level, open)
    assert _stats(conn, "level") == {"1": (2, 2, 1, 1),   # a1, a4: V1, V3; a4 open
                                     "2": (2, 2, 2, 0),   # a3, a5: V2, V4; both closed
                                     "3": (1, 1, 3, 1)}   # a2
    assert _stats(conn, "flag") == {"insulation": (2, 2, 3, 1),              # a2 (L3 open), a3
                                    "battery_high_temperature": (1, 1, 3, 1),  # a2
                                    "temperature_difference": (1, 1, 1, 0),   # a1
                                    "soc_low": (1, 1, 2, 0),                  # a5
                                    "(faults only)": (1, 1, 1, 1)}            # a4: no flags, code 9
    assert _stats(conn, "owner") == {"ENT01": (3, 2, 3, 1),            # a1, a2, a3 of V1, V2
                                     "ENT02": (1, 1, 1, 1),            # a4
                                     "(unregistered)": (1, 1, 2, 0)}   # a5 of V4
    assert _stats(conn, "day") == {"2026-11-24": (2, 1, 3, 1),   # a1 09:00, a2 23:59:59 (+08:00)
                                   "2026-11-25": (3, 3, 2, 1)}   # a3 00:00:00, a4, a5
    assert _stats(conn, "sector") == {"bus": (3, 2, 3, 2), "taxi": (1, 1, 2, 0), "(unregistered)": (1, 1, 2, 0)}
    assert _stats(conn, "model") == {"E12": (3, 2, 3, 2), "(unknown)": (2, 2, 2, 0)}  # a3 (model ''), a5
    # ordering: most alarms first
    assert [r["key"] for r in monitoring.alarm_stats(conn, "owner", SINCE, UNTIL)][0] == "ENT01"
    with pytest.raises(ValueError):
        monitoring.alarm_stats(conn, "colour", SINCE, UNTIL)


def test_alarm_update_records_who_when_and_note(conn):
    ids = _stats_scene(conn)
    acked = monitoring.alarm_update(conn, ids["a2"], "acknowledge", "duty", NOW, note="crew called")
    assert (acked["acknowledged_by"], acked["acknowledged_at"], acked["note"]) == ("duty", NOW, "crew called")
    assert acked["handled_by"] is None and acked["handled_at"] is None
    # handled an hour later without a note: the note stays
    later = NOW + timedelta(hours=1)
    handled = monitoring.alarm_update(conn, ids["a2"], "handle", "chief", later)
    assert (handled["handled_by"], handled["handled_at"], handled["note"]) == ("chief", later, "crew called")
    assert (handled["acknowledged_by"], handled["acknowledged_at"]) == ("duty", NOW)
    # with a note: replaced
    again = monitoring.alarm_update(conn, ids["a2"], "handle", "chief", later, note="insulation repaired")
    assert again["note"] == "insulation repaired"
    stored = conn.execute("SELECT acknowledged_by, handled_by, note FROM alarms WHERE id = %s",
                          (ids["a2"],)).fetchone()
    assert stored == ("duty", "chief", "insulation repaired")
    # the other alarms are untouched
    assert conn.execute("SELECT count(*) FROM alarms WHERE acknowledged_by IS NOT NULL").fetchone()[0] == 1
    assert monitoring.alarm_update(conn, 999999, "acknowledge", "duty", NOW) is None
    with pytest.raises(ValueError):
        monitoring.alarm_update(conn, ids["a2"], "delete", "duty", NOW)


def test_alarm_list_filters(conn):
    ids = _stats_scene(conn)
    got = monitoring.alarms(conn, min_level=2, open_only=False, since=SINCE, until=UNTIL)
    assert [it["id"] for it in got["items"]] == [ids["a5"], ids["a3"]] and got["total"] == 2  # newest first
    got = monitoring.alarms(conn, vin="LSTAT000000000001", open_only=True)
    assert got["total"] == 2  # a2 and the one before the period


# --- 6. data quality ---------------------------------------------------------------------------------------

QSINCE = datetime(2026, 11, 25, 10, 0, 0, tzinfo=CST)
QUNTIL = QSINCE + timedelta(hours=1)
QVIN = "LQUAL000000000001"


def _quality_rows() -> list[dict]:
    rows = []
    for k in range(360):                       # one frame every 10 s over the hour: k = 0..359
        if 100 <= k <= 129:                    # a 5-minute hole: 30 frames missing
            continue
        if k in (200, 201):                    # a 30-s gap (199 -> 202): not longer than 3 x 10 s
            continue
        at = QSINCE + timedelta(seconds=10 * k)
        row = {"vin": QVIN, "collected_at": at}
        if k in (20, 21, 22, 23):
            row["received_at"] = at + timedelta(minutes=2)          # late
        if k == 24:
            row["received_at"] = at + timedelta(seconds=60)         # exactly the limit: not late
        if k == 25:
            row["received_at"] = at + timedelta(seconds=61)         # late
        if k in (140, 141):
            row.update(reissue=True, received_at=at + timedelta(minutes=10))  # reissued (and so late)
        if k in (10, 300):
            row["invalid_fields"] = 1
        if k == 11:
            row["invalid_fields"] = 2
        if k == 50:
            row["abnormal_fields"] = 3
        if k == 250:
            row["soc_pct"] = 120                                    # out of range (0..100)
        if k == 251:
            row["soc_pct"] = 100                                    # the bound: in range
        if k == 252:
            row["min_temp_c"] = -40                                 # the bound: in range
        if k == 253:
            row["soc_pct"] = None                                   # unknown: not out of range
        rows.append(row)
    # outside the period (one interval before, exactly at the end) and another vehicle: ignored
    rows.append({"vin": QVIN, "collected_at": QSINCE - timedelta(seconds=10), "soc_pct": 120})
    rows.append({"vin": QVIN, "collected_at": QUNTIL, "soc_pct": 120, "invalid_fields": 5})
    rows.append({"vin": "LQUAL000000000002", "collected_at": QSINCE + timedelta(seconds=1005), "soc_pct": 130})
    return rows


def test_data_quality_of_one_hour_worked_by_hand(conn):
    put_realtime(conn, _quality_rows())
    q = monitoring.data_quality(conn, QVIN, QSINCE, QUNTIL)
    # expected: 3600 s / 10 s = 360; frames: 360 - 30 (hole) - 2 (short gap) = 328
    assert q["expected"] == 360 and q["frames"] == 328 and q["missing"] == 32
    assert q["completeness"] == round(328 / 360, 4) == 0.9111
    assert q["not_transmitted"] is False
    # the hole: last frame before it k=99 (990 s = 10:16:30), first after k=130 (1300 s = 10:21:40):
    # 310 s > 30 s; the 199 -> 202 gap is 30 s, not longer than 3 x 10 s
    assert q["interruptions"] == 1 and q["interrupted_seconds"] == 310.0
    assert q["gaps"] == [{"from": QSINCE + timedelta(seconds=990), "to": QSINCE + timedelta(seconds=1300),
                          "seconds": 310.0}]
    # late (> 60 s): k = 20..23 (120 s), 25 (61 s), reissued 140, 141 (600 s) = 4 + 1 + 2 = 7; k = 24 (60 s) is not
    assert q["late"] == 7 and q["reissued"] == 2
    # invalid: k=10 (1 field), 11 (2), 300 (1): 3 frames, 4 fields; abnormal: k=50 (3 fields)
    assert (q["frames_with_invalid"], q["invalid_fields"]) == (3, 4)
    assert (q["frames_with_abnormal"], q["abnormal_fields"]) == (1, 3)
    assert q["out_of_range"] == {"soc_pct": 1}
    assert q["first"] == QSINCE and q["last"] == QSINCE + timedelta(seconds=3590)


def test_data_quality_parameters_and_a_silent_vehicle(conn):
    put_realtime(conn, _quality_rows())
    # late limit 100 s: only the 120-s and 600-s ones: 4 + 2 = 6; gap limit 2 x 10 = 20 s: 310 s and 30 s
    q = monitoring.data_quality(conn, QVIN, QSINCE, QUNTIL, late_s=100.0, gap_factor=2.0)
    assert q["late"] == 6 and q["interruptions"] == 2 and q["interrupted_seconds"] == 310.0 + 30.0
    # interval 30 s: expected 3600 / 30 = 120 < 328 frames: nothing missing, completeness capped at 1
    q = monitoring.data_quality(conn, QVIN, QSINCE, QUNTIL, interval_s=30.0)
    assert (q["expected"], q["missing"], q["completeness"]) == (120, 0, 1.0)
    # a vehicle that sent nothing in the period
    q = monitoring.data_quality(conn, "LQUAL000000000009", QSINCE, QUNTIL)
    assert (q["frames"], q["expected"], q["missing"], q["completeness"]) == (0, 360, 360, 0.0)
    assert q["not_transmitted"] is True and q["interruptions"] == 0 and q["out_of_range"] == {}


# --- 7. vehicle archive ------------------------------------------------------------------------------------

ARC = "LARCH000000000001"


def _archive_scene(conn):
    register(conn, ARC, "bus", region="320105", owner="ENT01", model="E12", plate="苏A12345")
    put_realtime(conn, [
        # 400 days before NOW (2025-10-21): counts for first seen, outside the 366-day odometer history
        {"vin": ARC, "collected_at": NOW - 400 * DAY, "odometer_km": 500.0},
        {"vin": ARC, "collected_at": datetime(2026, 9, 18, 10, 0, tzinfo=CST), "odometer_km": 1000.0},
        {"vin": ARC, "collected_at": datetime(2026, 9, 18, 22, 0, tzinfo=CST), "odometer_km": 1010.0},
        {"vin": ARC, "collected_at": datetime(2026, 9, 19, 7, 30, tzinfo=UTC), "odometer_km": 1020.0},
        # 15:59:59 UTC = 23:59:59 +08:00: still 19 September
        {"vin": ARC, "collected_at": datetime(2026, 9, 19, 15, 59, 59, tzinfo=UTC), "odometer_km": 1025.0},
        # 23:30 UTC on 19 September = 07:30 +08:00 on 20 September
        {"vin": ARC, "collected_at": datetime(2026, 9, 19, 23, 30, tzinfo=UTC), "odometer_km": 1030.0},
    ])
    last = datetime(2026, 9, 19, 23, 30, tzinfo=UTC)
    put_latest(conn, ARC, last + timedelta(seconds=5), collected_at=last, odometer_km=1030.0)
    for i, (event, at) in enumerate((("login", datetime(2026, 9, 18, 9, 59, tzinfo=CST)),
                                     ("logout", datetime(2026, 9, 18, 22, 5, tzinfo=CST)),
                                     ("login", datetime(2026, 9, 19, 15, 0, tzinfo=CST)))):
        conn.execute("INSERT INTO logins (vin, event, serial, iccid, collected_at, received_at, peer) "
                     "VALUES (%s, %s, %s, '89860000000000000001', %s, %s, 'tcp:10.0.0.1:5000')",
                     (ARC, event, i + 1, at, at))
    # 3 alarms in the last 24 h (L1, L1, L3) and one a month ago (L1)
    put_alarm(conn, ARC, NOW - timedelta(hours=1), 1)
    put_alarm(conn, ARC, NOW - timedelta(hours=2), 1)
    put_alarm(conn, ARC, NOW - timedelta(hours=23), 3, ["insulation"])
    put_alarm(conn, ARC, NOW - 30 * DAY, 1)


def test_archive_is_the_lifecycle_record(conn):
    _archive_scene(conn)
    a = monitoring.archive(conn, ARC, now=NOW, frequent=3, window_hours=24)
    assert a["registry"]["owner"] == "ENT01" and a["registry"]["plate"] == "苏A12345"
    assert a["first_seen"] == NOW - 400 * DAY
    assert a["last_seen"] == datetime(2026, 9, 20, 7, 30, tzinfo=CST) and a["frames"] == 6
    assert [(x["event"], x["serial"]) for x in a["logins"]] == [("login", 3), ("logout", 2), ("login", 1)]
    assert a["alarms"]["by_level"] == {"1": 3, "3": 1} and len(a["alarms"]["recent"]) == 4
    assert a["alarms"]["recent"][0]["opened_at"] == NOW - timedelta(hours=1)
    # silent since 2026-09-20 07:30:05 +08:00: 66 days and 4.5 h before NOW > 60 (bus);
    # 3 alarms in the last 24 h >= 3
    assert a["hazards"] == [
        {"kind": "long_offline", "last_seen": datetime(2026, 9, 20, 7, 30, 5, tzinfo=CST), "limit_days": 60.0},
        {"kind": "frequent_alarms", "alarms": 3, "window_hours": 24}]
    # odometer: max per +08:00 day within 366 days: 18 Sep 1010; 19 Sep 1025 (23:59:59 +08:00);
    # 20 Sep 1030 (the 23:30 UTC frame)
    assert a["odometer_history"] == [{"day": "2026-09-18", "odometer_km": 1010.0},
                                     {"day": "2026-09-19", "odometer_km": 1025.0},
                                     {"day": "2026-09-20", "odometer_km": 1030.0}]
    # nothing in the last 30 days
    dq = a["data_quality_30d"]
    assert dq["not_transmitted"] is True and dq["expected"] == 30 * 8640 and dq["missing"] == 30 * 8640


def test_archive_hazards_follow_the_thresholds(conn):
    _archive_scene(conn)
    # 4 alarms asked for in 24 h (there are 3); 67 days allowed (66.2 silent): no hazard
    a = monitoring.archive(conn, ARC, now=NOW, public_days=67, frequent=4, window_hours=24)
    assert a["hazards"] == []
    # a 31-day window holds all 4 alarms
    a = monitoring.archive(conn, ARC, now=NOW, public_days=67, frequent=4, window_hours=31 * 24)
    assert a["hazards"] == [{"kind": "frequent_alarms", "alarms": 4, "window_hours": 31 * 24}]
    # a private vehicle silent 89 days: within its 90
    register(conn, "LARCH000000000002", "private")
    put_latest(conn, "LARCH000000000002", NOW - 89 * DAY)
    assert monitoring.archive(conn, "LARCH000000000002", now=NOW)["hazards"] == []
    assert monitoring.archive(conn, "LARCH00000000NONE", now=NOW) is None


@pytest.mark.parametrize("case", [
    pytest.param("registered-10-days-ago-never-seen", id="never-seen"),
    pytest.param("silent-exactly-60-days", id="exactly-the-limit"),
])
def test_archive_long_offline_agrees_with_the_offline_list(conn, case):
    vin = "LARCH000000000003"
    if case == "registered-10-days-ago-never-seen":
        register(conn, vin, "bus", updated_at=NOW - 10 * DAY)   # 10 < 60 days since registration
    else:
        register(conn, vin, "bus")
        put_latest(conn, vin, NOW - 60 * DAY)                   # 60 days is not longer than 60
    assert monitoring.offline(conn, now=NOW)["total"] == 0
    assert monitoring.archive(conn, vin, now=NOW)["hazards"] == []


# --- 8. storage watch ----------------------------------------------------------------------------------------

X = 10**9  # the first sample is 1 GB below the real size


def _first_sample(conn, at, below=X) -> int:
    size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    conn.execute("INSERT INTO storage_samples (at, db_bytes, free_bytes) VALUES (%s, %s, NULL)", (at, size - below))
    return size - below


def test_storage_growth_from_a_sample_one_day_old(conn):
    first = _first_sample(conn, NOW - DAY)
    s = monitoring.storage(conn, now=NOW, free_bytes=None, sample=True)
    # growth = (size now - first sample) / 1 day; the size is read by the function, so the
    # expectation uses the same value; it is X give or take a few pages written meanwhile
    assert s["growth_bytes_per_day"] == (s["database_bytes"] - first) / 1.0
    assert abs(s["growth_bytes_per_day"] - X) < 1_000_000
    assert s["months_of_room"] is None and s["warning"] is False and s["free_bytes"] is None
    # the call recorded a sample at NOW with the size it read
    assert conn.execute("SELECT db_bytes FROM storage_samples WHERE at = %s", (NOW,)).fetchone()[0] == \
        s["database_bytes"]
    assert conn.execute("SELECT count(*) FROM storage_samples").fetchone()[0] == 2


@pytest.mark.parametrize(("free_days", "months", "warning"), [
    # months = free / growth / 30.4: 100 / 30.4 = 3.29 -> 3.3 (< 6: warn); 200 / 30.4 = 6.58 -> 6.6 (no warning)
    pytest.param(100, 3.3, True, id="100-days-of-room"),
    pytest.param(200, 6.6, False, id="200-days-of-room"),
    # 170 / 30.4 = 5.59 -> 5.6: warn
    pytest.param(170, 5.6, True, id="170-days-of-room"),
])
def test_storage_warning_under_six_months_of_growth(conn, free_days, months, warning):
    _first_sample(conn, NOW - DAY)
    s = monitoring.storage(conn, now=NOW, free_bytes=free_days * X, sample=False)
    assert s["months_of_room"] == months and s["warning"] is warning
    assert s["free_bytes"] == free_days * X


def test_storage_warning_just_under_six_months(conn):
    _first_sample(conn, NOW - DAY)
    # six months at 30.4 days = 182.4 days of growth; 181 days of room is less
    s = monitoring.storage(conn, now=NOW, free_bytes=181 * X, sample=False)
    assert s["warning"] is True


def test_storage_without_a_usable_sample_has_no_growth(conn):
    # first call ever: its own sample is 0 s old (< 1 h): no growth, no warning
    s = monitoring.storage(conn, now=NOW, free_bytes=1, sample=True)
    assert s["growth_bytes_per_day"] is None and s["warning"] is False and s["database_bytes"] > 0
    # the only sample 59 minutes old: too recent
    conn.execute("DELETE FROM storage_samples")
    _first_sample(conn, NOW - timedelta(minutes=59))
    assert monitoring.storage(conn, now=NOW, free_bytes=1, sample=False)["growth_bytes_per_day"] is None
    # the only sample 30 days and 1 s old: outside the 30-day look-back
    conn.execute("DELETE FROM storage_samples")
    _first_sample(conn, NOW - 30 * DAY - timedelta(seconds=1))
    assert monitoring.storage(conn, now=NOW, free_bytes=1, sample=False)["growth_bytes_per_day"] is None
    # exactly 30 days old: used; growth = (size - first) / 30 days, about X / 30
    conn.execute("DELETE FROM storage_samples")
    first = _first_sample(conn, NOW - 30 * DAY)
    s = monitoring.storage(conn, now=NOW, free_bytes=None, sample=False)
    assert s["growth_bytes_per_day"] == (s["database_bytes"] - first) / 30.0
    assert abs(s["growth_bytes_per_day"] - X / 30) < 100_000


# --- 9. vehicle list filters -----------------------------------------------------------------------------------

def _fleet(conn):
    register(conn, "LVEHA000000000001", "bus", region="320102", owner="ENT01")
    put_latest(conn, "LVEHA000000000001", NOW - timedelta(seconds=60), charging_state="parked_charging", alarm_level=0)
    register(conn, "LVEHB000000000001", "bus", region="320201", owner="ENT01")
    put_latest(conn, "LVEHB000000000001", NOW - timedelta(seconds=300), alarm_level=2)   # exactly the limit: online
    register(conn, "LVEHC000000000001", "taxi", region="320105", owner="ENT02")
    put_latest(conn, "LVEHC000000000001", NOW - timedelta(seconds=301), charging_state="driving_charging",
               alarm_level=3)
    register(conn, "LVEHD000000000001", "private", region="310101", owner="ENT02")       # never seen
    register(conn, "LVEHE000000000001", "taxi", region="320106", owner="ENT01")
    put_latest(conn, "LVEHE000000000001", NOW - timedelta(minutes=10), charging_state="charged", alarm_level=1)
    put_latest(conn, "LVEHX000000000001", NOW, alarm_level=3)                             # not registered


A, B, C, D, E = (f"LVEH{x}000000000001" for x in "ABCDE")


@pytest.mark.parametrize(("filters", "expected"), [
    pytest.param({}, [A, B, C, D, E], id="all-registered"),
    pytest.param({"sector": "bus"}, [A, B], id="sector"),
    pytest.param({"region": "3201"}, [A, C, E], id="region-city-prefix"),   # 320102, 320105, 320106
    pytest.param({"region": "32"}, [A, B, C, E], id="region-province-prefix"),
    pytest.param({"owner": "ENT02"}, [C, D], id="owner"),
    pytest.param({"online": True}, [A, B], id="online"),                    # 60 s and 300 s ago (<= 300)
    pytest.param({"online": False}, [C, D, E], id="offline"),               # 301 s, never, 600 s
    pytest.param({"online": True, "online_seconds": 30}, [], id="online-30s"),
    pytest.param({"online": True, "online_seconds": 600}, [A, B, C, E], id="online-600s"),
    pytest.param({"charging": True}, [A, C], id="charging"),                # parked_charging, driving_charging
    pytest.param({"charging": False}, [B, D, E], id="not-charging"),        # not_charging, never seen, charged
    pytest.param({"min_alarm_level": 2}, [B, C], id="alarm-level-2"),
    pytest.param({"min_alarm_level": 0}, [A, B, C, E], id="alarm-level-0"),  # D has no state
    pytest.param({"sector": "taxi", "online": False, "min_alarm_level": 1}, [C, E], id="combined"),
])
def test_vehicles_filters(conn, filters, expected):
    _fleet(conn)
    got = monitoring.vehicles(conn, now=NOW, **filters)
    assert vins(got) == expected and got["total"] == len(expected)


def test_vehicles_online_flag_and_pagination(conn):
    _fleet(conn)
    got = monitoring.vehicles(conn, now=NOW)
    assert {it["vin"]: it["online"] for it in got["items"]} == {A: True, B: True, C: False, D: False, E: False}
    assert got["items"][0]["charging_state"] == "parked_charging" and got["items"][3]["collected_at"] is None
    pages = [monitoring.vehicles(conn, now=NOW, limit=2, offset=o) for o in (0, 2, 4)]
    assert [vins(p) for p in pages] == [[A, B], [C, D], [E]]
    assert {p["total"] for p in pages} == {5}
    got = monitoring.vehicles(conn, now=NOW, owner="ENT01", limit=1, offset=1)
    assert vins(got) == [B] and got["total"] == 3


# --- 10. charging overview ---------------------------------------------------------------------------------------

def _charging_scene(conn):
    for op, st, region in (("OP1", "ST1", "320102"), ("OP1", "ST2", "320105"), ("OP2", "ST1", "320201")):
        conn.execute("INSERT INTO charging_stations (operator_id, station_id, region_code, station_type, "
                     "station_status, updated_at) VALUES (%s, %s, %s, 1, 50, %s)", (op, st, region, NOW))
    connectors = [("OP1", "C1", "ST1", 1), ("OP1", "C2", "ST1", 1), ("OP1", "C3", "ST1", 2), ("OP1", "C4", "ST1", 3),
                  ("OP1", "C5", "ST1", 4), ("OP1", "C6", "ST1", 255), ("OP1", "C7", "ST1", 0),
                  ("OP1", "C8", "ST1", None), ("OP1", "C9", "ST2", 3), ("OP2", "C1", "ST1", 255),
                  ("OP3", "C1", "STX", 1)]  # a station with no static info
    for op, con, st, status in connectors:
        conn.execute("INSERT INTO charging_connectors (operator_id, connector_id, equipment_id, station_id, status) "
                     "VALUES (%s, %s, 'EQ1', %s, %s)", (op, con, st, status))
    records = [("OP1", "S1", datetime(2026, 11, 24, 15, 59, tzinfo=UTC), 10.5),   # 23:59 +08:00 on 24 Nov
               ("OP1", "S2", datetime(2026, 11, 24, 16, 0, tzinfo=UTC), 20.25),   # 00:00 +08:00 on 25 Nov
               ("OP1", "S3", datetime(2026, 11, 25, 10, 0, tzinfo=CST), 4.0),
               ("OP2", "S1", datetime(2026, 11, 25, 12, 0, tzinfo=CST), 7.125),
               ("OP2", "S2", datetime(2026, 11, 25, 13, 0, tzinfo=CST), None)]
    for op, session, ended, kwh in records:
        conn.execute("INSERT INTO charging_records (operator_id, session_id, connector_id, started_at, ended_at, "
                     "energy_kwh, collected_at, frame_id) VALUES (%s, %s, 'C1', %s, %s, %s, %s, 1)",
                     (op, session, ended - timedelta(hours=1), ended, kwh, ended))
    for op, target, level, state in (("OP1", "C6", 1, 1), ("OP1", "C6", 2, 1), ("OP1", "C6", 2, 1),
                                     ("OP1", "C6", 3, 2), ("OP2", "C1", 3, 1)):
        conn.execute("INSERT INTO charging_alarms (operator_id, target_id, code, level, state, started_at, "
                     "collected_at, frame_id) VALUES (%s, %s, 'E01', %s, %s, %s, %s, 1)",
                     (op, target, level, state, NOW, NOW))


def test_charging_overview_counts_and_energy(conn):
    _charging_scene(conn)
    o = monitoring.charging_overview(conn)
    stations = {(s["operator_id"], s["station_id"]): s for s in o["stations"]}
    assert list(stations) == [("OP1", "ST1"), ("OP1", "ST2"), ("OP2", "ST1"), ("OP3", "STX")]
    st1 = stations[("OP1", "ST1")]
    # OP1 ST1: 8 connectors: idle x2, occupied, charging, reserved, fault, offline (0), no status yet (NULL)
    assert (st1["connectors"], st1["charging"], st1["faulted"], st1["offline"]) == (8, 1, 1, 2)
    assert st1["region_code"] == "320102"
    assert (stations[("OP1", "ST2")]["connectors"], stations[("OP1", "ST2")]["charging"]) == (1, 1)
    assert (stations[("OP2", "ST1")]["faulted"], stations[("OP2", "ST1")]["offline"]) == (1, 0)
    assert stations[("OP3", "STX")]["region_code"] is None and stations[("OP3", "STX")]["connectors"] == 1
    # energy per +08:00 day of the session's end, newest day first:
    # 25 Nov OP1: S2 (00:00) 20.25 + S3 4.0 = 24.25; 25 Nov OP2: S1 7.125 -> 7.13 (+ S2 without energy);
    # 24 Nov OP1: S1 (23:59) 10.5
    assert [(e["day"], e["operator_id"], e["sessions"], e["energy_kwh"]) for e in o["energy_per_day"]] == [
        ("2026-11-25", "OP1", 2, Decimal("24.25")), ("2026-11-25", "OP2", 2, Decimal("7.13")),
        ("2026-11-24", "OP1", 1, Decimal("10.50"))]
    # raised (state 1) charging alarms per target: OP1 C6 three (max level 2; the cleared one not counted)
    assert [(f["operator_id"], f["target_id"], f["alarms"], f["level"]) for f in o["frequent_faults"]] == [
        ("OP1", "C6", 3, 2), ("OP2", "C1", 1, 3)]


def test_charging_overview_available_means_idle(conn):
    _charging_scene(conn)
    stations = {(s["operator_id"], s["station_id"]): s for s in monitoring.charging_overview(conn)["stations"]}
    # OP1 ST1: idle C1, C2 -> 2 available (status 1, T/CEC 102.4 / NB/T 33017 "idle")
    assert stations[("OP1", "ST1")]["available"] == 2
    assert stations[("OP1", "ST2")]["available"] == 0  # its only connector is charging


def test_long_offline_connectors_are_those_silent_or_offline_beyond_the_limit(conn):
    """A connector is long offline when its last status report (or, never reported, its
    station's static info) is older than the limit: offline at 8 days > 7, idle 3 days < 7."""
    conn.execute("INSERT INTO charging_stations (operator_id, station_id, region_code, station_type, station_status, "
                 "updated_at) VALUES ('OPL', 'S1', '320102', 1, 50, %s), ('OPL', 'S2', '320102', 1, 50, %s)",
                 (NOW - 30 * DAY, NOW - DAY))
    rows = [("C8OFF", "S1", 0, NOW - 8 * DAY),    # offline for 8 days: listed
            ("C3IDLE", "S1", 1, NOW - 3 * DAY),   # idle, reported 3 days ago: not
            ("CNEVER", "S1", None, None),         # never reported, station info 30 days old: listed
            ("CNEW", "S2", None, None),           # never reported, station info 1 day old: not
            ("C7EXACT", "S1", 3, NOW - 7 * DAY)]  # exactly 7 days: not older than the limit
    for cid, st, status, at in rows:
        conn.execute("INSERT INTO charging_connectors (operator_id, connector_id, equipment_id, station_id, status, "
                     "status_at) VALUES ('OPL', %s, 'E1', %s, %s, %s)", (cid, st, status, at))
    got = monitoring.charging_overview(conn, now=NOW, offline_days=7)["long_offline_connectors"]
    assert [r["connector_id"] for r in got] == ["CNEVER", "C8OFF"]  # oldest first
    assert monitoring.charging_overview(conn, now=NOW, offline_days=2)["long_offline_connectors"][-1][
        "connector_id"] == "C3IDLE"
    assert monitoring.charging_overview(conn)["long_offline_connectors"] == []  # no clock, no list
