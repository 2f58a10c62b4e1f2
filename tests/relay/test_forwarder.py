"""The forwarder of one upstream over a real outbox (PostgreSQL, the real query pool and
reactor), with the link played by a stand-in that answers heartbeats at once.

What an operator relies on: rows go up in outbox order, each commit costs one database hop
(not one per commit plus an empty one), and the acknowledged cursor is saved shortly after
the upstream acknowledged, so a restart re-sends little.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.threads import deferToThread
from twisted.internet.testing import StringTransport

import codec
from relay.forwarder import Forwarder
from relay.ingest import Received
from relay.store.batch import BatchResult, BatchStore, Router
from relay.store.pool import QueryPool
from tests.support.fixtures import T0, data_frame
from tests.support.wait import until

VIN = "LNBSMX01000000301"
TIMEOUT = 15.0


class Link:
    """The link's side the forwarder uses: listeners, and heartbeats answered at once."""

    name = "up"

    def __init__(self) -> None:
        self.listeners = []
        self.syncs = 0

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def sync(self):
        self.syncs += 1
        return succeed("answered")


class Upstream:
    """A logged-in connection: what the forwarder writes lands in ``transport``."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.frames: list[bytes] = []

    def write_raw(self, raw: bytes) -> None:
        self.frames.append(raw)
        self.transport.write(raw)


class CountingPool(QueryPool):
    """The real query pool, counting the forwarder's fetches."""

    fetches = 0

    def run(self, fn, *args, **kwargs):
        if fn.__name__ == "save_and_fetch":
            self.fetches += 1
        return super().run(fn, *args, **kwargs)


class ToUp(Router):
    """Everything goes to the one upstream, "up"."""

    names = ("up",)

    def routes(self, frame):
        return ["up"], True


def add_rows(dsn: str, first: int, count: int) -> list[bytes]:
    """Store ``count`` data frames for "up" as a node would (the batch store)."""
    raws = [codec.encode_frame(data_frame(VIN, T0 + timedelta(seconds=first + i))) for i in range(count)]
    store = BatchStore(dsn, ToUp(), [])
    try:
        store.connect()
        now = datetime.now(timezone.utc)  # received just now: they go up as realtime, not reissue
        result = store.write([Received(codec.decode_frame(raw), "tcp:10.0.0.1:1", now, "terminal") for raw in raws])
        assert result.outbox == {"up": count}
    finally:
        store.close()
    return raws


def cursor(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_id FROM outbox_cursors WHERE upstream = 'up'").fetchone()
    return row[0] if row else 0


@pytest_twisted.async_yield_fixture
async def forwarder(db_dsn):
    """A started forwarder (its cursor loaded) over a real pool, and its link's stand-in."""
    pool = CountingPool(reactor, db_dsn, 2)
    link = Link()
    fwd = Forwarder(reactor, pool, link, realtime_window=3600.0, poll_interval=60.0)
    await pool.start()
    try:
        await fwd.start()
        yield fwd, pool, link
        await fwd.stop()
    finally:
        await pool.stop()


@pytest_twisted.ensureDeferred
async def test_each_commit_costs_one_fetch_and_rows_go_up_in_order(db_dsn, forwarder):
    fwd, pool, link = forwarder
    up = Upstream()
    fwd.link_online(up)
    await until(reactor, lambda: not fwd._fetching, TIMEOUT, what="the first fetch")
    before = pool.fetches
    for n in range(3):
        raws = await deferToThread(add_rows, db_dsn, 10 * n, 5)
        fwd.on_commit(BatchResult(outbox={"up": 5}))
        await until(reactor, lambda: up.frames[-5:] == raws, TIMEOUT, what=f"commit {n} written")
    assert pool.fetches - before == 3
    assert len(up.frames) == 15 and link.syncs >= 1


@pytest_twisted.ensureDeferred
async def test_the_acknowledged_cursor_is_saved_soon_after_the_acknowledgment(db_dsn, forwarder):
    fwd, pool, link = forwarder
    raws = await deferToThread(add_rows, db_dsn, 0, 4)
    up = Upstream()
    fwd.link_online(up)
    await until(reactor, lambda: up.frames == raws, TIMEOUT, what="rows written")
    assert fwd.durable == fwd.position  # the stand-in acknowledged at once
    await until(reactor, lambda: deferToThread(cursor, db_dsn).addCallback(lambda c: c == fwd.durable),
                TIMEOUT, what="cursor saved")
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0  # nothing waits
