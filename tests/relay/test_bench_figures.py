"""The e2e benchmark's derived figures, worked by hand (relay/bench/e2e_bench.py)."""

from __future__ import annotations

import pytest

from relay.bench.e2e_bench import _percentile, cpu_per_frame_us

BUSY = {"enterprise": 52.0, "municipal": 38.0, "provincial": 43.0, "loadgen": 8.0, "postgres": 49.0}


@pytest.mark.parametrize("cpu, rate, expected", [
    # 190 % of a core = 1.9 CPU-seconds a second over 4,000 frames a second
    pytest.param(BUSY, 4000.0, 475.0, id="five_parts_over_the_rate"),
    # a store process is already inside its tier's figure: not added again
    pytest.param({**BUSY, "enterprise_store": 30.0}, 4000.0, 475.0, id="store_share_not_counted_twice"),
    pytest.param({**BUSY, "postgres": None}, 4000.0, None, id="a_part_unknown"),
    pytest.param(BUSY, None, None, id="rate_unknown"),
    pytest.param(BUSY, 0.0, None, id="nothing_stored"),
])
def test_cpu_per_frame(cpu, rate, expected):
    assert cpu_per_frame_us(cpu, rate) == expected


@pytest.mark.parametrize("q, expected", [
    pytest.param(0.50, 5.0, id="p50_of_ten"),
    pytest.param(0.99, 10.0, id="p99_of_ten_is_the_largest"),
    pytest.param(0.0, 1.0, id="p0_is_the_smallest"),
])
def test_nearest_rank_percentile(q, expected):
    assert _percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], q) == expected
