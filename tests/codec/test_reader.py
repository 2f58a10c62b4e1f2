"""FrameReader: a byte stream in any chunking -> frames and typed errors with stream offsets.

What an operator relies on: every good frame comes out, in order, as soon as its last byte
has arrived, whatever precedes it; refused bytes are reported with a reason and the stream
offset where the problem is.
"""

from __future__ import annotations

import random

import pytest

from codec import (BadChecksum, BadHeader, BadLength, BadTime, BadVin, Frame, FrameError, FrameReader, Garbage,
                   Truncated, UnknownCommand, decode_frame)
from tests.support.codec_frames import T0_HEX, frame, vector, xor

LOGOUT16 = vector("logout2016")                      # 33 bytes
DATA16 = vector("data_2016")                         # 594 bytes
ENGINE25 = vector("data2025 with only engine data")  # 296 bytes
ACK25 = vector("ack2025")                            # 31 bytes
HEARTBEAT = frame("2016", 0x07, 0xFE)                # 25 bytes, empty data unit
GOOD = [LOGOUT16, DATA16, ENGINE25, HEARTBEAT, ACK25]
STREAM = b"".join(GOOD)


def feed_all(reader: FrameReader, chunks) -> list:
    out = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out + reader.close()


def chunked(data: bytes, sizes) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i:i + n])
        i += n
        k += 1
    return out


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 40)))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def frames_of(results) -> list[bytes]:
    return [r.raw for r in results if isinstance(r, Frame)]


def errors_of(results) -> list[FrameError]:
    return [r for r in results if not isinstance(r, Frame)]


def garbage_stretches(results) -> list[tuple[int, bytes]]:
    """Garbage reports merged where one ends where the next begins (chunking splits them)."""
    out: list[tuple[int, bytes]] = []
    for r in results:
        if isinstance(r, Garbage):
            if out and out[-1][0] + len(out[-1][1]) == r.offset:
                out[-1] = (out[-1][0], out[-1][1] + r.raw)
            else:
                out.append((r.offset, r.raw))
    return out


CHUNKINGS = [pytest.param([len(STREAM)], id="all_at_once"), pytest.param([1], id="one_byte_at_a_time")] + [
    pytest.param([n], id=f"chunks_of_{n}") for n in (2, 3, 7, 23, 24, 25, 26, 100, 595)] + [
    pytest.param([5, 1, 40, 2, 300], id="uneven_chunks")]


@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_every_frame_comes_out_in_order_whatever_the_chunking(sizes):
    results = feed_all(FrameReader(), chunked(STREAM, sizes))
    assert frames_of(results) == GOOD
    assert errors_of(results) == []


@pytest.mark.parametrize("seed", range(20))
def test_every_frame_comes_out_in_order_with_random_splits(seed):
    results = feed_all(FrameReader(), random_splits(STREAM, seed))
    assert frames_of(results) == GOOD
    assert errors_of(results) == []


def test_a_frame_comes_out_with_the_feed_that_completes_it():
    reader = FrameReader()
    ends = set()
    pos = 0
    for f in GOOD:
        pos += len(f)
        ends.add(pos)
    for i, byte in enumerate(STREAM):
        out = reader.feed(bytes((byte,)))
        assert bool(out) == (i + 1 in ends), i
        if out:
            assert isinstance(out[0], Frame)
    assert reader.buffered == 0
    assert reader.close() == []


def test_decoded_frames_from_the_reader_equal_decode_frame():
    results = FrameReader().feed(STREAM)
    assert results == [decode_frame(f) for f in GOOD]


# --- garbage ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_garbage_before_between_and_after_frames_is_reported_with_stream_offsets(sizes):
    junk1, junk2, junk3 = b"xyz", b"\x00\x01 not a frame \xfe\xff", b"tail!"
    stream = junk1 + LOGOUT16 + junk2 + DATA16 + junk3
    results = feed_all(FrameReader(), chunked(stream, sizes))
    assert frames_of(results) == [LOGOUT16, DATA16]
    assert all(isinstance(e, Garbage) and e.reason == "garbage" for e in errors_of(results))
    at2 = len(junk1) + len(LOGOUT16)
    at3 = at2 + len(junk2) + len(DATA16)
    assert garbage_stretches(results) == [(0, junk1), (at2, junk2), (at3, junk3)]
    # reported in stream order (runs of garbage split by the chunking collapsed)
    kinds = [type(r).__name__ for r in results]
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    assert collapsed == ["Garbage", "Frame", "Garbage", "Frame", "Garbage"]


def test_garbage_fed_after_frames_has_its_offset_in_the_whole_stream():
    reader = FrameReader()
    assert frames_of(reader.feed(LOGOUT16)) == [LOGOUT16]
    [junk] = reader.feed(b"zz")
    assert (junk.offset, junk.raw) == (len(LOGOUT16), b"zz")


def test_a_lone_start_character_waits_for_the_next_byte_then_is_garbage():
    reader = FrameReader()
    first = reader.feed(b"ab#")
    assert [(type(e), e.offset, e.raw) for e in first] == [(Garbage, 0, b"ab")]
    assert reader.buffered == 1
    second = reader.feed(b"c")
    assert [(type(e), e.offset, e.raw) for e in second] == [(Garbage, 2, b"#c")]


def test_stray_start_characters_before_a_frame_do_not_hide_it():
    stream = b"#$#" + DATA16 + b"$" + LOGOUT16
    results = feed_all(FrameReader(), [stream])
    assert frames_of(results) == [DATA16, LOGOUT16]
    # "#$" is garbage; "#" + the frame's first "#" looks like a start whose header fails
    assert [(type(e), e.offset, e.raw) for e in errors_of(results)] == [
        (Garbage, 0, b"#$"), (BadHeader, 2, b"##"), (Garbage, 3 + len(DATA16), b"$")]


# --- bad check code ----------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [[10_000], [1], [17]], ids=["at_once", "bytewise", "chunks_of_17"])
def test_frame_with_a_bad_check_code_is_refused_and_the_next_frame_still_comes_out(sizes):
    bad = ENGINE25[:-1] + bytes((ENGINE25[-1] ^ 0x5A,))
    stream = LOGOUT16 + bad + DATA16
    results = feed_all(FrameReader(), chunked(stream, sizes))
    assert frames_of(results) == [LOGOUT16, DATA16]
    errors = errors_of(results)
    [bcc_error] = [e for e in errors if isinstance(e, BadChecksum)]
    assert bcc_error.reason == "bad_bcc"
    assert bcc_error.offset == len(LOGOUT16) + len(bad) - 1  # the check byte itself
    assert bcc_error.raw == bad
    # whatever else is reported lies inside the refused frame
    for e in errors:
        assert len(LOGOUT16) <= e.offset < len(LOGOUT16) + len(bad)


def test_frame_hidden_inside_a_frame_with_a_bad_check_code_is_found():
    """A frame cut short whose declared length ends inside the next frame: the BCC at that
    position is wrong, and the complete frame inside it is the one that counts."""
    cut = DATA16[:60]
    stream = cut + LOGOUT16 + DATA16
    assert xor(stream[2:len(DATA16) - 1]) != stream[len(DATA16) - 1]  # precondition: BCC fails
    results = feed_all(FrameReader(), [stream])
    assert frames_of(results) == [LOGOUT16, DATA16]
    [err] = errors_of(results)
    assert (type(err), err.reason, err.offset, err.raw) == (Truncated, "truncated", 0, cut)


# --- truncated frames and lying lengths ---------------------------------------------------------

@pytest.mark.parametrize("sizes", [[10_000], [1], [33]], ids=["at_once", "bytewise", "chunks_of_33"])
def test_truncated_frame_followed_by_a_good_frame_is_reported_and_the_good_frame_comes_out(sizes):
    cut = DATA16[:40]
    stream = LOGOUT16 + cut + ENGINE25 + HEARTBEAT
    results = feed_all(FrameReader(), chunked(stream, sizes))
    assert frames_of(results) == [LOGOUT16, ENGINE25, HEARTBEAT]
    [err] = errors_of(results)
    assert isinstance(err, Truncated) and err.reason == "truncated"
    assert err.offset == len(LOGOUT16) and err.raw == cut


def test_fake_header_with_a_huge_length_does_not_hold_back_the_frames_behind_it():
    fake = frame("2016", 0x02, 0xFE, b"", length=65531)[:-1] + b"\x01\x02"  # claims 65531 bytes
    reader = FrameReader()
    assert reader.feed(fake) == []
    first = reader.feed(LOGOUT16)
    assert [type(r) for r in first] == [Truncated, Frame]
    assert (first[0].offset, first[0].raw) == (0, fake)
    assert first[1].raw == LOGOUT16
    assert frames_of(reader.feed(DATA16)) == [DATA16]
    assert frames_of(reader.feed(ENGINE25)) == [ENGINE25]
    assert reader.buffered == 0 and reader.close() == []


def test_fake_header_before_a_frame_that_arrives_byte_by_byte_releases_it_on_its_last_byte():
    fake = frame("2025", 0x02, 0xFE, b"", length=40000)[:-1]
    reader = FrameReader()
    reader.feed(fake)
    for byte in ENGINE25[:-1]:
        assert frames_of(reader.feed(bytes((byte,)))) == []
    assert frames_of(reader.feed(ENGINE25[-1:])) == [ENGINE25]


def test_length_above_the_listener_bound_is_refused_without_waiting():
    reader = FrameReader(max_length=100)
    results = reader.feed(LOGOUT16 + DATA16 + LOGOUT16)  # DATA16 declares 569 bytes
    assert frames_of(results) == [LOGOUT16, LOGOUT16]
    errors = errors_of(results)
    assert (type(errors[0]), errors[0].reason, errors[0].offset) == (BadLength, "bad_length", len(LOGOUT16))
    assert all(isinstance(e, Garbage) for e in errors[1:])
    assert reader.buffered == 0


def test_length_above_the_standards_maximum_is_refused_as_bad_length():
    lying = frame("2016", 0x02, 0xFE, b"", length=0xFFFF)
    results = feed_all(FrameReader(), [lying + LOGOUT16])
    assert frames_of(results) == [LOGOUT16]
    assert (type(results[0]), results[0].offset) == (BadLength, 0)


def test_listener_bound_outside_the_standard_is_a_programming_error():
    with pytest.raises(ValueError):
        FrameReader(max_length=65532)


# --- refusals of a complete frame ---------------------------------------------------------------

def test_unknown_command_with_a_valid_check_code_is_refused_as_one_stretch():
    unknown = frame("2016", 0x50, 0xFE, bytes.fromhex(T0_HEX))
    results = feed_all(FrameReader(), [LOGOUT16 + unknown + LOGOUT16])
    assert frames_of(results) == [LOGOUT16, LOGOUT16]
    [err] = errors_of(results)
    assert (type(err), err.reason, err.raw) == (UnknownCommand, "unknown_command", unknown)
    assert err.offset == len(LOGOUT16) + 2  # the command byte


def test_bad_vin_bytes_are_refused_at_the_frame_start():
    bad = frame("2016", 0x04, 0xFE, bytes.fromhex(T0_HEX + "0001"), vin=b"HAUV4BGN\x01S5002219")
    results = feed_all(FrameReader(), [LOGOUT16 + bad + LOGOUT16])
    assert frames_of(results) == [LOGOUT16, LOGOUT16]
    errors = errors_of(results)
    assert (type(errors[0]), errors[0].reason, errors[0].offset) == (BadVin, "bad_vin", len(LOGOUT16))
    assert garbage_stretches(results) == [(len(LOGOUT16) + 1, bad[1:])]


def test_bad_response_flag_is_refused_as_bad_header():
    bad = frame("2016", 0x04, 0x09, bytes.fromhex(T0_HEX + "0001"))
    results = feed_all(FrameReader(), [bad + LOGOUT16])
    assert frames_of(results) == [LOGOUT16]
    assert (type(results[0]), results[0].reason, results[0].offset) == (BadHeader, "bad_header", 0)


def test_impossible_time_is_refused_as_bad_time_and_the_frame_consumed():
    bad = frame("2016", 0x04, 0xFE, bytes.fromhex("19021e000000 0001"))  # 30 February
    results = feed_all(FrameReader(), [ACK25 + bad + LOGOUT16])
    assert frames_of(results) == [ACK25, LOGOUT16]
    [err] = errors_of(results)
    assert (type(err), err.reason, err.raw) == (BadTime, "bad_time", bad)
    assert err.offset == len(ACK25) + 24  # the time at the start of the data unit


# --- end of stream ------------------------------------------------------------------------------

def test_close_reports_a_frame_left_incomplete_as_truncated():
    reader = FrameReader()
    assert frames_of(reader.feed(LOGOUT16 + DATA16[:30])) == [LOGOUT16]
    assert reader.buffered == 30
    [err] = reader.close()
    assert (type(err), err.reason, err.offset, err.raw) == (Truncated, "truncated", len(LOGOUT16), DATA16[:30])
    assert reader.buffered == 0 and reader.close() == []


def test_close_reports_a_lone_start_character_as_garbage():
    reader = FrameReader()
    reader.feed(b"xx$")
    [err] = reader.close()
    assert (type(err), err.offset, err.raw) == (Garbage, 2, b"$")


def test_close_on_a_clean_stream_reports_nothing():
    reader = FrameReader()
    reader.feed(STREAM)
    assert reader.close() == []


def test_close_reports_a_header_cut_short_as_truncated():
    reader = FrameReader()
    reader.feed(LOGOUT16[:10])
    [err] = reader.close()
    assert (type(err), err.offset, err.raw) == (Truncated, 0, LOGOUT16[:10])


# --- regression: the reader once lost a good frame here -------------------------------------------

def test_cut_short_frame_with_a_coincidental_check_code_does_not_swallow_the_next_frame():
    cut = bytearray(DATA16[:100])
    cut[22:24] = (511).to_bytes(2, "big")  # claims 511 bytes: its end falls inside DATA16 below
    stream = bytes(cut) + DATA16 + LOGOUT16
    end = 24 + 511
    assert xor(stream[2:end]) == stream[end]  # precondition: the byte there happens to match
    results = feed_all(FrameReader(), [stream])
    assert frames_of(results) == [DATA16, LOGOUT16]
