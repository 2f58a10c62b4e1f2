"""``relay bench e2e``: frames/s through all three tiers and the latency terminal -> province.

Topology as ``relay/demo.yaml``: vehicles -> enterprise (ENT01) -> municipal (Nanjing) ->
provincial (Jiangsu), and the enterprise also links straight to the province, which
stores each frame once (deduplication). Each tier is its own ``relay run --config``
process (as deployed; one Python process cannot use more than one core), each with a
fresh database on one PostgreSQL (``RELAY_BENCH_DSN``, else an embedded pgserver). The
configs are the demo's, with fixed loopback ports, the database and a terminal listener
sized for the fleet. Every vehicle of the fleet is public (bus, taxi, ...) in region 320100,
registered at every tier. The load comes from ``python -m relay.bench.loadgen`` (its own
process), which records when it wrote each frame.

Figures (units in the key names):

* ``e2e_frames_per_s``: data frames stored at the province / seconds from the first frame
  sent until the province held the last one (sending + ``drain_s``, the province's newest
  ``received_at`` minus the end of sending; see ingest_bench for why the drain is counted);
  ``stored_per_sending_s`` divides by the sending time only;
* ``frames_sent``, ``frames_at_enterprise``, ``frames_at_municipal``, ``frames_at_province``,
  ``lost`` (= sent - at province);
* ``cpu_us_per_frame``: see :func:`cpu_per_frame_us`;
* ``lag_p50_ms``, ``lag_p99_ms``, ``lag_max_ms``: the province's ``frames.received_at`` minus the
  wall-clock time at which the load generator wrote that frame (VIN + collection time
  identify it; same host, same clock), over every frame stored at the province;
* ``store``: the tiers' ``database.store`` (``--store``; thread by default, see
  ``DEFAULT_STORE``); ``batch_interval_ms``: their writer's ``database.batch_interval_ms``
  (``--batch-interval-ms``; the config's default otherwise);
* CPU per process during the sending window (100 = one core; a tier's figure includes its
  store process in process mode, which ``<tier>_store`` shows on its own),
  how the whole machine's CPU time was spent
  then (user, system, iowait, idle), and peak RSS per tier (VmHWM, store process included).

Exit status 1 when a tier did not start, its links did not log in, or frames were lost.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import emit
from .ingest_bench import (LoadProcess, bench_server, children_of, drop_database, fresh_database, machine_cpu,
                           machine_cpu_pct, pct, postgres_cpu_seconds, postmaster_pid, proc_cpu_seconds, proc_peak_rss_mb,
                           run_environment, seed_database, tree_cpu_seconds, window_rate)
from .loadgen import raise_nofile_limit

TIERS = ("provincial", "municipal", "enterprise")  # start order: a link finds its peer listening
DEFAULT_TERMINALS = 5000
#: offered 10 % above the 5,000 frames/s target, as in ingest_bench: ``e2e_frames_per_s``
#: counts the drain (the last frames' way through the tiers, some 0.4-0.8 s of a 10 s run),
#: so offering exactly the target could only ever show less than it; and the p99 lag is
#: then measured under more load than the target, not less
DEFAULT_RATE = 5500.0
FLEET_SEED = 13
#: database.store of every tier. Three tiers on one machine of two cores keep six processes
#: busy in process mode: the store process buys no parallelism there, and handing each batch
#: across (pickling, the socket, decoding the header again) costs CPU the tiers share; in
#: thread mode the same runs used 7–11 % less CPU per frame. A node alone on its machine
#: keeps `process` (conf/*.yaml, the default), which gives it a second core.
DEFAULT_STORE = "thread"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tier_configs(dsns: dict[str, str], ports: dict[str, int], terminals: int,
                 store: str = DEFAULT_STORE, batch_interval_ms: int | None = None) -> dict[str, dict]:
    """The demo's three node configs with this run's ports, databases and store mode (and
    writer batch interval, when given; else the config's default)."""
    from ..demo import _fill, demo_config_text

    raw = yaml.safe_load(demo_config_text())
    fill = {"municipal_port": ports["municipal"], "provincial_port": ports["provincial"]}
    out = {}
    for tier in TIERS:
        cfg = _fill(raw[tier], fill)
        cfg["database"] = {**cfg.get("database", {}), "dsn": dsns[tier], "store": store}
        if batch_interval_ms is not None:
            cfg["database"]["batch_interval_ms"] = batch_interval_ms
        cfg["log"] = {"level": "warning", "format": "logfmt"}
        if tier == "enterprise":
            cfg["listeners"]["terminals"].update(
                endpoint=f"tcp:port={ports['enterprise']}:interface=127.0.0.1:backlog=1024",
                max_connections=max(20000, terminals + 100), max_per_address=terminals + 100)
        else:
            cfg["listeners"]["platforms"]["endpoint"] = f"tcp:port={ports[tier]}:interface=127.0.0.1"
        out[tier] = cfg
    return out


def _count(dsn: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchone()[0]


def _data_count(dsn: str) -> int:
    return _count(dsn, "SELECT count(*) FROM realtime")


class _Counter:
    """The province's count of data frames, taken every half second while the load runs,
    on the machine being measured: over one connection (a connection per sample would start
    a server process each time), and counted on from the last sample, reading only the
    frames archived since then by the archive's frame-id key (a ``count(*)`` of the whole
    table grew to 18 ms a sample by the end of a 30-second run). A node commits its frame
    ids in increasing order (one writer connection), so what a sample saw stays below the
    ids of what comes later."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = None
        self.total = 0
        self.last_id = 0

    def __call__(self) -> int:
        import psycopg

        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, autocommit=True)
        n, top = self.conn.execute(
            "SELECT count(*) FILTER (WHERE command IN (2, 3) AND response = 254), max(id) FROM frames WHERE id > %s",
            (self.last_id,)).fetchone()
        if top is not None:
            self.total += n
            self.last_id = top
        return self.total

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _logins(dsn: str) -> int:
    return _count(dsn, "SELECT count(*) FROM audit WHERE action = 'platform_login' AND result = 'accepted'")


def _arrivals(dsn: str) -> list[tuple[str, int, float]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT vin, extract(epoch FROM collected_at)::bigint, "
                            "extract(epoch FROM received_at)::float8 FROM frames "
                            "WHERE command IN (2, 3) AND response = 254").fetchall()


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def lags_ms(sent_log: str, arrivals: list[tuple[str, int, float]]) -> tuple[list[float], int]:
    """Lag of every province arrival matched to the load generator's send time; and the
    number of arrivals without a match."""
    sent: dict[tuple[str, int], float] = {}
    with open(sent_log, encoding="ascii") as fh:
        next(fh, None)
        for line in fh:
            vin, sec, at = line.rstrip("\n").split(",")
            sent[(vin, int(sec))] = float(at)
    out, unmatched = [], 0
    for vin, sec, received in arrivals:
        at = sent.get((vin, sec))
        if at is None:
            unmatched += 1
        else:
            out.append(1000.0 * (received - at))
    out.sort()
    return out, unmatched


class TierProcess:
    def __init__(self, tier: str, config_path: Path, log_path: Path) -> None:
        self.tier = tier
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> None:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "relay.cli", "run", "--config", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _wait(predicate, timeout: float, interval: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - a database not ready yet is the same as "not yet"
            pass
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


def _drive(base: str, tmp: Path, terminals: int, rate: float, seconds: float, out: dict, say,
           store: str = DEFAULT_STORE, batch_interval_ms: int | None = None) -> None:
    from ..config import config_from_dict
    from ..simulate import make_fleet

    fleet = make_fleet(terminals, public_share=1.0, seed=FLEET_SEED)
    names = {tier: f"relay_bench_e2e_{tier}_{os.getpid()}" for tier in TIERS}
    out["databases"] = names
    dsns = {tier: fresh_database(base, name) for tier, name in names.items()}
    for tier in TIERS:
        seed_database(dsns[tier], fleet)
    ports = {tier: free_port() for tier in TIERS}
    configs = tier_configs(dsns, ports, terminals, store, batch_interval_ms)
    # what the tiers will run with (and a bad value fails here, with the config's message)
    intervals = {config_from_dict(cfg, f"relay bench e2e: {tier}").database.batch_interval_ms
                 for tier, cfg in configs.items()}
    out["batch_interval_ms"] = intervals.pop() if len(intervals) == 1 else sorted(intervals)
    nodes: dict[str, TierProcess] = {}
    load: LoadProcess | None = None
    counter: _Counter | None = None
    try:
        for tier in TIERS:
            path = tmp / f"{tier}.yaml"
            path.write_text(yaml.safe_dump(configs[tier], sort_keys=False), encoding="utf-8")
            node = nodes[tier] = TierProcess(tier, path, tmp / f"{tier}.log")
            node.start()
            if not _wait(lambda: not node.alive() or port_open(ports[tier]), 60.0) or not node.alive():
                raise RuntimeError(f"the {tier} node did not start: {node.log_tail()}")
            say(f"{tier} node (pid {node.pid}) listening on 127.0.0.1:{ports[tier]}")
        if not _wait(lambda: _logins(dsns["provincial"]) >= 2 and _logins(dsns["municipal"]) >= 1, 60.0):
            logins = {t: _logins(dsns[t]) for t in ("municipal", "provincial")}
            raise RuntimeError(f"the platform links did not log in within 60 s (accepted logins {logins}); "
                               + "; ".join(f"{t} log: {n.log_tail(3)!r}" for t, n in nodes.items()))
        out["nodes_started"] = True
        say("links logged in: enterprise -> municipal, enterprise -> provincial, municipal -> provincial")
        sent_log = str(tmp / "sent.csv")
        load = LoadProcess(ports["enterprise"], terminals, rate, seconds, seed=FLEET_SEED, public_share=1.0,
                           sent_log=sent_log)
        load.start()
        samples: list[tuple[float, float]] = []
        cpu: list[tuple[float, dict]] = []
        postmaster = postmaster_pid(dsns["provincial"])
        stores = {t: children_of(n.pid) for t, n in nodes.items()}  # each tier's store process
        counter = _Counter(dsns["provincial"])

        def sample() -> None:
            now = time.time()
            cpu.append((now, {**{t: tree_cpu_seconds(n.pid, stores[t]) for t, n in nodes.items()},
                              **{f"{t}_store": tree_cpu_seconds(stores[t][0], []) if stores[t] else None
                                 for t in nodes},
                              "loadgen": proc_cpu_seconds(load.pid), "postgres": postgres_cpu_seconds(postmaster),
                              "machine": machine_cpu()}))
            with contextlib.suppress(Exception):
                samples.append((now, float(counter())))

        if not _wait(lambda: "logged_in" in load.events or load.exited, 180.0):
            raise RuntimeError("the load generator did not log its terminals in")
        ev = load.events.get("logged_in", {})
        say(f"{ev.get('logged_in', 0)} terminals logged in ({ev.get('login_failures', '?')} failures); "
            f"sending {rate:g} frames/s for {seconds:g} s")
        deadline = time.monotonic() + seconds + 180.0
        while "sent" not in load.events and not load.exited and time.monotonic() < deadline:
            sample()
            time.sleep(0.5)
        sent_ev = load.events.get("sent")
        if sent_ev is None:
            raise RuntimeError("the load generator did not finish sending")
        sent = sent_ev["frames_sent"]
        say(f"{sent} frames sent in {sent_ev['send_seconds']} s; waiting for the province to hold them")
        drain_deadline = time.monotonic() + max(120.0, 10 * seconds)
        stored, last_change = -1, time.monotonic()
        while time.monotonic() < drain_deadline:
            sample()
            now_stored = int(samples[-1][1]) if samples else 0
            if now_stored != stored:
                stored, last_change = now_stored, time.monotonic()
            if stored >= sent or time.monotonic() - last_change > 30.0:
                break
            if any(not n.alive() for n in nodes.values()):
                raise RuntimeError("a node died: " + "; ".join(f"{t}: {n.log_tail(2)}" for t, n in nodes.items()
                                                              if not n.alive()))
            time.sleep(0.25)
        out["drained_at"] = time.time()
        sample()
        rc = load.wait(180.0)
        if rc is None:
            load.kill()
        out["loadgen_rc"] = rc
        out["load"] = load.events.get("done") or {**ev, **sent_ev}
        out["samples"], out["cpu"] = samples, cpu
        out["rss"] = {t: round((proc_peak_rss_mb(n.pid) or 0.0) + sum(proc_peak_rss_mb(c) or 0.0 for c in stores[t]),
                               1) for t, n in nodes.items()}
        out["counts"] = {t: _data_count(dsns[t]) for t in TIERS}
        out["reissue_at_province"] = _count(dsns["provincial"], "SELECT count(*) FROM realtime WHERE reissue")
        out["private_upstream"] = _count(dsns["provincial"], "SELECT count(*) FROM realtime r JOIN vehicles v "
                                                             "USING (vin) WHERE v.sector = 'private'")
        arrivals = _arrivals(dsns["provincial"])
        out["last_arrival"] = max((a[2] for a in arrivals), default=None)
        out["lags"], out["unmatched"] = lags_ms(sent_log, arrivals)
    finally:
        if counter is not None:
            counter.close()
        if load is not None:
            load.kill()
        for tier in reversed(TIERS):  # enterprise first: it logs out of its upstreams while they listen
            node = nodes.get(tier)
            if node is not None:
                rc = node.stop()
                out.setdefault("node_rc", {})[tier] = rc
        for name in names.values():
            with contextlib.suppress(Exception):
                drop_database(base, name)


def drain_seconds(send_ended: float, last_arrival: float | None, drained_at: float | None) -> float:
    """From the last frame sent until the province held the last one: by the province's own
    ``received_at`` of its newest frame (same host, same clock), not by when the benchmark's
    polling (every quarter second, plus the count itself) noticed; the poll time only where
    no frame arrived."""
    if not send_ended:
        return 0.0
    at = last_arrival if last_arrival is not None else drained_at
    return max(0.0, at - send_ended) if at else 0.0


def cpu_per_frame_us(cpu_pct: dict, frames_per_s: float | None) -> float | None:
    """CPU microseconds per frame through the tiers, the load generator and PostgreSQL while
    sending: their CPU (100 = one core; a tier's store process is in the tier's figure)
    over the frames the province stored per second meanwhile. A figure that follows the
    code rather than the offered rate, as long as the province keeps up."""
    parts = [cpu_pct.get(k) for k in ("enterprise", "municipal", "provincial", "loadgen", "postgres")]
    if not frames_per_s or any(p is None for p in parts):
        return None
    return round(sum(parts) / 100.0 / frames_per_s * 1e6, 1)


def run(args) -> int:
    terminals = args.terminals or DEFAULT_TERMINALS
    rate = args.rate or DEFAULT_RATE
    seconds = args.seconds if args.seconds is not None else 10.0
    store = getattr(args, "store", None) or DEFAULT_STORE
    batch_interval_ms = getattr(args, "batch_interval_ms", None)
    limit = raise_nofile_limit()
    say = lambda text: print(f"[e2e] {text}", flush=True)  # noqa: E731
    if terminals + 256 > limit:
        print(f"relay bench e2e: open-file limit {limit} is too low for {terminals} terminals", file=sys.stderr)
        return 1
    out: dict = {}
    try:
        with bench_server() as (base, server_kind), tempfile.TemporaryDirectory(prefix="relay-bench-e2e-") as tmp:
            say(f"PostgreSQL: {server_kind}; three fresh databases; tiers as `relay run` processes")
            _drive(base, Path(tmp), terminals, rate, seconds, out, say, store, batch_interval_ms)
    except Exception as exc:  # noqa: BLE001 - one line and exit status 1
        print(f"relay bench e2e: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    load = out.get("load", {})
    sent = int(load.get("frames_sent", 0))
    send_seconds = float(load.get("send_seconds") or 0.0) or 1e-9
    start, end = load.get("send_started", 0.0), load.get("send_ended", 0.0)
    drain_s = drain_seconds(end, out.get("last_arrival"), out.get("drained_at"))
    counts = out.get("counts", {})
    at_province = counts.get("provincial", 0)
    lags = out.get("lags", [])
    cpu_pct: dict[str, float | None] = {}
    cpu = out.get("cpu", [])
    if cpu:
        first = min(cpu, key=lambda s: abs(s[0] - start))
        last = min(cpu, key=lambda s: abs(s[0] - end))
        for key in ("enterprise", "municipal", "provincial", "loadgen", "postgres"):
            cpu_pct[key] = pct(first[1].get(key), last[1].get(key), last[0] - first[0])
        machine = machine_cpu_pct(first[1].get("machine"), last[1].get("machine"),
                                  sum(v for v in cpu_pct.values() if v))
        for tier in ("enterprise", "municipal", "provincial"):  # already counted in the tier's figure
            share = pct(first[1].get(f"{tier}_store"), last[1].get(f"{tier}_store"), last[0] - first[0])
            if share is not None:  # (process mode only)
                cpu_pct[f"{tier}_store"] = share
    else:
        machine = None
    committed = window_rate(out.get("samples", []), start, end)
    cpu_us = cpu_per_frame_us(cpu_pct, committed)
    result = {
        "e2e_frames_per_s": round(at_province / (send_seconds + drain_s), 1),
        "stored_per_sending_s": round(at_province / send_seconds, 1),
        "province_frames_per_s_while_sending": round(committed, 1) if committed is not None else None,
        "cpu_us_per_frame": cpu_us,
        "target_frames_per_s": rate,
        "offered_frames_per_s": load.get("offered_frames_per_s"),
        "terminals": terminals,
        "store": store,
        "batch_interval_ms": out.get("batch_interval_ms"),
        "terminals_logged_in": load.get("logged_in", 0),
        "seconds": seconds,
        "send_s": round(send_seconds, 3),
        "drain_s": round(drain_s, 3),
        "frames_sent": sent,
        "frames_at_enterprise": counts.get("enterprise", 0),
        "frames_at_municipal": counts.get("municipal", 0),
        "frames_at_province": at_province,
        "lost": sent - at_province,
        "reissue_at_province": out.get("reissue_at_province"),
        "private_frames_upstream": out.get("private_upstream"),
        "frames_skipped": load.get("frames_skipped", 0),
        "lag_p50_ms": round(_percentile(lags, 0.50), 1) if lags else None,
        "lag_p90_ms": round(_percentile(lags, 0.90), 1) if lags else None,
        "lag_p99_ms": round(_percentile(lags, 0.99), 1) if lags else None,
        "lag_max_ms": round(lags[-1], 1) if lags else None,
        "lag_frames": len(lags),
        "lag_unmatched": out.get("unmatched"),
        "lag_measured_as": "province frames.received_at - load generator's wall-clock write time of the frame",
        "cpu_pct": cpu_pct,
        "machine_cpu_pct": machine,
        "peak_rss_mb": out.get("rss", {}),
        **run_environment(),
    }
    ok = (bool(out.get("nodes_started")) and sent > 0 and result["lost"] == 0 and out.get("loadgen_rc") == 0
          and result["terminals_logged_in"] == terminals and not result["private_frames_upstream"])
    lines = [
        f"e2e: {terminals} public vehicles -> enterprise -> municipal -> provincial (+ enterprise -> provincial), "
        f"target {rate:g} frames/s for {seconds:g} s, {result['database']}, {result['cpus']} CPUs, store {store}",
        f"  sent {sent} frames in {result['send_s']} s (offered {result['offered_frames_per_s']} frames/s)",
        f"  stored: enterprise {result['frames_at_enterprise']}, municipal {result['frames_at_municipal']}, "
        f"province {at_province} ({result['lost']} lost, {result['reissue_at_province']} as reissue)",
        f"  {result['e2e_frames_per_s']} frames/s from first frame sent to last frame at the province "
        f"(drain {result['drain_s']} s); province stored {result['province_frames_per_s_while_sending']} frames/s "
        f"while sending",
        f"  lag terminal -> province: p50 {result['lag_p50_ms']} ms, p90 {result['lag_p90_ms']} ms, "
        f"p99 {result['lag_p99_ms']} ms, max {result['lag_max_ms']} ms over {len(lags)} frames",
        f"  CPU per frame through the three tiers: {cpu_us} µs",
        "  CPU while sending (100% = one core): " + ", ".join(f"{k} {v}%" for k, v in cpu_pct.items())
        + f"; whole machine {machine}",
        "  peak RSS MiB: " + ", ".join(f"{k} {v}" for k, v in result["peak_rss_mb"].items()),
        "  result: " + ("ok" if ok else "FAILED (frames lost, a tier or terminal not up, or private frames upstream)"),
    ]
    emit(result, args.json, lines)
    return 0 if ok else 1
