"""Smoke tests of ``relay bench codec|ingest|e2e``: each runs briefly, as a subprocess, with
tiny parameters, and its ``--json`` line has the figures with sane values. Not a timed
test: no speed threshold is asserted here (the figures go in the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import codec
from relay.bench.loadgen import FrameMaker, fleet_vins

pytestmark = pytest.mark.timeout(240)


def _bench(*argv: str, timeout: float = 180.0, **env: str) -> tuple[int, dict, str]:
    environ = dict(os.environ)
    environ.pop("RELAY_BENCH_DSN", None)
    if os.environ.get("RELAY_TEST_DSN"):
        environ["RELAY_BENCH_DSN"] = os.environ["RELAY_TEST_DSN"]
    environ.update(env)
    proc = subprocess.run([sys.executable, "-m", "relay.cli", "bench", *argv, "--json"], capture_output=True,
                          text=True, timeout=timeout, env=environ)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr[-3000:]}"
    try:
        result = json.loads(lines[-1])
    except ValueError:
        pytest.fail(f"last line is not JSON: {lines[-1]!r}; stderr:\n{proc.stderr[-3000:]}")
    assert len(lines) > 1, "human-readable lines come before the JSON line"
    return proc.returncode, result, proc.stderr


def test_loadgen_frames_are_valid_realtime_frames_with_the_vin_and_time_put_in():
    for edition in ("2016", "2025"):
        maker = FrameMaker(edition)
        vin = fleet_vins(3, seed=5, public_share=1.0)[1]
        part = maker.vin_part(vin)
        seen = set()
        for k in range(60):
            second = 1_780_000_000 + k
            frame = codec.decode_frame(maker.frame(part, second, k))  # checks the BCC too
            assert frame.vin == vin
            assert frame.command == codec.Command.REALTIME
            assert frame.edition.value == edition
            assert frame.collected_at.timestamp() == second
            assert {"vehicle", "motors", "position", "alarm", "cell_voltages", "probe_temperatures"} \
                <= set(frame.body.items)
            assert len(frame.body.items["cell_voltages"][0]["cells_v"]) == 96
            seen.add(frame.raw)
        assert len(seen) == 60


def test_bench_codec_reports_throughput_of_both_editions_and_the_reader():
    rc, r, err = _bench("codec", RELAY_BENCH_CODEC_SECONDS="0.05")
    assert rc == 0, err
    for key in ("decode_frames_per_s", "encode_frames_per_s", "decode_2025_frames_per_s",
                "encode_2025_frames_per_s", "reader_frames_per_s"):
        assert isinstance(r[key], (int, float)) and r[key] > 0, key
    assert 300 < r["frame_bytes"] < 500
    assert 300 < r["frame_2025_bytes"] < 500
    assert r["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_bench_ingest_stores_every_frame_sent():
    rc, r, err = _bench("ingest", "--seconds", "2", "--terminals", "20", "--rate", "200",
                        "--batch-interval-ms", "30")
    assert rc == 0, err
    assert r["batch_interval_ms"] == 30  # as the node's writer runs
    for key in ("ingest_frames_per_s", "terminals", "frames_sent", "frames_stored", "peak_rss_mb", "lost"):
        assert key in r, key
    assert r["terminals"] == 20 and r["terminals_logged_in"] == 20
    assert 300 <= r["frames_sent"] <= 400
    assert r["frames_stored"] == r["frames_sent"] == r["frames_archived"]
    assert r["lost"] == 0
    assert r["ingest_frames_per_s"] > 0
    assert 10 < r["peak_rss_mb"] < 4096


def test_bench_e2e_brings_every_frame_to_the_province_and_measures_the_lag():
    rc, r, err = _bench("e2e", "--seconds", "2", "--terminals", "10", "--rate", "100")
    assert rc == 0, err
    for key in ("e2e_frames_per_s", "frames_sent", "frames_at_province", "lag_p50_ms", "lag_p99_ms"):
        assert key in r, key
    assert 150 <= r["frames_sent"] <= 200
    assert r["frames_at_enterprise"] == r["frames_at_municipal"] == r["frames_at_province"] == r["frames_sent"]
    assert r["lost"] == 0 and r["private_frames_upstream"] == 0
    assert r["store"] == "thread"  # the tiers share the machine (e2e_bench.DEFAULT_STORE)
    assert r["batch_interval_ms"] == 50  # the config's default
    assert r["cpu_us_per_frame"] is None or r["cpu_us_per_frame"] > 0
    assert r["lag_frames"] == r["frames_sent"] and r["lag_unmatched"] == 0
    assert 0 <= r["lag_p50_ms"] <= r["lag_p99_ms"] <= r["lag_max_ms"]
    assert r["e2e_frames_per_s"] > 0


@pytest.mark.parametrize("what", ["ingest", "e2e"])
def test_bench_refuses_a_batch_interval_below_one_millisecond(what):
    environ = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "relay.cli", "bench", what, "--batch-interval-ms", "0", "--json"],
                          capture_output=True, text=True, timeout=60, env=environ)
    assert proc.returncode == 2
    assert "--batch-interval-ms must be at least 1" in proc.stderr


def test_e2e_tiers_run_with_the_batch_interval_asked_for_else_the_default():
    from relay.bench.e2e_bench import TIERS, tier_configs
    from relay.config import Database, config_from_dict

    dsns = {t: f"dbname=x_{t}" for t in TIERS}
    ports = {t: 40000 + i for i, t in enumerate(TIERS)}
    for asked, expected in ((None, Database.batch_interval_ms), (30, 30)):
        configs = tier_configs(dsns, ports, 10, "thread", asked)
        assert {config_from_dict(c).database.batch_interval_ms for c in configs.values()} == {expected}
