"""The e2e benchmark's derived figures, worked by hand (relay/bench/e2e_bench.py)."""

from __future__ import annotations

import pytest

from relay.bench.e2e_bench import _percentile, cpu_per_frame_us, drain_seconds

BUSY = {"enterprise": 52.0, "municipal": 38.0, "provincial": 43.0, "loadgen": 8.0, "postgres": 49.0}


@pytest.mark.parametrize("cpu, rate, expected", [
    # 190 % of a core = 1.9 CPU-seconds a second over 4,000 frames a second
    pytest.param(BUSY, 4000.0, 475.0, id="five_parts_over_the_rate"),
    # a store process is already inside its tier's figure: not added again
    pytest.param({**BUSY, "enterprise_store": 30.0}, 4000.0, 475.0, id="store_share_not_counted_twice"),
    pytest.param({**BUSY, "postgres": None}, 4000.0, None, id="a_part_unknown"),
    pytest.param(BUSY, None, None, id="rate_unknown"),
    pytest.param(BUSY, 0.0, None, id="nothing_stored"),
])
def test_cpu_per_frame(cpu, rate, expected):
    assert cpu_per_frame_us(cpu, rate) == expected


@pytest.mark.parametrize("q, expected", [
    pytest.param(0.50, 5.0, id="p50_of_ten"),
    pytest.param(0.99, 10.0, id="p99_of_ten_is_the_largest"),
    pytest.param(0.0, 1.0, id="p0_is_the_smallest"),
])
def test_nearest_rank_percentile(q, expected):
    assert _percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], q) == expected


@pytest.mark.parametrize("ended, last_arrival, polled, expected", [
    # the province's newest received_at decides, not when the polling noticed
    pytest.param(1000.0, 1000.7, 1001.4, 0.7, id="by_the_last_arrival"),
    # the last frame was there before sending ended (a node that keeps up within the clock's grain)
    pytest.param(1000.0, 999.98, 1000.3, 0.0, id="never_negative"),
    pytest.param(1000.0, None, 1001.4, 1.4, id="no_arrival_then_the_poll"),
    pytest.param(0.0, 1000.7, 1001.4, 0.0, id="sending_never_ended"),
])
def test_drain_seconds(ended, last_arrival, polled, expected):
    assert drain_seconds(ended, last_arrival, polled) == pytest.approx(expected)


def test_the_province_counter_counts_on_from_its_last_sample(db_dsn):
    """The e2e sampler reads only the frames archived since its last sample and adds them
    up: data frames (realtime and reissue) count, answers and other commands do not."""
    import psycopg

    from relay.bench.e2e_bench import _Counter
    from tests.support.fixtures import T0

    def archive(conn, rows):
        with conn.transaction():
            conn.execute("CREATE TABLE IF NOT EXISTS frames_t PARTITION OF frames FOR VALUES FROM "
                         "('2000-01-01 00:00+08') TO ('2100-01-01 00:00+08')")
            for n, (command, response) in enumerate(rows):
                conn.execute("INSERT INTO frames (id, collected_at, received_at, vin, command, response, protocol, "
                             "encryption, peer, kind, digest, raw) VALUES (nextval('frames_id_seq'), %s, %s, "
                             "'LNBSMX01000000501', %s, %s, 2016, 1, 'test', %s, %s, '\\x00')",
                             (T0, T0, command, response, command, bytes([len(rows), n, command, response])))

    counter = _Counter(db_dsn)
    try:
        assert counter() == 0
        with psycopg.connect(db_dsn) as conn:
            archive(conn, [(2, 254), (3, 254), (1, 254), (2, 1)])
            assert counter() == 2
            assert counter() == 2  # nothing new: the same total
            archive(conn, [(2, 254), (2, 254), (3, 254)])
        assert counter() == 5
    finally:
        counter.close()


def test_the_postmaster_is_found_every_time_and_its_cpu_counts_its_backends(db_dsn):
    """``relay bench e2e`` reads the server's CPU from its postmaster, found as the parent of
    a backend of ours: that backend's /proc entry is read while the connection is open (read
    after the close it was often gone, and the run's PostgreSQL figure came out null)."""
    import psycopg

    from relay.bench.ingest_bench import postgres_cpu_seconds, postmaster_pid

    with psycopg.connect(db_dsn) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with open(f"/proc/{backend}/stat", "rb") as fh:
            parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
    assert {postmaster_pid(db_dsn) for _ in range(20)} == {parent}
    before = postgres_cpu_seconds(parent)
    with psycopg.connect(db_dsn) as conn:  # a backend of the server works
        conn.execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()
        after = postgres_cpu_seconds(parent)
    assert before is not None and after - before >= 0.05, (before, after)
