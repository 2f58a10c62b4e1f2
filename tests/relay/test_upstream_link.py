"""The link to a higher platform (relay/upstream.py) against a real platform listener.

Both sides run on one ``MemoryReactorClock``: the higher platform is a real
``PlatformFactory`` that ``listenTCP``-ed on it, the link's endpoint is a
``TCP4ClientEndpoint`` on it, ``ConnectionCompleter`` joins them and the returned pump
moves the bytes. ``clock.advance()`` drives heartbeats, timeouts and backoff. The higher
platform's sessions record every frame they read, so the tests see what went up.

Retry delays: ``ClientService`` asks ``backoffPolicy(initial, max, factor)`` for attempt
n = 1, 2, ... after each failure, i.e. ``min(initial * factor ** n, max)`` plus a jitter in
[0, 1) s; with initial 10, factor 2, max 60: 20, 40, 60, 60 ... seconds (+ jitter).
"""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
import structlog
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.test.iosim import ConnectionCompleter

from codec import Command, PlatformLogin
from codec.bodies import Logout
from relay.accounts import LoginGuard, hash_password, verify_password
from relay.config import Account, Lockout, Retry, Upstream
from relay.ingest import InMemoryIngest, Received
from relay.platform_session import PlatformFactory, PlatformSession
from relay.registry import RegistryCache
from relay.upstream import UpstreamLink
from tests.support.fixtures import T0, data_frame

from .samples import VIN, AuditRecorder, events, make_clock

PASSWORD = "ent01-secret"
PORT = 32961
checked_password = functools.lru_cache(maxsize=None)(verify_password)


class RecordingSession(PlatformSession):
    def frame_received(self, frame):
        self.factory.seen.append(frame)
        super().frame_received(frame)


class HigherPlatform(PlatformFactory):
    """The municipal platform's real listener, keeping every frame its sessions read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen = []

    def protocol_for(self, addr):
        return RecordingSession()

    def commands(self) -> list[int]:
        return [f.command for f in self.seen]


@pytest.fixture(scope="module")
def account():
    return Account("ent01", hash_password(PASSWORD), allowed_owners=("ENT01",))


@pytest.fixture
def clock():
    return make_clock()


@pytest.fixture
def logs():
    with structlog.testing.capture_logs() as entries:
        yield entries


@pytest.fixture
def upper(clock, account):
    factory = HigherPlatform(clock, InMemoryIngest(), RegistryCache(), AuditRecorder(), (account,),
                             LoginGuard(Lockout()), login_timeout=30.0, password_checker=checked_password)
    clock.listenTCP(PORT, factory, interface="127.0.0.1")
    return factory


class Endpoints:
    """The link's endpoint factory: a TCP4ClientEndpoint on the memory reactor."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, reactor, description: str):
        self.asked.append(description)
        return TCP4ClientEndpoint(reactor, "127.0.0.1", PORT)


def config(**overrides) -> Upstream:
    values = dict(name="nanjing", endpoint=f"tcp:host=127.0.0.1:port={PORT}", username="ent01",
                  platform_id="ENT01", password="not-this-one", heartbeat_interval=30.0, login_timeout=15.0,
                  retry=Retry(initial_delay=10.0, max_delay=60.0, factor=2.0))
    values.update(overrides)
    return Upstream(**values)


class Listener:
    """A forwarder's view of the link."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def link_online(self, proto) -> None:
        self.calls.append("online")

    def link_offline(self) -> None:
        self.calls.append("offline")


@pytest.fixture
def endpoints():
    return Endpoints()


@pytest.fixture
def link(clock, endpoints):
    link = UpstreamLink(clock, config(), PASSWORD, endpoint_factory=endpoints)
    link.listener = Listener()
    link.add_listener(link.listener)
    return link


def connect(clock):
    pump = ConnectionCompleter(clock).succeedOnce()
    assert pump is not None, "no connection attempt to complete"
    pump.flush()
    return pump


def stop(link, clock, pump=None):
    """Stop the link; the Deferred of stopService has fired when this returns."""
    d = link.stopService()
    if pump is not None:
        pump.flush()
    fired = []
    d.addBoth(fired.append)
    assert fired, "stopService has not finished"
    assert fired[0] is None


# --- login ---------------------------------------------------------------------------------------------

def test_the_link_logs_in_with_the_configured_username_password_and_platform_id(link, endpoints, clock, upper,
                                                                                 logs):
    link.startService()
    assert endpoints.asked == [f"tcp:host=127.0.0.1:port={PORT}"]
    pump = connect(clock)

    (login,) = upper.seen
    assert (login.command, login.response, login.vin) == (Command.PLATFORM_LOGIN, 0xFE, "ENT01")
    assert login.body == PlatformLogin(T0, 1, "ent01", PASSWORD, 1)
    assert link.state == "online" and upper.audit.entries[-1]["result"] == "accepted"
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["connecting", "logging_in", "online"]
    assert link.listener.calls == ["online"]
    stop(link, clock, pump)


def test_the_login_serial_counts_up_per_day_and_the_logout_repeats_it(link, clock, upper):
    serials = []
    for advance in (0, 60, timedelta(hours=14).total_seconds()):  # 10:00, 10:01, next day 00:01 (+08:00)
        clock.advance(advance)
        link.startService()
        pump = connect(clock)
        stop(link, clock, pump)
        login, logout = upper.seen[-2:]
        assert (login.command, logout.command) == (Command.PLATFORM_LOGIN, Command.PLATFORM_LOGOUT)
        assert logout.body.serial == login.body.serial
        serials.append(login.body.serial)
    assert serials == [1, 2, 1]


# --- heartbeats ------------------------------------------------------------------------------------------

def test_a_heartbeat_goes_up_every_heartbeat_interval_and_is_answered(link, clock, upper):
    link.startService()
    pump = connect(clock)
    clock.advance(29)
    pump.flush()
    assert upper.commands() == [Command.PLATFORM_LOGIN]
    for n in (1, 2, 3):
        clock.advance(1)
        pump.flush()
        assert upper.commands().count(Command.HEARTBEAT) == n
        clock.advance(29)
        pump.flush()
    assert link.state == "online" and not pump.clientIO.disconnecting  # every answer came back in time
    stop(link, clock, pump)
    assert clock.getDelayedCalls() == []


def test_a_heartbeat_unanswered_for_login_timeout_drops_the_connection(link, clock, upper, logs):
    link.startService()
    pump = connect(clock)
    # the higher platform's store stalls: it answers a heartbeat only after what came before it is stored
    upper.ingest.hold()
    upper.ingest.accept(Received(data_frame(VIN), "platform:other", T0, "platform", "other"))
    clock.advance(30)
    pump.flush()
    assert upper.commands()[-1] == Command.HEARTBEAT
    clock.advance(14)
    pump.flush()
    assert len(upper.sessions) == 1
    clock.advance(1)
    pump.flush()
    assert upper.sessions == set()  # the connection is gone on both sides
    assert len(events(logs, "upstream_heartbeat_missed")) == 1
    upper.ingest.release()
    # leave: the logout has no connection to go on, the link gives up on it after 3 s
    d = link.stopService()
    clock.advance(3)
    pump.flush()
    assert d.called


# --- stop ---------------------------------------------------------------------------------------------------

def test_stop_sends_platform_logout_and_leaves_no_timer(link, clock, upper, logs):
    link.startService()
    pump = connect(clock)
    clock.advance(45)  # one heartbeat on the way
    pump.flush()
    stop(link, clock, pump)
    logout = upper.seen[-1]
    assert (logout.command, logout.response, logout.vin) == (Command.PLATFORM_LOGOUT, 0xFE, "ENT01")
    assert logout.body == Logout(T0 + timedelta(seconds=45), 1)
    assert upper.audit.entries[-1]["action"] == "platform_logout"
    assert link.state == "offline" and upper.sessions == set()
    assert [e["state"] for e in events(logs, "upstream_link_state")][-2:] == ["logging_out", "offline"]
    assert events(logs, "upstream_logout")
    assert clock.getDelayedCalls() == []


def test_stop_before_the_upstream_answers_the_connection_leaves_no_timer(link, clock, upper):
    link.startService()
    stop(link, clock)  # the connection attempt is still pending
    assert link.state == "offline"
    assert clock.getDelayedCalls() == []


# --- reconnecting -----------------------------------------------------------------------------------------

def test_an_unreachable_upstream_is_retried_with_growing_delays_not_at_once(link, clock, upper):
    link.startService()
    for delay in (20, 40, 60, 60):  # 10 * 2 ** n, at most 60, plus up to 1 s of jitter
        ConnectionCompleter(clock).failOnce()
        assert clock.tcpClients == []
        clock.advance(delay - 0.5)
        assert clock.tcpClients == [], f"retried before {delay} s"
        clock.advance(1.5)
        assert len(clock.tcpClients) == 1, f"not retried within {delay} + 1 s"
    pump = connect(clock)
    assert link.state == "online"
    stop(link, clock, pump)
    assert clock.getDelayedCalls() == []


def test_a_refused_login_is_retried_later_with_backoff(link, clock, upper, account, logs):
    upper.accounts = ()  # the higher platform does not know the account yet
    link.startService()
    pump = connect(clock)
    assert upper.audit.entries[-1]["reason"] == "unknown_account"
    assert link.state == "connecting" and events(logs, "upstream_login_refused")
    assert upper.sessions == set()  # the refused connection is closed
    assert clock.tcpClients == []  # and not retried at once
    upper.accounts = (account,)
    clock.advance(19)
    assert clock.tcpClients == []
    clock.advance(2)
    pump = connect(clock)
    assert link.state == "online"
    assert [f.body.serial for f in upper.seen if f.command == Command.PLATFORM_LOGIN] == [1, 2]
    stop(link, clock, pump)
    assert clock.getDelayedCalls() == []


def test_a_login_left_unanswered_is_given_up_after_login_timeout_and_retried(link, clock, account, logs):
    pending = []

    def never_answers(password, stored):  # the higher platform's password check hangs
        pending.append(password)
        return Deferred()

    silent = HigherPlatform(clock, InMemoryIngest(), RegistryCache(), AuditRecorder(), (account,),
                            LoginGuard(Lockout()), login_timeout=30.0, password_checker=never_answers)
    clock.listenTCP(PORT, silent, interface="127.0.0.1")
    link.startService()
    pump = connect(clock)
    assert pending == [PASSWORD] and link.state == "logging_in"
    clock.advance(15)
    pump.flush()
    assert link.state == "connecting" and events(logs, "upstream_login_refused")
    assert silent.sessions == set()
    clock.advance(21)
    assert len(clock.tcpClients) == 1
    stop(link, clock)
    assert clock.getDelayedCalls() == []


def test_a_dropped_connection_takes_the_link_offline_until_it_is_back(link, clock, upper, logs):
    link.startService()
    pump = connect(clock)
    upper.close_all()  # the higher platform restarts
    pump.flush()
    assert link.state == "connecting"
    assert link.listener.calls == ["online", "offline"]
    assert len(clock.getDelayedCalls()) == 1  # only the reconnect: no heartbeat on a dead link
    clock.advance(21)
    pump = connect(clock)
    assert link.state == "online" and link.listener.calls == ["online", "offline", "online"]
    before = upper.commands().count(Command.HEARTBEAT)
    clock.advance(30)
    pump.flush()
    assert upper.commands().count(Command.HEARTBEAT) == before + 1  # one heartbeat timer, not two
    stop(link, clock, pump)
    assert clock.getDelayedCalls() == []
