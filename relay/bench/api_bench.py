"""``relay bench api``: API response times with 100,000 vehicles in the registry.

Targets (issue 6): the latest state of a vehicle with p99 under 50 ms; statistics pages
(vehicle list with its count, alarm statistics, hazard lists) under 1 s. A node with the
HTTP API runs on a fresh database filled with N registered vehicles, their latest state
and a year of alarm episodes; requests go over real HTTP on loopback, one at a time.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time

import psycopg
from psycopg import sql

from ..api import hash_token
from ..config import config_from_dict
from ..store.migrate import migrate

TOKEN = "bench-token"


def _fill(dsn: str, vehicles: int) -> None:
    with psycopg.connect(dsn) as conn:
        migrate(conn)
        with conn.transaction():
            conn.execute(
                "INSERT INTO vehicles (vin, sector, region_code, owner, model) SELECT 'LNBSMXAP' || lpad(i::text, 9, '0'), "
                "(ARRAY['bus','taxi','private','logistics','sanitation','private'])[1 + i %% 6], "
                "'3201' || lpad((i %% 12)::text, 2, '0'), 'ENT' || lpad((i %% 40)::text, 2, '0'), 'M' || (i %% 9) "
                "FROM generate_series(0, %s) i", (vehicles - 1,))
            conn.execute(
                "INSERT INTO latest (vin, collected_at, received_at, vehicle_state, charging_state, speed_kmh, "
                "odometer_km, total_voltage_v, total_current_a, soc_pct, position_valid, longitude, latitude, "
                "alarm_level, alarm_flags, moving_at) SELECT 'LNBSMXAP' || lpad(i::text, 9, '0'), "
                "now() - (i %% 200) * interval '1 day', now() - (i %% 200) * interval '1 day', 'started', "
                "'not_charging', (i %% 60), 1000 + i, 600, 10, 50, true, 118.7 + (i %% 1000) / 10000.0, "
                "32.0 + (i %% 900) / 10000.0, i %% 4, '{}', now() - (i %% 50) * interval '1 hour' "
                "FROM generate_series(0, %s) i", (vehicles - 1,))
            conn.execute(
                "INSERT INTO alarms (vin, opened_at, last_seen, closed_at, max_level, flags) "
                "SELECT 'LNBSMXAP' || lpad((i %% %s)::text, 9, '0'), now() - (i %% 365) * interval '1 day', "
                "now() - (i %% 365) * interval '1 day', now() - (i %% 365) * interval '1 day' + interval '5 minutes', "
                "1 + i %% 3, ARRAY['soc_low'] FROM generate_series(0, %s) i", (vehicles, vehicles * 2 - 1))
        with conn.transaction():
            conn.execute("ANALYZE")


async def _measure(reactor, port: int, vehicles: int, requests: int) -> dict:
    from twisted.web.client import Agent, readBody
    from twisted.web.http_headers import Headers

    agent = Agent(reactor)
    headers = Headers({b"authorization": [f"Bearer {TOKEN}".encode()]})

    async def get(path: str) -> float:
        t0 = time.perf_counter()
        resp = await agent.request(b"GET", f"http://127.0.0.1:{port}{path}".encode(), headers)
        await readBody(resp)
        if resp.code != 200:
            raise RuntimeError(f"{path}: HTTP {resp.code}")
        return (time.perf_counter() - t0) * 1000.0

    rng = random.Random(5)
    await get("/api/v1/vehicles/LNBSMXAP000000000")  # warm up
    latest = sorted([await get(f"/api/v1/vehicles/LNBSMXAP{rng.randrange(vehicles):09d}")
                     for _ in range(requests)])
    pages = {
        "vehicles_page": "/api/v1/vehicles?limit=100&offset=5000",
        "vehicles_filtered": "/api/v1/vehicles?sector=bus&online=false&limit=100",
        "alarm_stats_by_level": "/api/v1/alarms/stats?by=level&from=2000-01-01T00:00:00%2B08:00",
        "alarm_stats_by_owner": "/api/v1/alarms/stats?by=owner&from=2000-01-01T00:00:00%2B08:00",
        "offline_hazards": "/api/v1/hazards/offline?limit=100",
        "cluster_hazards": "/api/v1/hazards/clusters",
        "frequent_alarms": "/api/v1/hazards/frequent-alarms?count=2&window_hours=720",
        "node_stats": "/api/v1/stats",
    }
    page_ms = {}
    for name, path in pages.items():
        page_ms[name] = round(max([await get(path) for _ in range(3)]), 1)
    await agent._pool.closeCachedConnections()
    return {"latest_p50_ms": round(latest[len(latest) // 2], 2),
            "latest_p99_ms": round(latest[min(len(latest) - 1, int(len(latest) * 0.99))], 2),
            "stats_pages_max_ms": max(page_ms.values()), "pages_ms": page_ms}


def run(args) -> int:
    vehicles = getattr(args, "vehicles", None) or 100_000
    requests = getattr(args, "requests", None) or 2000
    dsn_base = os.environ.get("RELAY_BENCH_DSN")
    server = None
    if not dsn_base:
        from ..store.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(tempfile.mkdtemp(prefix="relay-bench-api-"))
        dsn_base = server.start()
    name = f"relay_bench_api_{os.getpid()}"
    with psycopg.connect(dsn_base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(dsn_base, dbname=name)
    out: dict = {}
    try:
        t0 = time.perf_counter()
        _fill(dsn, vehicles)
        print(f"filled {vehicles} vehicles in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        from twisted.internet import task
        from twisted.internet.defer import Deferred

        from ..node import Node

        cfg = config_from_dict({"role": "provincial", "node_id": "BENCH", "database": {"dsn": dsn},
                                "log": {"level": "error"},
                                "listeners": {"platforms": {"endpoint": "tcp:0:interface=127.0.0.1"}},
                                "http": {"endpoint": "tcp:0:interface=127.0.0.1",
                                         "tokens": [{"name": "bench", "token_hash": hash_token(TOKEN)}]}})

        async def main(reactor):
            from platforms.provincial import ROLE

            node = Node(reactor, cfg, ROLE, dsn)
            await node.start()
            try:
                out.update(await _measure(reactor, node.port("http"), vehicles, requests))
            finally:
                await node.stop()

        try:
            task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
        except SystemExit as exc:
            if exc.code:
                raise
    finally:
        with psycopg.connect(dsn_base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()
    out.update(vehicles=vehicles, requests=requests, python=sys.version.split()[0])
    print(f"latest state p50 {out['latest_p50_ms']} ms, p99 {out['latest_p99_ms']} ms; "
          f"slowest statistics page {out['stats_pages_max_ms']} ms")
    if getattr(args, "json", False):
        print(json.dumps(out))
    return 0
