"""Three real nodes on loopback, each with its own PostgreSQL database: an enterprise node
that vehicle terminals log in to, a municipal node (Nanjing, region 3201) and a provincial
node (Jiangsu, 32). The enterprise forwards its public-sector vehicles to both; the city
forwards to the province, which therefore hears every public frame twice and keeps it once.

Every count is exact and every wait has a deadline (``tests.support.wait.until``)."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import pytest_twisted
from structlog.testing import capture_logs
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

import codec
from codec import Command, Edition, Encryption, Frame, FrameReader, Response
from relay import registry
from relay.simulate import VehicleSimulator, make_fleet
from relay.store.queries import stats
from tests.support.fixtures import T0, data_frame, login_frame, logout_frame
from tests.support.nodes import (ENT01_HASH, NANJING_HASH, ScriptedClient, connect, enterprise_config, platform_config,
                                 start, upstream)
from tests.support.tiers import stop_after_more
from tests.support.wait import until

pytestmark = pytest.mark.timeout(120)

#: collection-time order of the scripted frames (the simulator's clock is the reactor's)
STEP = timedelta(seconds=10)


# --- helpers --------------------------------------------------------------------------------

def within(d: Deferred, seconds: float = 30.0) -> Deferred:
    """``d`` with a deadline: every Deferred a test awaits gets one."""
    return d.addTimeout(seconds, reactor)


def _query(dsn: str, sql: str, args: tuple) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


async def rows(dsn: str, sql: str, *args) -> list[tuple]:
    """Run a query off the reactor thread, so the nodes keep running while the test looks."""
    return await within(deferToThread(_query, dsn, sql, args))


async def scalar(dsn: str, sql: str, *args):
    return (await rows(dsn, sql, *args))[0][0]


async def node_stats(dsn: str) -> dict:
    def run():
        with psycopg.connect(dsn) as conn:
            return stats(conn)

    return await within(deferToThread(run))


def seed(dsn: str, entries: list[tuple]) -> None:
    """The node's vehicle registry (before the node starts: it loads it at start)."""
    with psycopg.connect(dsn) as conn:
        registry.upsert(conn, entries)


def fleet_rows(fleet) -> list[tuple]:
    return [(v.vin, v.sector, v.region_code, v.owner, "SIM-EV", "") for v in fleet]


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound once by the kernel, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DATA = "SELECT count(*) FROM realtime"
PRIVATE_DATA = "SELECT count(*) FROM realtime r JOIN vehicles v USING (vin) WHERE v.sector = 'private'"
PRIVATE_FRAMES = "SELECT count(*) FROM frames f JOIN vehicles v USING (vin) WHERE v.sector = 'private'"
DATA_FRAMES = "SELECT count(*) FROM frames WHERE command IN (2, 3)"


async def count_is(dsn: str, sql: str, expected: int, what: str, *args, timeout: float = 30.0) -> None:
    """Wait until ``sql`` counts ``expected`` rows, then check it does not overshoot."""
    await until(reactor, lambda: Deferred.fromCoroutine(scalar(dsn, sql, *args)).addCallback(
        lambda n: n >= expected), timeout, every=0.1, what=what)
    assert await scalar(dsn, sql, *args) == expected, what


def provincial_config(dsn: str, **kw) -> dict:
    return platform_config("provincial", "JS32", dsn, region="32", accounts=[
        {"username": "nanjing", "password_hash": NANJING_HASH, "allowed_owners": ["ENT01"]},
        {"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"]}], **kw)


def municipal_config(dsn: str, provincial_port: int | None = None, **kw) -> dict:
    ups = [upstream("provincial", provincial_port, "nanjing", "nanjing-demo", "NJ3201", regions=["32"])] \
        if provincial_port else []
    return platform_config("municipal", "NJ3201", dsn, region="3201", upstreams=ups, accounts=[
        {"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"]}], **kw)


def to_municipal(port: int, **extra) -> dict:
    return upstream("municipal", port, "ent01", "ent01-demo", "ENT01", regions=["3201"], **extra)


def to_provincial(port: int, **extra) -> dict:
    return upstream("provincial", port, "ent01", "ent01-demo", "ENT01", regions=["32"], **extra)


class Tiers:
    """Nodes started by a test, stopped at its end (enterprise first, so it logs out of
    upstreams that still listen)."""

    def __init__(self) -> None:
        self.nodes: dict = {}

    async def start(self, name: str, raw: dict):
        node = await within(Deferred.fromCoroutine(start(reactor, raw)))
        self.nodes[name] = node
        return node

    async def stop(self, name: str) -> None:
        node = self.nodes.pop(name)
        await within(node.stop())

    async def stop_all(self) -> None:
        for name in ("enterprise", "municipal", "provincial"):
            if name in self.nodes:
                await self.stop(name)


async def run_fleet(port: int, fleet, seconds: float, interval: float = 1.0) -> dict:
    sim = VehicleSimulator(reactor, "127.0.0.1", port, fleet, interval=interval)
    result = await within(Deferred.fromCoroutine(sim.run(seconds)), seconds + 30)
    assert result["login_failures"] == 0
    return result


async def client_of(port: int) -> ScriptedClient:
    """A scripted terminal or platform connected to ``port``."""
    return await within(Deferred.fromCoroutine(connect(reactor, port)), 10)


async def hang_up(client: ScriptedClient) -> None:
    await within(Deferred.fromCoroutine(client.close()), 10)


class ScriptedUpstream(protocol.Protocol):
    """A higher platform played by the test: accepts the platform login, records every frame
    in order, and answers heartbeats and data frames with ``answers`` (None: no answer) and
    the logout only if ``answer_logout``."""

    def __init__(self, server: "ScriptedUpstreamServer") -> None:
        self.server = server
        self.reader = FrameReader()

    def dataReceived(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            assert isinstance(frame, Frame), frame
            self.server.received.append(frame)
            now = datetime.fromtimestamp(reactor.seconds(), timezone.utc)
            if frame.command == Command.PLATFORM_LOGIN:
                response = Response.SUCCESS
            elif frame.command == Command.PLATFORM_LOGOUT:
                response = Response.SUCCESS if self.server.answer_logout else None
            else:
                response = self.server.answers
            if response is not None:
                self.transport.write(codec.encode_frame(codec.answer(frame, response, now)))


class ScriptedUpstreamServer(protocol.Factory):
    noisy = False

    def __init__(self, answers: int | None = None, answer_logout: bool = True) -> None:
        self.answers = answers
        self.answer_logout = answer_logout
        self.received: list[Frame] = []
        self.listening = None

    def buildProtocol(self, addr):
        return ScriptedUpstream(self)

    def listen(self) -> int:
        self.listening = reactor.listenTCP(0, self, interface="127.0.0.1")
        return self.listening.getHost().port

    def commands(self) -> list[int]:
        return [f.command for f in self.received]

    async def stop(self) -> None:
        if self.listening is not None:
            await within(self.listening.stopListening(), 10)


def platform_login(username: str, password: str, serial: int = 1) -> Frame:
    return Frame(Edition.V2016, Command.PLATFORM_LOGIN, Response.COMMAND, "ENT01", Encryption.NONE,
                 codec.PlatformLogin(T0, serial, username, password, 1))


def heartbeat() -> Frame:
    return Frame(Edition.V2016, Command.HEARTBEAT, Response.COMMAND, "ENT01", Encryption.NONE, None)


# --- the tests -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_public_frames_reach_city_and_province_once_and_private_frames_stay_home(make_db):
    """Mixed fleet through three tiers: the enterprise keeps every frame; the city and the
    province hold exactly the public ones; the province hears each twice and stores it once."""
    fleet = make_fleet(15, public_share=0.6, seed=3)
    public = [v for v in fleet if v.public]
    entries = fleet_rows(fleet)
    dsns = {t: make_db() for t in ("enterprise", "municipal", "provincial")}
    for dsn in dsns.values():
        seed(dsn, entries)
    tiers = Tiers()
    try:
        prov = await tiers.start("provincial", provincial_config(dsns["provincial"]))
        muni = await tiers.start("municipal", municipal_config(dsns["municipal"], prov.port("platforms")))
        ent = await tiers.start("enterprise", enterprise_config(dsns["enterprise"], upstreams=[
            to_municipal(muni.port("platforms")), to_provincial(prov.port("platforms"))]))

        result = await run_fleet(ent.port("terminals"), fleet, seconds=4.0, interval=1.0)
        sent = result["frames_sent"]
        assert sent["public"] >= 3 * len(public) and sent["private"] >= 3 * (len(fleet) - len(public))

        await count_is(dsns["enterprise"], DATA, sent["public"] + sent["private"], "enterprise data frames")
        await count_is(dsns["municipal"], DATA, sent["public"], "municipal data frames")
        await count_is(dsns["provincial"], DATA, sent["public"], "provincial data frames")
        # every public frame (login, data, logout) went up both paths; the province stored it once
        public_frames = sent["public"] + 2 * len(public)
        await until(reactor, lambda: prov.writer.stored + prov.writer.duplicates >= 2 * public_frames, 30,
                    what="both copies of each public frame at the province")
        assert (prov.writer.stored, prov.writer.duplicates) == (public_frames, public_frames)

        for tier in ("municipal", "provincial"):
            assert await scalar(dsns[tier], PRIVATE_DATA) == 0, tier
            assert await scalar(dsns[tier], PRIVATE_FRAMES) == 0, tier
            assert await scalar(dsns[tier], "SELECT count(*) FROM frames") == public_frames, tier
        assert await scalar(dsns["provincial"], DATA_FRAMES) == sent["public"]
        assert await scalar(dsns["enterprise"], PRIVATE_DATA) == sent["private"]
        # the province's frames came from both lower platforms
        peers = dict(await rows(dsns["provincial"], "SELECT peer, count(*) FROM frames GROUP BY peer"))
        assert set(peers) <= {"platform:ent01", "platform:nanjing"} and sum(peers.values()) == public_frames
        # nothing waits to go anywhere (each forwarder saves its acknowledged cursor within
        # save_delay), and what went out was realtime (fresh)
        for tier in ("enterprise", "municipal"):
            async def drained(tier=tier) -> bool:
                return all(b["backlog"] == 0 for b in (await node_stats(dsns[tier]))["outbox"].values())
            await until(reactor, lambda: Deferred.fromCoroutine(drained()), 10, what=f"{tier}'s outbox drained")
        assert await scalar(dsns["provincial"], "SELECT count(*) FROM realtime WHERE reissue") == 0
        assert ent.forwarders["municipal"].sent_reissue == ent.forwarders["provincial"].sent_reissue == 0
    finally:
        await tiers.stop_all()


@pytest_twisted.ensureDeferred
async def test_backlog_of_an_upstream_that_was_down_arrives_as_reissue_in_order(make_db):
    """The city is not listening while vehicles send; when it comes up on the configured
    port it receives the backlog in collection-time order, as reissue (0x03), and later
    frames as realtime (0x02)."""
    vin = "LNBSMX03000000001"
    entries = [(vin, "bus", "320100", "ENT01", "SIM-EV", "")]
    ent_db, muni_db = make_db(), make_db()
    seed(ent_db, entries)
    seed(muni_db, entries)
    port = free_port()
    window = 3.0  # long enough that a fresh frame is never late on a loaded machine
    tiers = Tiers()
    try:
        ent = await tiers.start("enterprise", enterprise_config(ent_db, upstreams=[
            to_municipal(port, realtime_window=window)]))
        terminal = await client_of(ent.port("terminals"))
        terminal.send(login_frame(vin))
        await terminal.answers(reactor, 1)
        backlog = [data_frame(vin, T0 + (i + 1) * STEP) for i in range(8)]
        terminal.send(*backlog)
        await count_is(ent_db, DATA, len(backlog), "backlog stored at the enterprise")
        assert ent.links["municipal"].state == "connecting"
        newest = await scalar(ent_db, "SELECT max(received_at) FROM frames")
        # the backlog is older than the real-time window when the city comes up
        await until(reactor, lambda: reactor.seconds() - newest.timestamp() > window + 0.1, window + 5,
                    what="backlog older than the real-time window")

        await tiers.start("municipal", municipal_config(muni_db, endpoint=f"tcp:{port}:interface=127.0.0.1"))
        await count_is(muni_db, DATA, len(backlog), "backlog at the city")
        got = await rows(muni_db, "SELECT f.collected_at, f.received_at, r.reissue FROM realtime r "
                                  "JOIN frames f ON f.id = r.frame_id ORDER BY f.id")
        assert [c for c, _, _ in got] == [f.body.collected_at for f in backlog]  # arrival order = collection order
        received = [r for _, r, _ in got]
        assert received == sorted(received)
        assert [re for _, _, re in got] == [True] * len(backlog)
        assert await scalar(muni_db, "SELECT count(*) FROM frames WHERE command = 3") == len(backlog)
        assert ent.forwarders["municipal"].sent_reissue == len(backlog)

        # the link is up now: new frames are fresh and go out as realtime
        await until(reactor, lambda: ent.links["municipal"].state == "online", 10, what="link online")
        fresh = [data_frame(vin, T0 + (len(backlog) + i + 1) * STEP) for i in range(3)]
        terminal.send(*fresh, logout_frame(vin, T0 + 20 * STEP))
        await count_is(muni_db, DATA, len(backlog) + len(fresh), "fresh frames at the city")
        assert await scalar(muni_db, "SELECT count(*) FROM realtime WHERE NOT reissue") == len(fresh)
        assert await scalar(muni_db, "SELECT count(*) FROM realtime WHERE reissue AND collected_at > %s",
                            backlog[-1].body.collected_at) == 0
        await hang_up(terminal)
    finally:
        await tiers.stop_all()


@pytest_twisted.ensureDeferred
async def test_city_stopped_mid_stream_and_restarted_loses_nothing(make_db):
    """enterprise -> city -> province only: the city stops while vehicles send and comes back
    on the same port and database; the province ends with every public frame, once."""
    fleet = make_fleet(10, public_share=0.6, seed=4)
    public = [v for v in fleet if v.public]
    entries = fleet_rows(fleet)
    dsns = {t: make_db() for t in ("enterprise", "municipal", "provincial")}
    for dsn in dsns.values():
        seed(dsn, entries)
    tiers = Tiers()
    try:
        prov = await tiers.start("provincial", provincial_config(dsns["provincial"]))
        muni = await tiers.start("municipal", municipal_config(dsns["municipal"], prov.port("platforms")))
        muni_port = muni.port("platforms")
        ent = await tiers.start("enterprise", enterprise_config(dsns["enterprise"], upstreams=[
            to_municipal(muni_port)]))

        sim = VehicleSimulator(reactor, "127.0.0.1", ent.port("terminals"), fleet, interval=0.5)
        running = within(Deferred.fromCoroutine(sim.run(60.0)), 90)
        await until(reactor, lambda: Deferred.fromCoroutine(scalar(dsns["provincial"], DATA)).addCallback(
            lambda n: n >= 5), 15, what="public frames flowing to the province")
        await tiers.stop("municipal")
        at_stop = await scalar(dsns["enterprise"], DATA)
        # the enterprise keeps storing while the city is away: a backlog builds up
        await until(reactor, lambda: Deferred.fromCoroutine(scalar(dsns["enterprise"], DATA)).addCallback(
            lambda n: n >= at_stop + 2 * len(fleet)), 15, what="frames stored while the city is down")
        await tiers.start("municipal", municipal_config(dsns["municipal"], prov.port("platforms"),
                                                        endpoint=f"tcp:{muni_port}:interface=127.0.0.1"))
        await stop_after_more(sim, dsns["enterprise"], 2 * len(fleet))
        result = await running
        assert result["login_failures"] == 0
        sent = result["frames_sent"]

        await count_is(dsns["enterprise"], DATA, sent["public"] + sent["private"], "enterprise data frames")
        await count_is(dsns["municipal"], DATA, sent["public"], "municipal data frames")
        await count_is(dsns["provincial"], DATA, sent["public"], "provincial data frames")
        public_frames = sent["public"] + 2 * len(public)
        for tier in ("municipal", "provincial"):
            assert await scalar(dsns[tier], "SELECT count(*) FROM frames") == public_frames, tier
            assert await scalar(dsns[tier], PRIVATE_FRAMES) == 0, tier
        # each (vin, collection time, data) is there exactly once
        assert await scalar(dsns["provincial"], "SELECT count(*) FROM (SELECT vin, kind, collected_at, digest "
                                                "FROM frames GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d") == 0
    finally:
        await tiers.stop_all()


@pytest_twisted.ensureDeferred
async def test_link_to_a_stopped_city_leaves_the_online_state(make_db):
    """When the city stops, the enterprise's link to it notices: it is no longer online and
    has no protocol; when the city is back on the same port, the link logs in again.

    (Regression: the link once kept ClientService's protocol proxy and compared it with the
    protocol that lost its connection, so it stayed 'online' with a dead connection.)"""
    vin = "LNBSMX07000000001"
    entries = [(vin, "bus", "320100", "ENT01", "SIM-EV", "")]
    ent_db, muni_db = make_db(), make_db()
    seed(ent_db, entries)
    seed(muni_db, entries)
    tiers = Tiers()
    try:
        muni = await tiers.start("municipal", municipal_config(muni_db))
        ent = await tiers.start("enterprise", enterprise_config(ent_db, upstreams=[
            to_municipal(muni.port("platforms"))]))
        link = ent.links["municipal"]
        await until(reactor, lambda: link.state == "online", 10, what="link online")
        port = muni.port("platforms")
        await tiers.stop("municipal")
        await until(reactor, lambda: link.state != "online", 5, what="the link to leave 'online'")
        assert link.proto is None
        logins = link.logins
        await tiers.start("municipal", municipal_config(muni_db, endpoint=f"tcp:{port}:interface=127.0.0.1"))
        await until(reactor, lambda: link.state == "online", 10, what="the link back online")
        assert link.logins == logins + 1
    finally:
        await tiers.stop_all()


@pytest_twisted.ensureDeferred
async def test_nothing_is_forwarded_after_the_platform_logout(make_db):
    """A city stopping with frames still in its writer: the platform logout is the last
    thing it sends to the province (what it could not send stays in its outbox).

    (Regression: the link used to stop before its forwarder, which went on writing after
    the logout; the province refused those frames.)"""
    vin = "LNBSMX09000000001"
    dsn = make_db()
    seed(dsn, [(vin, "bus", "320100", "ENT01", "SIM-EV", "")])
    province = ScriptedUpstreamServer(answers=None, answer_logout=False)  # slow to answer the logout
    tiers = Tiers()
    try:
        raw = municipal_config(dsn, province.listen())
        raw["database"]["batch_interval_ms"] = 1000  # the frames wait in the writer while the city stops
        muni = await tiers.start("municipal", raw)
        await until(reactor, lambda: muni.links["provincial"].state == "online", 10, what="link to the province")
        client = await client_of(muni.port("platforms"))
        client.send(platform_login("ent01", "ent01-demo"))
        await client.answers(reactor, 1)
        client.send(*[data_frame(vin, T0 + (i + 1) * STEP) for i in range(3)])
        await until(reactor, lambda: muni.platforms.frames_in >= 4, 5, what="the frames received by the city")
        await tiers.stop("municipal")
        commands = province.commands()
        assert Command.PLATFORM_LOGOUT in commands
        after = commands[commands.index(Command.PLATFORM_LOGOUT) + 1:]
        assert after == [], f"sent after the logout: {after}"
        # the three frames wait in the outbox for the next start
        assert (await node_stats(dsn))["outbox"]["provincial"]["backlog"] == 3
    finally:
        await tiers.stop_all()
        await province.stop()


@pytest_twisted.ensureDeferred
async def test_a_refused_heartbeat_acknowledges_nothing(make_db):
    """An upstream that answers the data frames and the heartbeat after them with an error
    (as a platform does for a session it does not count as logged in) has not stored them:
    they stay in the outbox.

    (Regression: any heartbeat answer, error included, used to acknowledge the rows before
    it, and the refused frames were deleted from the outbox.)"""
    vin = "LNBSMX09000000002"
    dsn = make_db()
    seed(dsn, [(vin, "bus", "320100", "ENT01", "SIM-EV", "")])
    province = ScriptedUpstreamServer(answers=Response.ERROR)
    tiers = Tiers()
    try:
        muni = await tiers.start("municipal", municipal_config(dsn, province.listen()))
        await until(reactor, lambda: muni.links["provincial"].state == "online", 10, what="link to the province")
        client = await client_of(muni.port("platforms"))
        client.send(platform_login("ent01", "ent01-demo"))
        await client.answers(reactor, 1)
        client.send(*[data_frame(vin, T0 + (i + 1) * STEP) for i in range(3)])
        # the province refused the three frames and the heartbeat that followed them
        await until(reactor, lambda: province.commands().count(Command.REALTIME) >= 3
                    and province.commands()[-1] == Command.HEARTBEAT, 10, what="frames and a heartbeat refused")
        await tiers.stop("municipal")
        outbox = (await node_stats(dsn))["outbox"]["provincial"]
        assert outbox == {"backlog": 3, "delivered": 0}
    finally:
        await tiers.stop_all()
        await province.stop()


@pytest_twisted.ensureDeferred
async def test_wrong_password_foreign_vin_and_private_vehicle_are_refused_and_audited(make_db):
    """A platform at the city: a wrong password is refused; after logging in, a VIN of
    another enterprise and a private vehicle are refused; its own public vehicle is stored.
    Each refusal is an audit row and shows in the stats."""
    own, foreign, private = "LNBSMX05000000001", "LNBSMX05000000002", "LNBSMX05000000003"
    dsn = make_db()
    seed(dsn, [(own, "taxi", "320100", "ENT01", "SIM-EV", ""), (foreign, "taxi", "320100", "ENT02", "SIM-EV", ""),
               (private, "private", "320100", "ENT01", "SIM-EV", "")])
    tiers = Tiers()
    try:
        muni = await tiers.start("municipal", municipal_config(dsn))
        client = await client_of(muni.port("platforms"))
        client.send(platform_login("ent01", "not-the-password"))
        (refused,) = await client.answers(reactor, 1)
        assert (refused.command, refused.response) == (Command.PLATFORM_LOGIN, Response.ERROR)
        client.send(platform_login("ent01", "ent01-demo", serial=2))
        accepted = (await client.answers(reactor, 2))[1]
        assert (accepted.command, accepted.response) == (Command.PLATFORM_LOGIN, Response.SUCCESS)

        client.send(data_frame(foreign, T0), data_frame(private, T0), data_frame(own, T0), heartbeat())
        # the heartbeat is answered after everything before it is committed
        beat = (await client.answers(reactor, 3))[2]
        assert (beat.command, beat.response) == (Command.HEARTBEAT, Response.SUCCESS)
        assert await rows(dsn, "SELECT vin FROM frames") == [(own,)]

        audit_sql = ("SELECT actor, action, result, target, detail->>'reason' FROM audit "
                     "WHERE action IN ('platform_login', 'frame_refused') ORDER BY id")
        await until(reactor, lambda: Deferred.fromCoroutine(rows(dsn, audit_sql)).addCallback(lambda r: len(r) >= 4),
                    10, what="audit rows")
        assert await rows(dsn, audit_sql) == [
            ("ent01", "platform_login", "refused", "", "bad_password"),
            ("ent01", "platform_login", "accepted", "", None),
            ("ent01", "frame_refused", "refused", foreign, "vin_not_owned"),
            ("ent01", "frame_refused", "refused", private, "private_vehicle"),
        ]
        audit = (await node_stats(dsn))["audit"]
        assert audit == {"platform_login:refused": 1, "platform_login:accepted": 1, "frame_refused:refused": 2}
        assert muni.platforms.frames_refused == {"login_bad_password": 1, "vin_not_owned": 1, "private_vehicle": 1}
        await hang_up(client)
    finally:
        await tiers.stop_all()


@pytest_twisted.ensureDeferred
async def test_unregistered_vin_is_stored_reported_and_not_forwarded(make_db):
    """A terminal whose VIN is not in the registry is served and stored at the enterprise,
    listed in ``unregistered`` and the stats, logged once, and never forwarded."""
    known, unknown = "LNBSMX06000000001", "LNBSMX06000000099"
    entries = [(known, "bus", "320100", "ENT01", "SIM-EV", "")]
    ent_db, muni_db = make_db(), make_db()
    seed(ent_db, entries)
    seed(muni_db, entries)
    tiers = Tiers()
    try:
        muni = await tiers.start("municipal", municipal_config(muni_db))
        ent = await tiers.start("enterprise", enterprise_config(ent_db, upstreams=[
            to_municipal(muni.port("platforms"))]))
        with capture_logs() as logs:
            stranger = await client_of(ent.port("terminals"))
            stranger.send(login_frame(unknown))
            (answer,) = await stranger.answers(reactor, 1)
            assert answer.response == Response.SUCCESS  # served: registry.strict is off
            stranger.send(*[data_frame(unknown, T0 + (i + 1) * STEP) for i in range(5)])
            stranger.send(logout_frame(unknown, T0 + 10 * STEP))
            await stranger.answers(reactor, 2)
            await count_is(ent_db, "SELECT count(*) FROM frames WHERE vin = %s", 7,
                           "the stranger's frames at the enterprise", unknown)
            # a registered public vehicle after it: the outbox is sent in order, so once its
            # frames are at the city, anything of the stranger's would be there too
            member = await client_of(ent.port("terminals"))
            member.send(login_frame(known))
            await member.answers(reactor, 1)
            member.send(data_frame(known, T0 + STEP), logout_frame(known, T0 + 2 * STEP))
            await member.answers(reactor, 2)
            await count_is(muni_db, "SELECT count(*) FROM frames", 3, "the registered vehicle's frames at the city")
        assert await rows(muni_db, "SELECT DISTINCT vin FROM frames") == [(known,)]
        assert await scalar(ent_db, "SELECT count(*) FROM realtime WHERE vin = %s", unknown) == 5
        assert [vin for (vin,) in await rows(ent_db, "SELECT vin FROM unregistered")] == [unknown]
        vehicles = (await node_stats(ent_db))["vehicles"]
        assert (vehicles["unregistered"], vehicles["unregistered_frames"]) == (1, 7)
        warnings = [e for e in logs if e["event"] == "vehicle_unregistered"]
        assert [e["vin"] for e in warnings] == [unknown]
        await hang_up(stranger)
        await hang_up(member)
    finally:
        await tiers.stop_all()


@pytest_twisted.ensureDeferred
async def test_unregistered_frames_are_counted_one_by_one(make_db):
    """``unregistered.frames`` and the stats' ``unregistered_frames`` count the frames the
    unregistered VIN sent (login, 5 data frames, logout = 7).

    (Regression: the writer used to add 1 per batch, not per frame.)"""
    unknown = "LNBSMX08000000099"
    dsn = make_db()
    tiers = Tiers()
    try:
        ent = await tiers.start("enterprise", enterprise_config(dsn))
        terminal = await client_of(ent.port("terminals"))
        terminal.send(login_frame(unknown))
        await terminal.answers(reactor, 1)
        # in one write: the five data frames and the logout land in one writer batch
        terminal.send(*[data_frame(unknown, T0 + (i + 1) * STEP) for i in range(5)],
                      logout_frame(unknown, T0 + 10 * STEP))
        await terminal.answers(reactor, 2)
        await hang_up(terminal)
        assert await scalar(dsn, "SELECT count(*) FROM frames WHERE vin = %s", unknown) == 7
        assert await rows(dsn, "SELECT vin, frames FROM unregistered") == [(unknown, 7)]
        assert (await node_stats(dsn))["vehicles"]["unregistered_frames"] == 7
    finally:
        await tiers.stop_all()
