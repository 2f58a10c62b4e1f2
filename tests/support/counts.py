"""Looking into nodes' databases from a test on the real reactor: queries run off the
reactor thread (the nodes and clients keep running), every wait has a deadline.

Used by the process and chaos suites (tests/integration/test_node_processes.py, tests/chaos/).
"""

from __future__ import annotations

import psycopg
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from .wait import until

DATA = "SELECT count(*) FROM realtime"
PRIVATE_FRAMES = "SELECT count(*) FROM frames f JOIN vehicles v USING (vin) WHERE v.sector = 'private'"
VEHICLE_FRAMES = "SELECT count(*) FROM frames WHERE command IN (1, 2, 3, 4)"


def within(d: Deferred, seconds: float = 30.0) -> Deferred:
    return d.addTimeout(seconds, reactor)


def _query(dsn: str, text: str, args: tuple) -> list[tuple]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        cur = conn.execute(text, args or None)
        return cur.fetchall() if cur.description else []


def query(dsn: str, text: str, *args) -> list[tuple]:
    """Blocking: for set-up before the reactor work starts."""
    return _query(dsn, text, args)


async def rows(dsn: str, text: str, *args) -> list[tuple]:
    """Off the reactor thread, so the nodes (and test clients) keep running while we look."""
    return await within(deferToThread(_query, dsn, text, args))


async def scalar(dsn: str, text: str, *args):
    return (await rows(dsn, text, *args))[0][0]


def at_least(dsn: str, text: str, n: int, *args):
    """A check for ``until``: does ``text`` count ``n`` or more?"""
    return lambda: Deferred.fromCoroutine(scalar(dsn, text, *args)).addCallback(lambda v: v >= n)


async def count_is(dsn: str, text: str, expected: int, what: str, *args, timeout: float = 30.0) -> None:
    """Wait until ``text`` counts ``expected``, then check it did not overshoot."""
    await until(reactor, at_least(dsn, text, expected, *args), timeout, every=0.1, what=what)
    assert await scalar(dsn, text, *args) == expected, what


async def every_tier_holds_what_was_sent(dsns: dict[str, str], sent: dict[str, int], public_vehicles: int) -> None:
    """The three tiers' final counts: the enterprise every data frame sent, the city and the
    province every public one (with each public vehicle's login and logout) and nothing
    private."""
    await count_is(dsns["enterprise"], DATA, sent["public"] + sent["private"], "enterprise data frames")
    await count_is(dsns["municipal"], DATA, sent["public"], "city data frames")
    await count_is(dsns["provincial"], DATA, sent["public"], "province data frames")
    public_frames = sent["public"] + 2 * public_vehicles
    for tier in ("municipal", "provincial"):
        await count_is(dsns[tier], VEHICLE_FRAMES, public_frames, f"{tier} vehicle frames")
        assert await scalar(dsns[tier], PRIVATE_FRAMES) == 0, tier
