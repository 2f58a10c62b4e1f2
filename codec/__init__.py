"""GB/T 32960.3 (2016 and 2025) frames as typed values, and back. No I/O.

Public entry points: :class:`FrameReader` (stream -> frames and typed errors),
:func:`decode_frame`, :func:`encode_frame`, :func:`resolve` (a pending realtime body, see
:class:`PendingRealtime`), :func:`answer`, the JSON form, and the
enumerations. Everything else is reachable through its module but not promised.
"""

from .answers import answer
from .bodies import Logout, Opaque, PlatformLogin, TimeOnly, Undecoded, VehicleLogin
from .charging import ChargingMessage
from .commands import Command, Edition, Encryption, Response
from .crypto import Keys
from .errors import (BadBody, BadChecksum, BadHeader, BadLength, BadTime, BadVin, CodecError, EncodeError, FrameError,
                     Garbage, Truncated, Undecryptable, UnknownCommand)
from .frame import MAX_DATA_LENGTH, Frame, decode_frame, encode_frame, resolve
from .jsonform import frame_from_json, frame_to_json
from .params import ParamList, ParamQuery, TerminalControl
from .reader import FrameReader
from .realtime import PendingRealtime, RealtimeData, Signature
from .timefield import CST

__all__ = [
    "answer", "Logout", "Opaque", "PlatformLogin", "TimeOnly", "Undecoded", "VehicleLogin", "ChargingMessage",
    "Command", "Edition", "Encryption", "Response", "Keys",
    "BadBody", "BadChecksum", "BadHeader", "BadLength", "BadTime", "BadVin", "CodecError", "EncodeError",
    "FrameError", "Garbage", "Truncated", "Undecryptable", "UnknownCommand",
    "MAX_DATA_LENGTH", "Frame", "decode_frame", "encode_frame", "resolve", "frame_from_json", "frame_to_json",
    "ParamList", "ParamQuery", "TerminalControl", "FrameReader", "RealtimeData", "PendingRealtime", "Signature", "CST",
]
