"""The batch store in a child process (``database.store: process``): what an operator relies on.

A killed store process costs nothing acknowledged: the batch in flight is retried in a new
child and every item is stored once. A child whose node is gone (its socket closed) exits.
The child's registry follows the node's (``refresh``). Real PostgreSQL, real child
processes, the real reactor; every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import psycopg
import pytest
import pytest_twisted
from structlog.testing import capture_logs
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.threads import deferToThread

import codec
from relay import registry
from relay.ingest import Received
from relay.policy import Route
from relay.store.process import StoreProcess, StoreSpec, StoreUnavailable
from relay.store.writer import BatchWriter, Router
from tests.support.fixtures import T0, data_frame
from tests.support.wait import until

TIMEOUT = 30.0
PUBLIC = "LNBSMX01000000101"


def received(vin: str, n: int) -> Received:
    [frame] = codec.FrameReader(packed=True, lazy=True).feed(codec.encode_frame(data_frame(vin, T0 + timedelta(seconds=n))))
    return Received(frame, "tcp:10.0.0.1:40000", T0 + timedelta(seconds=n, milliseconds=100), "terminal")


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


@pytest.fixture
def spec(db_dsn):
    with psycopg.connect(db_dsn) as conn:
        registry.upsert(conn, [(PUBLIC, "bus", "320100", "ENT01", "", "")])
    return StoreSpec(db_dsn, frozenset({"bus"}), (Route("municipal", ("3201",), False, False),))


def test_a_batch_is_stored_by_the_child_with_its_routes(spec):
    store = StoreProcess(spec)
    try:
        store.connect()
        result = store.write([received(PUBLIC, 0), received("LNBSMX01000000199", 1)])
        assert (result.items, result.stored, result.duplicates) == (2, 2, 0)
        assert result.outbox == {"municipal": 1}  # the registered bus; the unknown VIN is reported instead
        assert result.unregistered == ["LNBSMX01000000199"]
        assert count(spec.dsn, "SELECT count(*) FROM realtime") == 2
        again = store.write([received(PUBLIC, 0)])
        assert (again.stored, again.duplicates) == (0, 1)
    finally:
        store.close()
    assert store.pid is None


def test_a_killed_child_fails_the_call_and_the_next_call_starts_a_new_one(spec):
    store = StoreProcess(spec)
    try:
        store.connect()
        first = store.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(StoreUnavailable):
            store.write([received(PUBLIC, 0)])
        assert store.write([received(PUBLIC, 0)]).stored == 1
        assert store.pid != first and store.starts == 2
    finally:
        store.close()


def test_a_child_whose_node_is_gone_exits(spec):
    store = StoreProcess(spec)
    store.connect()
    child = store._child
    child.conn.close()  # what the kernel does when the node is killed
    child.sock.close()
    assert child.proc.wait(TIMEOUT) == 0  # exits by itself (TimeoutExpired if it does not)


def test_two_batches_in_flight_come_back_in_order(spec):
    store = StoreProcess(spec)
    try:
        first = store.send([received(PUBLIC, n) for n in range(5)], first=True)
        second = store.send([received(PUBLIC, n) for n in range(5, 8)], first=False)
        assert (store.receive(first).stored, store.receive(second).stored) == (5, 3)
    finally:
        store.close()


def test_after_a_failed_batch_the_child_takes_nothing_until_the_failed_one_comes_back(spec):
    """The batch behind a failed one is not written (it would be committed before the failed
    one is resent): the child says so, and writes again from the next batch sent first."""
    from dataclasses import replace

    from tests.support.store_hooks import POISON

    store = StoreProcess(replace(spec, hooks=("tests.support.store_hooks:fail_on_poison",)))
    try:
        failing = store.send([received(PUBLIC, 0), received(POISON, 1)], first=True)
        behind = store.send([received(PUBLIC, 2)], first=False)
        with pytest.raises(RuntimeError, match="test hook"):
            store.receive(failing)
        with pytest.raises(StoreUnavailable, match="the batch before it failed"):
            store.receive(behind)
        assert count(spec.dsn, "SELECT count(*) FROM frames") == 0
        assert store.write([received(PUBLIC, 0)]).stored == 1
        assert store.starts == 1  # the same child all along
    finally:
        store.close()


def test_a_child_that_cannot_reach_the_database_says_so():
    store = StoreProcess(StoreSpec("postgresql://postgres@127.0.0.1:1/nowhere", frozenset(), ()))
    with pytest.raises(StoreUnavailable, match="OperationalError"):
        store.connect()
    assert store.pid is None


def test_the_childs_registry_follows_a_refresh(spec):
    later = "LNBSMX01000000102"
    store = StoreProcess(spec)
    try:
        store.connect()
        assert store.write([received(later, 0)]).unregistered == [later]
        with psycopg.connect(spec.dsn) as conn:
            registry.upsert(conn, [(later, "taxi", "320102", "ENT01", "", "")])
        store.refresh()
        assert store.write([received(later, 1)]).unregistered == []
    finally:
        store.close()


@pytest_twisted.ensureDeferred
async def test_the_writer_retries_a_batch_whose_store_process_was_killed_and_stores_every_item_once(spec):
    """SIGKILL the child while the writer has work for it: the batch fails like a lost
    database (writer_batch_failed), a new child takes it, every accepted item is stored once
    and every Deferred fires."""
    store = StoreProcess(spec)
    writer = BatchWriter(reactor, spec.dsn, Router(), max_rows=50, interval=0.01, store=store)
    await writer.start().addTimeout(TIMEOUT, reactor)
    try:
        with capture_logs() as logs:
            first = [writer.accept(received(PUBLIC, n)) for n in range(20)]
            await gatherResults(first).addTimeout(TIMEOUT, reactor)
            os.kill(store.pid, signal.SIGKILL)
            second = [writer.accept(received(PUBLIC, n)) for n in range(20, 60)]
            await gatherResults(second).addTimeout(TIMEOUT, reactor)
        events = [e["event"] for e in logs]
        assert "writer_batch_failed" in events and store.starts == 2
        await until(reactor, lambda: deferToThread(count, spec.dsn, "SELECT count(*) FROM realtime").addCallback(
            lambda n: n == 60), TIMEOUT, what="60 rows")
        assert count(spec.dsn, "SELECT count(DISTINCT collected_at) FROM frames") == 60
    finally:
        await writer.stop().addTimeout(TIMEOUT, reactor)
