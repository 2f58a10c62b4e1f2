"""The audit buffer on a real PostgreSQL (a real ``QueryPool``): a batch the database
refuses is kept and written later, in order; at most ``max_pending`` entries are kept
(the oldest dropped, ``audit_rows_dropped``); a stop leaves no timer.

The database refuses audit rows through a trigger that raises, dropped to end the fault.
"""

from __future__ import annotations

import psycopg
import pytest
import pytest_twisted
from structlog.testing import capture_logs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from relay.audit import Audit
from relay.store.pool import QueryPool
from tests.support.wait import until

REFUSE = """
CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'audit refused (test fault)'; END $$;
CREATE TRIGGER audit_refuse BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_refuse();
"""
ACCEPT = "DROP TRIGGER audit_refuse ON audit"


def _execute(dsn: str, text: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(text)
        return cur.fetchall() if cur.description else []


async def execute(dsn: str, text: str) -> list[tuple]:
    return await deferToThread(_execute, dsn, text).addTimeout(10, reactor)


async def stored(dsn: str) -> list[str]:
    return [actor for (actor,) in await execute(dsn, "SELECT actor FROM audit ORDER BY id")]


def named(logs: list[dict], event: str) -> list[dict]:
    return [e for e in logs if e["event"] == event]


@pytest_twisted.async_yield_fixture
async def pool(db_dsn):
    p = QueryPool(reactor, db_dsn, size=2, name="audit-test")
    await p.start().addTimeout(30, reactor)
    yield p
    await p.stop().addTimeout(30, reactor)


@pytest.fixture
def refusing(db_dsn):
    _execute(db_dsn, REFUSE)
    return db_dsn


def no_audit_timer(audit: Audit) -> bool:
    return audit._timer is None and not any(getattr(c.func, "__self__", None) is audit
                                            for c in reactor.getDelayedCalls())


@pytest_twisted.ensureDeferred
async def test_a_refused_batch_is_kept_retried_with_growing_delays_and_written_in_order(pool, refusing):
    audit = Audit(reactor, pool, flush_interval=0.05, max_retry_delay=0.2)
    with capture_logs() as logs:
        for i in range(3):
            audit.record(f"a{i}", "platform_login", "refused")
        await until(reactor, lambda: len(named(logs, "audit_write_failed")) >= 3, 5, what="three failed attempts")
        audit.record("a3", "platform_login", "accepted")  # recorded while the fault lasts
        assert await stored(refusing) == []
        await execute(refusing, ACCEPT)
        await until(reactor, lambda: Deferred.fromCoroutine(stored(refusing)).addCallback(len).addCallback(
            lambda n: n >= 4), 5, what="the kept entries written")
        assert await stored(refusing) == ["a0", "a1", "a2", "a3"]
        assert audit.pending == 0
        await audit.stop().addTimeout(10, reactor)

    failed = named(logs, "audit_write_failed")
    assert [e["retry_in"] for e in failed[:3]] == [0.1, 0.2, 0.2]  # doubling from 0.05, capped at 0.2
    assert failed[0]["entries"] == 3 and "audit refused" in failed[0]["error"]
    assert named(logs, "audit_rows_dropped") == []
    assert no_audit_timer(audit)


@pytest_twisted.ensureDeferred
async def test_over_the_cap_the_oldest_entries_are_dropped_and_counted(pool, refusing):
    audit = Audit(reactor, pool, flush_interval=0.05, max_pending=5, max_retry_delay=0.1)
    with capture_logs() as logs:
        for i in range(8):
            audit.record(f"b{i}", "platform_login", "refused")
        assert audit.pending == 5
        await until(reactor, lambda: named(logs, "audit_write_failed"), 5, what="a failed attempt")
        audit.record("b8", "platform_login", "refused")  # one more over the cap, while a batch is kept
        await until(reactor, lambda: sum(e["count"] for e in named(logs, "audit_rows_dropped")) >= 4, 5,
                    what="the drop of b0..b3 reported")
        await execute(refusing, ACCEPT)
        await until(reactor, lambda: Deferred.fromCoroutine(stored(refusing)).addCallback(len).addCallback(
            lambda n: n >= 5), 5, what="the kept entries written")
        assert await stored(refusing) == ["b4", "b5", "b6", "b7", "b8"]
        await audit.stop().addTimeout(10, reactor)

    dropped = named(logs, "audit_rows_dropped")
    assert sum(e["count"] for e in dropped) == 4
    assert {(e["reason"], e["cap"]) for e in dropped} == {("over_cap", 5)}
    assert no_audit_timer(audit)


@pytest_twisted.ensureDeferred
async def test_a_stop_while_the_database_refuses_drops_the_pending_entries_and_leaves_no_timer(pool, refusing):
    audit = Audit(reactor, pool, flush_interval=0.05, max_retry_delay=0.1)
    with capture_logs() as logs:
        audit.record("c0", "platform_login", "refused")
        audit.record("c1", "platform_login", "refused")
        await until(reactor, lambda: named(logs, "audit_write_failed"), 5, what="a failed attempt")
        await audit.stop().addTimeout(10, reactor)
        audit.record("c2", "platform_login", "refused")  # after the stop: logged, never scheduled

    assert named(logs, "audit_rows_dropped") == [{
        "event": "audit_rows_dropped", "count": 2, "reason": "node_stopping", "kept": 0, "cap": 10_000,
        "log_level": "error"}]
    assert named(logs, "audit_write_failed")[-1]["retry_in"] is None  # the last attempt, made by the stop
    assert no_audit_timer(audit)
    await execute(refusing, ACCEPT)
    assert await stored(refusing) == []
