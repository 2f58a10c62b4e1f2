"""Parameter query (0x80), parameter set (0x81) and terminal control (0x82).

2016 annex B tables B.9-B.17; 2025 annex B tables B.5-B.13. The 2025 edition keeps the
layout but shrinks two parameters to one byte: 0x02 (normal reporting period, 1-30 s)
and 0x03 (reporting period while alarmed, 0-1 s).
A parameter list is the time, a count and id/value pairs; each id has a fixed type,
except the two domain names whose length is the value of the id before them
(0x04 -> 0x05, 0x0D -> 0x0E). An id the table does not know ends the parse: the rest
is kept as ``{"id", "hex"}`` so nothing is lost and encode gives the same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

from .errors import BadBody, EncodeError
from .timefield import decode_time, encode_time

#: id -> (name, type); type is "B", "H", ("str", n) or ("len", id of its length)
PARAMETERS: dict[int, tuple[str, object]] = {
    0x01: ("local_storage_period_ms", "H"),
    0x02: ("report_interval_s", "H"),
    0x03: ("alarm_report_interval_ms", "H"),
    0x04: ("platform_domain_length", "B"),
    0x05: ("platform_domain", ("len", 0x04)),
    0x06: ("platform_port", "H"),
    0x07: ("hardware_version", ("str", 5)),
    0x08: ("firmware_version", ("str", 5)),
    0x09: ("heartbeat_interval_s", "B"),
    0x0A: ("terminal_response_timeout_s", "H"),
    0x0B: ("platform_response_timeout_s", "H"),
    0x0C: ("login_retry_interval_min", "B"),
    0x0D: ("public_platform_domain_length", "B"),
    0x0E: ("public_platform_domain", ("len", 0x0D)),
    0x0F: ("public_platform_port", "H"),
    0x10: ("sampling_monitoring", "B"),
}
PARAMETER_IDS = {name: pid for pid, (name, _) in PARAMETERS.items()}

#: 2025 annex B table B.8: the reporting periods are one byte, in seconds
PARAMETERS_2025: dict[int, tuple[str, object]] = {
    **PARAMETERS,
    0x02: ("report_interval_s", "B"),
    0x03: ("alarm_report_interval_s", "B"),
}
PARAMETER_IDS.update({name: pid for pid, (name, _) in PARAMETERS_2025.items()})


def parameter_table(edition) -> dict[int, tuple[str, object]]:
    return PARAMETERS_2025 if getattr(edition, "value", edition) == "2025" else PARAMETERS

#: terminal control command ids (2016 7.7 table 36)
CONTROL_COMMANDS = {
    1: "upgrade",
    2: "power_off",
    3: "reset",
    4: "factory_reset",
    5: "disconnect",
    6: "alarm",
    7: "sampling_monitoring",
}
CONTROL_IDS = {n: i for i, n in CONTROL_COMMANDS.items()}


@dataclass(frozen=True, slots=True)
class ParamQuery:
    """0x80 command: the ids asked for."""

    collected_at: datetime
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ParamList:
    """0x80 answer and 0x81 command: (id, value) pairs; value is int, str, or for an
    unknown id the rest of the data unit as bytes."""

    collected_at: datetime
    params: tuple[tuple[int, object], ...]

    def as_dict(self, edition="2016") -> dict[str, object]:
        table = parameter_table(edition)
        return {table.get(pid, (f"0x{pid:02X}",))[0]: v for pid, v in self.params}


@dataclass(frozen=True, slots=True)
class TerminalControl:
    """0x82 command: a control id and its parameter bytes (upgrade: the ';'-separated
    upgrade parameters; alarm: level + information)."""

    collected_at: datetime
    command_id: int
    params: bytes = b""


def decode_query(data: bytes) -> ParamQuery:
    if len(data) < 7:
        raise BadBody("query_params: shorter than time + count", 0)
    when = decode_time(data, 0)
    n = data[6]
    if len(data) != 7 + n:
        raise BadBody(f"query_params: count {n} but {len(data) - 7} ids", 6)
    return ParamQuery(when, tuple(data[7:]))


def encode_query(body: ParamQuery) -> bytes:
    if len(body.ids) > 252:
        raise EncodeError("query_params: at most 252 ids")
    return encode_time(body.collected_at) + bytes((len(body.ids), *body.ids))


def decode_list(data: bytes, edition="2016") -> ParamList:
    table = parameter_table(edition)
    if len(data) < 7:
        raise BadBody("parameter list: shorter than time + count", 0)
    when = decode_time(data, 0)
    n = data[6]
    off = 7
    seen: dict[int, object] = {}
    out: list[tuple[int, object]] = []
    for _ in range(n):
        if off >= len(data):
            raise BadBody(f"parameter list: count {n} but only {len(out)} parameters", off)
        pid = data[off]
        off += 1
        spec = table.get(pid)
        if spec is None:
            out.append((pid, bytes(data[off:])))
            off = len(data)
            break
        kind = spec[1]
        if kind == "B":
            if off + 1 > len(data):
                raise BadBody(f"parameter 0x{pid:02X}: truncated", off)
            value: object = data[off]
            off += 1
        elif kind == "H":
            if off + 2 > len(data):
                raise BadBody(f"parameter 0x{pid:02X}: truncated", off)
            value = struct.unpack_from(">H", data, off)[0]
            off += 2
        else:
            tag, arg = kind
            length = arg if tag == "str" else seen.get(arg)
            if length is None:
                raise BadBody(f"parameter 0x{pid:02X}: its length (0x{arg:02X}) was not given before it", off)
            if off + length > len(data):
                raise BadBody(f"parameter 0x{pid:02X}: truncated", off)
            try:
                value = bytes(data[off:off + length]).decode("ascii")
            except UnicodeDecodeError:
                raise BadBody(f"parameter 0x{pid:02X}: not ASCII", off) from None
            off += length
        seen[pid] = value
        out.append((pid, value))
    if off != len(data):
        raise BadBody(f"parameter list: {len(data) - off} bytes after the last parameter", off)
    return ParamList(when, tuple(out))


def encode_list(body: ParamList, edition="2016") -> bytes:
    table = parameter_table(edition)
    parts = bytearray(encode_time(body.collected_at))
    parts.append(len(body.params))
    for pid, value in body.params:
        parts.append(pid)
        spec = table.get(pid)
        if spec is None:
            if not isinstance(value, (bytes, bytearray)):
                raise EncodeError(f"parameter 0x{pid:02X}: unknown id needs raw bytes")
            parts += value
            continue
        kind = spec[1]
        try:
            if kind == "B":
                parts += struct.pack(">B", int(value))
            elif kind == "H":
                parts += struct.pack(">H", int(value))
            else:
                text = str(value).encode("ascii")
                if kind[0] == "str" and len(text) != kind[1]:
                    raise EncodeError(f"parameter {spec[0]}: must be {kind[1]} characters")
                parts += text
        except (struct.error, UnicodeEncodeError, ValueError) as exc:
            raise EncodeError(f"parameter {spec[0]}: {exc}") from None
    return bytes(parts)


def decode_control(data: bytes) -> TerminalControl:
    if len(data) < 7:
        raise BadBody("terminal_control: shorter than time + command id", 0)
    return TerminalControl(decode_time(data, 0), data[6], bytes(data[7:]))


def encode_control(body: TerminalControl) -> bytes:
    if not 0 <= body.command_id <= 0xFF:
        raise EncodeError("terminal_control: command id out of range")
    return encode_time(body.collected_at) + bytes((body.command_id,)) + bytes(body.params)
