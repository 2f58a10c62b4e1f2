"""Charging-facility messages over 32960 platform links (commands 0xC1-0xC5).

GB/T 32960.3 leaves commands 0xC0-0xFE to platform exchange (2016/2025 clause 6.3.1
table 3). This project carries the NB/T 33017 / T/CEC 102 data items there, one command
per message kind; the byte layouts are documented in ``docs/charging-wire.md``:

====== =========================================================
0xC1   station, its equipment (piles) and connectors (static info)
0xC2   connector status change
0xC3   real-time charging measurement of a connector
0xC4   charging record (a finished session)
0xC5   alarm / fault event of equipment or a connector
====== =========================================================

The header's unique id carries the operator id (9 characters). Every body starts with
the collection time (6 bytes, as 32960) and an identifier as a length-prefixed string;
numbers are big-endian scaled integers with the 0xFE../0xFF.. markers (``None`` here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import construct as c

from .bodies import Time, build, parse_exact
from .commands import Command
from .errors import BadBody, EncodeError

#: connector status (T/CEC 102.2 ConnectorStatusInfo.Status)
CONNECTOR_STATUS = {0: "offline", 1: "idle", 2: "occupied", 3: "charging", 4: "reserved", 255: "fault"}
STATION_TYPES = {1: "public", 50: "private", 100: "bus", 101: "sanitation", 102: "logistics", 103: "taxi",
                 255: "other"}
EQUIPMENT_TYPES = {1: "dc", 2: "ac", 3: "ac_dc", 4: "wireless", 5: "other"}
ALARM_STATES = {1: "raised", 2: "cleared"}

#: identifier rules (T/CEC 102.2 as read in docs/charging-exchange.md section 5)
OPERATOR_ID = re.compile(r"^[0-9A-Z]{9}$")
ID_LIMITS = {"station_id": 20, "equipment_id": 23, "connector_id": 26, "target_id": 26, "session_id": 32}
_ID_CHARS = re.compile(r"^[0-9A-Za-z_.\-]+$")


def valid_id(kind: str, value: str) -> bool:
    return bool(value) and len(value) <= ID_LIMITS[kind] and bool(_ID_CHARS.match(value))


class Scaled(c.Adapter):
    """A scaled unsigned number; the top raw value (invalid) is ``None``, the one below it
    (abnormal) the string ``"abnormal"``, so decode -> encode stays byte-exact."""

    def __init__(self, subcon, divisor: int = 1) -> None:
        super().__init__(subcon)
        self.divisor = divisor
        self.full = (1 << (8 * subcon.sizeof())) - 1

    def _decode(self, obj, context, path):
        if obj == self.full:
            return None
        if obj == self.full - 1:
            return "abnormal"
        return obj / self.divisor if self.divisor != 1 else obj

    def _encode(self, obj, context, path):
        if obj is None:
            return self.full
        if obj == "abnormal":
            return self.full - 1
        raw = round(obj * self.divisor) if self.divisor != 1 else int(obj)
        if not 0 <= raw < self.full - 1:
            raise EncodeError(f"{raw / self.divisor} is out of range (or collides with the markers)")
        return raw


class Degrees(c.Adapter):
    """A signed coordinate in 1e-6 degree (GCJ-02 as T/CEC 102 gives it)."""

    def _decode(self, obj, context, path):
        return obj / 1_000_000

    def _encode(self, obj, context, path):
        return round(obj * 1_000_000)


class OptionalTime(c.Adapter):
    """A 6-byte time where all 0xFF means "not yet" (an alarm still open)."""

    def _decode(self, obj, context, path):
        if obj == b"\xff" * 6:
            return None
        return Time._decode(obj, context, path)

    def _encode(self, obj, context, path):
        return b"\xff" * 6 if obj is None else Time._encode(obj, context, path)


Text = c.PascalString(c.Int8ub, "utf8")

CONNECTOR = c.Struct(
    "connector_id" / Text,
    "connector_type" / c.Int8ub,
    "voltage_upper_v" / c.Int16ub,
    "voltage_lower_v" / c.Int16ub,
    "current_a" / c.Int16ub,
    "power_kw" / Scaled(c.Int32ub, 10),
    "national_standard" / c.Int8ub,
)

EQUIPMENT = c.Struct(
    "equipment_id" / Text,
    "equipment_type" / c.Int8ub,
    "rated_power_kw" / Scaled(c.Int32ub, 10),
    "manufacturer" / Text,
    "model" / Text,
    "production_date" / Text,
    "connectors" / c.PrefixedArray(c.Int8ub, CONNECTOR),
)

STATIC = c.Struct(
    "collected_at" / Time,
    "station_id" / Text,
    "station_name" / Text,
    "region_code" / c.PaddedString(6, "ascii"),
    "address" / Text,
    "longitude" / Degrees(c.Int32sb),
    "latitude" / Degrees(c.Int32sb),
    "station_type" / c.Int8ub,
    "station_status" / c.Int8ub,
    "service_hours" / Text,
    "equipment" / c.PrefixedArray(c.Int8ub, EQUIPMENT),
)

STATUS = c.Struct(
    "collected_at" / Time,
    "connector_id" / Text,
    "status" / c.Int8ub,
    "park_status" / c.Int8ub,
    "lock_status" / c.Int8ub,
)

MEASUREMENT = c.Struct(
    "collected_at" / Time,
    "connector_id" / Text,
    "session_id" / Text,
    "voltage_v" / Scaled(c.Int16ub, 10),
    "current_a" / Scaled(c.Int16ub, 10),
    "power_kw" / Scaled(c.Int16ub, 10),
    "energy_kwh" / Scaled(c.Int32ub, 100),
    "soc_pct" / Scaled(c.Int8ub),
    "elapsed_s" / Scaled(c.Int32ub),
)

RECORD = c.Struct(
    "collected_at" / Time,
    "connector_id" / Text,
    "session_id" / Text,
    "started_at" / Time,
    "ended_at" / Time,
    "energy_kwh" / Scaled(c.Int32ub, 100),
    "meter_start_kwh" / Scaled(c.Int32ub, 100),
    "meter_end_kwh" / Scaled(c.Int32ub, 100),
    "stop_reason" / c.Int8ub,
    "vin" / c.PaddedString(17, "ascii"),
)

ALARM = c.Struct(
    "collected_at" / Time,
    "target_id" / Text,
    "code" / Text,
    "level" / c.Int8ub,
    "state" / c.Int8ub,
    "started_at" / Time,
    "ended_at" / OptionalTime(c.Bytes(6)),
    "description" / Text,
)

LAYOUTS = {
    Command.CHARGING_STATIC: ("charging_static", STATIC, "station_id"),
    Command.CHARGING_STATUS: ("charging_status", STATUS, "connector_id"),
    Command.CHARGING_MEASUREMENT: ("charging_measurement", MEASUREMENT, "connector_id"),
    Command.CHARGING_RECORD: ("charging_record", RECORD, "connector_id"),
    Command.CHARGING_ALARM: ("charging_alarm", ALARM, "target_id"),
}


@dataclass(frozen=True, slots=True)
class ChargingMessage:
    """A charging-facility message: its kind (the command), collection time and fields."""

    kind: int
    collected_at: datetime
    data: dict = field(default_factory=dict)

    @property
    def subject_id(self) -> str:
        """The station/connector/equipment the message is about (dedup and ordering key)."""
        return self.data[LAYOUTS[self.kind][2]]


def _plain(obj):
    if isinstance(obj, c.Container):
        return {k: _plain(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, (list, c.ListContainer)):
        return [_plain(v) for v in obj]
    return obj


def _decoder(kind: int):
    name, con, id_key = LAYOUTS[kind]

    def decode(data: bytes) -> ChargingMessage:
        obj = _plain(parse_exact(con, data, name))
        when = obj.pop("collected_at")
        ident = obj.get(id_key, "")
        kind_of_id = "target_id" if id_key == "target_id" else id_key
        if not valid_id(kind_of_id, ident):
            raise BadBody(f"{name}: {id_key} {ident!r} breaks the identifier rules", 6)
        return ChargingMessage(kind, when, obj)

    return decode


def _encoder(kind: int):
    name, con, _ = LAYOUTS[kind]

    def encode(body: ChargingMessage) -> bytes:
        return build(con, dict(body.data, collected_at=body.collected_at), name)

    return encode


BODIES = {kind: (_decoder(kind), _encoder(kind)) for kind in LAYOUTS}
