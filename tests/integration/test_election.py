"""Two enterprise nodes on one database (behind a load balancer): exactly one forwards to
each upstream at a time, and the other takes over when it stops; nothing is lost."""

from __future__ import annotations

import psycopg
import pytest_twisted
from twisted.internet import reactor

from relay import registry
from relay.node import Node
from tests.support.fixtures import T0, data_frame, login_frame
from tests.support.nodes import ENT01_HASH, connect, enterprise_config, platform_config, start, upstream
from tests.support.wait import sleep, until

VINS = ["LNBSMXEL000000001", "LNBSMXEL000000002"]


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM realtime").fetchone()[0]


@pytest_twisted.ensureDeferred
async def test_one_forwarder_per_upstream_among_nodes_sharing_a_database(make_db, monkeypatch):
    monkeypatch.setattr(Node, "ELECTION_RETRY", 0.2)
    ent_db, city_db = make_db(), make_db()
    rows = [(v, "bus", "320100", "ENT01", "", "") for v in VINS]
    for dsn in (ent_db, city_db):
        with psycopg.connect(dsn) as conn:
            registry.upsert(conn, rows)
    city = await start(reactor, platform_config("municipal", "NJ3201", city_db, region="3201", accounts=[
        {"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"]}]))
    up = [upstream("municipal", city.port("platforms"), "ent01", "ent01-demo", "ENT01", regions=["3201"])]
    a = await start(reactor, enterprise_config(ent_db, up, answer_realtime=True))
    b = await start(reactor, dict(enterprise_config(ent_db, up, answer_realtime=True), node_id="ENT01B"))
    nodes = [a, b]
    try:
        await until(reactor, lambda: any(n.links["municipal"].state == "online" for n in nodes), what="a leader")
        leader, standby = (a, b) if a.links["municipal"].state == "online" else (b, a)
        # a negative claim needs time to pass: five election rounds, and the standby never logs in
        await sleep(reactor, 5 * Node.ELECTION_RETRY)
        assert standby.links["municipal"].state == "offline" and len(city.platforms.sessions) == 1

        # each node takes one vehicle's frames; the leader forwards both (the outbox is shared)
        clients = [await connect(reactor, n.port("terminals")) for n in (leader, standby)]
        for client, vin in zip(clients, VINS):
            client.send(login_frame(vin), *[data_frame(vin, T0.replace(second=s)) for s in range(1, 4)])
        for client in clients:
            await client.answers(reactor, 4)
        await until(reactor, lambda: _count(city_db) == 6, what="6 frames at the city")

        await leader.stop()
        nodes.remove(leader)
        await until(reactor, lambda: standby.links["municipal"].state == "online", timeout=15, what="take-over")
        clients[1].send(*[data_frame(VINS[1], T0.replace(minute=1, second=s)) for s in range(3)])
        await clients[1].answers(reactor, 4 + 3)
        await until(reactor, lambda: _count(city_db) == 9, what="9 frames at the city")
        await clients[1].close()
    finally:
        for n in nodes:
            await n.stop()
        await city.stop()
