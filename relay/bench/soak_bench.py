"""``relay bench soak``: a long run of an enterprise node with many terminals at the
standard's normal interval, watching memory and latency over time (they must not grow)
and counting every frame.

    relay bench soak [--seconds 300] [--terminals 2000] [--rate N/10] [--json]

The node is the one of ``relay bench ingest`` (:mod:`.ingest_bench`): an enterprise node in
this process, on the global reactor, with its batch writer on a fresh database of a real
PostgreSQL (``RELAY_BENCH_DSN``, else an embedded pgserver), the fleet in the registry. The
load generator (:mod:`.loadgen`, a separate process, unchanged) logs every terminal in and
then sends realistic realtime frames round-robin at the aggregate rate N/10 frames/s, which
is exactly one frame per terminal every 10 s (the standard's normal reporting interval),
evenly spread; ``--rate`` overrides the aggregate rate (interval = N / rate).

Every ``sample_s`` seconds (10 s on runs of 150 s or more; shorter runs sample more often,
``RELAY_BENCH_SOAK_SAMPLE_S`` overrides it) the benchmark records:

* ``rss_mb``: VmRSS of this process, i.e. the node (reactor, connections, writer thread,
  query pool) plus the benchmark's bookkeeping, which is kept constant-size on purpose
  (a few numbers per sample; the commit log goes to a file, not to memory), plus the VmRSS
  of the node's store process (``database.store: process``); ``node_cpu_pct`` counts both
  processes too;
* ``frames_stored``: realtime frames the writer has committed so far;
* ``backlog``: the writer's queue (pending + in flight);
* ``lag_p50_ms``/``lag_p99_ms`` of the frames *sent* in that sample's interval, computed at
  the end: the writer's commit time of the frame (the Deferred of ``writer.accept`` fires
  when its batch is committed) minus the load generator's wall-clock time of writing it to
  the socket (``--sent-log``), matched on (VIN, collection second).

Figures (units in the key names):

* ``samples`` with ``samples_columns``: the time series above (``t_s`` from the first
  frame sent); the last row is taken after the writer drained, which overlaps the load
  generator logging every terminal out (a burst of N logouts in the writer's queue), so it
  is not part of the steady state;
* ``rss_mb_first`` (first sample, every terminal connected and logged in), ``rss_mb_last``
  (last sample taken while sending), ``rss_mb_after_drain`` (the last row), ``rss_mb_peak``
  (VmHWM);
* ``rss_growth_mb``: average RSS over the last third of the samples taken while sending minus
  the first third, both after a warm-up of ``warmup_s`` (one interval at least: every
  terminal has sent);
* ``lag_p50_ms``, ``lag_p99_ms``, ``lag_max_ms``: three values each, for the first, middle
  and last third of the sending time (by send time): growth shows as rising values;
* ``frames_sent``, ``frames_stored`` (rows in ``realtime`` after the drain), ``lost`` (sent
  - stored), ``frames_skipped`` (turns a terminal missed because its socket was still full:
  the node pushed back), ``terminals``, ``terminals_logged_in``, ``seconds``, ``interval_s``;
* ``node_cpu_pct``, ``loadgen_cpu_pct`` over the sending time (100 = one core),
  ``machine_cpu_pct`` (with ``others``: CPU used by processes outside the benchmark) and
  ``loadavg_1m_start``/``loadavg_1m_end``: another workload on the machine shows here.

Exit status 1 when frames were lost, a terminal could not log in, or the run failed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from . import emit
from .e2e_bench import _percentile
from .ingest_bench import (FLEET_SEED, LoadProcess, _run_reactor, _until, bench_server, count_data_frames,
                           drop_database, fresh_database, machine_cpu, machine_cpu_pct, node_config, pct,
                           proc_cpu_seconds, run_environment, seed_database)
from .loadgen import raise_nofile_limit

DEFAULT_TERMINALS = 2000
DEFAULT_SECONDS = 300.0
#: the standard's normal interval of realtime reports
INTERVAL_S = 10.0

SAMPLE_COLUMNS = ["t_s", "rss_mb", "frames_stored", "backlog", "lag_p50_ms", "lag_p99_ms"]


# --- small helpers ----------------------------------------------------------------------------

def vm_kb(field: str, pid: int | str = "self") -> int | None:
    """A ``Vm*`` line of /proc/<pid>/status in kB (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def soak_seconds(args) -> float:
    """``--seconds``, 300 s when not given."""
    seconds = getattr(args, "seconds", None)
    return DEFAULT_SECONDS if seconds is None else float(seconds)


def sample_interval(seconds: float) -> float:
    env = os.environ.get("RELAY_BENCH_SOAK_SAMPLE_S")
    if env:
        return max(0.2, float(env))
    return max(1.0, min(10.0, seconds / 15.0))


def warmup_seconds(seconds: float, interval: float) -> float:
    """One reporting interval at least (every terminal has sent once), 10 % of a long run."""
    return min(max(interval, 0.1 * seconds), seconds / 2.0)


def _avg(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def read_sent_log(path: str) -> dict[tuple[str, int], float]:
    sent: dict[tuple[str, int], float] = {}
    with contextlib.suppress(FileNotFoundError):
        with open(path, encoding="ascii") as fh:
            next(fh, None)
            for line in fh:
                vin, sec, at = line.rstrip("\n").split(",")
                sent[(vin, int(sec))] = float(at)
    return sent


def read_lags(commit_log: str, sent: dict[tuple[str, int], float]) -> tuple[list[tuple[float, float]], int]:
    """[(sent_at, lag_ms)] of every committed frame matched to its send time (sorted by send
    time), and the number of committed frames without a match."""
    out, unmatched = [], 0
    with contextlib.suppress(FileNotFoundError):
        with open(commit_log, encoding="ascii") as fh:
            for line in fh:
                vin, sec, _received, committed = line.rstrip("\n").split(",")
                at = sent.get((vin, int(sec)))
                if at is None:
                    unmatched += 1
                else:
                    out.append((at, 1000.0 * (float(committed) - at)))
    out.sort()
    return out, unmatched


def lag_stats(lags: list[float]) -> tuple[float | None, float | None, float | None]:
    if not lags:
        return None, None, None
    s = sorted(lags)
    return round(_percentile(s, 0.50), 1), round(_percentile(s, 0.99), 1), round(s[-1], 1)


# --- the run ----------------------------------------------------------------------------------

async def _drive(reactor, dsn: str, terminals: int, rate: float, seconds: float, sample_s: float, tmp: Path,
                 out: dict, say) -> None:
    from twisted.internet.task import LoopingCall
    from twisted.internet.threads import deferToThread

    from platforms.enterprise import ROLE

    from ..node import Node
    from ..runtime import settle_gc
    from ..simulate import _sleep

    node = Node(reactor, node_config(dsn, terminals), ROLE, dsn)
    writer = node.writer
    commit_log = open(tmp / "committed.csv", "w", encoding="ascii")  # noqa: SIM115 - closed below
    committed = [0]

    # Every realtime frame's commit time, through the Deferred the writer returns from accept()
    # (it fires when the frame's batch is committed); frames the sessions submit without one
    # are accepted here instead (a refusal is logged by the writer). Written to a file: the
    # benchmark's own memory must not grow with the run, or it would show as the node's growth.
    accept = writer.accept

    def accept_and_time(item):
        d = accept(item)
        frame = item.frame
        if frame.command in (2, 3) and not item.barrier and frame.collected_at is not None:
            key = f"{frame.vin},{int(frame.collected_at.timestamp())},{item.received_at.timestamp():.6f}"

            def stored(result):
                committed[0] += 1
                commit_log.write(f"{key},{time.time():.6f}\n")
                return result

            d.addCallback(stored)
        return d

    def submit_and_time(item):
        accept_and_time(item).addErrback(lambda _: None)

    writer.accept = accept_and_time
    writer.submit = submit_and_time
    samples: list[tuple] = []
    load: LoadProcess | None = None

    def sample() -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        store = getattr(writer.store, "pid", None)  # the node's store process, when it has one
        rss = (vm_kb("VmRSS") or 0) + ((vm_kb("VmRSS", store) or 0) if store else 0)
        cpu = ru.ru_utime + ru.ru_stime + ((proc_cpu_seconds(store) or 0.0) if store else 0.0)
        samples.append((time.time(), rss, committed[0], writer.backlog, cpu,
                        proc_cpu_seconds(load.pid) if load is not None and load.proc else None, machine_cpu()))
        if store:
            out["store_kb_peak"] = max(out.get("store_kb_peak", 0), vm_kb("VmHWM", store) or 0)

    sampler = LoopingCall(sample)
    try:
        await node.start()
        settle_gc()  # as relay run does
        port = node.port("terminals")
        out["node_started"] = True
        say(f"node listening on 127.0.0.1:{port}; starting the load generator")
        load = LoadProcess(port, terminals, rate, seconds, seed=FLEET_SEED, public_share=0.6,
                           sent_log=str(tmp / "sent.csv"))
        load.start()
        if not await _until(reactor, lambda: "logged_in" in load.events or load.exited, 180.0):
            raise RuntimeError("the load generator did not log its terminals in")
        sampler.start(sample_s, now=True)
        ev = load.events.get("logged_in", {})
        out["logged_in"] = ev
        say(f"{ev.get('logged_in', 0)} terminals logged in ({ev.get('login_failures', '?')} failures) "
            f"in {ev.get('login_seconds', '?')} s; each sends a realtime frame every {terminals / rate:g} s "
            f"({rate:g} frames/s) for {seconds:g} s, sampled every {sample_s:g} s")
        next_note = time.monotonic() + 60.0
        deadline = time.monotonic() + seconds + 180.0
        while "sent" not in load.events and not load.exited and time.monotonic() < deadline:
            await _sleep(reactor, 0.5)
            if time.monotonic() >= next_note and samples:
                next_note += 60.0
                s = samples[-1]
                say(f"  {s[0] - samples[0][0]:.0f} s: RSS {s[1] / 1024.0:.1f} MiB, {s[2]} frames stored, "
                    f"backlog {s[3]}")
        sent_ev = load.events.get("sent")
        if sent_ev is None:
            raise RuntimeError("the load generator did not finish sending")
        sent = int(sent_ev["frames_sent"])
        say(f"{sent} frames sent in {sent_ev['send_seconds']} s; waiting for the writer to drain")
        drain_deadline = time.monotonic() + max(120.0, seconds)
        last, last_change = -1, time.monotonic()
        while time.monotonic() < drain_deadline:
            if committed[0] != last:
                last, last_change = committed[0], time.monotonic()
            if committed[0] >= sent or time.monotonic() - last_change > 30.0:
                break
            await _sleep(reactor, 0.1)
        out["drained_at"] = time.time()
        if sampler.running:
            sampler.stop()
        if not samples or samples[-1][2] != committed[0] or time.time() - samples[-1][0] > 0.5:
            sample()  # the last one: after the drain
        out["rss_kb_peak"] = (vm_kb("VmHWM") or 0) + out.get("store_kb_peak", 0)
        rc = await deferToThread(load.wait, 180.0)
        if rc is None:
            load.kill()
        out["loadgen_rc"] = rc
        out["load"] = load.events.get("done") or {**ev, **sent_ev}
    finally:
        if sampler.running:
            sampler.stop()
        if load is not None:
            load.kill()
        await node.stop()
        commit_log.close()
    out["samples"] = samples
    out["refusals"] = dict(node.terminals.frames_refused) if node.terminals else {}


def summarize(out: dict, *, seconds: float, sample_s: float, interval: float, sent_log: str,
              commit_log: str) -> dict:
    """The figures from the raw samples and the two logs."""
    load = out.get("load", {})
    start = float(load.get("send_started") or 0.0)
    end = float(load.get("send_ended") or 0.0)
    raw = out.get("samples", [])
    sent_at = read_sent_log(sent_log)
    lags, unmatched = read_lags(commit_log, sent_at)

    # lag of the frames sent in each sample's interval (the first sample: everything before it)
    rows, j = [], 0
    for s in raw:
        window = []
        while j < len(lags) and lags[j][0] <= s[0]:
            window.append(lags[j][1])
            j += 1
        p50, p99, _ = lag_stats(window)
        rows.append([round(s[0] - start, 1), _r(s[1] / 1024.0 if s[1] is not None else None), s[2], s[3], p50, p99])

    # thirds of the sending time, by send time
    span = max(1e-9, end - start)
    thirds: list[list[float]] = [[], [], []]
    for at, lag in lags:
        thirds[min(2, max(0, int(3 * (at - start) / span)))].append(lag)
    stats = [lag_stats(t) for t in thirds]
    all_p50, all_p99, all_max = lag_stats([lag for _, lag in lags])

    warmup = warmup_seconds(seconds, interval)
    # samples taken while sending (the logouts come after ``end``)
    sending = [r[1] for r in rows if r[1] is not None and r[0] < end - start]
    steady = [r[1] for r in rows if r[1] is not None and warmup <= r[0] < end - start]
    n3 = len(steady) // 3
    growth = None
    rss_first_third = rss_last_third = None
    if n3 >= 1:
        rss_first_third, rss_last_third = _avg(steady[:n3]), _avg(steady[-n3:])
        growth = rss_last_third - rss_first_third

    # CPU over the sending time: the samples nearest to its start and end
    node_pct = loadgen_pct = machine = None
    during = [s for s in raw if start - sample_s <= s[0] <= end + sample_s]
    if len(during) >= 2:
        a = min(during, key=lambda s: abs(s[0] - start))
        b = min(during, key=lambda s: abs(s[0] - end))
        if b[0] > a[0]:
            node_pct = pct(a[4], b[4], b[0] - a[0])
            loadgen_pct = pct(a[5], b[5], b[0] - a[0])
            machine = machine_cpu_pct(a[6], b[6], sum(x for x in (node_pct, loadgen_pct) if x))
    return {
        "samples_columns": SAMPLE_COLUMNS,
        "samples": rows,
        "rss_mb_first": sending[0] if sending else None,
        "rss_mb_last": sending[-1] if sending else None,
        "rss_mb_after_drain": rows[-1][1] if rows else None,
        "rss_mb_peak": _r(out["rss_kb_peak"] / 1024.0) if out.get("rss_kb_peak") else None,
        "rss_mb_first_third_avg": _r(rss_first_third),
        "rss_mb_last_third_avg": _r(rss_last_third),
        "rss_growth_mb": _r(growth),
        "lag_p50_ms": [s[0] for s in stats],
        "lag_p99_ms": [s[1] for s in stats],
        "lag_max_ms": [s[2] for s in stats],
        "lag_frames_per_third": [len(t) for t in thirds],
        "lag_p50_ms_all": all_p50,
        "lag_p99_ms_all": all_p99,
        "lag_max_ms_all": all_max,
        "lag_frames": len(lags),
        "lag_unmatched": unmatched,
        "lag_measured_as": "writer commit time of the frame's batch - load generator's wall-clock write time",
        "send_s": round(end - start, 3) if end > start else 0.0,
        "drain_s": round(out["drained_at"] - end, 3) if out.get("drained_at") and end else None,
        "warmup_s": round(warmup, 1),
        "sample_s": round(sample_s, 2),
        "node_cpu_pct": node_pct,
        "loadgen_cpu_pct": loadgen_pct,
        "machine_cpu_pct": machine,
    }


def run(args) -> int:
    from .. import logs
    from ..simulate import make_fleet

    terminals = getattr(args, "terminals", None) or DEFAULT_TERMINALS
    seconds = soak_seconds(args)
    rate = getattr(args, "rate", None) or terminals / INTERVAL_S
    interval = terminals / rate
    sample_s = sample_interval(seconds)
    as_json = bool(getattr(args, "json", False))
    logs.configure("warning", "logfmt")
    limit = raise_nofile_limit()
    say = lambda text: print(f"[soak] {text}", flush=True)  # noqa: E731
    if terminals + 256 > limit:
        print(f"relay bench soak: open-file limit {limit} is too low for {terminals} terminals", file=sys.stderr)
        return 1
    load1_start = os.getloadavg()[0]
    fleet = make_fleet(terminals, public_share=0.6, seed=FLEET_SEED)
    out: dict = {}
    name = f"relay_bench_soak_{os.getpid()}"
    try:
        with tempfile.TemporaryDirectory(prefix="relay-bench-soak-") as tmp_dir, bench_server() as (base, kind):
            tmp = Path(tmp_dir)
            say(f"PostgreSQL: {kind}; fresh database {name}")
            dsn = fresh_database(base, name)
            try:
                seed_database(dsn, fleet)
                _run_reactor(lambda reactor: _drive(reactor, dsn, terminals, rate, seconds, sample_s, tmp, out, say))
                stored, archived = count_data_frames(dsn)
            finally:
                with contextlib.suppress(Exception):
                    drop_database(base, name)
            figures = summarize(out, seconds=seconds, sample_s=sample_s, interval=interval,
                                sent_log=str(tmp / "sent.csv"), commit_log=str(tmp / "committed.csv"))
    except Exception as exc:  # noqa: BLE001 - one line and exit status 1
        print(f"relay bench soak: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    load = out.get("load", {})
    sent = int(load.get("frames_sent", 0))
    result = {
        "terminals": terminals,
        "terminals_logged_in": load.get("logged_in", 0),
        "seconds": seconds,
        "interval_s": round(interval, 3),
        "target_frames_per_s": round(rate, 3),
        "frames_expected": int(rate * seconds),
        "frames_sent": sent,
        "frames_stored": stored,
        "frames_archived": archived,
        "lost": sent - stored,
        "frames_skipped": load.get("frames_skipped", 0),
        "connections_lost": load.get("connections_lost", 0),
        "frame_bytes": load.get("frame_bytes"),
        **figures,
        "frames_refused": out.get("refusals", {}),
        "loadgen_exit_status": out.get("loadgen_rc"),
        "rss_includes": "bench process = node (reactor, writer thread, query pool) + constant-size bench "
                        "bookkeeping, plus the node's store process; not the load generator, not PostgreSQL",
        "loadavg_1m_start": round(load1_start, 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        **run_environment(),
    }
    ok = (bool(out.get("node_started")) and sent > 0 and result["lost"] == 0
          and result["terminals_logged_in"] == terminals and out.get("loadgen_rc") == 0)
    lines = [
        f"soak: {terminals} terminals, one realtime frame each every {interval:g} s ({rate:g} frames/s) "
        f"for {seconds:g} s ({result['frame_bytes']}-byte frames), {result['database']}, {result['cpus']} CPUs, "
        f"load average {result['loadavg_1m_start']} -> {result['loadavg_1m_end']}",
        f"  sent {sent} of {result['frames_expected']} frames ({result['frames_skipped']} turns skipped under "
        f"back-pressure), stored {stored}, {result['lost']} lost; drained {result['drain_s']} s after the last",
        f"  RSS (node + bench): first {result['rss_mb_first']} MiB, last while sending {result['rss_mb_last']} "
        f"MiB, after the drain and logouts {result['rss_mb_after_drain']} MiB, peak {result['rss_mb_peak']} MiB; "
        f"growth {result['rss_growth_mb']} MiB "
        f"(last third avg - first third avg after a {result['warmup_s']} s warm-up)",
        f"  lag terminal -> stored by third of the run: p50 {result['lag_p50_ms']} ms, "
        f"p99 {result['lag_p99_ms']} ms, max {result['lag_max_ms']} ms ({result['lag_frames']} frames, "
        f"{result['lag_unmatched']} unmatched)",
        f"  CPU while sending: node {result['node_cpu_pct']}%, load generator {result['loadgen_cpu_pct']}% "
        f"(100% = one core); whole machine {result['machine_cpu_pct']}",
        "  samples (" + ", ".join(SAMPLE_COLUMNS) + "):",
        *(f"    {row}" for row in result["samples"]),
        "  result: " + ("ok" if ok else "FAILED (frames lost, terminals not logged in, or no frames sent)"),
    ]
    emit(result, as_json, lines)
    return 0 if ok else 1
