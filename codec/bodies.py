"""Data units of the commands other than realtime/reissue, declared with ``construct``.

Each body is a frozen dataclass; the byte layout is a ``construct.Struct`` next to it,
citing the clause. Times are aware datetimes in +08:00 (``codec.timefield``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import construct as c

from .errors import BadBody, BadTime, EncodeError
from .timefield import SIZE, decode_time, encode_time


class _TimeField(c.Construct):
    """The standard's 6-byte time as a construct (clause 6.4 table 5); an impossible time
    is reported at its own offset in the data unit."""

    def _parse(self, stream, context, path):
        off = c.stream_tell(stream, path)
        return _time_at(c.stream_read(stream, 6, path), off)

    def _build(self, obj, stream, context, path):
        c.stream_write(stream, encode_time(obj), 6, path)
        return obj

    def _sizeof(self, context, path):
        return 6

    # kept for OptionalTime in codec.charging
    def _decode(self, obj, context, path):
        return decode_time(obj, 0)

    def _encode(self, obj, context, path):
        return encode_time(obj)


def _time_at(raw: bytes, off: int):
    try:
        return decode_time(raw, 0)
    except BadTime as exc:
        exc.offset = off
        raise


Time = _TimeField()


def _ascii(n) -> c.Construct:
    """A fixed-width ASCII field, NUL-padded on build, NUL-stripped on parse."""
    return c.PaddedString(n, "ascii")


@dataclass(frozen=True, slots=True)
class TimeOnly:
    """A data unit holding only a time: most answers, and the time-sync answer."""

    collected_at: datetime


@dataclass(frozen=True, slots=True)
class VehicleLogin:
    """Vehicle login 0x01 (2016 7.1 table 6 / 2025 7.1).

    2016: the subsystem count n and the code length m, then n codes of m bytes.
    2025: see ``codec.bodies_2025`` for its pack-code layout.
    """

    collected_at: datetime
    serial: int
    iccid: str
    subsystem_codes: tuple[str, ...] = ()
    code_length: int = 0


@dataclass(frozen=True, slots=True)
class Logout:
    """Vehicle logout 0x04 and platform logout 0x06: time and the login serial."""

    collected_at: datetime
    serial: int


@dataclass(frozen=True, slots=True)
class PlatformLogin:
    """Platform login 0x05 (2016 7.4 table 29): username 12, password 20, encryption rule."""

    collected_at: datetime
    serial: int
    username: str
    password: str
    encryption_rule: int = 1


@dataclass(frozen=True, slots=True)
class Opaque:
    """A data unit kept as bytes: an answer body without a layout, an unknown command."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Undecoded:
    """A data unit that could not be decrypted; the frame is still valid."""

    data: bytes
    reason: str


TIME_ONLY = c.Struct("collected_at" / Time)

VEHICLE_LOGIN_2016 = c.Struct(
    "collected_at" / Time,
    "serial" / c.Int16ub,
    "iccid" / _ascii(20),
    "count" / c.Int8ub,
    "code_length" / c.Int8ub,
    "codes" / c.Array(c.this.count, _ascii(c.this.code_length)),
)

LOGOUT = c.Struct("collected_at" / Time, "serial" / c.Int16ub)

PLATFORM_LOGIN = c.Struct(
    "collected_at" / Time,
    "serial" / c.Int16ub,
    "username" / _ascii(12),
    "password" / _ascii(20),
    "encryption_rule" / c.Int8ub,
)


def parse_exact(con: c.Construct, data: bytes, what: str):
    """Parse ``data`` with ``con`` and require every byte to be consumed."""
    try:
        obj = (con + c.Terminated).parse(data)
    except BadTime:
        raise
    except c.ConstructError as exc:
        raise BadBody(f"{what}: {exc}".replace("\n", " "), 0) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadBody(f"{what}: {exc}", 0) from None
    return obj


def build(con: c.Construct, obj: dict, what: str) -> bytes:
    try:
        return con.build(obj)
    except EncodeError:
        raise
    except (c.ConstructError, ValueError, TypeError, KeyError, UnicodeEncodeError) as exc:
        raise EncodeError(f"{what}: {exc}".replace("\n", " ")) from None


def decode_time_only(data: bytes) -> TimeOnly:
    """Exactly the 6-byte time (an upstream answers every heartbeat with one: parsing it
    with construct cost 9.5 us, this 0.5)."""
    if len(data) != SIZE:
        raise BadBody(f"time: {len(data)} bytes, not {SIZE}", min(len(data), SIZE))
    return TimeOnly(decode_time(data, 0))


def encode_time_only(body: TimeOnly) -> bytes:
    return encode_time(body.collected_at)


def decode_vehicle_login_2016(data: bytes) -> VehicleLogin:
    obj = parse_exact(VEHICLE_LOGIN_2016, data, "vehicle_login")
    return VehicleLogin(obj.collected_at, obj.serial, obj.iccid, tuple(obj.codes), obj.code_length)


def encode_vehicle_login_2016(body: VehicleLogin) -> bytes:
    length = body.code_length or max((len(x) for x in body.subsystem_codes), default=0)
    return build(VEHICLE_LOGIN_2016, dict(collected_at=body.collected_at, serial=body.serial, iccid=body.iccid,
                                          count=len(body.subsystem_codes), code_length=length,
                                          codes=list(body.subsystem_codes)), "vehicle_login")


def decode_logout(data: bytes) -> Logout:
    obj = parse_exact(LOGOUT, data, "logout")
    return Logout(obj.collected_at, obj.serial)


def encode_logout(body: Logout) -> bytes:
    return build(LOGOUT, dict(collected_at=body.collected_at, serial=body.serial), "logout")


def decode_platform_login(data: bytes) -> PlatformLogin:
    obj = parse_exact(PLATFORM_LOGIN, data, "platform_login")
    return PlatformLogin(obj.collected_at, obj.serial, obj.username, obj.password, obj.encryption_rule)


def encode_platform_login(body: PlatformLogin) -> bytes:
    return build(PLATFORM_LOGIN, dict(collected_at=body.collected_at, serial=body.serial, username=body.username,
                                      password=body.password, encryption_rule=body.encryption_rule),
                 "platform_login")
