"""One forwarder per upstream across nodes that share a database (ARCHITECTURE.md,
"Scaling past one machine").

Several ingest nodes may write one database behind a load balancer; each upstream must
still see exactly one platform login and one ordered stream. :class:`UpstreamRole` holds a
PostgreSQL advisory lock for its upstream on a dedicated connection: while it holds the
lock, its upstream link and forwarder run; otherwise it stands by and tries again every
``retry`` seconds. If the lock's connection is lost (the server restarted), the link and
forwarder stop and the election starts over, so two nodes never forward at once.
"""

from __future__ import annotations

import psycopg
import structlog
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

log = structlog.get_logger("relay.election")


class _Lock:
    """The advisory lock and its connection (used only from the election's own thread)."""

    def __init__(self, dsn: str, key: str) -> None:
        self.dsn = dsn
        self.key = key
        self.conn: psycopg.Connection | None = None

    def try_acquire(self) -> bool:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, autocommit=True, application_name="relay-election")
        got = self.conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self.key,)).fetchone()[0]
        if not got:
            self.close()
        return bool(got)

    def still_held(self) -> bool:
        try:
            self.conn.execute("SELECT 1")
            return True
        except (psycopg.Error, AttributeError):
            self.close()
            return False

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


class UpstreamRole(Service):
    """Runs ``link`` and ``forwarder`` while this node holds the upstream's lock."""

    def __init__(self, reactor, dsn: str, link, forwarder, retry: float = 5.0) -> None:
        self.reactor = reactor
        self.link = link
        self.forwarder = forwarder
        self.name = f"upstream:{link.name}"
        self.retry = retry
        self.leading = False
        self._lock = _Lock(dsn, f"relay-forwarder:{link.name}")
        self._thread = ThreadPool(minthreads=1, maxthreads=1, name=f"relay-election-{link.name}")
        self._loop: LoopingCall | None = None
        self._busy = False
        self._said_standby = False

    def _call(self, fn) -> Deferred:
        return deferToThreadPool(self.reactor, self._thread, fn)

    def startService(self) -> Deferred:
        super().startService()
        self._thread.start()
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self._tick()
        self._loop = LoopingCall(lambda: Deferred.fromCoroutine(self._tick()))
        self._loop.clock = self.reactor
        self._loop.start(self.retry, now=False).addErrback(
            lambda f: log.error("election_failed", upstream=self.link.name, error=f.getErrorMessage()))

    async def _tick(self) -> None:
        """Acquire the lock if standing by; check it if leading."""
        if self._busy or not self.running:
            return
        self._busy = True
        try:
            if self.leading:
                if not await self._call(self._lock.still_held):
                    log.warning("upstream_leadership_lost", upstream=self.link.name)
                    await self._step_down()
                return
            try:
                got = await self._call(self._lock.try_acquire)
            except psycopg.Error as exc:
                log.warning("election_attempt_failed", upstream=self.link.name, error=str(exc).strip())
                return
            if got:
                self.leading = True
                self._said_standby = False
                log.info("upstream_leadership", upstream=self.link.name, leading=True)
                self.link.startService()
                await self.forwarder.start()
            elif not self._said_standby:
                self._said_standby = True
                log.info("upstream_leadership", upstream=self.link.name, leading=False,
                         note="another node forwards to this upstream; standing by")
        finally:
            self._busy = False

    async def _step_down(self) -> None:
        if not self.leading:
            return
        self.leading = False
        # the forwarder stops writing before the link logs out; its cursor save may fail
        # when the database is what went away (the unacknowledged rows are re-sent later)
        try:
            await self.forwarder.stop()
        except Exception as exc:  # noqa: BLE001
            log.warning("forwarder_stop_incomplete", upstream=self.link.name, error=str(exc).strip())
        await self.link.stopService()
        await self._call(self._lock.close)

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        while self._busy:  # let a tick in progress finish
            d: Deferred = Deferred()
            self.reactor.callLater(0.01, d.callback, None)
            await d
        await self._step_down()
        await self._call(self._lock.close)
        self._thread.stop()
