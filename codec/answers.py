"""The answers a platform (or terminal) sends, built so that callers never touch layouts.

2016/2025 clause 6.3.2: an answer repeats the command id, carries a response flag
instead of 0xFE, keeps the unique id, and its data unit is the time. This project
echoes the time of the frame being answered (what the terminal can match), except
for time calibration (0x08), whose answer carries the platform's current time, and
the heartbeat (0x07), whose answer is empty.
"""

from __future__ import annotations

import struct
from datetime import datetime

from .bcc import bcc
from .bodies import TimeOnly
from .commands import Command, Encryption, Response
from .frame import HEADER, Frame
from .timefield import encode_time


def answer(frame: Frame, response: Response | int, now: datetime) -> Frame:
    """The answer to ``frame`` with ``response`` (``now`` is the answering side's clock)."""
    if frame.command == Command.HEARTBEAT:
        body = None
    elif frame.command == Command.TIME_SYNC:
        body = TimeOnly(now)
    else:
        body = TimeOnly(frame.collected_at or now)
    return Frame(frame.edition, frame.command, int(response), frame.vin, Encryption.NONE, body)


def refusal(raw: bytes, response: Response | int, now: datetime) -> bytes:
    """The error answer to a refused frame of any command, known or not, built from its
    header bytes: same start, command and unique id, the response flag, no encryption, and
    ``now`` as the data unit."""
    start, command, _, vin, _, _ = HEADER.unpack_from(raw, 0)
    unit = encode_time(now)
    head = HEADER.pack(start, command, int(response), vin, Encryption.NONE, len(unit))
    out = head + unit
    return out + struct.pack(">B", bcc(memoryview(out)[2:]))
