"""The check code against the standard's definition, a byte-by-byte XOR, for every
length a fold can meet (odd and even halves, the last 8 bytes, the largest frame)."""

from __future__ import annotations

import random
from functools import reduce
from operator import xor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec.bcc import bcc


def by_bytes(data) -> int:
    return reduce(xor, bytes(data), 0)


@pytest.mark.parametrize("length", [*range(0, 70), 127, 128, 129, 329, 330, 331, 1023, 1024, 1025, 65531 + 21])
def test_every_length_matches_the_byte_loop(length):
    rng = random.Random(length)
    data = bytes(rng.getrandbits(8) for _ in range(length))
    assert bcc(data) == by_bytes(data)
    assert bcc(bytearray(data)) == bcc(memoryview(data)) == by_bytes(data)


@given(st.binary(max_size=2000))
def test_any_data_matches_the_byte_loop(data):
    assert bcc(data) == by_bytes(data)


def test_a_slice_of_a_buffer_as_the_reader_passes_it():
    frame = bytearray(b"##" + bytes(range(256)) * 2 + b"\x00")
    assert bcc(memoryview(frame)[2:-1]) == by_bytes(frame[2:-1])
