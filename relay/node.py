"""A node: the service tree of one role, built from a validated config.

Start order: query pool -> registry -> writer -> audit -> per upstream its election
(which runs the link, then the forwarder, while this node holds the upstream's lock) ->
listeners; stop runs the reverse, each child awaited (listeners close their
connections, links log out, the writer drains and commits, pools close). The embedded
PostgreSQL, when there is one, is started before the tree (``prepare``) and stopped
after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import structlog
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from codec import Command

from . import registry as registry_mod
from .accounts import LoginGuard
from .alarms import AlarmTracker
from .audit import Audit
from .charging import FacilityIndex, load_index, store_rows
from .charging_http import ChargingAPI, site
from .config import Config
from .election import UpstreamRole
from .forwarder import Forwarder
from .platform_session import PlatformFactory
from .policy import Route
from .role import Role
from .services import FunctionService, ListenerService, SequentialService
from .session import TerminalFactory
from .store.embedded import EmbeddedPostgres
from .store.migrate import migrate
from .store.pool import QueryPool
from .routing import RegistryRouter
from .store.process import StoreProcess, StoreSpec
from .store.writer import BatchWriter
from .upstream import UpstreamLink

log = structlog.get_logger("relay.node")


@dataclass
class Prepared:
    """What ``prepare`` made before the services start (blocking work done in threads)."""

    dsn: str
    embedded: EmbeddedPostgres | None = None
    applied: list[int] = field(default_factory=list)


def _prepare_blocking(cfg: Config) -> Prepared:
    embedded = None
    dsn = cfg.database.dsn
    if not dsn:
        embedded = EmbeddedPostgres(cfg.resolve(cfg.data_dir) / "pg")
        dsn = embedded.start()
    with psycopg.connect(dsn) as conn:
        applied = migrate(conn)
    if applied:
        log.info("schema_migrated", versions=applied)
    return Prepared(dsn, embedded, applied)


def prepare(reactor, cfg: Config) -> Deferred:
    """Start the embedded PostgreSQL if no DSN is configured, and migrate (in a thread)."""
    pool = ThreadPool(minthreads=0, maxthreads=1, name="relay-prepare")
    pool.start()
    d = deferToThreadPool(reactor, pool, _prepare_blocking, cfg)

    def done(result):
        pool.stop()
        return result

    return d.addBoth(done)


class Node:
    #: seconds between attempts to take over an upstream another node forwards to
    ELECTION_RETRY = 5.0

    def __init__(self, reactor, cfg: Config, role: Role, dsn: str, embedded: EmbeddedPostgres | None = None) -> None:
        self.reactor = reactor
        self.cfg = cfg
        self.role = role
        self.dsn = dsn
        self.embedded = embedded
        self.tree = SequentialService()
        self.pool = QueryPool(reactor, dsn, cfg.database.pool_size)
        self.registry = registry_mod.RegistryCache()
        self.public_sectors = frozenset(cfg.registry.public_sectors)
        routes = tuple(Route(u.name, u.regions, u.charging, u.charging_private) for u in cfg.upstreams)
        self.facilities = FacilityIndex()
        self.alarms = AlarmTracker()
        self.router = RegistryRouter(self.registry, self.public_sectors, routes, self.facilities)
        db = cfg.database
        store = None
        if db.store == "process":
            store = StoreProcess(StoreSpec(dsn, self.public_sectors, routes, log_level=cfg.log.level,
                                           log_format=cfg.log.format))
        self.writer = BatchWriter(reactor, dsn, self.router, max_rows=db.batch_max_rows,
                                  interval=db.batch_interval_ms / 1000.0, high_watermark=db.high_watermark,
                                  low_watermark=db.low_watermark, extra=[store_rows, self.alarms], store=store)
        self.writer.add_commit_listener(self._learn_stations)
        self.audit = Audit(reactor, self.pool)
        self.links: dict[str, UpstreamLink] = {}
        self.forwarders: dict[str, Forwarder] = {}
        self.listeners: dict[str, ListenerService] = {}
        self.terminals: TerminalFactory | None = None
        self.platforms: PlatformFactory | None = None
        self.charging_api: ChargingAPI | None = None
        self.api = None
        self.export_threads = ThreadPool(minthreads=0, maxthreads=2, name="relay-export")
        self._registry_refresh: LoopingCall | None = None
        self._build()

    # -- construction (no I/O) --------------------------------------------------------
    def _build(self) -> None:
        cfg, reactor = self.cfg, self.reactor
        self.tree.add(FunctionService("query-pool", self.pool.start, self.pool.stop))
        self.tree.add(FunctionService("registry", self._start_registry, self._stop_registry))
        self.tree.add(FunctionService("writer", self.writer.start, self.writer.stop))
        self.tree.add(FunctionService("audit", None, self.audit.stop))
        self._storage_watch = LoopingCall(self._sample_storage_logged)
        self._storage_watch.clock = reactor
        self.tree.add(FunctionService("storage-watch", self._start_storage_watch, self._stop_storage_watch))
        for up in cfg.upstreams:
            link = UpstreamLink(reactor, up, up.secret())
            fwd = Forwarder(reactor, self.pool, link, batch_rows=up.batch_rows, realtime_window=up.realtime_window)
            self.writer.add_commit_listener(fwd.on_commit)
            self.links[up.name] = link
            self.forwarders[up.name] = fwd
            # link and forwarder run while this node holds the upstream's advisory lock (one
            # forwarder per upstream among nodes sharing the database); the link starts
            # before its forwarder and stops after it, so nothing is written after 0x06
            self.tree.add(UpstreamRole(reactor, self.dsn, link, fwd, retry=self.ELECTION_RETRY))
        if self.role.terminal_listener:
            t = cfg.listeners.terminals
            self.terminals = TerminalFactory(
                reactor, self.writer, self.registry, max_connections=t.max_connections,
                max_per_address=t.max_per_address, idle_timeout=t.idle_timeout, max_frame_bytes=t.max_frame_bytes,
                answer_realtime=t.answer_realtime, stale_session_after=t.stale_session_after,
                strict=cfg.registry.strict, command_timeout=t.command_timeout)
            self._listen("terminals", t.endpoint, self.terminals)
        if self.role.platform_listener:
            p = cfg.listeners.platforms
            self.platforms = PlatformFactory(
                reactor, self.writer, self.registry, self.audit, cfg.accounts, LoginGuard(cfg.lockout),
                region=cfg.region, public_sectors=self.public_sectors, max_connections=p.max_connections,
                max_per_address=p.max_per_address, idle_timeout=p.idle_timeout, max_frame_bytes=p.max_frame_bytes,
                login_timeout=p.login_timeout, answer_data=p.answer_data)
            self._listen("platforms", p.endpoint, self.platforms)
        if cfg.http.endpoint:
            from .api import Api, site as api_site
            from .metrics import Metrics

            self.api = Api(reactor, self, cfg.http.tokens, Metrics(self))
            self.tree.add(FunctionService("export-threads", self.export_threads.start, self.export_threads.stop))
            self._listen("http", cfg.http.endpoint, api_site(self.api))
        if self.role.charging_http and cfg.charging.endpoint:
            base = Path(cfg.source).parent if cfg.source and Path(cfg.source).exists() else None
            operators = {op.operator_id: op.secrets(base) for op in cfg.charging.operators}
            self.charging_api = ChargingAPI(reactor, self.writer, self.audit, operators, self.facilities,
                                            region=cfg.region, token_lifetime=cfg.charging.token_lifetime,
                                            max_body=cfg.charging.max_body_bytes)
            self._listen("charging", cfg.charging.endpoint, site(self.charging_api))

    def _listen(self, name: str, endpoint: str, factory) -> None:
        svc = ListenerService(self.reactor, name, endpoint, factory)
        self.listeners[name] = svc
        self.tree.add(svc)

    # -- registry -----------------------------------------------------------------------
    async def _start_registry(self) -> None:
        await self.refresh_registry()
        await self._load_facilities()
        self._registry_refresh = LoopingCall(lambda: Deferred.fromCoroutine(self.refresh_registry()))
        self._registry_refresh.clock = self.reactor
        self._registry_refresh.start(30.0, now=False).addErrback(
            lambda f: log.error("registry_refresh_failed", error=f.getErrorMessage()))

    def _stop_registry(self) -> None:
        if self._registry_refresh is not None and self._registry_refresh.running:
            self._registry_refresh.stop()

    async def refresh_registry(self) -> int:
        entries = await self.pool.run(registry_mod.load)
        self.registry.replace(entries)
        self.writer.refresh()
        return len(entries)

    def _learn_stations(self, result) -> None:
        """Stations whose static information was just stored (by a store process, which keeps
        its own index) become known to this node's charging intake too."""
        for operator, msg in result.stations:
            self.facilities.learn(operator, msg)

    async def _load_facilities(self) -> None:
        index = await self.pool.run(load_index)
        self.facilities.stations.update(index.stations)
        self.facilities.members.update(index.members)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> Deferred:
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self.tree.startService()
        log.info("node_ready", node=self.cfg.node_id, role=self.role.name,
                 **{f"{name}_port": svc.port for name, svc in self.listeners.items()})

    def stop(self) -> Deferred:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.tree.running:
            log.info("node_stopping", node=self.cfg.node_id)
            await self.tree.stopService()
        if self.embedded is not None:
            pool = ThreadPool(minthreads=0, maxthreads=1, name="relay-embedded-stop")
            pool.start()
            try:
                await deferToThreadPool(self.reactor, pool, self.embedded.stop)
            finally:
                pool.stop()
        log.info("node_stopped", node=self.cfg.node_id)

    def free_bytes(self) -> int | None:
        """Free room on the database's disk: ``storage.path``, else the embedded database's
        directory; None when neither is known (a remote server)."""
        import shutil

        path = self.cfg.resolve(self.cfg.storage.path) if self.cfg.storage.path else (
            self.embedded.directory if self.embedded is not None else None)
        if path is None:
            return None
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    def _start_storage_watch(self) -> None:
        self._storage_watch.start(self.cfg.storage.sample_interval, now=True)

    def _stop_storage_watch(self) -> None:
        if self._storage_watch.running:
            self._storage_watch.stop()

    def _sample_storage_logged(self) -> Deferred:
        """One sample; a failure is logged and the watch goes on."""
        return Deferred.fromCoroutine(self.sample_storage()).addErrback(
            lambda f: log.error("storage_watch_failed", error=f.getErrorMessage()))

    async def sample_storage(self) -> dict:
        from .monitoring import storage

        now = datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)
        result = await self.pool.run(storage, now=now, free_bytes=self.free_bytes(), sample=True)
        if result["warning"]:
            log.warning("storage_room_low", months_of_room=result["months_of_room"],
                        growth_bytes_per_day=result["growth_bytes_per_day"], free_bytes=result["free_bytes"])
        return result

    def port(self, listener: str) -> int | None:
        svc = self.listeners.get(listener)
        return svc.port if svc else None


async def start_node(reactor, cfg: Config, role: Role) -> Node:
    """Prepare (embedded server, migrations), build and start a node."""
    prepared = await prepare(reactor, cfg)
    node = Node(reactor, cfg, role, prepared.dsn, prepared.embedded)
    try:
        await node.start()
    except Exception:
        await node.stop()
        raise
    return node


__all__ = ["Node", "start_node", "prepare", "RegistryRouter", "Command"]
