"""SIGKILL of each tier in turn, mid-stream, then a restart on the same port and database
(issue #7, "reliability proven"). The city's case is
tests/integration/test_node_processes.py::test_city_killed_mid_stream_and_restarted_province_gets_every_public_frame;
this file kills the enterprise and the province.

Topology (all ``relay run`` processes, one PostgreSQL database each, every port fixed so a
restarted node comes back where its peers dial): simulated terminals -> enterprise ENT01,
which forwards to the city NJ3201 and to the province JS32; the city forwards to the
province too, so the province gets each public frame twice and stores it once
(``frames_dedup``). Private vehicles' frames never leave the enterprise.

Every wait polls with a deadline (``until``); every awaited Deferred has a timeout.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from relay.simulate import VehicleSimulator, make_fleet
from tests.chaos.conftest import (AnswerLog, at_least, count_is, counting_simulator, covered, fleet_rows, rows, scalar,
                                  seed, stored_keys)
from tests.support.counts import DATA, PRIVATE_FRAMES, every_tier_holds_what_was_sent
from tests.support.processes import NodeProcess, stop_all
from tests.support.tiers import (enterprise, free_port, kill_mid_stream, loopback, municipal, node_file, online,
                                 provincial, stop_after_more)
from tests.support.wait import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

TIERS = ("enterprise", "municipal", "provincial")
PUBLIC_DATA = "SELECT count(*) FROM realtime r JOIN vehicles v USING (vin) WHERE v.sector <> 'private'"
LOGOUTS = "SELECT count(*) FROM logins WHERE event = 'logout'"
#: the vehicle frames of public vehicles (logins 0x01, data 0x02/0x03, logouts 0x04), as stored
PUBLIC_FRAMES = ("SELECT f.vin, f.collected_at, f.command, f.digest FROM frames f JOIN vehicles v USING (vin) "
                 "WHERE v.sector <> 'private' AND f.command IN (1, 2, 3, 4)")
#: outbox rows not yet acknowledged by the upstream
BACKLOG = ("SELECT count(*) FROM outbox WHERE upstream = %s AND id > "
           "coalesce((SELECT last_id FROM outbox_cursors WHERE upstream = %s), 0)")


class Tiers:
    """The three nodes on fixed loopback ports, started province first."""

    def __init__(self, make_db, tmp_path, fleet, **terminals) -> None:
        self.dsns = {t: make_db() for t in TIERS}
        for dsn in self.dsns.values():
            seed(dsn, fleet_rows(fleet))
        self.ports = {t: free_port() for t in TIERS}
        self.province = NodeProcess(reactor, "provincial", node_file(
            provincial(self.dsns["provincial"], self.ports["provincial"]), tmp_path, "provincial"))
        self.city = NodeProcess(reactor, "municipal", node_file(
            municipal(self.dsns["municipal"], self.ports["municipal"], self.ports["provincial"]), tmp_path,
            "municipal"))
        self.enterprise = NodeProcess(reactor, "enterprise", node_file(
            enterprise(self.dsns["enterprise"], self.ports["municipal"], self.ports["provincial"],
                       endpoint=loopback(self.ports["enterprise"]), **terminals), tmp_path, "enterprise"))
        #: teardown order: lower tiers first, so they log out of upstreams that still listen
        self.processes = [self.enterprise, self.city, self.province]

    async def start(self, node: NodeProcess) -> None:
        listener = "terminals" if node is self.enterprise else "platforms"
        assert (await node.start())[listener] == self.ports[node.name], node.output()

    async def start_all(self) -> None:
        for node in (self.province, self.city, self.enterprise):
            await self.start(node)
        await self.links_online()

    async def links_online(self) -> None:
        for proc, name in ((self.enterprise, "municipal"), (self.enterprise, "provincial"),
                           (self.city, "provincial")):
            await until(reactor, online(proc, name), 15, what=f"{proc.name} -> {name} online")

    def output(self) -> str:
        return "\n\n".join(p.output(60) for p in self.processes)

    async def stop(self) -> None:
        await stop_all(self.processes)

    @contextlib.asynccontextmanager
    async def running(self):
        """The three nodes started and linked; stopped at the end, their output shown (by
        pytest) when the test fails."""
        try:
            await self.start_all()
            yield self
        except BaseException:
            print(self.output())
            raise
        finally:
            await self.stop()


async def public_frames(dsn: str) -> Counter:
    return Counter((vin, at, command, bytes(digest)) for vin, at, command, digest in await rows(dsn, PUBLIC_FRAMES))


async def backlog(dsn: str, upstream: str) -> int:
    return await scalar(dsn, BACKLOG, upstream, upstream)


async def drained(dsn: str, upstream: str, what: str) -> None:
    """Wait until the outbox for ``upstream`` holds nothing unacknowledged. (The acknowledged
    cursor is saved with the forwarder's next fetch, at the latest by its 5 s poll.)"""
    await until(reactor, lambda: Deferred.fromCoroutine(backlog(dsn, upstream)).addCallback(lambda n: n == 0), 15,
                every=0.1, what=what)


@pytest_twisted.ensureDeferred
async def test_enterprise_killed_mid_stream_and_restarted_upstreams_get_every_public_frame_it_stored(
        make_db, tmp_path, monkeypatch):
    """SIGKILL the enterprise while 10 vehicles send 2 frames/s each, start it again on
    the same port and database; the terminals dial again (``reconnect_delay``), log in
    with their next serial and go on sending.

    The guarantee, exactly: every frame the enterprise *stored* (committed) before or after
    the kill reaches the city and the province if its vehicle is public, once (same
    vehicle, time, command and data unit digest), and never if it is private. Every frame
    a terminal got a success answer for is among the stored ones (answers are sent only
    after the commit). A frame a terminal wrote into the socket of the dying process and
    that was not yet committed is lost: GB/T 32960.3 realtime data (0x02) has no
    acknowledgment the terminal must wait for, so it does not send it again (a terminal
    that keeps unacknowledged frames could send them as reissue 0x03; the simulator does
    not). So the test compares the upstreams with what the enterprise stored, not with
    what the terminals wrote."""
    fleet = make_fleet(10, public_share=0.6, seed=71)
    answers = AnswerLog()
    counting_simulator(monkeypatch, answers)
    tiers = Tiers(make_db, tmp_path, fleet, answer_realtime=True)
    dsns, ent = tiers.dsns, tiers.enterprise
    async with tiers.running():
        sim = VehicleSimulator(reactor, "127.0.0.1", tiers.ports["enterprise"], fleet, interval=0.5,
                               reconnect_delay=0.1)
        running = Deferred.fromCoroutine(sim.run(60.0)).addTimeout(90, reactor)
        await until(reactor, at_least(dsns["provincial"], DATA, 20), 20, every=0.1, what="frames at the province")

        killed = await ent.kill()
        assert killed.signal == 9, ent.output()
        stored_at_kill = await scalar(dsns["enterprise"], DATA)
        await tiers.start(ent)
        await until(reactor, lambda: sim.reconnects == len(fleet), 15, what="every terminal logged in again")
        await until(reactor, at_least(dsns["enterprise"], DATA, stored_at_kill + 2 * len(fleet)), 15, every=0.1,
                    what="frames stored after the restart")
        sim.stop()
        result = await running
        assert (result["login_failures"], result["reconnects"]) == (0, len(fleet)), result

        # each terminal's logout is answered after its batch, and every frame before it on
        # that connection, committed: once all are stored, the enterprise's data is final
        await count_is(dsns["enterprise"], LOGOUTS, len(fleet), "logouts stored by the enterprise")
        stored = await scalar(dsns["enterprise"], DATA)
        sent = result["frames_sent"]
        assert stored <= sent["public"] + sent["private"]
        assert covered(answers.acknowledged, await stored_keys(dsns["enterprise"])), "an acknowledged frame is lost"
        assert sum(answers.acknowledged.values()) > 0
        logins = await rows(dsns["enterprise"], "SELECT vin, array_agg(serial ORDER BY serial) FROM logins "
                                                "WHERE event = 'login' GROUP BY vin")
        assert sorted(logins) == sorted((v.vin, [1, 2]) for v in fleet)

        public_data = await scalar(dsns["enterprise"], PUBLIC_DATA)
        expected = await public_frames(dsns["enterprise"])
        assert public_data > 0 and max(expected.values()) == 1
        for tier in ("municipal", "provincial"):
            await count_is(dsns[tier], DATA, public_data, f"{tier} data frames")
            await count_is(dsns[tier], LOGOUTS, len([v for v in fleet if v.public]), f"{tier} logouts")
            assert await public_frames(dsns[tier]) == expected, tier
            assert await scalar(dsns[tier], PRIVATE_FRAMES) == 0, tier
        for upstream in ("municipal", "provincial"):
            await drained(dsns["enterprise"], upstream, f"enterprise's outbox for {upstream} drained")
        assert not ent.runs[0].has_event("node_stopping")  # the first run really died without a goodbye


@pytest_twisted.ensureDeferred
async def test_province_killed_mid_stream_and_restarted_gets_every_public_frame_from_the_outboxes(
        make_db, tmp_path):
    """SIGKILL the province while 10 vehicles send 2 frames/s each: the enterprise and the
    city keep storing, and the frames for the province wait in both their outboxes. Start
    the province again on the same port and database: both forwarders resume from their
    acknowledged cursors, and the province ends with exactly the public frames sent (each
    arrives twice, from the enterprise and from the city, and is stored once; a frame sent
    again from a cursor that had not yet been saved is stored once too). Nothing here
    is lost: the enterprise stays up, so every frame the terminals sent is stored there."""
    fleet = make_fleet(10, public_share=0.6, seed=72)
    public = [v for v in fleet if v.public]
    tiers = Tiers(make_db, tmp_path, fleet)
    dsns, prov = tiers.dsns, tiers.province
    async with tiers.running():
        sim = VehicleSimulator(reactor, "127.0.0.1", tiers.ports["enterprise"], fleet, interval=0.5)
        running = Deferred.fromCoroutine(sim.run(60.0)).addTimeout(90, reactor)
        await kill_mid_stream(prov, dsns, len(fleet))

        async def both_hold_a_backlog() -> bool:
            return (await backlog(dsns["enterprise"], "provincial")) > 0 \
                and (await backlog(dsns["municipal"], "provincial")) > 0
        await until(reactor, lambda: Deferred.fromCoroutine(both_hold_a_backlog()), 15,
                    what="the enterprise's and the city's outboxes hold frames for the province")

        await tiers.start(prov)
        await stop_after_more(sim, dsns["enterprise"], 2 * len(fleet))
        result = await running
        assert result["login_failures"] == 0
        sent = result["frames_sent"]
        assert sent["public"] > 0 and sent["private"] > 0

        await every_tier_holds_what_was_sent(dsns, sent, len(public))
        assert await scalar(dsns["provincial"], "SELECT count(DISTINCT (vin, collected_at, digest)) FROM frames "
                                                "WHERE command IN (2, 3)") == sent["public"]
        assert await public_frames(dsns["provincial"]) == await public_frames(dsns["enterprise"])
        for tier in ("enterprise", "municipal"):
            await drained(dsns[tier], "provincial", f"{tier}'s outbox for the province drained")
        assert not prov.runs[0].has_event("node_stopping")  # the first run really died without a goodbye
