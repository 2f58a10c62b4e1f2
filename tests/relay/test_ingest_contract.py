"""The Ingest contract, run against both implementations (relay/ingest.py).

``InMemoryIngest`` stands in for storage in the protocol tests, so it must behave like
the PostgreSQL-backed ``relay.store.writer.BatchWriter`` in everything a session relies
on: ``accept`` returns a Deferred that fires once the item is stored, the Deferreds fire
in acceptance order, a barrier fires after everything accepted before it, and the
pressure listeners hear True when storage falls behind and False when it has caught up.

Each backend offers ``stall()``/``catch_up()``: the in-memory one holds and releases;
the writer needs nothing, its high watermark is 3 items, its low watermark 1. The writer runs
twice: with its batch store in its own thread, and in a child process.
Real reactor, real database (a fresh migrated one per test); every awaited Deferred has
a timeout.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

import codec
from relay.ingest import InMemoryIngest, Received
from relay.store.writer import BatchWriter, Router
from tests.support.faults import refuse_realtime_of
from tests.support.fixtures import T0, data_frame
from tests.support.wait import until

from .samples import VIN, heartbeat

TIMEOUT = 15.0


def item(n: int, barrier: bool = False) -> Received:
    """The n-th frame a terminal sent, as the session hands it over (decoded, with its raw bytes)."""
    frame = heartbeat() if barrier else data_frame(VIN, T0 + timedelta(seconds=n))
    return Received(codec.decode_frame(codec.encode_frame(frame)), "tcp:10.0.0.1:40000",
                    T0 + timedelta(seconds=n, milliseconds=200), "terminal", barrier=barrier)


def within(d: Deferred) -> Deferred:
    return d.addTimeout(TIMEOUT, reactor)


class MemoryBackend:
    def __init__(self) -> None:
        self.ingest = InMemoryIngest()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def stored(self) -> int:
        return len(self.ingest.items)

    def decoded(self) -> int:
        """Stored data frames whose data unit was decoded."""
        return sum(isinstance(it.frame.body, codec.RealtimeData) for it in self.ingest.items)

    def stall(self) -> None:
        self.ingest.hold()

    def catch_up(self) -> None:
        self.ingest.release()


class PostgresBackend:
    def __init__(self, dsn: str) -> None:
        self.ingest = BatchWriter(reactor, dsn, Router(), max_rows=2, interval=0.01, high_watermark=3,
                                  low_watermark=1)
        self.conn = psycopg.connect(dsn, autocommit=True)

    async def start(self) -> None:
        await within(self.ingest.start())

    async def stop(self) -> None:
        try:
            await within(self.ingest.stop())
        finally:
            self.conn.close()

    def stored(self) -> int:
        # a short blocking read on the reactor thread: acceptable in a test, never in the node
        return self.conn.execute("SELECT count(*) FROM frames").fetchone()[0]

    def decoded(self) -> int:
        """Stored data frames whose data unit was decoded (a row each in ``realtime``)."""
        return self.conn.execute("SELECT count(*) FROM realtime").fetchone()[0]

    def stall(self) -> None:
        pass

    def catch_up(self) -> None:
        pass


class ProcessBackend(PostgresBackend):
    """The writer with its batch store in a child process (``database.store: process``)."""

    def __init__(self, dsn: str) -> None:
        from relay.store.process import StoreProcess, StoreSpec

        self.ingest = BatchWriter(reactor, dsn, Router(), max_rows=2, interval=0.01, high_watermark=3,
                                  low_watermark=1, store=StoreProcess(StoreSpec(dsn, frozenset(), ())))
        self.conn = psycopg.connect(dsn, autocommit=True)


@pytest.fixture(params=["memory", "postgres", "process"])
def backend(request):
    if request.param == "memory":
        return MemoryBackend()
    if request.param == "process":
        return ProcessBackend(request.getfixturevalue("db_dsn"))
    return PostgresBackend(request.getfixturevalue("db_dsn"))


@pytest_twisted.ensureDeferred
async def test_accept_fires_once_the_item_is_stored(backend):
    await backend.start()
    try:
        backend.stall()
        seen = []
        d = backend.ingest.accept(item(0))
        d.addCallback(lambda _: seen.append(backend.stored()))
        backend.catch_up()
        await within(d)
        assert seen == [1]  # already stored when the Deferred fired
    finally:
        await backend.stop()


@pytest_twisted.ensureDeferred
async def test_items_fire_in_the_order_they_were_accepted(backend):
    await backend.start()
    try:
        backend.stall()
        fired = []
        ds = []
        for n in range(5):
            d = backend.ingest.accept(item(n))
            d.addCallback(lambda _, n=n: fired.append(n))
            ds.append(d)
        backend.catch_up()
        await within(gatherResults(ds))
        assert fired == [0, 1, 2, 3, 4]
        assert backend.stored() == 5
    finally:
        await backend.stop()


@pytest_twisted.ensureDeferred
async def test_a_barrier_fires_after_everything_accepted_before_it_and_is_not_stored(backend):
    await backend.start()
    try:
        backend.stall()
        fired = []
        ds = []
        for name, it in (("a", item(0)), ("b", item(1)), ("barrier", item(2, barrier=True)), ("c", item(3))):
            d = backend.ingest.accept(it)
            d.addCallback(lambda _, name=name: fired.append(name))
            ds.append(d)
        backend.catch_up()
        await within(gatherResults(ds))
        assert fired.index("barrier") > max(fired.index("a"), fired.index("b"))
        assert backend.stored() == 3
    finally:
        await backend.stop()


@pytest_twisted.ensureDeferred
async def test_submitted_items_are_stored_in_order_and_a_barrier_waits_for_them(backend):
    """``submit`` is ``accept`` without a Deferred: the items keep their place in the
    order, and a barrier after them fires only once they are stored."""
    await backend.start()
    try:
        backend.stall()
        seen = []
        first = backend.ingest.accept(item(0))
        first.addCallback(lambda _: seen.append(("accepted", backend.stored())))
        assert backend.ingest.submit(item(1)) is None
        assert backend.ingest.submit(item(2)) is None
        barrier = backend.ingest.accept(item(3, barrier=True))
        barrier.addCallback(lambda _: seen.append(("barrier", backend.stored())))
        backend.catch_up()
        await within(gatherResults([first, barrier]))
        assert seen[0][0] == "accepted" and seen[-1] == ("barrier", 3)
    finally:
        await backend.stop()


@pytest_twisted.ensureDeferred
async def test_a_barrier_with_nothing_pending_fires_at_once(backend):
    await backend.start()
    try:
        d = backend.ingest.accept(item(0, barrier=True))
        assert d.called
        await within(d)
        assert backend.stored() == 0
    finally:
        await backend.stop()


@pytest_twisted.ensureDeferred
async def test_pressure_listeners_hear_true_when_storage_falls_behind_and_false_when_it_caught_up(backend):
    await backend.start()
    try:
        calls = []
        backend.ingest.add_pressure_listener(calls.append)
        backend.stall()
        ds = [backend.ingest.accept(item(n)) for n in range(3)]
        assert calls == [True]
        backend.catch_up()
        await within(gatherResults(ds))
        await until(reactor, lambda: calls == [True, False], timeout=TIMEOUT, what="pressure off")
        backend.ingest.remove_pressure_listener(calls.append)
        backend.stall()
        backend.catch_up()
        later = [backend.ingest.accept(item(n)) for n in range(3, 6)]
        await within(gatherResults(later))
        assert calls == [True, False]  # removed listeners hear nothing
    finally:
        await backend.stop()


@pytest_twisted.ensureDeferred
async def test_the_writer_pauses_at_the_high_watermark_and_resumes_at_the_low_one(db_dsn):
    """BatchWriter(max_rows=2, high=3, low=1): items 1-2 go as a batch at once; item 3 makes
    a backlog of 3 (pause); after the first commit the backlog is 2, above the low mark (still
    paused); after the second it is 0 (resume)."""
    writer = PostgresBackend(db_dsn)
    await writer.start()
    try:
        calls = []
        writer.ingest.add_pressure_listener(lambda on: calls.append((on, writer.ingest.backlog)))
        ds = [writer.ingest.accept(item(0)), writer.ingest.accept(item(1))]
        assert calls == []
        ds += [writer.ingest.accept(item(2)), writer.ingest.accept(item(3))]
        assert calls == [(True, 3)]
        await within(gatherResults(ds))
        await until(reactor, lambda: len(calls) == 2, timeout=TIMEOUT, what="pressure off")
        assert calls == [(True, 3), (False, 0)]
        assert writer.ingest.batches == 2
    finally:
        await writer.stop()


@pytest_twisted.ensureDeferred
async def test_a_writer_stopping_while_the_database_is_away_gives_up_after_its_timeout():
    """Nothing pending was acknowledged, so a stop does not wait forever for a database that
    is gone: the items are refused (their senders re-send) and the stop completes."""
    from codec.frame import with_raw
    from relay.ingest import Refused
    from tests.support.fixtures import T0, data_frame

    writer = BatchWriter(reactor, "postgresql://postgres@127.0.0.1:1/nowhere", Router(), max_rows=10, interval=0.01)
    writer._pool.start()
    writer.running = True
    item = writer.accept(Received(with_raw(data_frame("LNBSMX01000000009", T0)), "tcp:127.0.0.1:1", T0))
    refused = []
    item.addErrback(lambda f: refused.append(f.check(Refused)))
    await writer.stop(timeout=0.5)
    assert refused == [Refused]
    assert writer.backlog == 0


@pytest.mark.parametrize("store", [PostgresBackend, ProcessBackend], ids=["thread", "process"])
@pytest_twisted.ensureDeferred
async def test_a_refused_submitted_item_calls_its_on_refused_and_a_barrier_behind_it_still_fires(db_dsn, store):
    """The database refuses one submitted item (a trigger on its VIN): the item's
    ``on_refused`` hears the reason, its neighbours are stored, and a barrier waiting
    behind it fires (with nothing left unhandled)."""
    from tests.support.fixtures import data_frame as frame_of

    poison = "LNBSMX01000000666"
    refuse_realtime_of(db_dsn, poison)
    backend = store(db_dsn)
    await backend.start()
    try:
        heard = []
        good = item(0)
        bad = Received(codec.decode_frame(codec.encode_frame(frame_of(poison, T0))), "tcp:10.0.0.2:40000", T0,
                       "terminal", on_refused=lambda it, reason: heard.append((it.frame.vin, reason)))
        backend.ingest.submit(good)
        backend.ingest.submit(bad)
        await within(backend.ingest.accept(item(1, barrier=True)))
        assert len(heard) == 1 and heard[0][0] == poison and "test: " + poison in heard[0][1]
        assert backend.stored() == 1
        assert backend.ingest.refused == 1
    finally:
        await backend.stop()


def pending(n: int, *, mangle: bool = False) -> Received:
    """The n-th frame as a node's reader hands it over: its data unit still pending
    (``FrameReader(lazy=True)``); ``mangle`` cuts its last information item short (the
    BCC recomputed, so only decoding the data unit shows it)."""
    raw = codec.encode_frame(data_frame(VIN, T0 + timedelta(seconds=n)))
    if mangle:
        unit = raw[24:-3]  # two bytes short of the last block
        head = raw[:22] + len(unit).to_bytes(2, "big") + unit
        from codec.bcc import bcc

        raw = head + bytes((bcc(head[2:]),))
    [frame] = codec.FrameReader(packed=True, lazy=True).feed(raw)
    assert isinstance(frame.body, codec.PendingRealtime)
    return Received(frame, "tcp:10.0.0.1:40000", T0 + timedelta(seconds=n, milliseconds=200), "terminal")


@pytest_twisted.ensureDeferred
async def test_a_pending_data_unit_is_decoded_by_storage_and_one_that_does_not_fit_is_refused(backend):
    """Storage decodes what the reader left pending: a good item is stored decoded, one
    whose data unit does not follow the layout is refused with ``bad_body`` (its on_refused
    hears it), and its neighbours are stored all the same."""
    await backend.start()
    try:
        heard = []
        bad = pending(1, mangle=True)
        bad.on_refused = lambda it, reason: heard.append(reason)
        first, second = pending(0), pending(2)
        d0 = backend.ingest.accept(first)
        backend.ingest.submit(bad)
        d2 = backend.ingest.accept(second)
        await within(gatherResults([d0, d2]))
        assert backend.stored() == 2
        assert len(heard) == 1 and heard[0].startswith("bad_body: ")
        assert backend.decoded() == 2
    finally:
        await backend.stop()
