"""The vehicle simulator's terminals dial again after a lost connection (``reconnect_delay``).

A scripted platform on loopback TCP answers vehicle logins and logouts (success, or a
refusal when told to) and records every frame it gets; "the platform dies" is its listener
stopped and every connection aborted, "it comes back" is a new listener on the same port.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

import codec
from codec import Command, Frame, FrameReader, Response
from relay.simulate import MAX_BACKOFF, VehicleSimulator, make_fleet
from tests.support.wait import until


class ScriptedPlatform(protocol.Protocol):
    def __init__(self, platform: "Platform") -> None:
        self.platform = platform
        self.reader = FrameReader()

    def connectionMade(self) -> None:
        self.platform.connections.append(self)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.platform.connections.remove(self)

    def dataReceived(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            if not isinstance(frame, Frame) or frame.is_answer:
                continue
            self.platform.frames.append(frame)
            if frame.command in (Command.VEHICLE_LOGIN, Command.VEHICLE_LOGOUT):
                response = Response.SUCCESS
                if frame.command == Command.VEHICLE_LOGIN and self.platform.refuse[frame.vin] > 0:
                    self.platform.refuse[frame.vin] -= 1
                    response = Response.ERROR
                self.transport.write(codec.encode_frame(codec.answer(frame, response, frame.collected_at)))


class Platform(protocol.Factory):
    """Records what the terminals send; ``refuse[vin] = n`` refuses that VIN's next n logins."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.connections: list[ScriptedPlatform] = []
        self.refuse: dict[str, int] = defaultdict(int)
        self.listening = None

    def buildProtocol(self, addr) -> ScriptedPlatform:
        return ScriptedPlatform(self)

    def listen(self, port: int = 0) -> int:
        self.listening = reactor.listenTCP(port, self, interface="127.0.0.1")
        return self.listening.getHost().port

    async def die(self) -> None:
        await self.listening.stopListening()
        for conn in list(self.connections):
            conn.transport.abortConnection()
        await until(reactor, lambda: not self.connections, 5, what="connections closed")

    def logins(self, vin: str) -> list[int]:
        return [f.body.serial for f in self.frames if f.vin == vin and f.command == Command.VEHICLE_LOGIN]

    def data_after_login(self, vin: str, serial: int) -> int:
        """Realtime frames of ``vin`` received after its login with ``serial``."""
        seen, count = False, 0
        for f in self.frames:
            if f.vin != vin:
                continue
            if f.command == Command.VEHICLE_LOGIN:
                seen = f.body.serial == serial
            elif f.command == Command.REALTIME and seen:
                count += 1
        return count


@pytest.fixture
def platform():
    p = Platform()
    yield p
    if p.listening is not None:
        p.listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_terminals_dial_again_log_in_with_the_next_serial_and_go_on_sending(platform):
    """The platform dies (connections refused meanwhile) and comes back on its port: each
    terminal logs in again with the next serial and goes on sending; a refused login is
    retried; at the end each terminal logs out with the serial of its last login. (The
    events take about 2 s; the run is ended once they happened.)"""
    fleet = make_fleet(3, seed=5)
    vins = [v.vin for v in fleet]
    port = platform.listen()
    sim = VehicleSimulator(reactor, "127.0.0.1", port, fleet, interval=0.1, reconnect_delay=0.05)
    running = Deferred.fromCoroutine(sim.run(60.0)).addTimeout(90, reactor)
    await until(reactor, lambda: all(platform.data_after_login(v, 1) >= 2 for v in vins), 10,
                what="data after the first logins")

    await platform.die()
    await until(reactor, lambda: sim.redial_failures >= len(fleet), 10, what="refused redials")
    platform.refuse[vins[0]] = 1
    assert platform.listen(port) == port
    last = {v: 3 if v == vins[0] else 2 for v in vins}
    await until(reactor, lambda: all(platform.data_after_login(v, last[v]) >= 2 for v in vins), 10,
                what="data after the logins on the new connections")
    assert sim.reconnects == len(fleet)

    sim.stop()
    result = await running
    assert result["seconds"] < 30
    assert (result["logins"], result["login_failures"], result["reconnects"]) == (3, 0, 3)
    assert result["redial_failures"] >= len(fleet) + 1  # the refused connections and the refused login
    for v in vins:
        assert platform.logins(v) == list(range(1, last[v] + 1)), v
        logouts = [f.body.serial for f in platform.frames if f.vin == v and f.command == Command.VEHICLE_LOGOUT]
        assert logouts == [last[v]], v
    # frames a terminal wrote before it saw its connection die are lost (and still counted as sent)
    sent, received = sum(result["frames_sent"].values()), sum(f.command == Command.REALTIME for f in platform.frames)
    assert 0 <= sent - received <= 2 * len(fleet), (sent, received)


@pytest_twisted.ensureDeferred
async def test_without_reconnect_delay_a_lost_terminal_stays_offline(platform):
    """The default: a lost connection is not dialled again."""
    fleet = make_fleet(2, seed=6)
    port = platform.listen()
    sim = VehicleSimulator(reactor, "127.0.0.1", port, fleet, interval=0.1)
    running = Deferred.fromCoroutine(sim.run(1.0)).addTimeout(20, reactor)
    await until(reactor, lambda: all(platform.data_after_login(v.vin, 1) >= 1 for v in fleet), 4,
                what="data after the logins")
    await platform.die()
    await until(reactor, lambda: not any(c.transport.connected for c in sim.clients), 2,
                what="terminals see the lost connections")
    assert sim._redials == {} and sim._dialing == {}
    result = await running
    assert (result["reconnects"], result["redial_failures"], len(sim.clients)) == (0, 0, len(fleet))


@pytest_twisted.ensureDeferred
async def test_a_terminal_that_cannot_connect_counts_as_a_login_failure():
    """Nothing listens: the run does not wait for login answers that cannot come."""
    fleet = make_fleet(2, seed=7)
    probe = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
    port = probe.getHost().port
    await probe.stopListening()
    sim = VehicleSimulator(reactor, "127.0.0.1", port, fleet, interval=0.1, reconnect_delay=0.05)
    result = await Deferred.fromCoroutine(sim.run(0.1)).addTimeout(10, reactor)
    assert (result["logins"], result["login_failures"], result["reconnects"]) == (0, 2, 0)


@pytest.mark.parametrize("attempt, delay", [
    pytest.param(0, 0.5, id="first-attempt-waits-the-delay"),
    pytest.param(1, 1.0, id="second-doubles"),
    pytest.param(3, 4.0, id="fourth"),
    pytest.param(4, 0.5 * MAX_BACKOFF, id="fifth-reaches-the-cap"),
    pytest.param(9, 0.5 * MAX_BACKOFF, id="later-stay-at-the-cap"),
])
def test_backoff_between_attempts(attempt, delay):
    clock = Clock()
    vehicle = make_fleet(1)[0]
    sim = VehicleSimulator(clock, "127.0.0.1", 9, [vehicle], reconnect_delay=0.5)
    sim._redial_later(vehicle, attempt)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == pytest.approx(delay)
    call.cancel()


def test_login_serials_grow_per_vehicle_and_wrap_after_65531():
    a, b = make_fleet(2)
    sim = VehicleSimulator(Clock(), "127.0.0.1", 9, [a, b])
    assert [sim.login_serial(a), sim.login_serial(a), sim.login_serial(b)] == [1, 2, 1]
    sim._serials[a.vin] = 65531
    assert sim.login_serial(a) == 1
