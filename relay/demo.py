"""``relay demo``: the three tiers, a vehicle fleet and a charging operator, in one process.

One embedded PostgreSQL holds a fresh database per tier. The tiers come from
``relay/demo.yaml``; the fleet's registry is imported into every tier. The simulators
send for ``seconds``, the demo waits until every tier has drained (or a deadline passes),
then measures what each tier stored and the lag from terminal to province, and prints the
summary named in interfaces.md.
"""

from __future__ import annotations

import statistics
from importlib import resources
from pathlib import Path

import psycopg
import structlog
import yaml
from psycopg import sql
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from codec import Edition

from . import registry as registry_mod
from .config import config_from_dict
from .node import Node
from .simulate import VehicleSimulator, _sleep, make_fleet
from .simulate_piles import DEMO_SECRETS, OPERATOR, HttpOperator, PileFleet, run_operator
from .store.embedded import EmbeddedPostgres
from .store.migrate import migrate
from .store.queries import data_frame_count

log = structlog.get_logger("relay.demo")

TIERS = ("enterprise", "municipal", "provincial")


def demo_config_text() -> str:
    return resources.files("relay").joinpath("demo.yaml").read_text(encoding="utf-8")


def _fresh_databases(base_dsn: str, names: list[str]) -> dict[str, str]:
    out = {}
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            out[name] = psycopg.conninfo.make_conninfo(base_dsn, dbname=name)
    return out


def _seed(dsn: str, rows: list[tuple]) -> None:
    with psycopg.connect(dsn) as conn:
        migrate(conn)
        registry_mod.upsert(conn, rows)


def _fill(value, ports: dict):
    if isinstance(value, str):
        return value.format(**ports) if "{" in value else value
    if isinstance(value, dict):
        return {k: _fill(v, ports) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ports) for v in value]
    return value


def _count_data(conn) -> tuple[int, int]:
    return data_frame_count(conn), data_frame_count(conn, private=True)


def _pile_messages(conn) -> int:
    with conn.transaction():
        return conn.execute("SELECT count(*) FROM frames WHERE command BETWEEN 193 AND 197 "
                            "AND response = 254").fetchone()[0]


def _arrivals(conn) -> list[tuple]:
    with conn.transaction():
        return conn.execute("SELECT vin, collected_at, received_at FROM frames WHERE command IN (2, 3)").fetchall()


class Demo:
    def __init__(self, reactor, data_dir: Path) -> None:
        self.reactor = reactor
        self.data_dir = data_dir
        self.threads = ThreadPool(minthreads=0, maxthreads=2, name="relay-demo")
        self.embedded: EmbeddedPostgres | None = None
        self.nodes: dict[str, Node] = {}

    def thread(self, fn, *args) -> Deferred:
        return deferToThreadPool(self.reactor, self.threads, fn, *args)

    async def start(self, fleet_rows: list[tuple]) -> None:
        self.threads.start()
        self.embedded = EmbeddedPostgres(self.data_dir / "pg")
        base = await self.thread(self.embedded.start)
        dsns = await self.thread(_fresh_databases, base, [f"relay_demo_{t}" for t in TIERS])
        raw = yaml.safe_load(demo_config_text())
        ports: dict[str, int] = {}
        for tier in reversed(TIERS):  # the province first, so links find their peers listening
            dsn = dsns[f"relay_demo_{tier}"]
            await self.thread(_seed, dsn, fleet_rows)
            cfg = config_from_dict(_fill(raw[tier], ports), f"relay/demo.yaml:{tier}",
                                   overrides={"database": {"dsn": dsn}})
            role = __import__(f"platforms.{tier}", fromlist=["ROLE"]).ROLE
            node = Node(self.reactor, cfg, role, dsn)
            self.nodes[tier] = node
            await node.start()
            if tier != "enterprise":
                ports[f"{tier}_port"] = node.port("platforms")

    async def stop(self) -> None:
        for tier in TIERS:  # enterprise first: it logs out of its upstreams while they still listen
            node = self.nodes.pop(tier, None)
            if node is not None:
                await node.stop()
        if self.embedded is not None:
            await self.thread(self.embedded.stop)
        self.threads.stop()

    async def counts(self) -> dict[str, tuple[int, int]]:
        out = {}
        for tier, node in self.nodes.items():
            out[tier] = await node.pool.run(_count_data)
        return out

    async def piles(self) -> dict[str, int]:
        return {tier: await node.pool.run(_pile_messages) for tier, node in self.nodes.items()}

    async def drain(self, expect: dict[str, int], piles: int, deadline: float):
        """Wait until each tier holds the expected data frames and pile messages, or the
        deadline passes."""
        end = self.reactor.seconds() + deadline
        while True:
            counts = await self.counts()
            pile_counts = await self.piles()
            done = all(counts[t][0] >= expect[t] for t in TIERS) and \
                all(pile_counts[t] >= piles for t in ("municipal", "provincial"))
            if done or self.reactor.seconds() >= end:
                return counts, pile_counts
            await _sleep(self.reactor, 0.25)


async def run_demo(reactor, *, seconds: float, vehicles: int, piles: int, data_dir: Path, protocol: str = "2016",
                   interval: float = 1.0) -> dict:
    fleet = make_fleet(vehicles, public_share=0.6, seed=7)
    rows = [(v.vin, v.sector, v.region_code, v.owner, "SIM-EV", "") for v in fleet]
    demo = Demo(reactor, data_dir)
    try:
        await demo.start(rows)
        sim = VehicleSimulator(reactor, "127.0.0.1", demo.nodes["enterprise"].port("terminals"), fleet,
                               interval=interval, edition=Edition(protocol))
        vehicles_done = Deferred.fromCoroutine(sim.run(seconds))
        pile_result = {"messages_sent": 0}
        if piles > 0:
            operator = HttpOperator(reactor, f"http://127.0.0.1:{demo.nodes['municipal'].port('charging')}/evcs/v1.0",
                                    OPERATOR, DEMO_SECRETS)
            pile_result = await run_operator(reactor, operator, PileFleet.make(piles), seconds, max(1.0, interval))
        result = await vehicles_done
        sent = result["frames_sent"]
        total = sent["public"] + sent["private"]
        pile_sent = pile_result["messages_sent"]
        counts, pile_counts = await demo.drain({"enterprise": total, "municipal": sent["public"],
                                                "provincial": sent["public"]}, pile_sent, deadline=max(30.0, seconds))
        arrivals = await demo.nodes["provincial"].pool.run(_arrivals)
        lags = sorted(1000.0 * (received.timestamp() - sim.sent_at[(vin, collected)])
                      for vin, collected, received in arrivals if (vin, collected) in sim.sent_at)
        summary = {
            "vehicles": result["vehicles"],
            "frames_sent": sent,
            "frames_stored": {t: counts[t][0] for t in TIERS},
            "private_frames_upstream": {"municipal": counts["municipal"][1], "provincial": counts["provincial"][1]},
            "pile_messages": {"sent": pile_sent, "municipal": pile_counts["municipal"],
                              "provincial": pile_counts["provincial"]},
            "lag_ms": {"p50": round(statistics.median(lags), 1) if lags else None,
                       "p99": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 1) if lags else None},
        }
        ok = (counts["enterprise"][0] == total and counts["municipal"][0] == sent["public"]
              and counts["provincial"][0] == sent["public"] and counts["municipal"][1] == 0
              and counts["provincial"][1] == 0 and pile_counts["municipal"] == pile_sent
              and pile_counts["provincial"] == pile_sent)
        log.info("demo_finished", ok=ok, **{k: v for k, v in summary.items() if k != "lag_ms"})
        return {"summary": summary, "ok": ok}
    finally:
        await demo.stop()
