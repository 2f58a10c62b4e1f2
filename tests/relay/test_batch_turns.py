"""Writers on one database that mark frames for upstreams take turns: from their first frame
id to their commit, so that ids commit in order and a forwarder reading "id > cursor" never
passes over a frame committed later. Two real batch stores on one real PostgreSQL, each
writing on a thread of the reactor's pool; every wait has a deadline."""

from __future__ import annotations

import threading

import psycopg
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from relay.store.batch import BatchStore, Router
from tests.relay.test_writer_dedup import copy_of
from tests.support.wait import until

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


def last_id(dsn: str) -> int:
    """The last frame id handed out (to any transaction, committed or not)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT last_value FROM frames_id_seq").fetchone()[0]


def ids(dsn: str, vin: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM frames WHERE vin = %s ORDER BY id", (vin,))]


def batch(vin: str, count: int) -> list:
    return [copy_of(n, "terminal", vin) for n in range(count)]


def write(store: BatchStore, items: list):
    """The store writes ``items`` on a thread; the Deferred fires with its result."""
    return deferToThread(store.write, items).addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_a_routing_batch_waits_for_the_one_in_progress_before_it_takes_any_id(db_dsn):
    hold = Hold()
    first, second = BatchStore(db_dsn, ToUp(), [hold]), BatchStore(db_dsn, ToUp(), [])
    second.connect()
    second.conn.execute("SET application_name = 'second'")
    second.conn.commit()
    try:
        d1 = write(first, batch("LNBSMX01000000501", 3))
        await until(reactor, hold.inside.is_set, TIMEOUT, what="the first batch in its transaction")
        handed_out = last_id(db_dsn)  # the first batch's ids
        d2 = write(second, batch("LNBSMX01000000502", 3))
        await until(reactor, lambda: "second" in waiting_for_a_lock(db_dsn), TIMEOUT,
                    what="the second batch to wait for its turn")
        # it waits before it takes any id (waiting later, say for the outbox head, it could
        # hold ids below ones that commit before it)
        assert not d2.called and last_id(db_dsn) == handed_out
        hold.release.set()
        assert (await d1).stored == 3 and (await d2).stored == 3
        assert max(ids(db_dsn, "LNBSMX01000000501")) < min(ids(db_dsn, "LNBSMX01000000502"))
    finally:
        hold.release.set()
        first.close()
        second.close()


@pytest_twisted.ensureDeferred
async def test_a_batch_that_marks_nothing_does_not_wait(db_dsn):
    hold = Hold()
    first, second = BatchStore(db_dsn, ToUp(), [hold]), BatchStore(db_dsn, Nowhere(), [])
    try:
        d1 = write(first, batch("LNBSMX01000000503", 2))
        await until(reactor, hold.inside.is_set, TIMEOUT, what="the first batch in its transaction")
        # committed while the first batch holds its turn (else this times out)
        assert (await write(second, batch("LNBSMX01000000504", 2))).stored == 2
        assert not d1.called
        hold.release.set()
        assert (await d1).stored == 2
    finally:
        hold.release.set()
        first.close()
        second.close()
