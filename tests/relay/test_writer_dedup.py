"""The writer remembers the platform frames it committed for a few seconds: the second copy
of a frame (a province gets each one from the enterprise and again from the city) is
acknowledged at once and never reaches the store. Real PostgreSQL, the real writer with
its store in the writer thread; every wait has a deadline."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest_twisted
from twisted.internet import reactor

import codec
from relay.ingest import Received, Refused
from relay.store.writer import BatchWriter, Router
from tests.support.faults import refuse_realtime_of
from tests.support.fixtures import T0, data_frame

VIN = "LNBSMX01000000401"
TIMEOUT = 15.0


def copy_of(n: int, source: str = "platform", vin: str = VIN) -> Received:
    """A fresh Received of the n-th frame, as a platform session (or a terminal's) hands it over."""
    [frame] = codec.FrameReader(packed=True, lazy=True).feed(codec.encode_frame(data_frame(vin, T0 + timedelta(seconds=n))))
    peer = "platform:ent01" if source == "platform" else "tcp:10.0.0.1:4000"
    return Received(frame, peer, T0 + timedelta(seconds=n, milliseconds=300), source, "ent01" if source == "platform" else "")


def frames(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM frames").fetchone()[0]


@pytest_twisted.ensureDeferred
async def test_the_second_copy_of_a_committed_platform_frame_is_acknowledged_without_a_batch(db_dsn):
    w = BatchWriter(reactor, db_dsn, Router(), max_rows=100, interval=0.01)
    await w.start()
    try:
        await w.accept(copy_of(0)).addTimeout(TIMEOUT, reactor)
        batches = w.batches
        d = w.accept(copy_of(0))
        assert d.called and w.backlog == 0  # answered at once, nothing queued
        assert (w.batches, w.duplicates, w.duplicates_skipped) == (batches, 1, 1)
        assert frames(db_dsn) == 1
    finally:
        await w.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_copies_the_writer_does_not_remember_are_deduplicated_by_the_database(db_dsn):
    """A terminal's repeated frame, and a platform frame whose first copy was committed
    longer than the window ago, go to the store: stored once all the same."""
    w = BatchWriter(reactor, db_dsn, Router(), max_rows=100, interval=0.01)
    await w.start()
    try:
        await w.accept(copy_of(1)).addTimeout(TIMEOUT, reactor)
        await w.accept(copy_of(2, "terminal")).addTimeout(TIMEOUT, reactor)
        await w.accept(copy_of(2, "terminal")).addTimeout(TIMEOUT, reactor)
        w.dedup_window = 0.0  # forget at the next commit
        await w.accept(copy_of(3)).addTimeout(TIMEOUT, reactor)
        await w.accept(copy_of(4)).addTimeout(TIMEOUT, reactor)
        await w.accept(copy_of(3)).addTimeout(TIMEOUT, reactor)
        assert w.duplicates_skipped == 0 and w.duplicates == 2  # each found by the database
        assert frames(db_dsn) == 4
    finally:
        await w.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_a_submitted_copy_of_a_frame_still_on_its_way_is_dropped_and_a_barrier_waits_for_the_first(db_dsn):
    """The second copy arrives before the first is committed: nobody waits for it (a
    platform's realtime data is submitted), so it never reaches the store; the heartbeat
    barrier of its sender still waits for the first copy's commit."""
    w = BatchWriter(reactor, db_dsn, Router(), max_rows=100, interval=0.01)
    await w.start()
    try:
        first = w.accept(copy_of(5))
        w.submit(copy_of(5))
        assert (w.duplicates_skipped, w.backlog, first.called) == (1, 1, False)
        heartbeat = copy_of(6)
        heartbeat.barrier = True
        barrier = w.accept(heartbeat)
        assert not barrier.called
        await barrier.addTimeout(TIMEOUT, reactor)
        assert first.called and frames(db_dsn) == 1
        assert w._waiting == {}  # settled: a later copy is judged by what was committed
        w.dedup_window = 0.0
        await w.accept(copy_of(7)).addTimeout(TIMEOUT, reactor)  # the commit that forgets 5
        w.submit(copy_of(5))
        await w.accept(copy_of(8)).addTimeout(TIMEOUT, reactor)
        assert w.duplicates_skipped == 1 and w.duplicates == 2  # the last copy of 5 went to the database
        assert frames(db_dsn) == 3
    finally:
        await w.stop().addTimeout(TIMEOUT, reactor)


def test_the_store_archives_straight_in_until_a_duplicate_comes_then_stages_until_a_clean_batch(db_dsn):
    """The batch store copies frames straight into the archive while no duplicate comes; a
    batch with one (of an archived frame, or twice in the batch) is written through the
    staging table instead, storing the rest, and so is the next; a clean batch goes
    straight in again."""
    from relay.store.batch import BatchStore

    store = BatchStore(db_dsn, Router(), [])
    store.connect()
    try:
        def write(*ns: int):
            return store.write([copy_of(n, "terminal") for n in ns])

        first = write(0, 1)
        assert (first.stored, first.duplicates, store._direct) == (2, 0, True)
        again = write(0, 2)  # 0 is archived already: the straight copy fails, the staged one stores 2
        assert (again.stored, again.duplicates, store._direct) == (1, 1, False)
        staged = write(3)
        assert (staged.stored, staged.duplicates, store._direct) == (1, 0, True)
        twice = write(4, 4)
        assert (twice.stored, twice.duplicates) == (1, 1)
        assert frames(db_dsn) == 5
        with psycopg.connect(db_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM realtime").fetchone()[0] == 5
    finally:
        store.close()


@pytest_twisted.ensureDeferred
async def test_a_copy_someone_waits_for_is_answered_with_its_first_copy(db_dsn):
    """Both copies of a vehicle login reach a province before the first is committed: the
    second never reaches the store (a duplicate there would cost the batch its straight
    copy into the archive) and is answered when the first is committed, or refused with it."""
    poison = "LNBSMX01000000499"
    refuse_realtime_of(db_dsn, poison)
    w = BatchWriter(reactor, db_dsn, Router(), max_rows=100, interval=0.01)
    await w.start()
    try:
        first, second = w.accept(copy_of(1)), w.accept(copy_of(1))
        assert (w.duplicates_skipped, w.backlog, second.called) == (1, 1, False)
        await second.addTimeout(TIMEOUT, reactor)
        assert first.called and frames(db_dsn) == 1 and w._followers == {}

        w.submit(copy_of(2, vin=poison))
        refused = []
        await w.accept(copy_of(2, vin=poison)).addErrback(lambda f: refused.append(f.check(Refused))) \
            .addTimeout(TIMEOUT, reactor)
        assert refused == [Refused] and frames(db_dsn) == 1 and w.refused == 1
    finally:
        await w.stop().addTimeout(TIMEOUT, reactor)
