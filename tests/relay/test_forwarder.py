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
from twisted.internet.defer import Deferred, succeed
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
    return commit_rows(dsn, first, count)[0]


def commit_rows(dsn: str, first: int, count: int, vin: str = VIN) -> tuple[list[bytes], BatchResult]:
    """The frames stored, and the writer's result for them (what it hands its forwarders)."""
    raws = [codec.encode_frame(data_frame(vin, T0 + timedelta(seconds=first + i))) for i in range(count)]
    store = BatchStore(dsn, ToUp(), [])
    try:
        store.connect()
        now = datetime.now(timezone.utc)  # received just now: they go up as realtime, not reissue
        result = store.write([Received(codec.decode_frame(raw), "tcp:10.0.0.1:1", now, "terminal") for raw in raws])
        assert result.outbox == {"up": count}
    finally:
        store.close()
    return raws, result


def cursor(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_id FROM outbox_cursors WHERE upstream = 'up'").fetchone()
    return row[0] if row else 0


async def online(fwd: Forwarder) -> Upstream:
    """A logged-in link for ``fwd``, once the fetch that follows the login is done."""
    up = Upstream()
    fwd.link_online(up)
    await until(reactor, lambda: not fwd._fetching, TIMEOUT, what="the first fetch")
    return up


@pytest_twisted.async_yield_fixture
async def forwarder(db_dsn):
    """A started forwarder (its cursor loaded) over a real pool, and its link's stand-in."""
    pool = CountingPool(reactor, db_dsn, 2)
    link = Link()
    # no cursor save of its own (which fetches too, when idle) comes between a test's commits
    # however slow the machine: the tests that count fetches count the commits' alone
    fwd = Forwarder(reactor, pool, link, realtime_window=3600.0, poll_interval=60.0, save_delay=3600.0)
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
    up = await online(fwd)
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
    fwd.save_delay = 0.2
    raws = await deferToThread(add_rows, db_dsn, 0, 4)
    up = Upstream()
    fwd.link_online(up)
    await until(reactor, lambda: up.frames == raws, TIMEOUT, what="rows written")
    assert fwd.durable == fwd.position  # the stand-in acknowledged at once
    await until(reactor, lambda: deferToThread(cursor, db_dsn).addCallback(lambda c: c == fwd.durable),
                TIMEOUT, what="cursor saved")
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0  # nothing waits


@pytest_twisted.ensureDeferred
async def test_a_batch_tells_its_marked_frames_and_moves_the_head(db_dsn):
    """The store's result names, per upstream, the frames it marked (in id order, as they
    are sent) and the outbox head before and after; a store in another process keeps them."""
    raws, first = await deferToThread(commit_rows, db_dsn, 0, 3)
    ids = [row[0] for row in first.routed["up"]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [row[3] for row in first.routed["up"]] == raws
    assert all(row[1] == codec.Command.REALTIME for row in first.routed["up"])
    assert first.head == (0, ids[-1])
    _, second = await deferToThread(commit_rows, db_dsn, 10, 2)
    assert second.head[0] == ids[-1] and second.head[1] == second.routed["up"][-1][0]
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT last_id FROM outbox_head").fetchone()[0] == second.head[1]


@pytest_twisted.ensureDeferred
async def test_a_caught_up_forwarder_sends_a_commits_frames_without_reading_them_back(db_dsn, forwarder):
    fwd, pool, link = forwarder
    up = await online(fwd)
    before = pool.fetches
    sent = []
    for n in range(3):
        raws, result = await deferToThread(commit_rows, db_dsn, 10 * n, 4)
        fwd.on_commit(result)
        sent += raws
        assert up.frames == sent  # written at once, from the commit
    assert pool.fetches == before and fwd.from_commits == 12


@pytest_twisted.ensureDeferred
async def test_frames_another_writer_marked_in_between_are_not_skipped(db_dsn, forwarder):
    """Two nodes on one database: the other's batch moved the head, so this node's next
    commit does not start where the forwarder stands; it reads back and sends everything,
    in order."""
    fwd, pool, link = forwarder
    up = await online(fwd)
    ours, result = await deferToThread(commit_rows, db_dsn, 0, 3)
    fwd.on_commit(result)
    theirs, _ = await deferToThread(commit_rows, db_dsn, 100, 2, "LNBSMX01000000302")  # not told to us
    again, result = await deferToThread(commit_rows, db_dsn, 10, 3)
    before = pool.fetches
    fwd.on_commit(result)
    await until(reactor, lambda: len(up.frames) == 8, TIMEOUT, what="all eight frames written")
    assert up.frames == ours + theirs + again
    assert pool.fetches > before and fwd.from_commits == 3


@pytest_twisted.ensureDeferred
async def test_a_commit_heard_while_rows_are_read_is_not_taken_twice(db_dsn, forwarder):
    """The writer's news of a commit can come after a fetch that already saw its frames."""
    fwd, pool, link = forwarder
    up = Upstream()
    waiting = await deferToThread(add_rows, db_dsn, 0, 3)
    raws, result = await deferToThread(commit_rows, db_dsn, 10, 2)
    fwd.link_online(up)  # the fetch it starts sees all five
    assert fwd._fetching_rows
    fwd.on_commit(result)  # the news of the last two, while the fetch is out
    await until(reactor, lambda: len(up.frames) >= 5 and not fwd._fetching, TIMEOUT, what="five frames written")
    assert up.frames == waiting + raws and fwd.from_commits == 0


class SilentLink(Link):
    """An upstream that never acknowledges: everything written stays unacknowledged."""

    def sync(self):
        self.syncs += 1
        return Deferred()


@pytest_twisted.ensureDeferred
async def test_rows_read_for_a_link_that_went_away_are_not_sent_on_the_next(db_dsn):
    """Rows fetched after the old link's position arrive after the link was replaced (the
    position rewound to the acknowledged cursor): sending them would skip the frames the
    old link never acknowledged; they are read again from the rewound position instead."""
    pool = CountingPool(reactor, db_dsn, 2)
    fwd = Forwarder(reactor, pool, SilentLink(), realtime_window=3600.0, poll_interval=60.0)
    await pool.start()
    try:
        await fwd.start()
        first = await deferToThread(add_rows, db_dsn, 0, 3)
        old = Upstream()
        fwd.link_online(old)
        await until(reactor, lambda: old.frames == first and not fwd._fetching, TIMEOUT, what="first rows written")
        assert fwd.durable == 0  # nothing acknowledged
        later = await deferToThread(add_rows, db_dsn, 10, 2)
        fwd.wake()  # a fetch after the old link's position...
        assert fwd._fetching_rows
        fwd.link_offline()  # ...and the link goes and comes back while it is out
        new = Upstream()
        fwd.link_online(new)
        await until(reactor, lambda: len(new.frames) >= 5 and not fwd._fetching, TIMEOUT, what="all five re-sent")
        assert new.frames == first + later
        await fwd.stop()
    finally:
        await pool.stop()
