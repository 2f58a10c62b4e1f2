"""Building blocks shared by both editions' information types.

Variable-length blocks (lists of motors, subsystems, fault codes) are small classes
with ``decode(buf, off) -> (value, end)`` and ``encode(value) -> bytes`` built from
:class:`codec.fields.FixedBlock` and :class:`codec.fields.ScaledArray` declarations.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import replace

from .errors import BadBody, EncodeError
from .fields import ARRAY_TYPES, FastConstruct, FixedBlock, ScaledArray

_B = struct.Struct(">B")
_H = struct.Struct(">H")

#: gear positions, bits 0-3 of the gear byte (2016 annex A table A.1; 2025 annex A table A.1)
GEARS = {0: "N", **{i: str(i) for i in range(1, 13)}, 13: "R", 14: "D", 15: "P"}
GEAR_CODES = {name: code for code, name in GEARS.items()}


def _count(buf: bytes, off: int, st: struct.Struct, what: str) -> int:
    if off + st.size > len(buf):
        raise BadBody(f"{what}: count truncated", off)
    return st.unpack_from(buf, off)[0]


class ListOf(FastConstruct):
    """A count (1 byte) followed by that many blocks of one kind: motors, stacks, ..."""

    def __init__(self, name: str, item: FastConstruct, count_code: str = "B", marked_count: bool = False) -> None:
        super().__init__()
        self.name = name
        self.item = item
        self.count = struct.Struct(">" + count_code)
        #: 2025: a count of 0xFE/0xFF (abnormal/invalid) is followed by no items; such a block
        #: decodes to "abnormal" or None
        self.marked_count = marked_count

    def decode(self, buf: bytes, off: int) -> tuple[list | str | None, int]:
        n = _count(buf, off, self.count, self.name)
        off += self.count.size
        if self.marked_count and n >= 0xFE:
            return (None if n == 0xFF else "abnormal"), off
        out = []
        item = self.item
        for _ in range(n):
            rec, off = item.decode(buf, off)
            out.append(rec)
        return out, off

    def packed(self) -> "ListOf":
        item = self.item.packed()
        if item is self.item:
            return self
        clone = copy.copy(self)
        clone.item = item
        return clone

    def encode(self, value: list | str | None) -> bytes:
        if self.marked_count and (value is None or value == "abnormal"):
            return b"\xff" if value is None else b"\xfe"
        if not isinstance(value, list):
            raise EncodeError(f"{self.name}: expected a list")
        if self.marked_count and len(value) > 253:
            raise EncodeError(f"{self.name}: at most 253 items (0xFE/0xFF are the count's markers)")
        try:
            head = self.count.pack(len(value))
        except struct.error:
            raise EncodeError(f"{self.name}: too many items ({len(value)})") from None
        return head + b"".join(self.item.encode(v) for v in value)


class FaultCodes:
    """A fault-code list: count (1 byte) + count x 4-byte codes (2016 table 17)."""

    @staticmethod
    def decode(buf: bytes, off: int, name: str) -> tuple[list[int], int]:
        n = _count(buf, off, _B, name)
        off += 1
        end = off + 4 * n
        if end > len(buf):
            raise BadBody(f"{name}: {n} codes need {4 * n} bytes, {len(buf) - off} left", off)
        return list(struct.unpack_from(f">{n}I", buf, off)), end

    @staticmethod
    def encode(codes: list[int], name: str) -> bytes:
        if len(codes) > 253:  # 0xFE/0xFF are the count's markers
            raise EncodeError(f"{name}: at most 253 codes")
        try:
            return bytes((len(codes),)) + struct.pack(f">{len(codes)}I", *codes)
        except struct.error as exc:
            raise EncodeError(f"{name}: {exc}") from None


def _rename_marker(rec: dict, old: str, new: str) -> None:
    """A marked count is reported under the name of the list it counts (and back)."""
    for key in ("abnormal", "invalid"):
        names = rec.get(key)
        if names and old in names:
            rec[key] = [new if x == old else x for x in names]


def flag_names(bits: int, names: dict[int, str]) -> list[str]:
    """Names of the set bits, in bit order; a set bit with no name becomes ``bit_N``."""
    out = []
    b = 0
    while bits:
        if bits & 1:
            out.append(names.get(b, f"bit_{b}"))
        bits >>= 1
        b += 1
    return out


def flag_bits(flags: list[str], codes: dict[str, int], what: str) -> int:
    bits = 0
    for name in flags:
        bit = codes.get(name)
        if bit is None:
            if name.startswith("bit_") and name[4:].isdigit():
                bit = int(name[4:])
            else:
                raise EncodeError(f"{what}: unknown flag {name!r}")
        bits |= 1 << bit
    return bits


class Subsystems(FastConstruct):
    """A count (1 byte) of subsystems, each a fixed head followed by a scaled array whose
    length is one of the head's fields (cell voltages, probe temperatures)."""

    def __init__(self, name: str, head: FixedBlock, count_field: str, array: ScaledArray, array_key: str,
                 marked_count: bool = False, keep_count: bool = False) -> None:
        super().__init__()
        self.name = name
        self.head = head
        self.count_field = count_field
        self.array = array
        self.array_key = array_key
        self.marked_count = marked_count
        self.keep_count = keep_count

    def decode(self, buf: bytes, off: int) -> tuple[list | str | None, int]:
        n = _count(buf, off, _B, self.name)
        off += 1
        if self.marked_count and n >= 0xFE:
            return (None if n == 0xFF else "abnormal"), off
        out = []
        for _ in range(n):
            rec, off = self.head.decode(buf, off)
            cnt = rec[self.count_field] if self.keep_count else rec.pop(self.count_field)
            if cnt is None:  # a marked count: no values follow
                rec[self.array_key] = None
                if not self.keep_count:
                    _rename_marker(rec, self.count_field, self.array_key)
                out.append(rec)
                continue
            ab = rec.get("abnormal")
            inv = rec.get("invalid")
            ab2: list = []
            inv2: list = []
            rec[self.array_key], off = self.array.decode(buf, off, cnt, ab2, inv2)
            if ab2:
                rec["abnormal"] = (ab or []) + ab2
            if inv2:
                rec["invalid"] = (inv or []) + inv2
            out.append(rec)
        return out, off

    def packed(self) -> "Subsystems":
        clone = copy.copy(self)
        clone.array = replace(self.array, packed=True)
        return clone

    def encode(self, value: list | str | None) -> bytes:
        if self.marked_count and (value is None or value == "abnormal"):
            return b"\xff" if value is None else b"\xfe"
        if not isinstance(value, list) or len(value) > 253:
            raise EncodeError(f"{self.name}: expected a list of at most 253 subsystems")
        parts = [bytes((len(value),))]
        for rec in value:
            arr = rec.get(self.array_key)
            if arr is not None and not isinstance(arr, ARRAY_TYPES):
                raise EncodeError(f"{self.name}: {self.array_key} must be a list")
            head = dict(rec)
            if arr is not None:
                head[self.count_field] = len(arr)
            elif not self.keep_count:
                head[self.count_field] = None
                _rename_marker(head, self.array_key, self.count_field)
            ab = rec.get("abnormal") or ()
            inv = rec.get("invalid") or ()
            parts.append(self.head.encode(head))
            if arr is not None:
                parts.append(self.array.encode(arr, ab, inv))
        return b"".join(parts)


def u8(buf: bytes, off: int, what: str) -> int:
    if off >= len(buf):
        raise BadBody(f"{what}: truncated", off)
    return buf[off]


def u16(buf: bytes, off: int, what: str) -> int:
    if off + 2 > len(buf):
        raise BadBody(f"{what}: truncated", off)
    return _H.unpack_from(buf, off)[0]


class Composite(FastConstruct):
    """A block made of fixed parts and arrays whose length is a count field of an earlier
    part (the 2016 fuel cell, the 2025 fuel-cell stacks and super-capacitor).

    ``parts`` holds :class:`FixedBlock` items and ``(ScaledArray, count_field)`` pairs. The
    count field is consumed (the array's length says it) unless ``keep`` names it."""

    def __init__(self, name: str, parts: list, keep: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.name = name
        self.parts = parts
        self.keep = keep

    def decode(self, buf: bytes, off: int) -> tuple[dict, int]:
        rec: dict = {}
        ab: list = []
        inv: list = []
        for part in self.parts:
            if isinstance(part, FixedBlock):
                sub, off = part.decode(buf, off)
                ab += sub.pop("abnormal", ())
                inv += sub.pop("invalid", ())
                rec.update(sub)
            else:
                array, count_field = part
                n = rec[count_field] if count_field in self.keep else rec.pop(count_field)
                if n is None:  # a marked count: no values follow
                    rec[array.name] = None
                    if count_field not in self.keep:
                        ab[:] = [array.name if x == count_field else x for x in ab]
                        inv[:] = [array.name if x == count_field else x for x in inv]
                    continue
                rec[array.name], off = array.decode(buf, off, n, ab, inv)
        if ab:
            rec["abnormal"] = ab
        if inv:
            rec["invalid"] = inv
        return rec, off

    def packed(self) -> "Composite":
        clone = copy.copy(self)
        clone.parts = [part if isinstance(part, FixedBlock) else (replace(part[0], packed=True), part[1])
                       for part in self.parts]
        return clone

    def encode(self, rec: dict) -> bytes:
        if not isinstance(rec, dict):
            raise EncodeError(f"{self.name}: expected an object")
        full = dict(rec)
        ab = rec.get("abnormal") or ()
        inv = rec.get("invalid") or ()
        for part in self.parts:
            if not isinstance(part, FixedBlock):
                array, count_field = part
                values = rec.get(array.name)
                if values is None:
                    full[count_field] = None
                    _rename_marker(full, array.name, count_field)
                elif isinstance(values, ARRAY_TYPES):
                    full[count_field] = len(values)
                else:
                    raise EncodeError(f"{self.name}.{array.name}: expected a list")
        out = []
        for part in self.parts:
            if isinstance(part, FixedBlock):
                out.append(part.encode(full))
            else:
                array, _ = part
                values = rec.get(array.name)
                if values is not None:
                    out.append(array.encode(values, ab, inv))
        return b"".join(out)
