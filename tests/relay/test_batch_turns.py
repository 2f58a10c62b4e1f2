"""Writers on one database that mark frames for upstreams take turns: from their first frame
id to their commit, so that ids commit in order and a forwarder reading "id > cursor" never
passes over a frame committed later. Two real batch stores on one real PostgreSQL, each on
a thread of its own; every wait has a deadline."""

from __future__ import annotations

import threading
import time

import psycopg

from relay.store.batch import BatchStore, Router
from tests.relay.test_writer_dedup import copy_of

TIMEOUT = 15.0


class ToUp(Router):
    names = ("up",)

    def routes(self, frame):
        return ["up"], True


class Nowhere(Router):
    names = ("up",)

    def routes(self, frame):
        return [], True


class Hold:
    """A writer hook that keeps its batch's transaction open until released."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def __call__(self, cur, inserted) -> None:
        self.inside.set()
        assert self.release.wait(TIMEOUT), "never released"


def waiting_for_a_lock(dsn: str) -> set[str]:
    """application_name of the sessions waiting for a lock."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT application_name FROM pg_stat_activity "
                                           "WHERE datname = current_database() AND wait_event_type = 'Lock'")}


def run(store: BatchStore, batch, out: dict, key: str) -> threading.Thread:
    def work():
        out[key] = store.write(batch)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t


def until(predicate, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def last_id(dsn: str) -> int:
    """The last frame id handed out (to any transaction, committed or not)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT last_value FROM frames_id_seq").fetchone()[0]


def ids(dsn: str, vin: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM frames WHERE vin = %s ORDER BY id", (vin,))]


def test_a_routing_batch_waits_for_the_one_in_progress_and_gets_the_later_ids(db_dsn):
    hold = Hold()
    first, second = BatchStore(db_dsn, ToUp(), [hold]), BatchStore(db_dsn, ToUp(), [])
    second.connect()
    second.conn.execute("SET application_name = 'second'")
    second.conn.commit()
    out: dict = {}
    try:
        t1 = run(first, [copy_of(n, "terminal", "LNBSMX01000000501") for n in range(3)], out, "first")
        assert hold.inside.wait(TIMEOUT), "the first batch never reached its hook"
        t2 = run(second, [copy_of(n, "terminal", "LNBSMX01000000502") for n in range(3)], out, "second")
        handed_out = last_id(db_dsn)  # the first batch's ids
        until(lambda: "second" in waiting_for_a_lock(db_dsn), "the second batch to wait for its turn")
        # it waits before it takes any id (waiting later, say for the outbox head, it could
        # hold ids below ones that commit before it)
        assert "second" not in out and last_id(db_dsn) == handed_out
        hold.release.set()
        t1.join(TIMEOUT)
        t2.join(TIMEOUT)
        assert out["first"].stored == out["second"].stored == 3
        # the second batch took its ids after the first one committed: all of them are later
        assert max(ids(db_dsn, "LNBSMX01000000501")) < min(ids(db_dsn, "LNBSMX01000000502"))
    finally:
        hold.release.set()
        first.close()
        second.close()


def test_a_batch_that_marks_nothing_does_not_wait(db_dsn):
    hold = Hold()
    first, second = BatchStore(db_dsn, ToUp(), [hold]), BatchStore(db_dsn, Nowhere(), [])
    out: dict = {}
    try:
        t1 = run(first, [copy_of(n, "terminal", "LNBSMX01000000503") for n in range(2)], out, "first")
        assert hold.inside.wait(TIMEOUT), "the first batch never reached its hook"
        t2 = run(second, [copy_of(n, "terminal", "LNBSMX01000000504") for n in range(2)], out, "second")
        t2.join(TIMEOUT)
        assert "second" in out, "a batch that marks nothing waited for another's turn"
        assert out["second"].stored == 2 and "first" not in out  # committed while the first holds its turn
        hold.release.set()
        t1.join(TIMEOUT)
        assert out["first"].stored == 2
    finally:
        hold.release.set()
        first.close()
        second.close()
