"""Frames as one platform forwards them to another (platform links, 2016/2025 clause 6).

* :func:`forwardable` gives the bytes to forward: the frame as received when it is plain
  and carries only what the standard defines; otherwise re-encoded in plain text with
  the user-defined information types removed (nothing beyond the standard leaves).
* :func:`retag` turns a realtime frame into a reissue (0x03) or back, fixing the BCC;
  the data unit is untouched, so downstream deduplication still recognises it.
"""

from __future__ import annotations

from dataclasses import replace

from .bcc import bcc
from .commands import Command, Encryption
from .frame import Frame, encode_frame, resolve
from .realtime import RealtimeData


def forwardable(frame: Frame) -> bytes:
    frame = resolve(frame)
    body = frame.body
    stripped = isinstance(body, RealtimeData) and (body.has_custom() or body.trailing)
    if frame.encryption == Encryption.NONE and not stripped and frame.raw:
        return frame.raw
    if stripped:
        body = body.without_custom()
    return encode_frame(replace(frame, encryption=Encryption.NONE, body=body))


def retag(raw: bytes, command: int) -> bytes:
    """The same frame with another command byte (realtime <-> reissue)."""
    if raw[2] == command:
        return raw
    if {raw[2], command} - {Command.REALTIME, Command.REISSUE}:
        raise ValueError("only realtime and reissue frames can be retagged")
    out = bytearray(raw)
    out[2] = command
    out[-1] = bcc(memoryview(out)[2:-1])
    return bytes(out)


def data_unit(raw: bytes) -> bytes:
    """The data unit of a complete frame (as sent: still encrypted if it was)."""
    return raw[24:-1]
