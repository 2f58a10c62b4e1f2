"""Schema migrations on a real PostgreSQL: every shipped file applies once, in order, and an
upgrade keeps what waited to go upstream (0005 moved the outbox onto the archived frames)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg import sql

from relay.store.migrate import available, current_version, migrate
from tests.conftest import drop_database
from tests.support.fixtures import T0

VIN = "LNBSMX01000000501"


def empty_database(pg_server: str, name: str) -> str:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(pg_server, dbname=name)


def test_every_shipped_migration_applies_once_in_order(pg_server):
    dsn = empty_database(pg_server, "relay_t_migrate_all")
    try:
        with psycopg.connect(dsn) as conn:
            versions = [v for v, _, _ in available()]
            assert versions == sorted(versions) and versions[0] == 1
            assert migrate(conn) == versions
            assert migrate(conn) == []
            assert current_version(conn) == versions[-1]
    finally:
        drop_database(pg_server, "relay_t_migrate_all")


def test_an_upgrade_to_0005_keeps_what_waited_in_the_outbox(pg_server):
    """At 0004: three frames; the city's outbox holds rows for all three, the first one
    acknowledged (its cursor), and the province's holds the third. After 0005 the same
    frames wait for each upstream, in order, and nothing acknowledged comes back."""
    dsn = empty_database(pg_server, "relay_t_migrate_0005")
    try:
        with psycopg.connect(dsn) as conn:
            assert migrate(conn, upto=4) == [1, 2, 3, 4]
            with conn.transaction():
                conn.execute("CREATE TABLE frames_202611 PARTITION OF frames FOR VALUES FROM "
                             "('2026-11-01 00:00+08') TO ('2026-12-01 00:00+08')")
                frames = []
                for n in range(3):
                    at = T0 + timedelta(seconds=n)
                    raw = bytes([0x23, 0x23, 2, 0xFE]) + bytes([n]) * 20
                    fid = conn.execute(
                        "INSERT INTO frames (id, collected_at, received_at, vin, command, response, protocol, "
                        "encryption, peer, kind, digest, raw) VALUES (nextval('frames_id_seq'), %s, %s, %s, 2, 254, "
                        "2016, 1, 'tcp:10.0.0.1:1', 2, %s, %s) RETURNING id", (at, at, VIN, bytes([n]) * 16, raw)
                    ).fetchone()[0]
                    frames.append((fid, at, raw))
                outbox = {}
                for upstream, which in (("municipal", (0, 1, 2)), ("provincial", (2,))):
                    for n in which:
                        fid, at, raw = frames[n]
                        outbox[(upstream, n)] = conn.execute(
                            "INSERT INTO outbox (upstream, vin, command, collected_at, received_at, frame) "
                            "VALUES (%s, %s, 2, %s, %s, %s) RETURNING id", (upstream, VIN, at, at, raw)).fetchone()[0]
                conn.execute("INSERT INTO outbox_cursors (upstream, last_id, delivered) VALUES ('municipal', %s, 1)",
                             (outbox[("municipal", 0)],))
            assert migrate(conn) == [v for v, _, _ in available() if v >= 5]
            waiting = conn.execute("SELECT upstream, id, frame FROM outbox ORDER BY upstream, id").fetchall()
            assert waiting == [("municipal", frames[1][0], frames[1][2]), ("municipal", frames[2][0], frames[2][2]),
                               ("provincial", frames[2][0], frames[2][2])]
            bits = dict(conn.execute("SELECT name, bit FROM upstream_routes").fetchall())
            assert sorted(bits) == ["municipal", "provincial"] and len(set(bits.values())) == 2
            cursors = dict(conn.execute("SELECT upstream, last_id FROM outbox_cursors").fetchall())
            assert cursors == {"municipal": frames[0][0]}
            assert conn.execute("SELECT count(*) FROM frames WHERE forward IS NOT NULL").fetchone()[0] == 0
    finally:
        drop_database(pg_server, "relay_t_migrate_0005")


def test_the_latest_state_is_updated_in_place(pg_server):
    """Every frame rewrites its vehicle's row in ``latest``: the pages keep room for the new
    version (fillfactor, 0006), so an update stays on its page and touches no index (a HOT
    update); a full page would put every update elsewhere and grow the primary key."""
    dsn = empty_database(pg_server, "relay_t_migrate_latest")
    try:
        with psycopg.connect(dsn) as conn:
            migrate(conn)
            with conn.transaction():
                conn.execute("INSERT INTO latest (vin, collected_at, received_at, speed_kmh) "
                             "SELECT 'LNBSMX' || lpad(n::text, 11, '0'), %s, %s, 0 FROM generate_series(1, 500) n",
                             (T0, T0))
            with conn.transaction():
                for second in (1, 2):
                    conn.execute("UPDATE latest SET collected_at = %s, speed_kmh = %s",
                                 (T0 + timedelta(seconds=second), 10.0 * second))
                updated, hot = conn.execute(
                    "SELECT pg_stat_get_xact_tuples_updated('latest'::regclass), "
                    "pg_stat_get_xact_tuples_hot_updated('latest'::regclass)").fetchone()
            assert (updated, hot) == (1000, 1000)
    finally:
        drop_database(pg_server, "relay_t_migrate_latest")


def test_an_upgrade_to_0007_starts_the_outbox_head_at_the_newest_marked_frame(pg_server):
    """Frames marked for upstreams before 0007 count: the head starts at the newest of them
    (not at the newest frame, which may be one no upstream takes)."""
    dsn = empty_database(pg_server, "relay_t_migrate_0007")
    try:
        with psycopg.connect(dsn) as conn:
            assert migrate(conn, upto=6) == [1, 2, 3, 4, 5, 6]
            with conn.transaction():
                conn.execute("CREATE TABLE frames_202611 PARTITION OF frames FOR VALUES FROM "
                             "('2026-11-01 00:00+08') TO ('2026-12-01 00:00+08')")
                ids = []
                for n, routes in enumerate((1, 3, 0)):  # the newest frame goes nowhere
                    ids.append(conn.execute(
                        "INSERT INTO frames (id, collected_at, received_at, vin, command, response, protocol, "
                        "encryption, peer, kind, digest, raw, routes) VALUES (nextval('frames_id_seq'), %s, %s, %s, "
                        "2, 254, 2016, 1, 'tcp:10.0.0.1:1', 2, %s, '\\x2323', %s) RETURNING id",
                        (T0 + timedelta(seconds=n), T0, VIN, bytes([n]) * 16, routes)).fetchone()[0])
            assert migrate(conn) == [v for v, _, _ in available() if v >= 7]
            assert conn.execute("SELECT last_id FROM outbox_head").fetchone()[0] == ids[1]
    finally:
        drop_database(pg_server, "relay_t_migrate_0007")
