"""The 6-byte time (table 5): decoded times are remembered by their bytes, and a
remembered time never stands in for a different or an impossible one."""

from __future__ import annotations

from datetime import datetime

import pytest

from codec import CST
from codec import timefield
from codec.errors import BadTime
from codec.timefield import decode_time, encode_time


def test_the_same_bytes_give_one_shared_time():
    raw = bytes([26, 12, 6, 8, 30, 15])
    first = decode_time(raw)
    assert first == datetime(2026, 12, 6, 8, 30, 15, tzinfo=CST)
    assert decode_time(bytearray(b"\x00" + raw), 1) is first
    assert decode_time(memoryview(raw)) is first


def test_a_neighbouring_second_is_its_own_time():
    decode_time(bytes([26, 12, 6, 8, 30, 15]))
    assert decode_time(bytes([26, 12, 6, 8, 30, 16])) == datetime(2026, 12, 6, 8, 30, 16, tzinfo=CST)


@pytest.mark.parametrize("raw, offset", [
    pytest.param(bytes([100, 1, 1, 0, 0, 0]), 0, id="year_byte_over_99"),
    pytest.param(bytes([26, 2, 30, 0, 0, 0]), 0, id="february_30"),
    pytest.param(bytes([0xFF] * 3 + [26, 13, 1, 0, 0, 0]), 3, id="month_13_at_an_offset"),
])
def test_an_impossible_time_is_refused_every_time(raw, offset):
    for _ in range(2):  # a refusal is not remembered as anything
        with pytest.raises(BadTime) as info:
            decode_time(raw, offset)
        assert info.value.offset == offset


def test_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(timefield, "_RECENT", {})
    monkeypatch.setattr(timefield, "_RECENT_MAX", 8)
    for second in range(20):
        assert decode_time(bytes([26, 1, 1, 0, 0, second])).second == second
        assert len(timefield._RECENT) <= 8


def test_round_trip():
    when = datetime(2031, 7, 4, 23, 59, 58, tzinfo=CST)
    assert decode_time(encode_time(when)) == when


def test_a_time_only_body_is_exactly_six_bytes():
    from codec.bodies import TimeOnly, decode_time_only
    from codec.errors import BadBody

    assert decode_time_only(bytes([26, 12, 6, 8, 0, 0])) == TimeOnly(datetime(2026, 12, 6, 8, 0, 0, tzinfo=CST))
    for raw in (bytes(5), bytes(7)):
        with pytest.raises(BadBody):
            decode_time_only(raw)
    with pytest.raises(BadTime):
        decode_time_only(bytes([26, 13, 1, 0, 0, 0]))
