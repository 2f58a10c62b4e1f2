"""A simulated charging operator: stations, piles and connectors reporting their state.

Two ways in, as real operators do (docs/charging-exchange.md, docs/charging-wire.md):
``HttpOperator`` pushes T/CEC 102.4-style JSON over HTTP (token, AES-128-CBC, HMAC-MD5);
``LinkOperator`` logs in over a 32960 platform link (0x05) and sends 0xC1-0xC5 frames.
Both send the same story: each station's static info first, then connector status
changes, charging measurements while charging, a charging record when a session ends,
and now and then an alarm.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import structlog
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

import codec
from codec import ChargingMessage, Command, Edition, Encryption, Frame, FrameReader, Response, tcec

log = structlog.get_logger("relay.simulate_piles")

OPERATOR = "MA01SIM01"
DEMO_SECRETS = tcec.Secrets("op-secret-demo", "1234567890abcdef", "abcdef1234567890", "sig-secret-demo!")


@dataclass
class Connector:
    connector_id: str
    equipment_id: str
    station_id: str
    status: int = 1
    session: str = ""
    started: datetime | None = None
    energy: float = 0.0
    soc: int = 20


@dataclass
class PileFleet:
    operator: str
    stations: dict[str, dict] = field(default_factory=dict)
    connectors: list[Connector] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    seq: int = 0

    @classmethod
    def make(cls, piles: int, seed: int = 3, operator: str = OPERATOR, region_code: str = "320102",
             per_station: int = 4) -> "PileFleet":
        fleet = cls(operator, rng=random.Random(seed))
        for i in range(piles):
            station = f"ST{i // per_station:04d}"
            info = fleet.stations.setdefault(station, {"StationID": station, "OperatorID": operator,
                                                       "EquipmentOwnerID": operator, "StationName": f"Demo station {station}",
                                                       "CountryCode": "CN", "AreaCode": region_code,
                                                       "Address": "Nanjing", "StationType": 1, "StationStatus": 50,
                                                       "ParkNums": per_station, "StationLng": 118.78 + i * 0.001,
                                                       "StationLat": 32.04, "Construction": 255,
                                                       "BusineHours": "00:00-24:00", "EquipmentInfos": []})
            equipment = f"{station}EQ{i:04d}"
            connector = f"{equipment}1"
            info["EquipmentInfos"].append({"EquipmentID": equipment, "ManufacturerID": "MA01SIM99",
                                           "ManufacturerName": "SimPile", "EquipmentModel": "DC60",
                                           "ProductionDate": "2024-05-01", "EquipmentType": 1, "Power": 60.0,
                                           "ConnectorInfos": [{"ConnectorID": connector, "ConnectorType": 4,
                                                               "VoltageUpperLimits": 750, "VoltageLowerLimits": 200,
                                                               "Current": 150, "Power": 60.0,
                                                               "NationalStandard": 2}]})
            fleet.connectors.append(Connector(connector, equipment, station))
        return fleet

    def session_id(self) -> str:
        self.seq += 1
        return f"{self.operator}{self.seq:018d}"

    def tick(self, now: datetime) -> list[tuple[str, dict]]:
        """What happened during one interval, as (T/CEC interface, Data) pairs."""
        out: list[tuple[str, dict]] = []
        fmt = "%Y-%m-%d %H:%M:%S"
        for c in self.connectors:
            r = self.rng.random()
            if c.status == 1 and r < 0.3:
                c.status, c.session, c.started, c.energy, c.soc = 3, self.session_id(), now, 0.0, self.rng.randint(10, 60)
                out.append(("notification_stationStatus", {"ConnectorStatusInfo": {
                    "ConnectorID": c.connector_id, "Status": 3, "ParkStatus": 50, "LockStatus": 50}}))
            elif c.status == 3:
                c.energy += round(self.rng.uniform(0.05, 0.2), 2)
                c.soc = min(100, c.soc + 1)
                out.append(("notification_equip_charge_status", {
                    "StartChargeSeq": c.session, "StartChargeSeqStat": 2, "ConnectorID": c.connector_id,
                    "ConnectorStatus": 3, "CurrentA": round(self.rng.uniform(80, 120), 1),
                    "VoltageA": round(self.rng.uniform(380, 420), 1), "Soc": c.soc,
                    "StartTime": c.started.strftime(fmt), "EndTime": now.strftime(fmt),
                    "TotalPower": round(c.energy, 2)}))
                if r < 0.2:
                    out.append(("notification_charge_order_info", {
                        "StartChargeSeq": c.session, "ConnectorID": c.connector_id,
                        "StartTime": c.started.strftime(fmt), "EndTime": now.strftime(fmt),
                        "TotalPower": round(c.energy, 2), "StopReason": 0}))
                    c.status = 1
                    out.append(("notification_stationStatus", {"ConnectorStatusInfo": {
                        "ConnectorID": c.connector_id, "Status": 1, "ParkStatus": 10, "LockStatus": 10}}))
            if r > 0.99:
                out.append(("notification_alarmInfo", {"AlarmInfos": [{
                    "StationID": c.station_id, "OperatorID": self.operator, "EquipmentID": c.equipment_id,
                    "ConnectorID": c.connector_id, "AlarmStatus": 1, "AlarmCode": "13", "AlarmType": 1,
                    "AlarmLevel": 2, "AlarmTime": now.strftime(fmt), "NoteString": "gun over-temperature"}]}))
        return out

    def static(self) -> list[tuple[str, dict]]:
        return [("notification_stationInfo", {"StationInfo": info}) for info in self.stations.values()]


class HttpOperator:
    """Pushes over HTTP to a node's charging endpoint (``base_url`` like http://host:port/evcs/v1.0)."""

    def __init__(self, reactor, base_url: str, operator: str, secrets: tcec.Secrets) -> None:
        self.reactor = reactor
        self.base = base_url.rstrip("/")
        self.operator = operator
        self.secrets = secrets
        self.agent = Agent(reactor)
        self.token = ""
        self.seq = 0
        self.sent = 0
        self.refused: dict[int, int] = {}

    def _timestamp(self) -> str:
        return datetime.fromtimestamp(self.reactor.seconds(), timezone(timedelta(hours=8))).strftime("%Y%m%d%H%M%S")

    async def call(self, interface: str, data: dict) -> dict:
        self.seq += 1
        body = tcec.make_request(self.operator, json.dumps(data, ensure_ascii=False), self.secrets,
                                 self._timestamp(), self.seq)
        headers = Headers({b"content-type": [b"application/json;charset=utf-8"]})
        if self.token:
            headers.addRawHeader(b"authorization", f"Bearer {self.token}".encode())
        from io import BytesIO

        resp = await self.agent.request(b"POST", f"{self.base}/{interface}".encode(), headers,
                                        FileBodyProducer(BytesIO(json.dumps(body).encode("utf-8"))))
        answer = json.loads(await readBody(resp))
        if answer.get("Ret") == 0 and answer.get("Data"):
            tcec.verify_response(answer, self.secrets)
            answer["Data"] = json.loads(tcec.decrypt_data(answer["Data"], self.secrets))
        return answer

    async def login(self) -> None:
        answer = await self.call("query_token", {"OperatorID": self.operator, "OperatorSecret":
                                                 self.secrets.operator_secret})
        if answer.get("Ret") != 0 or answer["Data"].get("SuccStat") != 0:
            raise RuntimeError(f"token refused: {answer}")
        self.token = answer["Data"]["AccessToken"]

    async def push(self, interface: str, data: dict) -> bool:
        answer = await self.call(interface, data)
        if answer.get("Ret") == 0:
            self.sent += len(data.get("AlarmInfos", [None]))
            return True
        self.refused[answer.get("Ret")] = self.refused.get(answer.get("Ret"), 0) + 1
        log.warning("charging_push_refused", interface=interface, ret=answer.get("Ret"), msg=answer.get("Msg"))
        return False

    async def close(self) -> None:
        pool = getattr(self.agent, "_pool", None)
        if pool is not None:
            await pool.closeCachedConnections()


class _LinkProtocol(protocol.Protocol):
    def __init__(self) -> None:
        self.reader = FrameReader()
        self.waiting: dict[int, list[Deferred]] = {}

    def dataReceived(self, data: bytes) -> None:
        for item in self.reader.feed(data):
            if isinstance(item, Frame) and item.is_answer and self.waiting.get(item.command):
                self.waiting[item.command].pop(0).callback(item)

    def request(self, frame: Frame) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.setdefault(frame.command, []).append(d)
        self.transport.write(codec.encode_frame(frame))
        return d


class LinkOperator:
    """Sends the same messages as 0xC1-0xC5 frames over a 32960 platform link."""

    def __init__(self, reactor, host: str, port: int, user: str, password: str, operator: str) -> None:
        self.reactor = reactor
        self.host, self.port = host, port
        self.user, self.password, self.operator = user, password, operator
        self.proto: _LinkProtocol | None = None
        self.sent = 0
        self.refused: dict[int, int] = {}

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.reactor.seconds()), timezone.utc).astimezone(codec.CST)

    async def login(self) -> None:
        self.proto = _LinkProtocol()
        await TCP4ClientEndpoint(self.reactor, self.host, self.port).connect(
            protocol.Factory.forProtocol(lambda: self.proto))
        answer = await self.proto.request(Frame(Edition.V2016, Command.PLATFORM_LOGIN, Response.COMMAND,
                                                self.operator, Encryption.NONE,
                                                codec.PlatformLogin(self.now(), 1, self.user, self.password, 1)))
        if answer.response != Response.SUCCESS:
            raise RuntimeError("platform login refused")

    async def push(self, interface: str, data: dict) -> bool:
        messages = tcec.INTERFACES[interface](data, self.now())
        for msg in messages:
            self.proto.transport.write(codec.encode_frame(Frame(Edition.V2016, msg.kind, Response.COMMAND,
                                                                self.operator, Encryption.NONE, msg)))
        self.sent += len(messages)
        return True

    async def close(self) -> None:
        if self.proto is None:
            return
        # a heartbeat answered after commit: everything sent before it is stored
        await self.proto.request(Frame(Edition.V2016, Command.HEARTBEAT, Response.COMMAND, self.operator,
                                       Encryption.NONE, None)).addTimeout(10, self.reactor)
        await self.proto.request(Frame(Edition.V2016, Command.PLATFORM_LOGOUT, Response.COMMAND, self.operator,
                                       Encryption.NONE, codec.Logout(self.now(), 1))).addTimeout(10, self.reactor)
        self.proto.transport.loseConnection()


async def run_operator(reactor, client, fleet: PileFleet, seconds: float, interval: float) -> dict:
    """Send the fleet's static info, then a tick every ``interval`` for ``seconds``."""
    from .simulate import _sleep

    await client.login()
    for interface, data in fleet.static():
        await client.push(interface, data)
    end = reactor.seconds() + seconds
    while reactor.seconds() < end:
        now = datetime.fromtimestamp(int(reactor.seconds()), timezone.utc).astimezone(codec.CST)
        for interface, data in fleet.tick(now):
            await client.push(interface, data)
        await _sleep(reactor, interval)
    await client.close()
    return {"piles": len(fleet.connectors), "stations": len(fleet.stations), "messages_sent": client.sent,
            "refused": client.refused}


__all__ = ["PileFleet", "HttpOperator", "LinkOperator", "run_operator", "ChargingMessage", "DEMO_SECRETS", "OPERATOR"]
