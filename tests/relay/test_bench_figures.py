"""The e2e benchmark's derived figures, worked by hand (relay/bench/e2e_bench.py)."""

from __future__ import annotations

import pytest

from relay.bench.e2e_bench import _percentile, cpu_per_frame_us, drain_seconds

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


@pytest.mark.parametrize("ended, last_arrival, polled, expected", [
    # the province's newest received_at decides, not when the polling noticed
    pytest.param(1000.0, 1000.7, 1001.4, 0.7, id="by_the_last_arrival"),
    # the last frame was there before sending ended (a node that keeps up within the clock's grain)
    pytest.param(1000.0, 999.98, 1000.3, 0.0, id="never_negative"),
    pytest.param(1000.0, None, 1001.4, 1.4, id="no_arrival_then_the_poll"),
    pytest.param(0.0, 1000.7, 1001.4, 0.0, id="sending_never_ended"),
])
def test_drain_seconds(ended, last_arrival, polled, expected):
    assert drain_seconds(ended, last_arrival, polled) == pytest.approx(expected)
