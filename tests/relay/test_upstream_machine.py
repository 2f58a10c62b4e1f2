"""Every (state, input) pair of the upstream link's machine (relay/upstream_machine.py).

The link runs on a ``MemoryReactorClock``; its endpoint is a real ``TCP4ClientEndpoint`` on
that reactor, and the test completes each connection attempt by hand over a
``StringTransport``, playing the higher platform: it reads the frames the link wrote and
answers them with ``codec.answer``. The reactor's part in closing a connection
(``connectionLost`` after ``loseConnection``) is played by hand as well (:meth:`Link.settle`),
so each test sees the state right after one input.

An input is given the way it happens wherever the link can meet it (a connection completes,
an answer arrives, a timer runs out, the peer hangs up, the service starts or stops); inputs
a state cannot meet from outside are given to the machine itself (``link._machine``).
Pairs without a transition raise ``automat.NoTransition`` and change nothing. Every test
ends by stopping the link: the stop Deferreds fire and no timer is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import structlog
from automat import NoTransition
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

import codec
from codec import Command, FrameReader, Response
from relay.config import Retry, Upstream
from relay.upstream import LoginRefused, UpstreamLink, UpstreamProtocol
from relay.upstream_machine import INPUTS, LOGOUT_TIMEOUT, REFUSED, STATES, transitions

from .samples import events, make_clock

PASSWORD = "ent01-secret"
PORT = 32961
LOGIN_TIMEOUT = 15.0
HEARTBEAT_INTERVAL = 30.0


def config() -> Upstream:
    return Upstream(name="nanjing", endpoint=f"tcp:host=127.0.0.1:port={PORT}", username="ent01",
                    platform_id="ENT01", password="not-this-one", heartbeat_interval=HEARTBEAT_INTERVAL,
                    login_timeout=LOGIN_TIMEOUT, retry=Retry(initial_delay=10.0, max_delay=60.0, factor=2.0))


def fired(d) -> list:
    seen = []
    d.addBoth(seen.append)
    return seen


class Link:
    """An UpstreamLink on a memory reactor, and the higher platform's end of its connections."""

    def __init__(self) -> None:
        self.clock = make_clock()
        self.link = UpstreamLink(self.clock, config(), PASSWORD,
                                 endpoint_factory=lambda reactor, _: TCP4ClientEndpoint(reactor, "127.0.0.1", PORT))
        self.link.add_listener(self)
        self.calls: list[str] = []  # what the forwarder heard
        self.conns: list[tuple[object, StringTransport]] = []
        self.closed: set[int] = set()
        self._attempts = 0
        self.stops: list = []  # stopService Deferreds

    # -- the forwarder's side ----------------------------------------------------------------------
    def link_online(self, proto) -> None:
        self.calls.append("online")

    def link_offline(self) -> None:
        self.calls.append("offline")

    # -- the network's side ------------------------------------------------------------------------
    def pending(self) -> int:
        """Connection attempts not completed or failed yet."""
        return len(self.clock.tcpClients) - self._attempts

    def complete(self) -> tuple[object, StringTransport]:
        host, port, factory, _, _ = self.clock.tcpClients[self._attempts]
        self._attempts += 1
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()
        proto.makeConnection(transport)
        self.conns.append((proto, transport))
        return proto, transport

    def fail_attempt(self) -> None:
        _, _, factory, _, _ = self.clock.tcpClients[self._attempts]
        factory.clientConnectionFailed(self.clock.connectors[self._attempts], Failure(ConnectionRefusedError()))
        self._attempts += 1

    def stray(self) -> tuple[UpstreamProtocol, StringTransport]:
        """A connection of this link that ClientService did not make."""
        proto, transport = UpstreamProtocol(self.link), StringTransport()
        self.conns.append((proto, transport))
        proto.makeConnection(transport)
        return proto, transport

    @property
    def transport(self) -> StringTransport:
        return self.conns[-1][1]

    def sent(self, transport: StringTransport | None = None) -> list:
        transport = transport or self.transport
        frames = list(FrameReader().feed(transport.value()))
        transport.clear()
        return frames

    def answer(self, command: int, response: int = Response.SUCCESS) -> None:
        """Answer the last ``command`` frame the link wrote on its newest connection."""
        proto, transport = self.conns[-1]
        (frame,) = [f for f in self.sent(transport) if f.command == command][-1:]
        proto.dataReceived(codec.encode_frame(codec.answer(frame, response, self.link.now())))

    def hang_up(self, index: int = -1) -> None:
        proto, _ = self.conns[index]
        if id(proto) not in self.closed:
            self.closed.add(id(proto))
            proto.connectionLost(Failure(ConnectionDone()))

    def settle(self) -> None:
        """The reactor closes what was closed."""
        for i, (_, transport) in enumerate(self.conns):
            if transport.disconnecting:
                self.hang_up(i)

    # -- getting somewhere ---------------------------------------------------------------------------
    def to(self, state: str) -> None:
        if state != "offline":
            self.link.startService()
        if state in ("logging_in", "online", "logging_out"):
            self.complete()
        if state in ("online", "logging_out"):
            self.answer(Command.PLATFORM_LOGIN)
        if state == "logging_out":
            self.stops.append(self.link.stopService())
        assert self.link.state == state

    def finish(self) -> None:
        """Stop; every stop Deferred fires and no timer is left."""
        self.stops.append(self.link.stopService())
        if self.link.state == "logging_out":
            self.clock.advance(LOGOUT_TIMEOUT)
        self.settle()
        assert self.link.state == "offline"
        assert [fired(d) for d in self.stops] == [[None]] * len(self.stops)
        assert self.clock.getDelayedCalls() == []
        assert self.pending() == 0 or self.clock.connectors[-1].stoppedConnecting

    def snapshot(self) -> tuple:
        return (self.link.state, len(self.clock.tcpClients), [t.value() for _, t in self.conns],
                [t.disconnecting for _, t in self.conns], list(self.calls), self.link.logins,
                self.link.login_failures, sorted(c.getTime() for c in self.clock.getDelayedCalls()))


@pytest.fixture
def logs():
    with structlog.testing.capture_logs() as entries:
        yield entries


# --- giving an input -------------------------------------------------------------------------------------

def give(h: Link, state: str, upon: str):
    machine = h.link._machine
    if upon == "start":
        return h.link.startService()
    if upon == "stop":
        h.stops.append(h.link.stopService())
        return h.stops[-1]
    if upon == "connected":
        if state == "connecting":
            return h.complete()
        return h.stray()  # connectionMade feeds the machine
    if upon in ("login_accepted", "login_refused"):
        if state == "logging_in":
            return h.answer(Command.PLATFORM_LOGIN, Response.SUCCESS if upon == "login_accepted" else Response.ERROR)
        return machine.login_accepted() if upon == "login_accepted" else machine.login_refused("refused")
    if upon == "heartbeat_missed":
        if state in ("online", "logging_out"):
            d = h.link.sync()
            h.answer(Command.HEARTBEAT, Response.ERROR)  # refused: the upstream takes no data from us
            failures = []
            d.addErrback(failures.append)
            assert len(failures) == 1
            return failures[0]
        return machine.heartbeat_missed("no answer")
    if upon == "connection_lost":
        if state in ("logging_in", "online"):
            return h.hang_up()
        return machine.connection_lost(Failure(ConnectionDone()))
    if upon == "logout_answered":
        if state == "logging_out":
            return h.answer(Command.PLATFORM_LOGOUT)
        return machine.logout_answered()
    if upon == "logout_unanswered":
        if state == "logging_out":
            return h.clock.advance(LOGOUT_TIMEOUT)
        return machine.logout_unanswered()
    raise AssertionError(upon)


# --- what each pair does ------------------------------------------------------------------------------------

def nothing_happens(h, before, result, logs):
    assert h.snapshot() == before
    assert logs == []


def connects(h, before, result, logs):
    assert h.pending() == 1
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["connecting"]


def stray_is_closed(h, before, result, logs):
    _, transport = result
    assert transport.disconnecting and transport.value() == b""
    assert h.calls == [] and logs == []


def stop_fires_at_once(h, before, result, logs):
    assert fired(result) == [None]
    assert logs == []


def sends_login(h, before, result, logs):
    (login,) = h.sent()
    assert (login.command, login.response, login.vin) == (Command.PLATFORM_LOGIN, Response.COMMAND, "ENT01")
    assert (login.body.serial, login.body.username, login.body.password) == (1, "ent01", PASSWORD)
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["logging_in"]
    assert [c.getTime() - h.clock.seconds() for c in h.clock.getDelayedCalls()] == [LOGIN_TIMEOUT]


def stops_connecting(h, before, result, logs):
    assert fired(result) == [None]
    assert h.clock.connectors[-1].stoppedConnecting and h.clock.getDelayedCalls() == []
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["offline"]


def goes_online(h, before, result, logs):
    assert h.calls == ["online"] and h.link.logins == 1 and h.link.proto is not None
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["online"]
    assert [c.getTime() - h.clock.seconds() for c in h.clock.getDelayedCalls()] == [HEARTBEAT_INTERVAL]


def drops_refused_login(h, before, result, logs):
    assert h.transport.disconnecting and h.link.login_failures == 1 and h.link.logins == 0
    assert [e["error"] for e in events(logs, "upstream_login_refused")] == ["platform login refused (response 0x02)"]
    assert events(logs, "upstream_link_state") == []
    h.settle()  # the connection closes: the link retries later
    assert h.link.state == "connecting" and h.pending() == 0 and len(h.clock.getDelayedCalls()) == 1


def retries_login(h, before, result, logs):
    (entered,) = events(logs, "upstream_link_state")
    assert entered["state"] == "connecting" and "closed cleanly" in entered["reason"]
    assert h.calls == [] and h.link.proto is None
    assert len(h.clock.getDelayedCalls()) == 1 and events(logs, "upstream_retry")  # ClientService waits


def abandons_login(h, before, result, logs):
    assert h.transport.disconnecting and fired(result) == []  # ClientService waits for the close
    assert h.clock.getDelayedCalls() == []  # the login's timeout went with it
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["offline"]
    assert events(logs, "upstream_login_refused") == [] and h.link.login_failures == 0
    h.settle()
    assert fired(result) == [None] and h.clock.getDelayedCalls() == []


def drops_connection(h, before, result, logs):
    assert result.check(LoginRefused)  # the heartbeat's own failure reaches sync()'s caller
    assert h.transport.disconnecting and events(logs, "upstream_heartbeat_missed")
    assert events(logs, "upstream_link_state") == []


def reconnects(h, before, result, logs):
    (entered,) = events(logs, "upstream_link_state")
    assert entered["state"] == "connecting" and "closed cleanly" in entered["reason"]
    assert h.calls == ["online", "offline"] and h.link.proto is None
    assert len(h.clock.getDelayedCalls()) == 1  # the reconnect; no heartbeat on a dead link
    h.clock.advance(21)
    assert h.pending() == 1


def sends_logout(h, before, result, logs):
    (logout,) = h.sent()
    assert (logout.command, logout.response, logout.body.serial) == (Command.PLATFORM_LOGOUT, Response.COMMAND, 1)
    assert fired(result) == [] and not h.transport.disconnecting
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["logging_out"]
    assert [c.getTime() - h.clock.seconds() for c in h.clock.getDelayedCalls()] == [LOGOUT_TIMEOUT]  # no heartbeat


def waits_with_the_first_stop(h, before, result, logs):
    assert fired(result) == [] and logs == []
    h.answer(Command.PLATFORM_LOGOUT)
    h.settle()
    assert [fired(d) for d in h.stops] == [[None], [None]]


def logs_out(h, before, result, logs):
    assert h.calls == ["online", "offline"] and h.transport.disconnecting and h.link.proto is None
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["offline"]
    assert events(logs, "upstream_logout") and not events(logs, "upstream_logout_unanswered")
    assert fired(h.stops[0]) == []
    h.settle()
    assert fired(h.stops[0]) == [None]


def gives_up_logout(h, before, result, logs):
    assert h.calls == ["online", "offline"] and h.transport.disconnecting
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["offline"]
    assert events(logs, "upstream_logout_unanswered") and not events(logs, "upstream_logout")
    h.settle()
    assert fired(h.stops[0]) == [None]


@dataclass(frozen=True)
class Refused:
    """No transition: the input raises NoTransition and nothing changes."""


REFUSES = Refused()

PAIRS: dict[tuple[str, str], tuple[str | Refused, Callable]] = {
    ("offline", "start"): ("connecting", connects),
    ("offline", "connected"): ("offline", stray_is_closed),
    ("offline", "login_accepted"): ("offline", nothing_happens),
    ("offline", "login_refused"): ("offline", nothing_happens),
    ("offline", "heartbeat_missed"): ("offline", nothing_happens),
    ("offline", "connection_lost"): ("offline", nothing_happens),
    ("offline", "stop"): ("offline", stop_fires_at_once),
    ("offline", "logout_answered"): (REFUSES, nothing_happens),
    ("offline", "logout_unanswered"): (REFUSES, nothing_happens),

    ("connecting", "start"): ("connecting", nothing_happens),
    ("connecting", "connected"): ("logging_in", sends_login),
    ("connecting", "login_accepted"): ("connecting", nothing_happens),
    ("connecting", "login_refused"): ("connecting", nothing_happens),
    ("connecting", "heartbeat_missed"): ("connecting", nothing_happens),
    ("connecting", "connection_lost"): ("connecting", nothing_happens),
    ("connecting", "stop"): ("offline", stops_connecting),
    ("connecting", "logout_answered"): (REFUSES, nothing_happens),
    ("connecting", "logout_unanswered"): (REFUSES, nothing_happens),

    ("logging_in", "start"): ("logging_in", nothing_happens),
    ("logging_in", "connected"): (REFUSES, nothing_happens),
    ("logging_in", "login_accepted"): ("online", goes_online),
    ("logging_in", "login_refused"): ("logging_in", drops_refused_login),
    ("logging_in", "heartbeat_missed"): (REFUSES, nothing_happens),
    ("logging_in", "connection_lost"): ("connecting", retries_login),
    ("logging_in", "stop"): ("offline", abandons_login),
    ("logging_in", "logout_answered"): (REFUSES, nothing_happens),
    ("logging_in", "logout_unanswered"): (REFUSES, nothing_happens),

    ("online", "start"): ("online", nothing_happens),
    ("online", "connected"): (REFUSES, nothing_happens),
    ("online", "login_accepted"): (REFUSES, nothing_happens),
    ("online", "login_refused"): (REFUSES, nothing_happens),
    ("online", "heartbeat_missed"): ("online", drops_connection),
    ("online", "connection_lost"): ("connecting", reconnects),
    ("online", "stop"): ("logging_out", sends_logout),
    ("online", "logout_answered"): (REFUSES, nothing_happens),
    ("online", "logout_unanswered"): (REFUSES, nothing_happens),

    ("logging_out", "start"): (REFUSES, nothing_happens),
    ("logging_out", "connected"): (REFUSES, nothing_happens),
    ("logging_out", "login_accepted"): (REFUSES, nothing_happens),
    ("logging_out", "login_refused"): (REFUSES, nothing_happens),
    ("logging_out", "heartbeat_missed"): ("logging_out", drops_connection),
    ("logging_out", "connection_lost"): ("logging_out", nothing_happens),
    ("logging_out", "stop"): ("logging_out", waits_with_the_first_stop),
    ("logging_out", "logout_answered"): ("offline", logs_out),
    ("logging_out", "logout_unanswered"): ("offline", gives_up_logout),
}


def test_the_pairs_here_are_every_pair_of_the_machine():
    assert set(PAIRS) == {(s, i) for s in STATES for i in INPUTS}
    machine = {(state, upon): after for state, upon, after, _ in transitions()}
    assert {pair: after for pair, (after, _) in PAIRS.items() if after is not REFUSES} == machine
    assert {pair for pair, (after, _) in PAIRS.items() if after is REFUSES} == REFUSED
    assert not set(machine) & REFUSED


@pytest.mark.parametrize("state, upon", [pytest.param(s, i, id=f"{s}-{i}") for s, i in PAIRS])
def test_every_state_and_input(state, upon, logs):
    after, check = PAIRS[state, upon]
    h = Link()
    h.to(state)
    running = h.link.running
    before = h.snapshot()
    logs.clear()
    if after is REFUSES:
        with pytest.raises(NoTransition):
            give(h, state, upon)
        if upon == "connected":
            h.conns.pop()  # the refused connection is not the link's
        check(h, before, None, logs)
        assert h.link.running == running
    else:
        result = give(h, state, upon)
        assert h.link.state == after
        check(h, before, result, logs)
    h.finish()


# --- around the pairs ------------------------------------------------------------------------------------------

def test_a_peer_hanging_up_during_the_logout_ends_the_stop(logs):
    h = Link()
    h.to("logging_out")
    h.hang_up()  # the pending logout fails first (logout_unanswered): the link is offline
    assert h.link.state == "offline" and h.calls == ["online", "offline"]
    assert [e["error"] for e in events(logs, "upstream_logout_unanswered")] == ["upstream connection lost"]
    assert fired(h.stops[0]) == [None] and h.clock.getDelayedCalls() == []
    assert events(logs, "upstream_heartbeat_missed") == []


def test_a_failed_attempt_waits_in_connecting_and_stop_cancels_the_wait(logs):
    h = Link()
    h.to("connecting")
    h.fail_attempt()
    assert h.link.state == "connecting" and len(h.clock.getDelayedCalls()) == 1
    assert [e["state"] for e in events(logs, "upstream_link_state")] == ["connecting"]  # no line per attempt
    h.finish()


def test_events_of_a_connection_given_up_do_not_reach_the_machine():
    """Stopped while logging in and started again before the old connection has closed:
    the old connection's close does not count for the new one."""
    h = Link()
    h.to("logging_in")
    old = len(h.conns) - 1
    stopping = h.link.stopService()
    assert h.link.state == "offline" and h.conns[old][1].disconnecting
    h.link.startService()
    h.complete()
    assert h.link.state == "logging_in"
    h.hang_up(old)  # the reactor gets round to the old connection
    assert h.link.state == "logging_in" and fired(stopping) == [None]
    h.answer(Command.PLATFORM_LOGIN)
    assert h.link.state == "online" and h.calls == ["online"]
    h.finish()


def test_a_heartbeat_failing_with_its_connection_is_not_a_missed_heartbeat(logs):
    h = Link()
    h.to("online")
    d = h.link.sync()
    failures = []
    d.addErrback(failures.append)
    h.hang_up()
    assert h.link.state == "connecting" and failures[0].check(ConnectionError)
    assert events(logs, "upstream_heartbeat_missed") == []
    h.finish()


class Counting:
    """Stands in for the link's machine and counts the inputs it is given."""

    def __init__(self, machine) -> None:
        self.machine = machine
        self.given: list[str] = []

    def __getattr__(self, name):
        self.given.append(name)
        return getattr(self.machine, name)


def test_forwarded_frames_and_their_heartbeats_do_not_feed_the_machine():
    """The per-frame path is the forwarder writing to the connection it was handed and
    one heartbeat per batch: no input of the link's machine."""
    h = Link()
    h.to("online")
    counting = h.link._machine = Counting(h.link._machine)
    raw = codec.encode_frame(codec.Frame(codec.Edition.V2016, Command.HEARTBEAT, Response.COMMAND, "X" * 17,
                                         codec.Encryption.NONE, None))
    for _ in range(10):
        for _ in range(100):
            h.link.proto.write_raw(raw)
        answers = fired(h.link.sync())
        h.answer(Command.HEARTBEAT)
        assert answers and answers[0].response == Response.SUCCESS
    assert counting.given == []
    h.link._machine = counting.machine
    h.finish()
