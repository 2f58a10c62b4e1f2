"""Frame builders and sample vectors for the codec tests, written without the codec.

The tests state expected bytes by hand; these helpers only assemble a header and a
check code around a data unit so that a test can show the data unit alone. The check
code is computed here with a plain loop (not ``codec.bcc``), so a test that compares
against these bytes also checks the codec's BCC.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

#: the repository root (.../main) and the shared vectors next to it
REPO = Path(__file__).resolve().parents[2]
VECTORS_DIR = REPO.parent / "shared" / "vectors"

#: the +08:00 zone of every time in the standard
CST = timezone(timedelta(hours=8))

#: the VIN of the rtm_con samples; its 17 bytes XOR to 0x2D
VIN = "HAUV4BGN6S5002219"
VIN_XOR = 0x2D

#: 2025-10-27 20:02:02 +08:00, the time of most rtm_con samples, and its 6 bytes
T0 = datetime(2025, 10, 27, 20, 2, 2, tzinfo=CST)
T0_HEX = "190a1b140202"
T0_BYTES = bytes.fromhex(T0_HEX)

START = {"2016": b"##", "2025": b"$$"}


def xor(data: bytes) -> int:
    """The standard's check code, one byte at a time."""
    out = 0
    for b in data:
        out ^= b
    return out


def frame(protocol: str, command: int, response: int, unit: bytes = b"", vin: str | bytes = VIN,
          encryption: int = 0x01, length: int | None = None) -> bytes:
    """A frame around ``unit``: start, command, flag, 17-byte id, encryption, length, unit, BCC.

    ``length`` overrides the length field (to build lying headers); ``vin`` may be raw bytes.
    """
    vin_bytes = vin if isinstance(vin, bytes) else vin.encode("ascii").ljust(17, b"\x00")
    assert len(vin_bytes) == 17
    n = len(unit) if length is None else length
    body = bytes((command, response)) + vin_bytes + bytes((encryption,)) + n.to_bytes(2, "big") + unit
    return START[protocol] + body + bytes((xor(body),))


def with_bcc(raw: bytes) -> bytes:
    """``raw`` (a frame without its last byte) completed with the right check code."""
    return raw + bytes((xor(raw[2:]),))


def load_vectors() -> list[dict]:
    with open(VECTORS_DIR / "rtm_con_samples.json", encoding="utf-8") as f:
        return json.load(f)


def vector(name: str) -> bytes:
    """The bytes of the sample called ``name``."""
    for v in load_vectors():
        if v["name"] == name:
            return bytes.fromhex(v["hex"])
    raise KeyError(name)


def data_unit(raw: bytes) -> bytes:
    """The data unit of a complete frame."""
    return raw[24:-1]
