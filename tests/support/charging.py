"""Charging-facility integration helpers: node configs with a charging endpoint, simulated
operators whose clock the test sets, hand-built T/CEC 102.4 requests posted with treq, and
what a tier stored (frames and facility tables) in comparable form.

Every database look runs off the reactor thread and every awaited Deferred has a deadline."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import psycopg
import treq
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

import codec
from codec import CST, tcec
from relay.simulate_piles import DEMO_SECRETS, OPERATOR, HttpOperator, LinkOperator

from .nodes import NANJING_HASH, platform_config, upstream
from .wait import until

SECRETS = DEMO_SECRETS
#: a second operator known to the city, with its own secrets
OTHER = "MA02OTHER"
OTHER_SECRETS = tcec.Secrets("other-op-secret", "fedcba0987654321", "0987654321fedcba", "other-sig-secret")
#: the demo's platform account for charging operators (relay/demo.yaml), password "chargeop-demo"
CHARGEOP_HASH = ("scrypt$16384$8$1$0f1e2d3c4b5a69788796a5b4c3d2e1f0$"
                 "955761174378d8a280a8e3fa867b6b3720afa17e6c9f95d44d77e338062a0190")
#: the operators' clock starts here (each message one second after the one before)
T0 = datetime(2026, 11, 25, 9, 0, 0, tzinfo=CST)
COMMANDS = (0xC1, 0xC2, 0xC3, 0xC4, 0xC5)
ENDPOINT = "tcp:0:interface=127.0.0.1"


def operator_entry(operator: str, secrets: tcec.Secrets) -> dict:
    return {"operator_id": operator, "operator_secret": secrets.operator_secret, "data_secret": secrets.data_secret,
            "data_iv": secrets.data_iv, "sig_secret": secrets.sig_secret}


def municipal_config(dsn: str, upstreams: list[dict] | None = None, *, token_lifetime: float = 7200.0,
                     endpoint: str = ENDPOINT) -> dict:
    """Nanjing (3201): charging endpoint with MA01SIM01 (demo secrets) and MA02OTHER, and
    the platform account ``chargeop`` that may send MA01SIM01 over a platform link."""
    raw = platform_config("municipal", "NJ3201", dsn, region="3201", upstreams=upstreams or [], endpoint=endpoint,
                          accounts=[{"username": "chargeop", "password_hash": CHARGEOP_HASH,
                                     "allowed_operators": [OPERATOR]}])
    raw["charging"] = {"endpoint": ENDPOINT, "token_lifetime": token_lifetime,
                       "operators": [operator_entry(OPERATOR, SECRETS), operator_entry(OTHER, OTHER_SECRETS)]}
    return raw


def provincial_config(dsn: str, endpoint: str = ENDPOINT, node_id: str = "JS32") -> dict:
    """Jiangsu (32): the city logs in as ``nanjing``, which may send MA01SIM01 and MA02OTHER."""
    return platform_config("provincial", node_id, dsn, region="32", endpoint=endpoint, accounts=[
        {"username": "nanjing", "password_hash": NANJING_HASH, "allowed_owners": ["ENT01"],
         "allowed_operators": [OPERATOR, OTHER]}])


def to_province(port: int, name: str = "provincial", **extra) -> dict:
    return upstream(name, port, "nanjing", "nanjing-demo", "NJ3201", regions=["32"], **extra)


# --- operators the test drives ----------------------------------------------------------

class _Clocked:
    """The operator's clock is the test's: it starts at ``start`` and each message is one
    second after the one before, so no two messages share a collection time (they would be
    one message to the receiver's deduplication) and the expected order is known. ``sent``
    lists the charging messages the receiver accepted, in order."""

    def _init_clock(self, start: datetime) -> None:
        self.clock = start
        self.accepted: list[codec.ChargingMessage] = []

    def _next(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock


class ClockedHttpOperator(_Clocked, HttpOperator):
    def __init__(self, reactor, base_url: str, operator: str = OPERATOR, secrets: tcec.Secrets = SECRETS,
                 start: datetime = T0) -> None:
        super().__init__(reactor, base_url, operator, secrets)
        self._init_clock(start)
        self.last_timestamp = ""

    def _timestamp(self) -> str:
        self.last_timestamp = self._next().strftime("%Y%m%d%H%M%S")
        return self.last_timestamp

    async def push(self, interface: str, data: dict) -> bool:
        ok = await super().push(interface, data)
        if ok:
            self.accepted.extend(tcec.INTERFACES[interface](data, tcec.parse_timestamp(self.last_timestamp)))
        return ok


class ClockedLinkOperator(_Clocked, LinkOperator):
    def __init__(self, reactor, host: str, port: int, user: str, password: str, operator: str = OPERATOR,
                 start: datetime = T0) -> None:
        super().__init__(reactor, host, port, user, password, operator)
        self._init_clock(start)

    def now(self) -> datetime:
        return self._next()

    async def push(self, interface: str, data: dict) -> bool:
        when = self.clock + timedelta(seconds=1)  # what push's own self.now() will give
        ok = await super().push(interface, data)
        self.accepted.extend(tcec.INTERFACES[interface](data, when))
        return ok


async def tell(op, fleet, ticks: int, extra: list[tuple[str, dict]] = (), static: bool = True) -> None:
    """The fleet's static info (unless ``static`` is false), ``ticks`` intervals of its story
    (one minute apart on the operator's clock), then the ``extra`` messages."""
    for interface, data in fleet.static() if static else ():
        assert await op.push(interface, data), (interface, op.refused)
    for _ in range(ticks):
        op.clock += timedelta(seconds=60)
        for interface, data in fleet.tick(op.clock):
            assert await op.push(interface, data), (interface, op.refused)
    for interface, data in extra:
        assert await op.push(interface, data), (interface, op.refused)


def alarm(target: dict, at: datetime, raised: bool, code: str = "14") -> tuple[str, dict]:
    """``notification_alarmInfo`` with one entry for ``target`` ({"EquipmentID": ...} or
    {"ConnectorID": ...})."""
    return ("notification_alarmInfo", {"AlarmInfos": [{
        **target, "AlarmStatus": 1 if raised else 0, "AlarmCode": code, "AlarmType": 1, "AlarmLevel": 2,
        "AlarmTime": at.strftime("%Y-%m-%d %H:%M:%S"), "NoteString": "充电桩过温"}]})


def expected(messages: list[codec.ChargingMessage]) -> list[tuple]:
    return [(m.kind, m.collected_at, m.subject_id) for m in messages]


def per_command(messages: list[codec.ChargingMessage]) -> dict[int, int]:
    out = {c: 0 for c in COMMANDS}
    for m in messages:
        out[m.kind] += 1
    return out


# --- requests built by hand -------------------------------------------------------------

class Poster:
    """Posts T/CEC 102.4 envelopes with treq; its own TimeStamp clock and Seq."""

    def __init__(self, reactor, base_url: str, start: datetime = T0 + timedelta(hours=5)) -> None:
        self.reactor = reactor
        self.base = base_url.rstrip("/")
        self.clock = start
        self.seq = 0

    def request(self, payload, secrets: tcec.Secrets = SECRETS, operator: str = OPERATOR) -> dict:
        """A signed, encrypted envelope; ``payload`` a dict (sent as JSON) or a str (as is)."""
        self.clock += timedelta(seconds=1)
        self.seq += 1
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        return tcec.make_request(operator, text, secrets, self.clock.strftime("%Y%m%d%H%M%S"), self.seq)

    async def post(self, interface: str, body, token: str | None = None) -> tuple[int, dict]:
        """POST ``body`` (a dict as JSON, or raw bytes); the HTTP code and the JSON answer."""
        headers = {b"content-type": [b"application/json;charset=utf-8"]}
        if token is not None:
            headers[b"authorization"] = [f"Bearer {token}".encode()]
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        resp = await treq.post(f"{self.base}/{interface}", data=data, headers=headers, persistent=False,
                               reactor=self.reactor).addTimeout(10, self.reactor)
        text = await treq.content(resp).addTimeout(10, self.reactor)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {"_raw": text.decode("utf-8", "replace")}
        return resp.code, answer

    async def token(self, operator: str = OPERATOR, secrets: tcec.Secrets = SECRETS,
                    operator_secret: str | None = None) -> dict:
        """``query_token``; the answer with its Data decrypted and its Sig checked."""
        _, answer = await self.post("query_token", self.request(
            {"OperatorID": operator, "OperatorSecret": secrets.operator_secret if operator_secret is None
             else operator_secret}, secrets, operator))
        assert answer.get("Ret") == 0, answer
        tcec.verify_response(answer, secrets)
        answer["Data"] = json.loads(tcec.decrypt_data(answer["Data"], secrets))
        return answer


# --- what a tier stored -------------------------------------------------------------------

def _query(dsn: str, sql: str, args: tuple) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


async def rows(reactor, dsn: str, sql: str, *args) -> list[tuple]:
    return await deferToThread(_query, dsn, sql, args).addTimeout(30, reactor)


async def scalar(reactor, dsn: str, sql: str, *args):
    return (await rows(reactor, dsn, sql, *args))[0][0]


CHARGING_FRAMES = "SELECT count(*) FROM frames WHERE command BETWEEN 193 AND 197 AND response = 254"


async def count_is(reactor, dsn: str, sql: str, expected_count: int, what: str, *args, timeout: float = 20.0) -> None:
    """Wait until ``sql`` counts ``expected_count``, then check it did not overshoot."""
    await until(reactor, lambda: Deferred.fromCoroutine(scalar(reactor, dsn, sql, *args)).addCallback(
        lambda n: n >= expected_count), timeout, every=0.05, what=what)
    assert await scalar(reactor, dsn, sql, *args) == expected_count, what


async def frames_in_order(reactor, dsn: str) -> list[tuple]:
    """The charging frames as stored, in arrival order: (command, operator, collected_at,
    subject id, md5 of the data unit)."""
    got = await rows(reactor, dsn, "SELECT raw, digest FROM frames WHERE command BETWEEN 193 AND 197 ORDER BY id")
    out = []
    for raw, digest in got:
        frame = codec.decode_frame(bytes(raw))
        out.append((frame.command, frame.vin, frame.body.collected_at, frame.body.subject_id, bytes(digest)))
    return out


async def commands(reactor, dsn: str) -> dict[int, int]:
    counted = dict(await rows(reactor, dsn, "SELECT command, count(*) FROM frames WHERE command BETWEEN 193 AND 197 "
                                            "GROUP BY command"))
    return {c: counted.get(c, 0) for c in COMMANDS}


#: the facility tables, each in a stable order and without the tier's own frame ids;
#: time series in arrival order (frame_id), which must be collection order at both tiers
FACILITY_TABLES = {
    "charging_stations": "SELECT operator_id, station_id, name, region_code, address, longitude, latitude, "
                         "station_type, station_status, service_hours, updated_at FROM charging_stations ORDER BY 1, 2",
    "charging_equipment": "SELECT * FROM charging_equipment ORDER BY operator_id, equipment_id",
    "charging_connectors": "SELECT * FROM charging_connectors ORDER BY operator_id, connector_id",
    "connector_status": "SELECT operator_id, connector_id, collected_at, status, park_status, lock_status "
                        "FROM connector_status ORDER BY frame_id",
    "charging_measurements": "SELECT operator_id, connector_id, session_id, collected_at, voltage_v, current_a, "
                             "power_kw, energy_kwh, soc_pct, elapsed_s FROM charging_measurements ORDER BY frame_id",
    "charging_records": "SELECT operator_id, session_id, connector_id, started_at, ended_at, energy_kwh, "
                        "meter_start_kwh, meter_end_kwh, stop_reason, vin, collected_at FROM charging_records "
                        "ORDER BY frame_id",
    "charging_alarms": "SELECT operator_id, target_id, code, level, state, started_at, ended_at, description, "
                       "collected_at FROM charging_alarms ORDER BY frame_id",
}


async def facilities(reactor, dsn: str) -> dict[str, list[tuple]]:
    return {table: await rows(reactor, dsn, sql) for table, sql in FACILITY_TABLES.items()}


async def audited(reactor, dsn: str, n: int, sql: str, *args) -> list[tuple]:
    """The rows of an audit query once there are ``n`` (the audit is written in batches)."""
    await until(reactor, lambda: Deferred.fromCoroutine(rows(reactor, dsn, sql, *args)).addCallback(
        lambda r: len(r) >= n), 10, what=f"{n} audit rows: {sql}")
    return await rows(reactor, dsn, sql, *args)


async def refusals(reactor, dsn: str, n: int, action: str = "charging_http") -> list[tuple]:
    """The refusals audited for ``action`` once there are ``n``: (actor, target, detail ret)."""
    return await audited(reactor, dsn, n, "SELECT actor, target, detail->>'ret' FROM audit WHERE action = %s "
                                          "AND result = 'refused' ORDER BY id", action)


class Tiers:
    """Nodes started by a test, stopped at its end (lower tiers first)."""

    ORDER = ("municipal", "provincial", "supervision")

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.nodes: dict = {}

    async def start(self, name: str, raw: dict):
        from .nodes import start

        node = await Deferred.fromCoroutine(start(self.reactor, raw)).addTimeout(30, self.reactor)
        self.nodes[name] = node
        return node

    async def stop(self, name: str) -> None:
        node = self.nodes.pop(name)
        await node.stop().addTimeout(30, self.reactor)

    async def stop_all(self) -> None:
        for name in self.ORDER:
            if name in self.nodes:
                await self.stop(name)


def charging_url(node) -> str:
    return f"http://127.0.0.1:{node.port('charging')}/evcs/v1.0"
