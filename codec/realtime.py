"""Realtime (0x02) and reissue (0x03) data units of both editions.

A data unit is the collection time followed by information items, each a type byte
and its block (2016 clause 7.2.1 table 7; 2025 clause 7.2.1 table 7). The 2025 edition
ends the items with a signature block introduced by 0xFF (2025 clause 7.2.2 table 8).

Decoded items keep frame order in :attr:`RealtimeData.items` under their JSON keys;
a repeated key gets a ``#2``, ``#3`` ... suffix, so decode -> encode is byte-exact even
for frames that repeat a block. Information types 0x80-0xFE ("user-defined") carry a
2-byte length (2016 7.2.3.8 table 19; 2025 7.2.4.12 table 27) and become ``custom``
items ``{"type", "hex"}``. A type without a known layout (reserved ranges), or a
user-defined item whose length overruns the data unit, ends the parse: the rest is
kept as one ``{"type", "hex", "opaque": true}`` item. Nothing is dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from datetime import datetime

from . import realtime_2016, realtime_2025
from .commands import Edition
from .errors import BadBody, EncodeError
from .timefield import decode_time, encode_time

_H = struct.Struct(">H")

SIGNATURE_ALGORITHMS = {1: "sm2", 2: "rsa", 3: "ecc"}
_SIG_CODES = {n: c for c, n in SIGNATURE_ALGORITHMS.items()}


@dataclass(frozen=True, slots=True)
class Signature:
    """2025 signature block (clause 7.2.2 table 8): algorithm, r and s."""

    algorithm: int
    r: bytes
    s: bytes

    def to_json(self) -> dict:
        return {"algorithm": SIGNATURE_ALGORITHMS.get(self.algorithm, self.algorithm), "r": self.r.hex(),
                "s": self.s.hex()}

    @classmethod
    def from_json(cls, obj: dict) -> "Signature":
        algo = obj["algorithm"]
        return cls(_SIG_CODES[algo] if isinstance(algo, str) else int(algo), bytes.fromhex(obj["r"]),
                   bytes.fromhex(obj["s"]))

    def encode(self) -> bytes:
        return (bytes((0xFF, self.algorithm)) + _H.pack(len(self.r)) + self.r + _H.pack(len(self.s)) + self.s)


@dataclass(frozen=True, slots=True)
class RealtimeData:
    """A realtime or reissue data unit."""

    collected_at: datetime
    items: dict = field(default_factory=dict)
    signature: Signature | None = None
    #: bytes after the 2025 signature that no layout explains (kept for exactness)
    trailing: bytes = b""

    def block(self, key: str):
        """The first item stored under ``key`` (``"vehicle"``, ``"alarm"`` ...), or None."""
        return self.items.get(key)

    def without_custom(self) -> "RealtimeData":
        """The same data with every user-defined or unknown information type removed
        (what may be forwarded to another platform: only what the standard defines)."""
        items = {k: v for k, v in self.items.items() if _base(k) != "custom"}
        return replace(self, items=_renumber(items), trailing=b"")

    def has_custom(self) -> bool:
        # a decoded data unit's first user-defined run is always under "custom" itself
        return "custom" in self.items or any(_base(k) == "custom" for k in self.items if "#" in k)


@dataclass(frozen=True, slots=True)
class PendingRealtime:
    """A realtime or reissue data unit whose information items are not decoded yet.

    What a node that stores and forwards frames reads on its hot path
    (``FrameReader(lazy=True)``): the collection time is decoded and checked at once
    (a bad time is refused as ``bad_time`` like any other), the items only when
    :meth:`decode` is called, which raises :class:`codec.errors.BadBody` (offsets
    relative to the data unit) exactly where :func:`decode_realtime` would."""

    collected_at: datetime
    edition: Edition
    #: the plain data unit (after any decryption), collection time included
    data: bytes

    def decode(self, packed: bool = True) -> RealtimeData:
        return decode_realtime(self.edition, self.data, packed)


def _base(key: str) -> str:
    i = key.find("#")
    return key if i < 0 else key[:i]


def _renumber(items: dict) -> dict:
    out: dict = {}
    seen: dict[str, int] = {}
    for k, v in items.items():
        b = _base(k)
        n = seen.get(b, 0) + 1
        seen[b] = n
        out[b if n == 1 else f"{b}#{n}"] = v
    return out


_TYPES = {Edition.V2016: realtime_2016.TYPES, Edition.V2025: realtime_2025.TYPES}
_KEYS = {ed: {key: (tid, blk) for tid, (key, blk) in types.items()} for ed, types in _TYPES.items()}
#: the same tables with scaled arrays left packed (see :class:`codec.fields.PackedValues`)
_PACKED_TYPES = {ed: {tid: (key, blk.packed() if hasattr(blk, "packed") else blk)
                      for tid, (key, blk) in types.items()} for ed, types in _TYPES.items()}


def _put(items: dict, key: str, value) -> None:
    if key not in items:
        items[key] = value
        return
    n = 2
    while f"{key}#{n}" in items:
        n += 1
    items[f"{key}#{n}"] = value


def _parse_signature(buf: bytes, off: int) -> tuple[Signature, int] | None:
    """Parse a signature block at ``off`` (0xFF already at ``off``); None when it does not fit."""
    n = len(buf)
    if off + 4 > n:
        return None
    algo = buf[off + 1]
    rlen = _H.unpack_from(buf, off + 2)[0]
    r_end = off + 4 + rlen
    if r_end + 2 > n:
        return None
    slen = _H.unpack_from(buf, r_end)[0]
    s_end = r_end + 2 + slen
    if s_end > n:
        return None
    return Signature(algo, bytes(buf[off + 4:r_end]), bytes(buf[r_end + 2:s_end])), s_end


def _find_signature(buf: bytes, off: int) -> int:
    """Where the 2025 signature starts after an item of unknown layout: the first 0xFF
    from which a signature parses to exactly the end, else the first that parses at all,
    else -1."""
    candidates = []
    p = buf.find(b"\xff", off)
    while p >= 0:
        sig = _parse_signature(buf, p)
        if sig is not None:
            if sig[1] == len(buf):
                return p
            candidates.append(p)
        p = buf.find(b"\xff", p + 1)
    return candidates[0] if candidates else -1


def decode_realtime(edition: Edition, buf: bytes, packed: bool = False) -> RealtimeData:
    """Decode a realtime/reissue data unit (plain text, after any decryption). With
    ``packed``, arrays of scaled values without markers stay packed until read."""
    if len(buf) < 6:
        raise BadBody(f"data unit of {len(buf)} bytes has no collection time", 0)
    collected_at = decode_time(buf, 0)
    types = (_PACKED_TYPES if packed else _TYPES)[edition]
    is_2025 = edition is Edition.V2025
    items: dict = {}
    off = 6
    n = len(buf)
    signature = None
    trailing = b""
    custom_run: list | None = None
    last_key = None
    while off < n:
        tid = buf[off]
        if is_2025 and tid == 0xFF:
            sig = _parse_signature(buf, off)
            if sig is None:
                raise BadBody("signature block truncated", off)
            signature, off = sig
            trailing = bytes(buf[off:])
            break
        entry = types.get(tid)
        if entry is not None:
            key, blk = entry
            try:
                value, off = blk.decode(buf, off + 1)
            except BadBody as exc:
                exc.detail = f"{key} (0x{tid:02X}): {exc.detail}"
                raise
            _put(items, key, value)
            last_key = key
            continue
        # user-defined (length-prefixed) or unknown layout
        item: dict
        if 0x80 <= tid <= 0xFE and off + 3 <= n and off + 3 + _H.unpack_from(buf, off + 1)[0] <= n:
            length = _H.unpack_from(buf, off + 1)[0]
            item = {"type": tid, "hex": bytes(buf[off + 3:off + 3 + length]).hex()}
            off += 3 + length
        else:
            end = n
            if is_2025:
                p = _find_signature(buf, off + 1)
                end = p if p >= 0 else n
            item = {"type": tid, "hex": bytes(buf[off + 1:end]).hex(), "opaque": True}
            off = end
        if last_key == "custom" and custom_run is not None:
            custom_run.append(item)
        else:
            custom_run = [item]
            _put(items, "custom", custom_run)
        last_key = "custom"
    return RealtimeData(collected_at, items, signature, trailing)


def encode_realtime(edition: Edition, data: RealtimeData) -> bytes:
    keys = _KEYS[edition]
    parts = [encode_time(data.collected_at)]
    for key, value in data.items.items():
        base = _base(key)
        if base == "custom":
            for item in value:
                tid = int(item["type"])
                payload = bytes.fromhex(item["hex"])
                if item.get("opaque"):
                    parts.append(bytes((tid,)) + payload)
                else:
                    if not 0 <= tid <= 0xFF or len(payload) > 0xFFFF:
                        raise EncodeError(f"custom item type {tid}: bad type or length")
                    parts.append(bytes((tid,)) + _H.pack(len(payload)) + payload)
            continue
        entry = keys.get(base)
        if entry is None:
            raise EncodeError(f"{edition.value} has no information type {base!r}")
        tid, blk = entry
        parts.append(bytes((tid,)))
        parts.append(blk.encode(value))
    if data.signature is not None:
        if edition is not Edition.V2025:
            raise EncodeError("only the 2025 edition carries a signature block")
        parts.append(data.signature.encode())
    parts.append(data.trailing)
    return b"".join(parts)
