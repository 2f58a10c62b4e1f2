"""Three tiers as real ``relay run --config FILE`` processes (YAML configs in tmp_path, one
PostgreSQL database each), driven by the in-process vehicle simulator: a city node killed
with SIGKILL mid-stream and restarted loses nothing; SIGTERM makes a node log out of its
upstreams and exit 0.

Each process is ready when it logs ``node_ready`` (the listener ports are read from that
line); every wait has a deadline."""

from __future__ import annotations

import json

import psycopg
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from relay import registry
from relay.simulate import VehicleSimulator, make_fleet
from tests.support.counts import at_least, every_tier_holds_what_was_sent, rows, scalar
from tests.support.processes import NodeProcess, run_command, stop_all
from tests.support.tiers import (enterprise, free_port, kill_mid_stream, municipal, node_file, online, provincial,
                                 stop_after_more)
from tests.support.wait import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]



# --- helpers ----------------------------------------------------------------------------------

def seed(dsn: str, entries: list[tuple]) -> None:
    with psycopg.connect(dsn) as conn:
        registry.upsert(conn, entries)


# --- the tests -----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_city_killed_mid_stream_and_restarted_province_gets_every_public_frame(make_db, tmp_path):
    """enterprise -> city -> province, all processes. SIGKILL the city while vehicles send,
    start it again on the same port and database: the city and the province end with
    exactly the public frames, the enterprise with all of them."""
    fleet = make_fleet(10, public_share=0.6, seed=8)
    public = [v for v in fleet if v.public]
    entries = [(v.vin, v.sector, v.region_code, v.owner, "SIM-EV", "") for v in fleet]
    dsns = {t: make_db() for t in ("enterprise", "municipal", "provincial")}
    for dsn in dsns.values():
        seed(dsn, entries)
    prov = NodeProcess(reactor, "provincial", node_file(provincial(dsns["provincial"]), tmp_path, "provincial"))
    procs = [prov]
    try:
        prov_port = (await prov.start())["platforms"]
        muni_port = free_port()
        muni = NodeProcess(reactor, "municipal", node_file(municipal(dsns["municipal"], muni_port, prov_port),
                                                           tmp_path, "municipal"))
        procs.insert(0, muni)
        assert (await muni.start())["platforms"] == muni_port
        ent = NodeProcess(reactor, "enterprise", node_file(enterprise(dsns["enterprise"], muni_port), tmp_path,
                                                           "enterprise"))
        procs.insert(0, ent)
        terminals = (await ent.start())["terminals"]
        await until(reactor, online(ent, "municipal"), 15, what="enterprise -> city link")

        sim = VehicleSimulator(reactor, "127.0.0.1", terminals, fleet, interval=0.5)
        running = Deferred.fromCoroutine(sim.run(60.0)).addTimeout(90, reactor)
        # the enterprise goes on storing; the frames for the city wait in its outbox
        await kill_mid_stream(muni, dsns, len(fleet))
        assert (await muni.start())["platforms"] == muni_port
        await stop_after_more(sim, dsns["enterprise"], 2 * len(fleet))
        result = await running
        assert result["login_failures"] == 0
        sent = result["frames_sent"]
        assert sent["public"] > 0 and sent["private"] > 0

        await every_tier_holds_what_was_sent(dsns, sent, len(public))
        public_frames = sent["public"] + 2 * len(public)  # with each vehicle's login and logout
        for tier in ("municipal", "provincial"):  # and nothing else: no frame of another kind
            assert await scalar(dsns[tier], "SELECT count(*) FROM frames") == public_frames, tier
        assert await scalar(dsns["provincial"], "SELECT count(DISTINCT (vin, collected_at, digest)) FROM frames "
                                                "WHERE command IN (2, 3)") == sent["public"]
        assert not muni.runs[0].has_event("node_stopping")  # the first run really died without a goodbye
    finally:
        await stop_all(procs)


@pytest_twisted.ensureDeferred
async def test_sigterm_logs_out_of_every_upstream_and_exits_zero(make_db, tmp_path):
    """SIGTERM the enterprise (two upstreams), then the city (one): each logs out of its
    upstreams, which audit the logout, and exits with status 0."""
    dsns = {t: make_db() for t in ("enterprise", "municipal", "provincial")}
    prov = NodeProcess(reactor, "provincial", node_file(provincial(dsns["provincial"]), tmp_path, "provincial"))
    procs = [prov]
    try:
        prov_port = (await prov.start())["platforms"]
        muni_port = free_port()
        muni = NodeProcess(reactor, "municipal", node_file(municipal(dsns["municipal"], muni_port, prov_port),
                                                           tmp_path, "municipal"))
        procs.insert(0, muni)
        await muni.start()
        ent = NodeProcess(reactor, "enterprise", node_file(enterprise(dsns["enterprise"], muni_port, prov_port),
                                                           tmp_path, "enterprise"))
        procs.insert(0, ent)
        await ent.start()
        for proc, name in ((ent, "municipal"), (ent, "provincial"), (muni, "provincial")):
            await until(reactor, online(proc, name), 15, what=f"{proc.name} -> {name} online")

        logouts = "SELECT actor FROM audit WHERE action = 'platform_logout' AND result = 'accepted' ORDER BY id"
        ended = await ent.terminate()
        assert (ended.code, ended.signal) == (0, None), ent.output()
        assert ent.proto.has_event("upstream_logout", upstream="municipal"), ent.output()
        assert ent.proto.has_event("upstream_logout", upstream="provincial"), ent.output()
        assert ent.proto.has_event("node_stopped")
        await until(reactor, at_least(dsns["municipal"], "SELECT count(*) FROM audit WHERE action = "
                                                         "'platform_logout'", 1), 10, what="logout audited by the city")
        assert await rows(dsns["municipal"], logouts) == [("ent01",)]

        ended = await muni.terminate()
        assert (ended.code, ended.signal) == (0, None), muni.output()
        assert muni.proto.has_event("upstream_logout", upstream="provincial"), muni.output()
        await until(reactor, at_least(dsns["provincial"], "SELECT count(*) FROM audit WHERE action = "
                                                          "'platform_logout'", 2), 10,
                    what="both logouts audited by the province")
        assert sorted(await rows(dsns["provincial"], logouts)) == [("ent01",), ("nanjing",)]

        ended = await prov.terminate()
        assert (ended.code, ended.signal) == (0, None), prov.output()
    finally:
        await stop_all(procs)


@pytest_twisted.ensureDeferred
async def test_relay_stats_json_prints_the_counts(db_dsn, tmp_path):
    """``relay stats --json`` prints one JSON object and exits 0.

    (Regression: unregistered_frames was a Decimal, json.dumps failed, exit status 1.)"""
    config = node_file(enterprise(db_dsn, 9), tmp_path, "enterprise")
    ended, out, err = await run_command(reactor, ["stats", "--config", str(config), "--json"], tmp_path)
    assert ended.code == 0, err
    stats = json.loads(out)
    assert stats["vehicles"]["unregistered_frames"] == 0
    assert stats["node"] == "ENT01"
