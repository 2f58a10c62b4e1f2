"""Simulated vehicle terminals: a realistic fleet speaking GB/T 32960.3 over real TCP.

Each terminal logs in (0x01), waits for the answer, sends a realtime frame (0x02) every
``interval`` seconds (whole vehicle, two motors, position, extremes or 2025 blocks, alarm,
96 cell voltages, 32 probe temperatures), and logs out (0x04) at the end. The fleet mixes
public-service and private vehicles; ``write_registry`` writes the matching registry CSV.
Times come from the reactor's clock, so tests can drive it with a fake clock.

With ``reconnect_delay`` set, a terminal that was logged in and loses its connection
(the platform restarted) dials again after that delay, doubling it after each failed
attempt (refused connection, refused or unanswered login) up to ``16 * reconnect_delay``,
logs in again with the next login serial (2016 7.1 table 6, 2025 7.1: +1 per login, from 1,
at most 65531) and goes on sending. Frames written into the lost connection are not sent again:
realtime data has no acknowledgment the terminal could wait for.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

import structlog
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import LoopingCall

import codec
from codec import Command, Edition, Encryption, Frame, FrameReader, Response
from codec.frame import realtime_frame
from codec.realtime import RealtimeData

log = structlog.get_logger("relay.simulate")

PUBLIC_SECTORS = ("bus", "taxi", "ride_hailing", "sanitation", "logistics", "official", "rental")
NANJING = (118.796877, 32.060255)


@dataclass
class SimVehicle:
    vin: str
    sector: str
    region_code: str
    owner: str
    lon: float
    lat: float
    odometer: float
    soc: float
    rng: random.Random = field(repr=False, default_factory=random.Random)

    @property
    def public(self) -> bool:
        return self.sector != "private"


def make_fleet(count: int, public_share: float = 0.6, seed: int = 1, owner: str = "ENT01",
               region_code: str = "320100", vin_prefix: str = "LNBSMX") -> list[SimVehicle]:
    rng = random.Random(seed)
    fleet = []
    n_public = round(count * public_share)
    for i in range(count):
        sector = PUBLIC_SECTORS[i % len(PUBLIC_SECTORS)] if i < n_public else "private"
        vin = f"{vin_prefix}{seed % 100:02d}{i:09d}"[:17]
        fleet.append(SimVehicle(vin, sector, region_code, owner, NANJING[0] + rng.uniform(-0.2, 0.2),
                                NANJING[1] + rng.uniform(-0.2, 0.2), rng.uniform(1000, 200000), rng.uniform(30, 95),
                                random.Random(seed * 100003 + i)))
    rng.shuffle(fleet)
    return fleet


def write_registry(fleet: list[SimVehicle], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["vin", "sector", "region_code", "owner", "model", "plate"])
        for v in fleet:
            w.writerow([v.vin, v.sector, v.region_code, v.owner, "SIM-EV", ""])


def realtime_items(v: SimVehicle, edition: Edition) -> dict:
    """One realistic reading; moves the vehicle a little."""
    rng = v.rng
    speed = max(0.0, min(120.0, rng.gauss(35, 15)))
    v.lon += rng.uniform(-0.001, 0.001)
    v.lat += rng.uniform(-0.001, 0.001)
    v.odometer += speed / 3600.0
    v.soc = max(5.0, v.soc - 0.01)
    current = round(rng.uniform(-50, 150), 1)
    cells = [round(3.35 + rng.uniform(0, 0.08), 3) for _ in range(96)]
    temps = [int(25 + rng.uniform(0, 8)) for _ in range(32)]
    level = 0 if rng.random() > 0.02 else rng.choice((1, 2, 3))
    flags = [] if level == 0 else [rng.choice(("soc_low", "insulation", "battery_high_temperature"))]
    vehicle = {"state": "started", "charging_state": "not_charging", "mode": "electric",
               "speed_kmh": round(speed, 1), "odometer_km": round(v.odometer, 1),
               "total_voltage_v": round(sum(cells), 1), "total_current_a": current, "soc_pct": int(v.soc),
               "dcdc_state": "working", "gear": "D" if speed > 0 else "P", "braking_force": False,
               "driving_force": speed > 0, "insulation_kohm": 5000}
    items: dict = {}
    if edition is Edition.V2016:
        vehicle.update(accelerator_pct=int(min(100, speed)), brake=0)
        items["vehicle"] = vehicle
        items["motors"] = [{"seq": i, "state": "consuming", "controller_temp_c": 45, "speed_rpm": int(speed * 80),
                            "torque_nm": 120.5, "temp_c": 60, "controller_voltage_v": vehicle["total_voltage_v"],
                            "controller_current_a": round(current / 2, 1)} for i in (1, 2)]
        items["position"] = {"valid": True, "longitude": round(v.lon, 6), "latitude": round(v.lat, 6)}
        items["extremes"] = {"max_voltage_subsystem": 1, "max_voltage_cell": cells.index(max(cells)) + 1,
                             "max_cell_voltage_v": max(cells), "min_voltage_subsystem": 1,
                             "min_voltage_cell": cells.index(min(cells)) + 1, "min_cell_voltage_v": min(cells),
                             "max_temp_subsystem": 1, "max_temp_probe": temps.index(max(temps)) + 1,
                             "max_temp_c": max(temps), "min_temp_subsystem": 1,
                             "min_temp_probe": temps.index(min(temps)) + 1, "min_temp_c": min(temps)}
        items["alarm"] = {"max_level": level, "flags": flags, "battery_faults": [0x1001] if level else [],
                          "motor_faults": [], "engine_faults": [], "other_faults": []}
        items["cell_voltages"] = [{"subsystem": 1, "voltage_v": vehicle["total_voltage_v"], "current_a": current,
                                   "cell_count": 96, "first_cell": 1, "cells_v": cells}]
    else:
        vehicle["gear_valid"] = True
        items["vehicle"] = vehicle
        items["motors"] = [{"seq": i, "state": "consuming", "controller_temp_c": 45, "speed_rpm": int(speed * 80),
                            "torque_nm": 120.5, "temp_c": 60} for i in (1, 2)]
        items["position"] = {"valid": True, "datum": "wgs84", "longitude": round(v.lon, 6),
                             "latitude": round(v.lat, 6)}
        items["alarm"] = {"max_level": level, "flags": flags, "battery_faults": [0x1001] if level else [],
                          "motor_faults": [], "engine_faults": [], "other_faults": [],
                          "flag_levels": [{"flag": f, "level": level} for f in flags]}
        items["cell_voltages"] = [{"subsystem": 1, "voltage_v": vehicle["total_voltage_v"], "current_a": current,
                                   "cell_count": 96, "cells_v": cells}]
    items["probe_temperatures"] = [{"subsystem": 1, "temps_c": temps}]
    return items


class TerminalClient(protocol.Protocol):
    """One simulated terminal."""

    def __init__(self, sim: "VehicleSimulator", vehicle: SimVehicle) -> None:
        self.sim = sim
        self.vehicle = vehicle
        self.reader = FrameReader()
        self.logged_in: Deferred = Deferred()
        self.logged_out: Deferred | None = None
        self.loop: LoopingCall | None = None
        self.serial = 0  # the login serial, taken when the login is sent
        #: the platform answered this connection's login with success
        self.online = False

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.sim.reactor.seconds()), timezone.utc).astimezone(codec.CST)

    def connectionMade(self) -> None:
        self.serial = self.sim.login_serial(self.vehicle)
        body = codec.VehicleLogin(self.now(), self.serial, "89860000000000000001", ("SIMPACK0001",), 11)
        if self.sim.edition is Edition.V2025:
            from codec.bodies_2025 import VehicleLogin2025

            body = VehicleLogin2025(self.now(), self.serial, "89860000000000000001", ("SIMPACK" + "0" * 17,), 24, (1,))
        self.transport.write(codec.encode_frame(Frame(self.sim.edition, Command.VEHICLE_LOGIN, Response.COMMAND,
                                                      self.vehicle.vin, Encryption.NONE, body)))

    def dataReceived(self, data: bytes) -> None:
        for item in self.reader.feed(data):
            if not isinstance(item, Frame) or not item.is_answer:
                continue
            if item.command == Command.VEHICLE_LOGIN and not self.logged_in.called:
                if item.response == Response.SUCCESS:
                    self.online = True
                    self.logged_in.callback(self)
                else:
                    self.logged_in.errback(RuntimeError(f"login refused: {item.response}"))
            elif item.command == Command.VEHICLE_LOGOUT and self.logged_out is not None \
                    and not self.logged_out.called:
                self.logged_out.callback(self)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        for d in (self.logged_in, self.logged_out):
            if d is not None and not d.called:
                d.errback(ConnectionError("connection lost"))
        self.sim.lost(self)

    def send_realtime(self) -> None:
        data = RealtimeData(self.now(), realtime_items(self.vehicle, self.sim.edition))
        raw = codec.encode_frame(realtime_frame(self.sim.edition, self.vehicle.vin, data))
        self.transport.write(raw)
        self.sim.record(self.vehicle, data.collected_at)

    def logout(self) -> Deferred:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.logged_out = Deferred()
        self.transport.write(codec.encode_frame(Frame(self.sim.edition, Command.VEHICLE_LOGOUT, Response.COMMAND,
                                                      self.vehicle.vin, Encryption.NONE,
                                                      codec.Logout(self.now(), self.serial))))
        return self.logged_out


#: a dialled-again terminal gives up waiting for its login answer after this many seconds
LOGIN_TIMEOUT = 10.0

#: the longest wait between two attempts to dial again, as a multiple of ``reconnect_delay``
MAX_BACKOFF = 16


class VehicleSimulator:
    """Runs a fleet of terminals (:class:`TerminalClient`) against ``host:port``.

    ``reconnect_delay``: ``None`` (the default), a terminal that loses its connection stays
    offline; a number of seconds, it dials again (see the module docstring)."""

    def __init__(self, reactor, host: str, port: int, fleet: list[SimVehicle], *, interval: float = 10.0,
                 edition: Edition = Edition.V2016, reconnect_delay: float | None = None) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.fleet = fleet
        self.interval = interval
        self.edition = edition
        self.reconnect_delay = reconnect_delay
        self.clients: list[TerminalClient] = []
        self.sent = {"public": 0, "private": 0}
        self.login_failures = 0
        #: logins that succeeded on a connection dialled again after a lost one
        self.reconnects = 0
        #: attempts to dial again that failed (connection refused, login refused or unanswered)
        self.redial_failures = 0
        #: (vin, collected_at) -> reactor time the frame was written (for lag measurements)
        self.sent_at: dict[tuple[str, datetime], float] = {}
        self._serials: dict[str, int] = {}
        #: vin -> the terminal's newest connection (the only one that may dial again)
        self._current: dict[str, TerminalClient] = {}
        self._redials: dict[str, object] = {}  # vin -> IDelayedCall of the next attempt
        self._dialing: dict[str, Deferred] = {}  # vin -> connect-and-login in progress
        self._ending = False
        #: fires when the run's time is up, or at ``stop()``
        self._time_up: Deferred = Deferred()

    def stop(self) -> None:
        """End the run now rather than when its ``seconds`` are up: the terminals stop
        sending and log out as at the normal end. (A test that waits for events of open
        length ends the run once they happened, instead of guessing a length.)"""
        if not self._time_up.called:
            self._time_up.callback(None)

    def _endpoint(self) -> TCP4ClientEndpoint:
        return TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=10)

    def login_serial(self, vehicle: SimVehicle) -> int:
        """The serial of ``vehicle``'s next login: 1, 2, ... (wrapping after 65531)."""
        serial = self._serials.get(vehicle.vin, 0) % 65531 + 1
        self._serials[vehicle.vin] = serial
        return serial

    def lost(self, client: TerminalClient) -> None:
        """``client``'s connection ended: dial again if it was logged in and nobody ended it."""
        vin = client.vehicle.vin
        if self.reconnect_delay is None or self._ending or not client.online or client.logged_out is not None \
                or self._current.get(vin) is not client or vin in self._redials or vin in self._dialing:
            return
        self._redial_later(client.vehicle, 0)

    def _redial_later(self, vehicle: SimVehicle, attempt: int) -> None:
        delay = min(self.reconnect_delay * 2 ** attempt, self.reconnect_delay * MAX_BACKOFF)
        self._redials[vehicle.vin] = self.reactor.callLater(delay, self._redial, vehicle, attempt)

    def _redial(self, vehicle: SimVehicle, attempt: int) -> None:
        del self._redials[vehicle.vin]
        client = TerminalClient(self, vehicle)
        self.clients.append(client)
        self._current[vehicle.vin] = client
        d = self._endpoint().connect(protocol.Factory.forProtocol(lambda: client))
        d.addCallback(lambda _: client.logged_in.addTimeout(LOGIN_TIMEOUT, self.reactor))
        self._dialing[vehicle.vin] = d

        def online(_):
            del self._dialing[vehicle.vin]
            self.reconnects += 1
            self._start_sending(client)

        def failed(_):
            del self._dialing[vehicle.vin]
            if client.transport is not None and client.transport.connected:
                client.transport.loseConnection()
            if not self._ending:
                self.redial_failures += 1
                self._redial_later(vehicle, attempt + 1)

        d.addCallbacks(online, failed)

    def _start_sending(self, client: TerminalClient) -> None:
        client.loop = LoopingCall(client.send_realtime)
        client.loop.clock = self.reactor
        client.loop.start(self.interval, now=True).addErrback(lambda f: None)

    def record(self, vehicle: SimVehicle, collected_at: datetime) -> None:
        self.sent["public" if vehicle.public else "private"] += 1
        self.sent_at[(vehicle.vin, collected_at)] = self.reactor.seconds()

    async def run(self, seconds: float) -> dict:
        endpoint = self._endpoint()
        factory_results = []
        for i, v in enumerate(self.fleet):
            client = TerminalClient(self, v)
            self.clients.append(client)
            self._current[v.vin] = client
            factory_results.append(endpoint.connect(protocol.Factory.forProtocol(lambda c=client: c)))
        initial = list(self.clients)
        connects = await DeferredList(factory_results, consumeErrors=True)
        # a terminal whose connection failed never gets a login answer: do not wait for one
        logins = await DeferredList([c.logged_in if ok else fail(failure) for (ok, failure), c
                                     in zip(connects, initial)], consumeErrors=True)
        online = [c for (ok, _), c in zip(logins, initial) if ok]
        self.login_failures = len(initial) - len(online)
        start = self.reactor.seconds()
        for i, c in enumerate(online):
            # spread the fleet over one interval so frames do not arrive in bursts
            c.loop = LoopingCall(c.send_realtime)
            c.loop.clock = self.reactor
            delay = self.interval * i / max(1, len(online))
            self.reactor.callLater(delay, lambda c=c: c.loop.start(self.interval, now=True).addErrback(lambda f: None)
                                   if c.transport is not None and c.transport.connected else None)
        timer = self.reactor.callLater(seconds, self.stop)
        await self._time_up
        if timer.active():
            timer.cancel()
        self._ending = True
        for call in list(self._redials.values()):
            call.cancel()
        self._redials.clear()
        for d in list(self._dialing.values()):
            d.cancel()  # its errback closes the half-open connection
        current = [self._current[v.vin] for v in self.fleet if self._current[v.vin].online]
        outs = [c.logout() for c in current if c.transport is not None and c.transport.connected]
        for c in self.clients:
            if c.loop is not None and c.loop.running:
                c.loop.stop()
        if outs:
            await DeferredList([d.addTimeout(10, self.reactor) for d in outs], consumeErrors=True)
        for c in self.clients:
            if c.transport is not None:
                c.transport.loseConnection()
        return {"vehicles": {"public": sum(v.public for v in self.fleet),
                             "private": sum(not v.public for v in self.fleet)},
                "frames_sent": dict(self.sent), "logins": len(online), "login_failures": self.login_failures,
                "reconnects": self.reconnects, "redial_failures": self.redial_failures,
                "seconds": self.reactor.seconds() - start}


def _sleep(reactor, seconds: float) -> Deferred:
    d: Deferred = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def run_vehicle_simulator(reactor, host: str, port: int, *, count: int, seconds: float, interval: float,
                                public_share: float, registry_out: str | None, protocol: str, seed: int) -> dict:
    fleet = make_fleet(count, public_share, seed)
    if registry_out:
        write_registry(fleet, registry_out)
    sim = VehicleSimulator(reactor, host, port, fleet, interval=interval, edition=Edition(protocol))
    return await sim.run(seconds)
