"""Frames, clocks and connections for the protocol tests of ``relay/`` (no reactor, no sockets).

``sample(command, vin)`` builds one well-formed frame of every command the codec knows,
sent as a command (response flag 0xFE); the 2025-only commands are built in 2025.
``connect(factory, host, port)`` opens a session over a ``StringTransport`` the way a
listening port would (``buildProtocol`` with the peer's address, then ``makeConnection``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

import codec
from codec import ChargingMessage, Command, Edition, Encryption, Frame, ParamList, ParamQuery, PlatformLogin, \
    Response, TerminalControl
from codec.bodies import Logout
from codec.bodies_2025 import Activation, ActivationAnswer, KeySync
from tests.support.fixtures import T0, data_frame, login_frame, logout_frame

VIN = "LNBSMX01000000001"
OTHER_VIN = "LNBSMX01000000002"
OPERATOR = "MA59NQR2X"

#: commands that exist only in the 2025 edition (2025 clause 6.3.1 table 3)
ONLY_2025 = {Command.ACTIVATION, Command.ACTIVATION_ANSWER, Command.KEY_SYNC}

CHARGING_DATA = {
    Command.CHARGING_STATIC: {
        "station_id": "ST0001", "station_name": "Station One", "region_code": "320102", "address": "1 Road",
        "longitude": 118.796877, "latitude": 32.060255, "station_type": 1, "station_status": 50,
        "service_hours": "24h",
        "equipment": [{"equipment_id": "EQ01", "equipment_type": 1, "rated_power_kw": 120.0,
                       "manufacturer": "ACME", "model": "X1", "production_date": "2024-01-01",
                       "connectors": [{"connector_id": "EQ01-1", "connector_type": 4, "voltage_upper_v": 750,
                                       "voltage_lower_v": 200, "current_a": 250, "power_kw": 120.0,
                                       "national_standard": 2}]}]},
    Command.CHARGING_STATUS: {"connector_id": "EQ01-1", "status": 3, "park_status": 1, "lock_status": 0},
    Command.CHARGING_MEASUREMENT: {"connector_id": "EQ01-1", "session_id": "S20261125001", "voltage_v": 380.5,
                                   "current_a": 20.0, "power_kw": 10.0, "energy_kwh": 1.23, "soc_pct": 50,
                                   "elapsed_s": 60},
    Command.CHARGING_RECORD: {"connector_id": "EQ01-1", "session_id": "S20261125001", "started_at": T0,
                              "ended_at": T0 + timedelta(hours=1), "energy_kwh": 12.34, "meter_start_kwh": 1000.0,
                              "meter_end_kwh": 1012.34, "stop_reason": 1, "vin": VIN},
    Command.CHARGING_ALARM: {"target_id": "EQ01", "code": "E042", "level": 2, "state": 1, "started_at": T0,
                             "ended_at": None, "description": "over temperature"},
}


def edition_of(command: int) -> Edition:
    return Edition.V2025 if command in ONLY_2025 else Edition.V2016


def sample(command: int, vin: str = VIN, when: datetime = T0) -> Frame:
    """A well-formed frame of ``command`` sent as a command, with ``vin`` in the header."""
    ed = edition_of(command)
    body = {
        Command.VEHICLE_LOGIN: None, Command.REALTIME: None, Command.REISSUE: None, Command.VEHICLE_LOGOUT: None,
        Command.PLATFORM_LOGIN: PlatformLogin(when, 1, "ent01", "secret", 1),
        Command.PLATFORM_LOGOUT: Logout(when, 1),
        Command.HEARTBEAT: None,
        Command.TIME_SYNC: None,
        Command.ACTIVATION: Activation(when, "CHIP000000000001", bytes(range(64)), vin, 1, b"\x01" * 32,
                                       b"\x02" * 32),
        Command.ACTIVATION_ANSWER: ActivationAnswer(1, 0),
        Command.KEY_SYNC: KeySync(3, bytes(range(16)), when, when + timedelta(days=1)),
        Command.QUERY_PARAMS: ParamQuery(when, (0x01, 0x02)),
        Command.SET_PARAMS: ParamList(when, ((0x01, 1000),)),
        Command.TERMINAL_CONTROL: TerminalControl(when, 3, b""),
    }
    if command == Command.VEHICLE_LOGIN:
        return login_frame(vin, when, edition=ed)
    if command in (Command.REALTIME, Command.REISSUE):
        return data_frame(vin, when, reissue=command == Command.REISSUE, edition=ed)
    if command == Command.VEHICLE_LOGOUT:
        return logout_frame(vin, when, edition=ed)
    if command in CHARGING_DATA:
        return Frame(ed, command, Response.COMMAND, vin, Encryption.NONE,
                     ChargingMessage(command, when, CHARGING_DATA[command]))
    return Frame(ed, command, Response.COMMAND, vin, Encryption.NONE, body[command])


def platform_login(username: str, password: str, platform_id: str = "ENT01", serial: int = 1,
                   when: datetime = T0) -> Frame:
    return Frame(Edition.V2016, Command.PLATFORM_LOGIN, Response.COMMAND, platform_id, Encryption.NONE,
                 PlatformLogin(when, serial, username, password, 1))


def heartbeat(vin: str = VIN, edition: Edition = Edition.V2016) -> Frame:
    return Frame(edition, Command.HEARTBEAT, Response.COMMAND, vin, Encryption.NONE, None)


def time_sync(vin: str = VIN) -> Frame:
    return Frame(Edition.V2016, Command.TIME_SYNC, Response.COMMAND, vin, Encryption.NONE, None)


def wire(*frames: Frame) -> bytes:
    return b"".join(codec.encode_frame(f) for f in frames)


def answer_bytes(frame: Frame, response: int, now: datetime) -> bytes:
    """The standard's answer to ``frame`` (``codec.answer``), as bytes."""
    return codec.encode_frame(codec.answer(frame, response, now))


def utc(clock) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), timezone.utc)


def make_clock(start: datetime = T0) -> MemoryReactorClock:
    clock = MemoryReactorClock()
    clock.advance(start.timestamp())
    return clock


def connect(factory, host: str = "10.0.0.1", port: int = 40000):
    """(protocol, transport) of a new connection from host:port, or (None, None) when refused."""
    addr = IPv4Address("TCP", host, port)
    proto = factory.buildProtocol(addr)
    if proto is None:
        return None, None
    transport = StringTransport(peerAddress=addr)
    proto.makeConnection(transport)
    if transport.disconnecting and proto.reader is None:  # refused once its real peer is known
        return None, None
    return proto, transport


def take(transport: StringTransport) -> bytes:
    """What the node wrote since the last call."""
    out = transport.value()
    transport.clear()
    return out


def hang_up(proto) -> None:
    """The peer is gone: what the reactor does after the socket closed."""
    proto.connectionLost(Failure(ConnectionDone()))


def hang_up_all(factory) -> None:
    for proto in list(factory.sessions):
        hang_up(proto)


def events(logs: list[dict], name: str) -> list[dict]:
    return [e for e in logs if e.get("event") == name]


class AuditRecorder:
    """The audit collaborator's interface (``relay.audit.Audit.record``), kept in a list."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def record(self, actor: str, action: str, result: str, target: str = "", **detail) -> None:
        self.entries.append({"actor": actor, "action": action, "result": result, "target": target, **detail})

    def refusals(self) -> list[dict]:
        return [e for e in self.entries if e["result"] == "refused"]


def assert_no_result(d) -> None:
    """``d`` has not fired; its eventual result still reaches later callbacks.

    (``tests.support.fixtures.assert_no_result`` leaves ``list.append``'s None as the result.)"""
    seen = []

    def look(result):
        seen.append(result)
        return result

    d.addBoth(look)
    assert not seen, f"expected no result, got {seen[0]!r}"
