"""``relay bench codec``: codec throughput on one core.

Frames: a realistic realtime frame of each edition, built with
:func:`relay.simulate.realtime_items` and given an alarm with faults:

* 2016: whole vehicle, 2 motors, position, extremes, alarm (level 2, two general flags,
  battery, motor and other fault codes), 96 cell voltages, 32 probe temperatures;
* 2025: the same reading in the 2025 blocks (no extremes block; alarm with per-flag levels).

Measurements (``time.perf_counter``; each run lasts at least ``RELAY_BENCH_CODEC_SECONDS``,
default 1 s; the best of 3 runs is reported):

* ``decode_frames_per_s`` / ``decode_2025_frames_per_s``: :func:`codec.decode_frame` of the bytes;
* ``encode_frames_per_s`` / ``encode_2025_frames_per_s``: :func:`codec.encode_frame` of the
  frame as built (its body a :class:`codec.RealtimeData`);
* ``reader_frames_per_s``: :class:`codec.FrameReader` over a stream of 1,000 such 2016 frames
  (different vehicles and readings) fed in 4,096-byte chunks, as a socket would deliver them.

``machine_cpu_pct`` tells how busy the machine was meanwhile; its ``others`` is CPU used by
processes other than this benchmark (in percent of one core): on a shared machine the
figures are only comparable when it is near 0.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime

from . import emit

RUNS = 3
READER_FRAMES = 1000
READER_CHUNK = 4096


def realistic_items(edition, vehicle=None) -> dict:
    """One reading with an alarm that carries faults (see the module docstring)."""
    from codec import Edition

    from ..simulate import make_fleet, realtime_items

    v = vehicle or make_fleet(1, public_share=1.0, seed=1)[0]
    items = realtime_items(v, edition)
    alarm = items["alarm"]
    alarm.update(max_level=2, flags=["soc_low", "insulation"], battery_faults=[0x1001, 0x1002],
                 motor_faults=[0x2001], engine_faults=[], other_faults=[0x4001])
    if edition is Edition.V2025:
        alarm["flag_levels"] = [{"flag": "soc_low", "level": 2}, {"flag": "insulation", "level": 2}]
    return items


def realistic_frame(edition, vin: str = "LNBSMX01000000001", when: datetime | None = None, vehicle=None):
    import codec
    from codec.frame import realtime_frame
    from codec.realtime import RealtimeData

    when = when or datetime(2026, 3, 1, 10, 0, 0, tzinfo=codec.CST)
    return realtime_frame(edition, vin, RealtimeData(when, realistic_items(edition, vehicle)))


def _rate(fn, arg, min_seconds: float, batch: int = 200) -> float:
    """Calls of ``fn(arg)`` per second over at least ``min_seconds``."""
    n = 0
    perf = time.perf_counter
    start = perf()
    while True:
        for _ in range(batch):
            fn(arg)
        n += batch
        elapsed = perf() - start
        if elapsed >= min_seconds:
            return n / elapsed


def _reader_rate(chunks: list[bytes], frames: int, min_seconds: float) -> float:
    from codec import Frame, FrameReader

    n = 0
    perf = time.perf_counter
    start = perf()
    while True:
        reader = FrameReader()
        got = 0
        for chunk in chunks:
            for item in reader.feed(chunk):
                if not isinstance(item, Frame):
                    raise RuntimeError(f"reader refused a good frame: {item!r}")
                got += 1
        if got != frames or reader.close():
            raise RuntimeError(f"reader returned {got} of {frames} frames")
        n += got
        elapsed = perf() - start
        if elapsed >= min_seconds:
            return n / elapsed


def measure(min_seconds: float = 1.0, runs: int = RUNS) -> dict:
    import codec
    from codec import Edition

    from ..simulate import make_fleet

    f16 = realistic_frame(Edition.V2016)
    f25 = realistic_frame(Edition.V2025)
    raw16 = codec.encode_frame(f16)
    raw25 = codec.encode_frame(f25)
    # the benchmark is only meaningful if the frames round-trip and carry what they should
    for raw, keys in ((raw16, {"vehicle", "motors", "position", "extremes", "alarm", "cell_voltages",
                               "probe_temperatures"}),
                      (raw25, {"vehicle", "motors", "position", "alarm", "cell_voltages", "probe_temperatures"})):
        decoded = codec.decode_frame(raw)
        if set(decoded.body.items) != keys or codec.encode_frame(decoded) != raw:
            raise RuntimeError(f"benchmark frame does not round-trip: {sorted(decoded.body.items)}")
    fleet = make_fleet(READER_FRAMES, public_share=1.0, seed=3)
    stream = b"".join(codec.encode_frame(realistic_frame(Edition.V2016, v.vin, vehicle=v)) for v in fleet)
    chunks = [stream[i:i + READER_CHUNK] for i in range(0, len(stream), READER_CHUNK)]

    best: dict[str, float] = {}
    cases = [
        ("decode_frames_per_s", lambda: _rate(codec.decode_frame, raw16, min_seconds)),
        ("encode_frames_per_s", lambda: _rate(codec.encode_frame, f16, min_seconds)),
        ("decode_2025_frames_per_s", lambda: _rate(codec.decode_frame, raw25, min_seconds)),
        ("encode_2025_frames_per_s", lambda: _rate(codec.encode_frame, f25, min_seconds)),
        ("reader_frames_per_s", lambda: _reader_rate(chunks, READER_FRAMES, min_seconds)),
    ]
    for _ in range(runs):
        for key, fn in cases:
            best[key] = max(best.get(key, 0.0), fn())
    return {
        "decode_frames_per_s": round(best["decode_frames_per_s"]),
        "encode_frames_per_s": round(best["encode_frames_per_s"]),
        "frame_bytes": len(raw16),
        "decode_2025_frames_per_s": round(best["decode_2025_frames_per_s"]),
        "encode_2025_frames_per_s": round(best["encode_2025_frames_per_s"]),
        "frame_2025_bytes": len(raw25),
        "reader_frames_per_s": round(best["reader_frames_per_s"]),
        "reader_chunk_bytes": READER_CHUNK,
        "decode_us_per_frame": round(1e6 / best["decode_frames_per_s"], 2),
        "encode_us_per_frame": round(1e6 / best["encode_frames_per_s"], 2),
        "runs": runs,
        "min_seconds_per_run": min_seconds,
        "python": platform.python_version().rsplit(".", 1)[0],
        "python_full": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def run(args) -> int:
    import resource

    from .ingest_bench import machine_cpu, machine_cpu_pct

    seconds = getattr(args, "seconds", None)
    min_seconds = float(seconds if seconds is not None else os.environ.get("RELAY_BENCH_CODEC_SECONDS", "1.0"))
    try:
        m0, t0, ru0 = machine_cpu(), time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        result = measure(min_seconds)
        ru1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        ours = 100.0 * (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / max(1e-9, t1 - t0)
        result["machine_cpu_pct"] = machine_cpu_pct(m0, machine_cpu(), ours)
    except Exception as exc:  # noqa: BLE001 - one line and exit status 1
        print(f"relay bench codec: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    lines = [
        f"codec, one core, Python {result['python_full']} ({result['implementation']}), best of {RUNS} runs "
        f"of >= {min_seconds:g} s each",
        f"  2016 realtime frame ({result['frame_bytes']} bytes): decode {result['decode_frames_per_s']:,} frames/s "
        f"({result['decode_us_per_frame']} us), encode {result['encode_frames_per_s']:,} frames/s "
        f"({result['encode_us_per_frame']} us)",
        f"  2025 realtime frame ({result['frame_2025_bytes']} bytes): decode "
        f"{result['decode_2025_frames_per_s']:,} frames/s, encode {result['encode_2025_frames_per_s']:,} frames/s",
        f"  FrameReader, {READER_FRAMES} different 2016 frames in {READER_CHUNK}-byte chunks: "
        f"{result['reader_frames_per_s']:,} frames/s",
        f"  machine CPU meanwhile (100 = one core; 'others' = not this benchmark, it slows the figures): "
        f"{result['machine_cpu_pct']}",
    ]
    emit(result, args.json, lines)
    return 0
