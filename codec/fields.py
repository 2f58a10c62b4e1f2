"""Declarations of scaled, marker-aware fields, as ``construct`` constructs that are fast.

The standard's blocks are runs of big-endian integers, each with a unit, a scale,
an offset and two markers: all-ones-but-one ("abnormal", 0xFE/0xFFFE/...) and
all-ones ("invalid", 0xFF/0xFFFF/...). A block is declared once as a table of
:class:`Field`; from that table this module derives, without hand-written twins:

* one ``struct.Struct`` for the whole fixed block (one C call per block),
* a decoder and an encoder generated from the table (plain Python, no per-field
  function calls), and
* a ``construct.Construct`` (:class:`FixedBlock`) so the declaration composes with
  other constructs and offers ``parse``/``build``/``sizeof``.

Decoded records are dicts in engineering units. A marked field is ``None`` and its
name is listed under ``"abnormal"`` or ``"invalid"`` (those keys appear only when
non-empty). Encoding is the exact inverse: decode -> encode returns the same bytes.

Scale is expressed as an integer divisor and the offset in raw counts, so that
``value = (raw + raw_offset) / divisor`` and ``raw = round(value * divisor) - raw_offset``
are exact inverses for every raw value.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import construct

from .errors import BadBody, EncodeError

_SIZES = {"B": 1, "H": 2, "I": 4, "Q": 8}


@dataclass(frozen=True)
class Field:
    """One field of a block.

    ``kind``: ``"num"`` (scaled number), ``"enum"`` (code with names), ``"raw"``
    (integer without markers) or ``"custom"`` (``decode(raw, rec, abnormal, invalid)``
    and ``encode(rec) -> raw`` given as ``custom``).
    """

    name: str
    code: str
    kind: str = "num"
    divisor: int = 1
    raw_offset: int = 0
    names: dict[int, str] | None = None
    markers: bool = True
    custom: tuple[Callable[..., None], Callable[[dict], int]] | None = None
    #: unit and clause, for documentation and the schema listing
    unit: str = ""

    @property
    def size(self) -> int:
        return _SIZES[self.code]

    @property
    def invalid_raw(self) -> int:
        return (1 << (8 * self.size)) - 1

    @property
    def abnormal_raw(self) -> int:
        return self.invalid_raw - 1


def num(name: str, code: str, divisor: int = 1, raw_offset: int = 0, unit: str = "", markers: bool = True) -> Field:
    return Field(name, code, "num", divisor, raw_offset, unit=unit, markers=markers)


def enum(name: str, code: str, names: dict[int, str], markers: bool = True) -> Field:
    return Field(name, code, "enum", names=names, markers=markers)


def raw(name: str, code: str) -> Field:
    return Field(name, code, "raw", markers=False)


def custom(name: str, code: str, decode: Callable[..., None], encode: Callable[[dict], int]) -> Field:
    return Field(name, code, "custom", markers=False, custom=(decode, encode))


def _value_expr(f: Field, var: str) -> str:
    if f.divisor == 1:
        return f"{var} + {f.raw_offset}" if f.raw_offset else var
    if f.raw_offset:
        return f"({var} + {f.raw_offset}) / {f.divisor}"
    return f"{var} / {f.divisor}"


def _compile(name: str, fields: tuple[Field, ...], st: struct.Struct):
    """Generate decode/encode functions for a fixed block from its field table."""
    env: dict[str, Any] = {"_unpack": st.unpack_from, "_pack": st.pack, "EncodeError": EncodeError,
                           "BadBody": BadBody}
    # decode(buf, off) -> (record, end), bounds checked: FixedBlock.decode, one call per block
    dec = ["def decode(buf, off):",
           f"    end = off + {st.size}",
           "    if end > len(buf):",
           f"        raise BadBody({name!r} + ': needs {st.size} bytes, ' + str(len(buf) - off) + ' left', off)"]
    variables = [f"v{i}" for i in range(len(fields))]
    dec.append(f"    {', '.join(variables)}, = _unpack(buf, off)")
    dec.append("    rec = {}; ab = []; inv = []")
    enc = ["def encode(rec):", "    ab = rec.get('abnormal') or (); inv = rec.get('invalid') or ()"]
    for i, f in enumerate(fields):
        v = f"v{i}"
        key = repr(f.name)
        if f.kind == "custom":
            env[f"DEC{i}"], env[f"ENC{i}"] = f.custom
            dec.append(f"    DEC{i}({v}, rec, ab, inv)")
            enc.append(f"    {v} = ENC{i}(rec)")
            continue
        if f.kind == "raw":
            value = v
        elif f.kind == "enum":
            env[f"NAMES{i}"] = dict(f.names)
            env[f"CODES{i}"] = {n: c for c, n in f.names.items()}
            value = f"NAMES{i}.get({v}, {v})"
        else:
            value = _value_expr(f, v)
        if f.markers:
            dec.append(f"    if {v} >= {f.abnormal_raw}:")
            dec.append(f"        rec[{key}] = None")
            dec.append(f"        (ab if {v} == {f.abnormal_raw} else inv).append({key})")
            dec.append("    else:")
            dec.append(f"        rec[{key}] = {value}")
        else:
            dec.append(f"    rec[{key}] = {value}")
        # encoder
        if f.markers:
            enc.append(f"    if {key} in ab: {v} = {f.abnormal_raw}")
            enc.append(f"    elif rec.get({key}) is None: {v} = {f.invalid_raw}")
            enc.append("    else:")
            ind = "        "
        else:
            ind = "    "
            enc.append(f"    if rec.get({key}) is None: raise EncodeError({name!r} + '.' + {key} + ': missing')")
        if f.kind == "enum":
            enc.append(f"{ind}x = rec[{key}]; {v} = CODES{i}[x] if isinstance(x, str) else int(x)")
        elif f.kind == "raw":
            enc.append(f"{ind}{v} = int(rec[{key}])")
        elif f.divisor == 1:
            enc.append(f"{ind}{v} = int(rec[{key}]) - {f.raw_offset}" if f.raw_offset else f"{ind}{v} = int(rec[{key}])")
        else:
            enc.append(f"{ind}{v} = round(rec[{key}] * {f.divisor}) - {f.raw_offset}")
        if f.markers:
            # a value whose raw count is a marker would silently read back as abnormal/invalid
            enc.append(f"{ind}if {v} >= {f.abnormal_raw}: raise EncodeError({name!r} + '.' + {key} + "
                       f"': value collides with the abnormal/invalid markers')")
    dec.append("    if ab: rec['abnormal'] = ab")
    dec.append("    if inv: rec['invalid'] = inv")
    dec.append("    return rec, end")
    enc.append(f"    return _pack({', '.join(variables)})")
    source = "\n".join(dec) + "\n\n" + "\n".join(enc) + "\n"
    code = compile(source, f"<block {name}>", "exec")
    exec(code, env)  # noqa: S102 - source generated from this module's static tables
    return env["decode"], env["encode"]


class FastConstruct(construct.Construct):
    """Adapter giving a ``decode(buf, off) -> (value, end)`` / ``encode(value) -> bytes``
    pair the ``construct`` interface, so declarations compose and ``parse``/``build`` work.
    The codec's hot path calls ``decode``/``encode`` directly."""

    def decode(self, buf: bytes, off: int) -> tuple[Any, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def packed(self) -> "FastConstruct":
        """The same block with its scaled arrays left packed (:class:`PackedValues`)."""
        return self

    def _parse(self, stream, context, path):
        start = construct.stream_tell(stream, path)
        rest = construct.stream_read_entire(stream, path)
        try:
            value, end = self.decode(rest, 0)
        except (struct.error, IndexError, ValueError) as exc:
            raise construct.StreamError(f"{self.name or type(self).__name__}: {exc}", path=path) from None
        construct.stream_seek(stream, start + end, 0, path)
        return value

    def _build(self, obj, stream, context, path):
        data = self.encode(obj)
        construct.stream_write(stream, data, len(data), path)
        return obj


class FixedBlock(FastConstruct):
    """A fixed-size block declared by a table of :class:`Field`."""

    def __init__(self, name: str, fields: list[Field] | tuple[Field, ...], clause: str = "") -> None:
        super().__init__()
        self.name = name
        self.clause = clause
        self.fields = tuple(fields)
        self.struct = struct.Struct(">" + "".join(f.code for f in self.fields))
        self.size = self.struct.size
        #: ``decode(buf, off) -> (record, end)``, generated with its bounds check (a
        #: ``BadBody`` naming the block), called directly on the hot path
        self.decode, self._encode = _compile(name, self.fields, self.struct)

    def encode(self, value: dict) -> bytes:
        try:
            return self._encode(value)
        except struct.error as exc:
            raise EncodeError(f"{self.name}: {exc} ({_out_of_range(self, value)})") from None
        except (KeyError, TypeError) as exc:
            raise EncodeError(f"{self.name}: bad value {exc}") from None

    def _sizeof(self, context, path):
        return self.size


def _out_of_range(block: FixedBlock, value: dict) -> str:
    bad = []
    for f in block.fields:
        x = value.get(f.name)
        if f.kind == "num" and isinstance(x, (int, float)):
            r = round(x * f.divisor) - f.raw_offset
            if not 0 <= r <= f.invalid_raw:
                bad.append(f"{f.name}={x}")
    return "out of range: " + ", ".join(bad) if bad else "value out of range"


class PackedValues(Sequence):
    """The values of a :class:`ScaledArray` kept as received, converted on first use.

    A node that stores and forwards a frame never reads its cell voltages one by one: it
    archives the raw frame and keeps only the extremes. Leaving the array packed saves
    most of a realtime frame's decoding. It behaves as the list it stands for (length,
    items, iteration, equality with lists); it is only made when no value carries a
    marker, so it never adds to ``abnormal``/``invalid``. Encoding gives back the bytes.
    """

    __slots__ = ("array", "data", "_values")

    def __init__(self, array: "ScaledArray", data: bytes) -> None:
        self.array = array
        self.data = data
        self._values: list | None = None

    def values(self) -> list:
        if self._values is None:
            arr = self.array
            raw = arr._struct(len(self.data) // arr.size).unpack(self.data)
            d, o = arr.divisor, arr.raw_offset
            if d == 1:
                self._values = [v + o for v in raw] if o else list(raw)
            else:
                self._values = [(v + o) / d for v in raw] if o else [v / d for v in raw]
        return self._values

    def extreme(self, pick) -> float | int | None:
        """``pick`` (max or min) of the values, computed on the raw integers."""
        if not self.data:
            return None
        arr = self.array
        v = pick(arr._struct(len(self.data) // arr.size).unpack(self.data)) + arr.raw_offset
        return v / arr.divisor if arr.divisor != 1 else v

    def __len__(self) -> int:
        return len(self.data) // self.array.size

    def __getitem__(self, index):
        return self.values()[index]

    def __iter__(self):
        return iter(self.values())

    def __eq__(self, other) -> bool:
        if isinstance(other, PackedValues):
            return self.values() == other.values()
        if isinstance(other, (list, tuple)):
            return self.values() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a list stand-in: unhashable

    def __repr__(self) -> str:
        return repr(self.values())


#: what an array value may be: a list, or the same values still packed
ARRAY_TYPES = (list, PackedValues)


@dataclass(frozen=True)
class ScaledArray:
    """``count`` values of one scaled type, with markers, decoded in one struct call.
    With ``packed`` set the values stay bytes (:class:`PackedValues`) unless one of them is
    a marker."""

    name: str
    code: str
    divisor: int = 1
    raw_offset: int = 0
    markers: bool = True
    packed: bool = False
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def size(self) -> int:
        return _SIZES[self.code]

    def _struct(self, count: int) -> struct.Struct:
        st = self._cache.get(count)
        if st is None:
            st = self._cache[count] = struct.Struct(f">{count}{self.code}")
        return st

    def decode(self, buf: bytes, off: int, count: int, ab: list, inv: list) -> tuple[list, int]:
        st = self._struct(count)
        end = off + st.size
        if end > len(buf):
            raise BadBody(f"{self.name}: {count} values need {st.size} bytes, {len(buf) - off} left", off)
        if self.packed:
            data = bytes(buf[off:end])
            if not self.markers or not self._may_hold_markers(data):
                return PackedValues(self, data), end
        values = st.unpack_from(buf, off)
        full = (1 << (8 * self.size)) - 1
        d, o = self.divisor, self.raw_offset
        if self.markers and max(values, default=0) >= full - 1:
            out = []
            for i, v in enumerate(values):
                if v >= full - 1:
                    out.append(None)
                    (ab if v == full - 1 else inv).append(f"{self.name}[{i}]")
                else:
                    out.append((v + o) / d if d != 1 else v + o)
            return out, end
        if d == 1:
            return ([v + o for v in values] if o else list(values)), end
        if o:
            return [(v + o) / d for v in values], end
        return [v / d for v in values], end

    def _may_hold_markers(self, data: bytes) -> bool:
        """Whether a value may be 0xFE../0xFF..: every marker's first byte is 0xFF (wider
        values) or 0xFE/0xFF (one byte); a quick scan of those bytes only."""
        if self.size == 1:
            return b"\xfe" in data or b"\xff" in data
        return b"\xff" in data[::self.size]

    def encode(self, values: list, ab: tuple | list = (), inv: tuple | list = ()) -> bytes:
        if isinstance(values, PackedValues) and values.array.code == self.code \
                and values.array.divisor == self.divisor and values.array.raw_offset == self.raw_offset:
            return values.data
        full = (1 << (8 * self.size)) - 1
        d, o = self.divisor, self.raw_offset
        raws = []
        for i, v in enumerate(values):
            if v is None:
                key = f"{self.name}[{i}]"
                raws.append(full - 1 if key in ab else full)
            else:
                raws.append(round(v * d) - o if d != 1 else int(v) - o)
        try:
            return self._struct(len(raws)).pack(*raws)
        except struct.error as exc:
            raise EncodeError(f"{self.name}: {exc}") from None
