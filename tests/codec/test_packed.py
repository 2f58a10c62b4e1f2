"""Packed arrays: what a node decodes on its hot path (``FrameReader(packed=True)``) is the
same data as the full decode, only with marker-free scaled arrays left as bytes.

Each property compares the packed reading with the plain one of the same bytes: equal
bodies, the same bytes when encoded again, the same JSON text, the same extremes.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given

from codec import FrameReader, decode_frame, encode_frame, frame_to_json
from codec.fields import PackedValues, ScaledArray
from codec.frame import HEADER_SIZE, decode_checked, parse_header
from tests.codec.test_properties import realtime_frames
from tests.support.codec_frames import load_vectors

CELLS = ScaledArray("cells_v", "H", 1000, packed=True)
TEMPS = ScaledArray("temps_c", "B", 1, -40, packed=True)


def packed_decode(raw: bytes):
    return decode_checked(raw, *parse_header(raw)[:5], packed=True)


def arrays_in(value) -> list:
    """Every array value in a decoded body (lists and packed alike)."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (list, PackedValues)) and k not in ("abnormal", "invalid"):
                out.append(v)
            out += arrays_in(v)
    elif isinstance(value, list):
        for v in value:
            out += arrays_in(v)
    return out


# --- worked by hand ---------------------------------------------------------------------------

@pytest.mark.parametrize("array, data, values", [
    pytest.param(CELLS, bytes.fromhex("0d48 0d49 0000"), [3.4, 3.401, 0.0], id="cells-mV"),
    pytest.param(CELLS, bytes.fromhex("00ff 0001"), [0.255, 0.001], id="cells-ff-low-byte-is-a-value"),
    pytest.param(TEMPS, bytes.fromhex("00 28 fd"), [-40, 0, 213], id="temps-offset-40"),
    pytest.param(CELLS, b"", [], id="empty"),
])
def test_marker_free_values_stay_packed_and_read_as_the_list(array, data, values):
    ab, inv = [], []
    got, end = array.decode(b"\x99" + data + b"\x77", 1, len(data) // array.size, ab, inv)
    assert isinstance(got, PackedValues) and end == 1 + len(data)
    assert got == values and values == got and list(got) == values and len(got) == len(values)
    assert (ab, inv) == ([], [])
    assert array.encode(got) == data


@pytest.mark.parametrize("array, data, values, ab, inv", [
    pytest.param(CELLS, bytes.fromhex("fffe 0d48"), [None, 3.4], ["cells_v[0]"], [], id="cell-abnormal"),
    pytest.param(CELLS, bytes.fromhex("0d48 ffff"), [3.4, None], [], ["cells_v[1]"], id="cell-invalid"),
    pytest.param(TEMPS, bytes.fromhex("28 fe ff"), [0, None, None], ["temps_c[1]"], ["temps_c[2]"], id="temps"),
])
def test_a_marker_makes_the_array_decode_in_full(array, data, values, ab, inv):
    got_ab, got_inv = [], []
    got, _ = array.decode(data, 0, len(data) // array.size, got_ab, got_inv)
    assert type(got) is list and got == values
    assert (got_ab, got_inv) == (ab, inv)


@pytest.mark.parametrize("array, data, hi, lo", [
    pytest.param(CELLS, bytes.fromhex("0d48 0cf0 0d99"), 3.481, 3.312, id="cells"),
    pytest.param(TEMPS, bytes.fromhex("28 00 50"), 40, -40, id="temps"),
])
def test_extremes_are_read_on_the_raw_integers(array, data, hi, lo):
    got, _ = array.decode(data, 0, len(data) // array.size, [], [])
    assert got.extreme(max) == hi and got.extreme(min) == lo
    assert got._values is None  # never turned into a list


def test_packed_values_are_not_hashable_and_compare_with_lists_only():
    got, _ = CELLS.decode(bytes.fromhex("0d48"), 0, 1, [], [])
    with pytest.raises(TypeError):
        hash(got)
    assert got != "3.4" and got != {3.4} and got == (3.4,)


# --- the same data as the full decode ---------------------------------------------------------

@given(realtime_frames())
def test_packed_decode_equals_the_full_decode_and_encodes_the_same_bytes(frame):
    raw = encode_frame(frame)
    full, packed = decode_frame(raw), packed_decode(raw)
    assert packed.body == full.body and full.body == packed.body
    assert encode_frame(packed) == raw
    assert json.dumps(frame_to_json(packed)) == json.dumps(frame_to_json(full))


@pytest.mark.parametrize("sample", load_vectors(), ids=[v["name"] for v in load_vectors()])
def test_every_public_sample_reads_the_same_packed(sample):
    raw = bytes.fromhex(sample["hex"])
    full = decode_frame(raw)
    [packed] = FrameReader(packed=True).feed(raw)
    assert packed.body == full.body
    assert encode_frame(packed) == raw
    assert frame_to_json(packed) == frame_to_json(full)


def test_the_reader_leaves_a_realistic_frames_cells_and_temperatures_packed():
    from relay.bench.codec_bench import realistic_frame

    from codec import Edition

    for edition in Edition:
        raw = encode_frame(realistic_frame(edition))
        [frame] = FrameReader(packed=True).feed(raw)
        arrays = arrays_in(frame.body.items)
        packed = [a for a in arrays if isinstance(a, PackedValues)]
        assert packed, edition  # the cells and probe temperatures at least
        assert len(raw) > HEADER_SIZE and encode_frame(frame) == raw
