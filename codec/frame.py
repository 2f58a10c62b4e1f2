"""The frame: start, command, response flag, unique id (VIN), encryption, length,
data unit, BCC (2016/2025 clause 6.2, table 2), and the dispatch of data units.

:func:`decode_frame` turns one complete frame into a :class:`Frame`;
:func:`encode_frame` is its exact inverse. Neither does I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any, Callable

from . import bodies, params
from .bcc import bcc
from .commands import Command, Edition, Encryption, Response, valid_commands, valid_encryptions, valid_responses
from .crypto import Keys, decrypt, encrypt
from .errors import BadBody, BadChecksum, BadHeader, BadLength, BadVin, CodecError, EncodeError, FrameError, \
    Truncated, UnknownCommand
from .realtime import PendingRealtime, RealtimeData, decode_realtime, encode_realtime
from .timefield import decode_time

HEADER = struct.Struct(">2sBB17sBH")
HEADER_SIZE = HEADER.size  # 24
#: largest data unit the standard allows (2016/2025 clause 6.2 table 2: 0-65531)
MAX_DATA_LENGTH = 65531

_PLAIN = (Encryption.NONE, Encryption.ABNORMAL, Encryption.INVALID)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``body`` is the decoded data unit (a dataclass from ``codec.bodies``,
    ``codec.params``, ``codec.realtime`` or ``codec.charging``), ``None`` for an empty data
    unit, :class:`bodies.Undecoded` when it could not be decrypted, or
    :class:`bodies.Opaque` when it has no known layout. ``raw`` is the frame exactly as
    received (empty for a frame built in code until encoded)."""

    edition: Edition
    command: int
    response: int
    vin: str
    encryption: int = Encryption.NONE
    body: Any = None
    raw: bytes = b""

    @property
    def is_answer(self) -> bool:
        return self.response != Response.COMMAND

    @property
    def collected_at(self):
        """The data unit's time, when it has one."""
        return getattr(self.body, "collected_at", None)


def check_vin(raw17: bytes, offset: int = 5) -> str:
    """The unique id as text: printable ASCII, optionally NUL-padded at the end
    (a platform's own id may be shorter than 17)."""
    text = raw17.rstrip(b"\x00")
    # ASCII 0x20-0x7E is exactly what str.isprintable() accepts of ASCII
    vin = text.decode("ascii", "replace")
    if not vin or not vin.isascii() or not vin.isprintable():
        raise BadVin(f"unique id {raw17!r} is not printable ASCII", offset)
    return vin


# --- data-unit dispatch ------------------------------------------------------------

Decoder = Callable[[Edition, bytes], Any]
Encoder = Callable[[Edition, Any], bytes]


def _ed(fn):
    """Adapt an edition-independent decode/encode function."""
    return lambda edition, x: fn(x)


def _decode_login(edition: Edition, data: bytes):
    if edition is Edition.V2025:
        from .bodies_2025 import decode_vehicle_login_2025
        return decode_vehicle_login_2025(data)
    return bodies.decode_vehicle_login_2016(data)


def _encode_login(edition: Edition, body):
    if edition is Edition.V2025:
        from .bodies_2025 import encode_vehicle_login_2025
        return encode_vehicle_login_2025(body)
    return bodies.encode_vehicle_login_2016(body)


def _registry() -> dict[int, tuple[Decoder, Encoder]]:
    from . import bodies_2025, charging

    reg: dict[int, tuple[Decoder, Encoder]] = {
        Command.VEHICLE_LOGIN: (_decode_login, _encode_login),
        Command.REALTIME: (decode_realtime, encode_realtime),
        Command.REISSUE: (decode_realtime, encode_realtime),
        Command.VEHICLE_LOGOUT: (_ed(bodies.decode_logout), _ed(bodies.encode_logout)),
        Command.PLATFORM_LOGIN: (_ed(bodies.decode_platform_login), _ed(bodies.encode_platform_login)),
        Command.PLATFORM_LOGOUT: (_ed(bodies.decode_logout), _ed(bodies.encode_logout)),
        Command.HEARTBEAT: (None, None),
        Command.TIME_SYNC: (None, None),
        Command.ACTIVATION: (_ed(bodies_2025.decode_activation), _ed(bodies_2025.encode_activation)),
        Command.ACTIVATION_ANSWER: (_ed(bodies_2025.decode_activation_answer),
                                    _ed(bodies_2025.encode_activation_answer)),
        Command.KEY_SYNC: (_ed(bodies_2025.decode_key_sync), _ed(bodies_2025.encode_key_sync)),
        Command.QUERY_PARAMS: (_ed(params.decode_query), _ed(params.encode_query)),
        Command.SET_PARAMS: (lambda ed, d: params.decode_list(d, ed), lambda ed, b: params.encode_list(b, ed)),
        Command.TERMINAL_CONTROL: (_ed(params.decode_control), _ed(params.encode_control)),
    }
    for cmd, (dec, enc) in charging.BODIES.items():
        reg[cmd] = (_ed(dec), _ed(enc))
    return reg


_BODIES: dict[int, tuple[Decoder, Encoder]] = {}


def _bodies() -> dict[int, tuple[Decoder, Encoder]]:
    if not _BODIES:
        _BODIES.update(_registry())
    return _BODIES


_DATA_COMMANDS = (Command.REALTIME, Command.REISSUE)


def decode_body(edition: Edition, command: int, response: int, data: bytes, packed: bool = False,
                lazy: bool = False) -> Any:
    """Decode a plain-text data unit. Answers carry the time (most commands), nothing
    (heartbeat), or the parameter list (query answer); an answer body with another
    layout is kept :class:`bodies.Opaque` rather than refused. ``packed``: see
    :func:`codec.realtime.decode_realtime`; ``lazy``: a realtime or reissue data unit
    becomes a :class:`codec.realtime.PendingRealtime` (only its time decoded)."""
    if response == Response.COMMAND:
        if not data:
            return None
        if lazy and command in _DATA_COMMANDS:
            if len(data) < 6:
                raise BadBody(f"data unit of {len(data)} bytes has no collection time", 0)
            return PendingRealtime(decode_time(data, 0), edition, bytes(data))
        if packed and command in _DATA_COMMANDS:
            return decode_realtime(edition, data, True)
        dec = _bodies()[command][0]
        if dec is None:
            # heartbeat and time calibration: empty, though some terminals send the time
            if len(data) == 6:
                return bodies.decode_time_only(data)
            raise BadBody(f"command 0x{command:02X} carries no data unit or a time, got {len(data)} bytes", 0)
        return dec(edition, data)
    if not data:
        return None
    if len(data) == 6:
        return bodies.decode_time_only(data)
    if command == Command.QUERY_PARAMS:
        return params.decode_list(data, edition)
    dec = _bodies()[command][0]
    if dec is not None:
        try:
            return dec(edition, data)
        except BadBody:
            pass
    return bodies.Opaque(bytes(data))


def encode_body(edition: Edition, command: int, response: int, body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bodies.Opaque, bodies.Undecoded, PendingRealtime)):
        return bytes(body.data)
    if isinstance(body, bodies.TimeOnly):
        return bodies.encode_time_only(body)
    if isinstance(body, params.ParamList):
        return params.encode_list(body, edition)
    entry = _bodies().get(command)
    if entry is None or entry[1] is None:
        raise EncodeError(f"command 0x{command:02X} carries no data unit")
    return entry[1](edition, body)


# --- frames ------------------------------------------------------------------------

def parse_header(buf: bytes | bytearray | memoryview, off: int = 0) -> tuple[Edition, int, int, str, int, int]:
    """Check and split the 24-byte header at ``off``: (edition, command, response, vin,
    encryption, data length). Raises the precise :class:`FrameError`; offsets are
    relative to ``off``."""
    start, command, response, vin_raw, encryption, length = HEADER.unpack_from(buf, off)
    edition = Edition.from_start(start)
    if edition is None:
        raise BadHeader(f"start bytes {start!r} are neither '##' nor '$$'", 0)
    if response not in valid_responses(edition):
        raise BadHeader(f"response flag 0x{response:02X} not defined in {edition.value}", 3)
    if encryption not in valid_encryptions(edition):
        raise BadHeader(f"encryption flag 0x{encryption:02X} not defined in {edition.value}", 21)
    vin = check_vin(vin_raw)
    if length > MAX_DATA_LENGTH:
        raise BadLength(f"data-unit length {length} exceeds {MAX_DATA_LENGTH}", 22)
    return edition, command, response, vin, encryption, length


def decode_frame(data: bytes, keys: Keys | None = None) -> Frame:
    """Decode exactly one frame (``data`` must hold the whole frame and nothing else)."""
    data = bytes(data)
    if len(data) < HEADER_SIZE + 1:
        raise Truncated(f"{len(data)} bytes is shorter than a frame header and check code", 0, data)
    try:
        edition, command, response, vin, encryption, length = parse_header(data)
    except FrameError as exc:
        exc.raw = data
        raise
    if len(data) != HEADER_SIZE + length + 1:
        raise (Truncated if len(data) < HEADER_SIZE + length + 1 else BadLength)(
            f"data-unit length {length} but frame holds {len(data) - HEADER_SIZE - 1} bytes", 22, data)
    expected = bcc(memoryview(data)[2:-1])
    if expected != data[-1]:
        raise BadChecksum(f"check code 0x{data[-1]:02X}, computed 0x{expected:02X}", len(data) - 1, data)
    return decode_checked(data, edition, command, response, vin, encryption, keys)


def decode_checked(data: bytes, edition: Edition, command: int, response: int, vin: str, encryption: int,
                   keys: Keys | None = None, packed: bool = False, lazy: bool = False) -> Frame:
    """Decode a frame whose header, length and BCC the caller has already checked.
    ``lazy``: a plain-text realtime or reissue data unit is left pending (see
    :func:`decode_body`; :func:`resolve` decodes it); an encrypted one is decoded now, so
    that a wrong key still gives an :class:`bodies.Undecoded` body."""
    if command not in valid_commands(edition):
        raise UnknownCommand(f"command 0x{command:02X} not defined in {edition.value}", 2, data)
    unit = data[HEADER_SIZE:-1]
    encrypted = encryption not in _PLAIN and bool(unit)
    if encrypted:
        try:
            plain = decrypt(encryption, unit, keys)
        except CodecError as exc:
            return Frame(edition, command, response, vin, encryption, bodies.Undecoded(unit, str(exc)), data)
    else:
        plain = unit
    try:
        body = decode_body(edition, command, response, plain, packed, lazy and not encrypted)
    except FrameError as exc:
        if encrypted:
            # a wrong key can decrypt to garbage (RSA implicit rejection, SM2 without a C3
            # check, AES padding that happens to fit): the frame is valid, its body is not ours
            return Frame(edition, command, response, vin, encryption,
                         bodies.Undecoded(unit, f"decrypted data unit does not decode: {exc.reason}"), data)
        exc.offset += HEADER_SIZE
        exc.raw = data
        raise
    return Frame(edition, command, response, vin, encryption, body, data)


def resolve(frame: Frame, packed: bool = True) -> Frame:
    """``frame`` with a pending realtime data unit decoded (any other frame as it is).
    Raises :class:`BadBody` (offset within the frame, ``raw`` the frame) when the data
    unit does not follow the layout: the refusal an eager decode would have made."""
    body = frame.body
    if not isinstance(body, PendingRealtime):
        return frame
    try:
        decoded = body.decode(packed)
    except FrameError as exc:
        exc.offset += HEADER_SIZE
        exc.raw = frame.raw
        raise
    # the fields by hand: dataclasses.replace costs some 5 µs a frame, a fifth of the decode
    return Frame(frame.edition, frame.command, frame.response, frame.vin, frame.encryption, decoded, frame.raw)


def encode_frame(frame: Frame, keys: Keys | None = None) -> bytes:
    """Build the bytes of ``frame`` (its ``raw`` is ignored)."""
    if frame.command not in valid_commands(frame.edition):
        raise EncodeError(f"command 0x{frame.command:02X} not defined in {frame.edition.value}")
    unit = encode_body(frame.edition, frame.command, frame.response, frame.body)
    if frame.encryption not in _PLAIN and unit and not isinstance(frame.body, bodies.Undecoded):
        unit = encrypt(frame.encryption, unit, keys)
    if len(unit) > MAX_DATA_LENGTH:
        raise EncodeError(f"data unit of {len(unit)} bytes exceeds {MAX_DATA_LENGTH}")
    vin = frame.vin.encode("ascii")
    if len(vin) > 17:
        raise EncodeError(f"unique id {frame.vin!r} is longer than 17 characters")
    head = HEADER.pack(frame.edition.start, frame.command, frame.response, vin.ljust(17, b"\x00"),
                       frame.encryption, len(unit))
    out = head + unit
    return out + bytes((bcc(memoryview(out)[2:]),))


def with_raw(frame: Frame, keys: Keys | None = None) -> Frame:
    """``frame`` with ``raw`` filled by encoding it."""
    return replace(frame, raw=encode_frame(frame, keys))


def realtime_frame(edition: Edition, vin: str, data: RealtimeData, reissue: bool = False) -> Frame:
    return Frame(edition, Command.REISSUE if reissue else Command.REALTIME, Response.COMMAND, vin,
                 Encryption.NONE, data)
