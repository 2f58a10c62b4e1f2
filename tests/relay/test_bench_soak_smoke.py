"""Smoke test of ``relay bench soak``: a tiny run (50 terminals at the standard's 10 s interval
for 20 s), as a subprocess, whose ``--json`` line has the figures and exact counts. Not a
timed test: no speed or memory threshold is asserted (the figures go in the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from relay.bench import soak_bench

pytestmark = pytest.mark.timeout(120)


def test_soak_seconds_default_is_300_unless_given():
    assert soak_bench.soak_seconds(SimpleNamespace(seconds=None)) == 300.0
    assert soak_bench.soak_seconds(SimpleNamespace()) == 300.0
    assert soak_bench.soak_seconds(SimpleNamespace(seconds=10.0)) == 10.0

def test_bench_soak_counts_every_frame_and_reports_memory_and_lag_over_time():
    environ = dict(os.environ)
    environ.pop("RELAY_BENCH_DSN", None)
    environ.pop("RELAY_BENCH_SOAK_SAMPLE_S", None)
    if os.environ.get("RELAY_TEST_DSN"):
        environ["RELAY_BENCH_DSN"] = os.environ["RELAY_TEST_DSN"]
    proc = subprocess.run([sys.executable, "-m", "relay.cli", "bench", "soak", "--seconds", "20", "--terminals",
                           "50", "--json"], capture_output=True, text=True, timeout=100, env=environ)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr[-3000:]}"
    try:
        r = json.loads(lines[-1])
    except ValueError:
        pytest.fail(f"last line is not JSON: {lines[-1]!r}; stderr:\n{proc.stderr[-3000:]}")
    assert len(lines) > 1, "human-readable lines come before the JSON line"
    assert proc.returncode == 0, proc.stderr[-3000:]

    for key in ("samples", "samples_columns", "rss_mb_first", "rss_mb_last", "rss_mb_after_drain", "rss_growth_mb",
                "lag_p50_ms",
                "lag_p99_ms", "frames_sent", "frames_stored", "lost", "terminals", "seconds"):
        assert key in r, key
    assert r["terminals"] == r["terminals_logged_in"] == 50
    assert r["seconds"] == 20 and r["interval_s"] == 10
    # one frame per terminal every 10 s for 20 s: two each
    assert r["frames_expected"] == 100
    assert 95 <= r["frames_sent"] <= 100
    assert r["frames_stored"] == r["frames_sent"] == r["frames_archived"]
    assert r["lost"] == 0
    assert r["lag_frames"] == r["frames_sent"] and r["lag_unmatched"] == 0

    # the time series: columns as announced, time and stored count never go back
    assert r["samples_columns"] == ["t_s", "rss_mb", "frames_stored", "backlog", "lag_p50_ms", "lag_p99_ms"]
    rows = r["samples"]
    assert len(rows) >= 6
    assert all(len(row) == 6 for row in rows)
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert [row[2] for row in rows] == sorted(row[2] for row in rows)
    assert rows[-1][2] == r["frames_stored"]
    assert all(row[3] >= 0 for row in rows)

    # memory: plausible MiB, growth is a number (no threshold)
    assert 10 < r["rss_mb_first"] < 4096 and 10 < r["rss_mb_last"] < 4096
    assert isinstance(r["rss_growth_mb"], (int, float))
    # latency: one value per third of the run, each p50 <= p99
    assert len(r["lag_p50_ms"]) == len(r["lag_p99_ms"]) == 3
    assert sum(r["lag_frames_per_third"]) == r["lag_frames"]
    for p50, p99 in zip(r["lag_p50_ms"], r["lag_p99_ms"]):
        assert 0 <= p50 <= p99
