"""Pending realtime bodies: what a storing node reads on its hot path (``FrameReader(lazy=True)``).

A plain realtime or reissue frame comes out with only its collection time decoded; resolving
it gives exactly the body an eager decode gives, and a data unit that does not follow the
layout is refused on resolve with the error (reason, offset) the eager reader would have
reported. Everything the reader promises (every good frame out, in order; a cut-short frame
told from a good one) holds in both modes.
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec import (BadBody, BadTime, Command, Frame, FrameReader, Truncated, decode_frame, encode_frame,
                   frame_to_json)
from codec.forwarding import forwardable
from codec.frame import HEADER_SIZE, resolve
from codec.realtime import PendingRealtime, RealtimeData
from tests.codec.test_properties import realtime_frames
from tests.support.codec_frames import frame, load_vectors, vector

SAMPLES = load_vectors()
T = bytes((26, 3, 1, 10, 0, 0))  # 2026-03-01 10:00:00 +08:00


def lazy_read(raw: bytes) -> list:
    return FrameReader(packed=True, lazy=True).feed(raw)


@pytest.mark.parametrize("sample", SAMPLES, ids=[v["name"] for v in SAMPLES])
def test_every_public_sample_resolves_to_the_eager_body_and_keeps_its_bytes(sample):
    raw = bytes.fromhex(sample["hex"])
    full = decode_frame(raw)
    [got] = lazy_read(raw)
    pending = full.command in (Command.REALTIME, Command.REISSUE) and not full.is_answer \
        and isinstance(full.body, RealtimeData) and full.encryption in (1, 0xFE, 0xFF)
    assert isinstance(got.body, PendingRealtime) == pending
    if pending:
        assert got.collected_at == full.collected_at and got.body.data == raw[HEADER_SIZE:-1]
    assert resolve(got).body == full.body
    assert encode_frame(got) == raw  # a pending body encodes to its data unit
    assert frame_to_json(got) == frame_to_json(full)
    assert forwardable(got) == forwardable(full)


@given(realtime_frames())
def test_a_built_frame_read_lazily_resolves_to_what_was_built(built):
    raw = encode_frame(built)
    [got] = lazy_read(raw)
    assert isinstance(got.body, PendingRealtime) and got.collected_at == built.body.collected_at
    assert resolve(got).body == decode_frame(raw).body
    assert json.dumps(frame_to_json(got)) == json.dumps(frame_to_json(decode_frame(raw)))


def truncated_cells(extra: bytes = b"") -> bytes:
    """A 2016 realtime data unit whose cell-voltage block announces 200 cells (400 bytes)
    and carries ``extra`` instead: the layout does not fit (worked from table B.5: count 1,
    subsystem 1, 0x0FA0 = 400.0 V, 0x2710 = 0 A, 200 cells, first cell 1, 200 in frame)."""
    head = bytes((1,)) + struct.pack(">HHHHB", 4000, 10000, 200, 1, 200)
    return T + b"\x08\x01" + head + extra


def test_a_data_unit_that_does_not_fit_its_layout_is_refused_on_resolve_as_the_eager_reader_refuses_it():
    raw = frame("2016", Command.REALTIME, 0xFE, truncated_cells(b"\x0d\x48" * 3))
    [eager] = FrameReader(packed=True).feed(raw)
    [got] = lazy_read(raw)
    assert isinstance(eager, BadBody) and isinstance(got, Frame) and isinstance(got.body, PendingRealtime)
    with pytest.raises(BadBody) as refused:
        resolve(got)
    assert (refused.value.reason, refused.value.offset, refused.value.detail) == (eager.reason, eager.offset,
                                                                                  eager.detail)
    assert refused.value.raw == raw


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_an_impossible_collection_time_is_refused_at_once_in_both_modes(lazy):
    bad = frame("2016", Command.REALTIME, 0xFE, bytes((26, 13, 32, 24, 60, 60)) + b"\x00")
    results = FrameReader(packed=True, lazy=lazy).feed(bad + vector("logout2016"))
    assert isinstance(results[0], BadTime) and results[0].offset == HEADER_SIZE
    assert isinstance(results[1], Frame) and results[1].raw == vector("logout2016")


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_a_cut_short_frame_whose_check_code_matches_by_chance_still_gives_up_the_good_frame_inside(lazy):
    inner = vector("logout2016")
    # the outer frame's declared length ends exactly where the inner frame ends, and its BCC is
    # right: only its data unit (200 cells announced, too few bytes) shows it was cut short
    outer = frame("2016", Command.REALTIME, 0xFE, truncated_cells(inner))
    after = vector("ack2025")
    results = FrameReader(packed=True, lazy=lazy).feed(outer + after)
    assert isinstance(results[0], Truncated) and results[0].offset == 0
    # then the inner frame, the outer frame's check byte (garbage now), the frame after
    assert [(type(r).__name__, r.raw) for r in results[1:]] == [("Frame", inner), ("Garbage", outer[-1:]),
                                                                ("Frame", after)]


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_a_good_frame_that_happens_to_hold_a_frame_is_kept_whole(lazy):
    """Realtime data may contain '##' and even a whole valid frame; when the outer frame's
    data unit decodes, it is the frame (the eager rule), pending or not."""
    inner = vector("logout2016")
    unit = T + b"\x80" + struct.pack(">H", len(inner)) + inner  # a user-defined item holding the bytes
    outer = frame("2016", Command.REALTIME, 0xFE, unit)
    [got] = FrameReader(packed=True, lazy=lazy).feed(outer)
    assert isinstance(got, Frame) and got.raw == outer
    assert resolve(got).body.items["custom"] == [{"type": 0x80, "hex": inner.hex()}]


@given(st.lists(st.sampled_from([bytes.fromhex(v["hex"]) for v in SAMPLES]), min_size=1, max_size=8),
       st.lists(st.integers(1, 300), min_size=1, max_size=5))
def test_both_modes_cut_any_stream_into_the_same_frames_and_errors(frames, sizes):
    stream = b"".join(frames)
    out = {}
    for lazy in (False, True):
        reader, results, i, k = FrameReader(packed=True, lazy=lazy), [], 0, 0
        while i < len(stream):
            n = sizes[k % len(sizes)]
            results += reader.feed(stream[i:i + n])
            i, k = i + n, k + 1
        out[lazy] = [(type(r).__name__, r.raw, resolve(r).body if isinstance(r, Frame) else r.offset)
                     for r in results + reader.close()]
    assert out[True] == out[False]
