"""``relay bench ingest``: an enterprise node with its batch writer on a real PostgreSQL,
fed by N simulated terminals on loopback from a separate load-generator process.

The node runs in this process, on the global reactor (as ``relay run`` would), with the
default database settings (batch of 2,000 rows or 50 ms, or ``--batch-interval-ms``;
watermarks 20,000/5,000) and a
terminal listener sized for the fleet (``max_per_address`` raised: every terminal comes
from 127.0.0.1). The fleet is in the registry. The load generator
(``python -m relay.bench.loadgen``) logs every terminal in, sends realtime frames at the
target aggregate rate for ``--seconds``, logs out.

Figures (units in the key names):

* ``ingest_frames_per_s``: data frames stored (rows in ``realtime``, counted in the database
  after the writer drained) / seconds from the first frame sent until the database held the
  last one (sending + ``drain_s``). When the node keeps up, the drain is one batch interval
  and this is the offered rate; when it does not, frames queue in the kernel's socket
  buffers (megabytes per connection on loopback) and are stored after sending stopped, so
  dividing by the sending time alone (``stored_per_sending_s``) would overstate throughput;
* ``committed_frames_per_s_while_sending``: frames the writer committed during the sending
  window / its length — the sustained rate, not helped by draining afterwards;
* ``drain_s``: from the last frame sent until the database held them all;
* ``frames_sent``, ``frames_stored``, ``lost`` (= sent - stored), ``frames_skipped`` (turns a
  terminal missed because its socket was still full: back-pressure reached the terminals);
* ``peak_rss_mb``: ``ru_maxrss`` of this process, i.e. the node (reactor, writer thread,
  query pool) plus the benchmark's own bookkeeping, plus the peak of the node's store process
  (``store_peak_rss_mb``); not the load generator (a child) and not PostgreSQL;
* ``node_cpu_us_per_frame``: the node's CPU time (its own process and its store process,
  ``database.store: process``) from the first frame sent until the
  database held the last one, per frame stored (what one frame costs the node, whatever
  else the machine is doing);
* ``node_cpu_pct``, ``store_cpu_pct`` (the node's store process), ``loadgen_cpu_pct``,
  ``postgres_cpu_pct``: CPU time during the sending
  window / its length (100 = one core; PostgreSQL only when its processes are visible here);
  ``machine_cpu_pct``: how all CPUs' time was spent in that window (user, system, iowait, idle,
  in percent of one core) and ``others``: CPU used by processes that are not part of the
  benchmark (another workload on the machine distorts the figures; look at it first).

Exit status 1 when a terminal could not log in, frames were lost, or the run failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import emit
from .loadgen import raise_nofile_limit

DEFAULT_TERMINALS = 5000
#: offered above the 10,000 frames/s target: stored ÷ send+drain can never exceed what is
#: offered, so offering exactly the target could only ever show less than it
DEFAULT_RATE = 12000.0
FLEET_SEED = 11


# --- the database ------------------------------------------------------------------------

@contextlib.contextmanager
def bench_server():
    """The base DSN: ``RELAY_BENCH_DSN``, else an embedded PostgreSQL in a temp directory."""
    dsn = os.environ.get("RELAY_BENCH_DSN")
    if dsn:
        yield dsn, "RELAY_BENCH_DSN"
        return
    from ..store.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="relay-bench-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg")
        try:
            yield server.start(), "embedded pgserver"
        finally:
            server.stop()


def fresh_database(base_dsn: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(base_dsn, dbname=name)


def drop_database(base_dsn: str, name: str) -> None:
    if os.environ.get("RELAY_BENCH_KEEP"):
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def seed_database(dsn: str, fleet) -> None:
    """Migrate and import the fleet into the registry."""
    import psycopg

    from .. import registry
    from ..store.migrate import migrate

    with psycopg.connect(dsn) as conn:
        migrate(conn)
        registry.upsert(conn, [(v.vin, v.sector, v.region_code, v.owner, "SIM-EV", "") for v in fleet])


def count_data_frames(dsn: str) -> tuple[int, int]:
    """(rows in realtime, data frames in the archive)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rt = conn.execute("SELECT count(*) FROM realtime").fetchone()[0]
        fr = conn.execute("SELECT count(*) FROM frames WHERE command IN (2, 3) AND response = 254").fetchone()[0]
    return rt, fr


# --- processes ----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first: the parent
    pid is [1], utime/stime [11]/[12], the reaped children's cutime/cstime [13]/[14]), or
    None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _seconds(fields: list[bytes], upto: int = 13) -> float | None:
    """utime + stime (and cutime + cstime with ``upto=15``) of parsed stat fields."""
    try:
        return sum(int(x) for x in fields[11:upto]) / _TICK
    except (IndexError, ValueError):
        return None


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (from /proc), or None."""
    fields = _stat(pid)
    return None if fields is None else _seconds(fields)


def _children(pid: int) -> list[tuple[str, list[bytes]]]:
    """(pid, stat fields) of every process whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            try:
                if fields is not None and int(fields[1]) == pid:
                    out.append((entry, fields))
            except (IndexError, ValueError):
                continue
    return out


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (a node's store process)."""
    return [int(entry) for entry, _ in _children(pid)]


def tree_cpu_seconds(pid: int, children: list[int]) -> float | None:
    """CPU time of a process and of the given children of it (None when the process is gone)."""
    own = proc_cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(proc_cpu_seconds(c) or 0.0 for c in children)


def proc_peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def postmaster_pid(dsn: str) -> int | None:
    """The pid of the server's postmaster when it runs on this machine (the parent of our backend)."""
    import psycopg

    try:
        with psycopg.connect(dsn) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            # read while the connection is open: once it closes, the backend exits
            fields = _stat(backend)
        return None if fields is None else int(fields[1])
    except (ValueError, IndexError, psycopg.Error):
        return None


def postgres_cpu_seconds(postmaster: int | None) -> float | None:
    """CPU time of the server: its postmaster and every child (backends, WAL writer, checkpointer,
    ...), the ones that have exited included (the postmaster reaped them: their time is in its
    cutime/cstime), so the figure never goes back when a connection closes; other PostgreSQL
    servers on the machine are not counted."""
    own = None if postmaster is None else _stat(postmaster)
    total = None if own is None else _seconds(own, upto=15)  # utime, stime, cutime, cstime
    if total is None:
        return None
    return total + sum(_seconds(fields) or 0.0 for _, fields in _children(postmaster))


def run_environment() -> dict:
    """Where a benchmark ran: its database, the machine's CPUs, the Python version."""
    return {"database": "RELAY_BENCH_DSN" if os.environ.get("RELAY_BENCH_DSN") else "embedded pgserver",
            "cpus": os.cpu_count(), "python": ".".join(map(str, sys.version_info[:2]))}


def machine_cpu() -> tuple[float, ...] | None:
    """Machine-wide CPU jiffies from /proc/stat: (user+nice, system+irq+softirq, iowait, idle, steal)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = f + [0] * (8 - len(f))
    return (user + nice, system + irq + softirq, iowait, idle, steal)


def machine_cpu_pct(a: tuple | None, b: tuple | None, ours: float | None = None) -> dict | None:
    """How all CPUs' time was spent between two :func:`machine_cpu` readings, in percent of one
    core (2 cores -> the values add up to ~200). With ``ours`` (the benchmark's processes, in
    percent of one core), ``others`` is what the rest of the machine used meanwhile: another
    workload on the machine makes the figures worse than they would be on a quiet machine."""
    if a is None or b is None:
        return None
    d = [y - x for x, y in zip(a, b)]
    scale = 100.0 * (os.cpu_count() or 1) / (sum(d) or 1)
    out = {k: round(v * scale, 1) for k, v in zip(("user", "system", "iowait", "idle", "steal"), d)}
    if ours is not None:
        out["others"] = round(max(0.0, out["user"] + out["system"] - ours), 1)
    return out


class LoadProcess:
    """``python -m relay.bench.loadgen`` as a child; its JSON events are collected by a thread."""

    def __init__(self, port: int, terminals: int, rate: float, seconds: float, *, seed: int, public_share: float,
                 protocol: str = "2016", sent_log: str | None = None) -> None:
        self.argv = [sys.executable, "-m", "relay.bench.loadgen", "--port", str(port), "--terminals",
                     str(terminals), "--rate", str(rate), "--seconds", str(seconds), "--seed", str(seed),
                     "--public-share", str(public_share), "--protocol", protocol]
        if sent_log:
            self.argv += ["--sent-log", sent_log]
        self.events: dict[str, dict] = {}
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, name="loadgen-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self.events[event.get("event", "?")] = event

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def wait(self, timeout: float) -> int | None:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._thread is not None:
            self._thread.join(5)
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def window_rate(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Increase per second of a sampled counter between ``start`` and ``end`` (interpolated)."""
    def at(t: float) -> float | None:
        before = [s for s in samples if s[0] <= t]
        after = [s for s in samples if s[0] >= t]
        if not before or not after:
            return None
        (t0, v0), (t1, v1) = before[-1], after[0]
        return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    if not samples:
        return None
    start, end = max(start, samples[0][0]), min(end, samples[-1][0])  # clamp to what was sampled
    a, b = at(start), at(end)
    if a is None or b is None or end <= start:
        return None
    return (b - a) / (end - start)


def pct(cpu_a: float | None, cpu_b: float | None, seconds: float) -> float | None:
    if cpu_a is None or cpu_b is None or seconds <= 0:
        return None
    return round(100.0 * (cpu_b - cpu_a) / seconds, 1)


# --- the node in this process ---------------------------------------------------------------

def node_config(dsn: str, terminals: int, batch_interval_ms: int | None = None):
    from ..config import config_from_dict

    raw = {
        "role": "enterprise", "node_id": "BENCH01", "log": {"level": "warning"},
        "database": {"dsn": dsn},
        "listeners": {"terminals": {
            "endpoint": "tcp:port=0:interface=127.0.0.1:backlog=1024",
            "max_connections": max(20000, terminals + 100),
            "max_per_address": terminals + 100,
            "idle_timeout": 300,
        }},
    }
    if batch_interval_ms is not None:
        raw["database"]["batch_interval_ms"] = batch_interval_ms
    return config_from_dict(raw, "relay bench ingest")


async def _until(reactor, predicate, timeout: float, interval: float = 0.1) -> bool:
    from ..simulate import _sleep

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            return False
        await _sleep(reactor, interval)
    return True


async def _drive(reactor, dsn: str, terminals: int, rate: float, seconds: float, out: dict, say,
                 batch_interval_ms: int | None = None) -> None:
    from twisted.internet.task import LoopingCall
    from twisted.internet.threads import deferToThread

    from platforms.enterprise import ROLE

    from ..node import Node
    from ..runtime import settle_gc
    from ..simulate import _sleep

    node = Node(reactor, node_config(dsn, terminals, batch_interval_ms), ROLE, dsn)
    out["batch_interval_ms"] = round(node.writer.interval * 1000)  # what the writer runs with
    batches: list[tuple[int, float]] = []
    pressure: list[tuple[float, bool]] = []
    node.writer.add_commit_listener(lambda r: batches.append((r.items, r.seconds)))
    node.writer.add_pressure_listener(lambda on: pressure.append((time.time(), on)))
    await node.start()
    settle_gc()  # as relay run does
    port = node.port("terminals")
    out["node_started"] = True
    say(f"node listening on 127.0.0.1:{port}; starting the load generator")
    load = LoadProcess(port, terminals, rate, seconds, seed=FLEET_SEED, public_share=0.6)
    samples: list[tuple[float, float]] = []
    cpu_samples: list[tuple[float, float, float | None, float | None]] = []

    postmaster = await deferToThread(postmaster_pid, dsn)

    store_pid = getattr(node.writer.store, "pid", None)  # the store process (database.store: process)
    out["store_peak_rss_mb"] = 0.0

    def sample():
        now = time.time()
        samples.append((now, float(node.writer.stored)))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu_samples.append((now, ru.ru_utime + ru.ru_stime, proc_cpu_seconds(load.pid) if load.proc else None,
                            postgres_cpu_seconds(postmaster), machine_cpu(),
                            proc_cpu_seconds(store_pid) if store_pid else None))
        if store_pid:
            out["store_peak_rss_mb"] = max(out["store_peak_rss_mb"], proc_peak_rss_mb(store_pid) or 0.0)

    sampler = LoopingCall(sample)
    try:
        load.start()
        sampler.start(0.25, now=True)
        login_timeout = 180.0
        if not await _until(reactor, lambda: "logged_in" in load.events or load.exited, login_timeout):
            raise RuntimeError("the load generator did not log its terminals in")
        ev = load.events.get("logged_in", {})
        say(f"{ev.get('logged_in', 0)} terminals logged in ({ev.get('login_failures', '?')} failures) "
            f"in {ev.get('login_seconds', '?')} s; sending {rate:g} frames/s for {seconds:g} s")
        if not await _until(reactor, lambda: "sent" in load.events or load.exited, seconds + 180.0):
            raise RuntimeError("the load generator did not finish sending")
        sent_ev = load.events.get("sent")
        if sent_ev is None:
            raise RuntimeError("the load generator ended before sending")
        sent = sent_ev["frames_sent"]
        say(f"{sent} frames sent in {sent_ev['send_seconds']} s; waiting for the writer to drain")
        # drained: the database holds every data frame sent (or nothing moved for 30 s)
        drain_deadline = time.monotonic() + max(120.0, 10 * seconds)
        stored = 0
        last_change = time.monotonic()
        while time.monotonic() < drain_deadline:
            now_stored, _ = await deferToThread(count_data_frames, dsn)
            if now_stored != stored:
                stored, last_change = now_stored, time.monotonic()
            if stored >= sent or time.monotonic() - last_change > 30.0:
                break
            await _sleep(reactor, 0.2)
        out["drained_at"] = time.time()
        out["stored_at_drain"] = stored
        rc = await deferToThread(load.wait, 180.0)
        if rc is None:
            load.kill()
        out["loadgen_rc"] = rc
        out["load"] = load.events.get("done") or {**load.events.get("logged_in", {}), **sent_ev}
    finally:
        if sampler.running:
            sampler.stop()
            sample()
        load.kill()
        await node.stop()
    out["samples"] = samples
    out["cpu_samples"] = cpu_samples
    out["batches"] = batches
    out["pressure"] = pressure
    out["refusals"] = dict(node.terminals.frames_refused) if node.terminals else {}
    out["refused_connections"] = node.terminals.refused_connections if node.terminals else 0


def _run_reactor(coro_fn) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    failure = []

    def go():
        d = Deferred.fromCoroutine(coro_fn(reactor))
        d.addErrback(lambda f: failure.append(f))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=True)
    if failure:
        failure[0].raiseException()


def run(args) -> int:
    from .. import logs
    from ..simulate import make_fleet

    terminals = args.terminals or DEFAULT_TERMINALS
    rate = args.rate or DEFAULT_RATE
    seconds = args.seconds if args.seconds is not None else 10.0
    batch_interval_ms = getattr(args, "batch_interval_ms", None)
    logs.configure("warning", "logfmt")
    limit = raise_nofile_limit()
    say = lambda text: print(f"[ingest] {text}", flush=True)  # noqa: E731
    if terminals + 256 > limit:
        print(f"relay bench ingest: open-file limit {limit} is too low for {terminals} terminals", file=sys.stderr)
        return 1
    fleet = make_fleet(terminals, public_share=0.6, seed=FLEET_SEED)
    out: dict = {}
    name = f"relay_bench_ingest_{os.getpid()}"
    try:
        with bench_server() as (base, server_kind):
            say(f"PostgreSQL: {server_kind}; fresh database {name}")
            dsn = fresh_database(base, name)
            try:
                seed_database(dsn, fleet)
                _run_reactor(lambda reactor: _drive(reactor, dsn, terminals, rate, seconds, out, say,
                                                    batch_interval_ms))
                stored, archived = count_data_frames(dsn)
            finally:
                with contextlib.suppress(Exception):
                    drop_database(base, name)
    except Exception as exc:  # noqa: BLE001 - one line and exit status 1
        print(f"relay bench ingest: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    load = out.get("load", {})
    sent = int(load.get("frames_sent", 0))
    send_seconds = float(load.get("send_seconds") or 0.0) or 1e-9
    start, end = load.get("send_started", 0.0), load.get("send_ended", 0.0)
    committed_rate = window_rate(out.get("samples", []), start, end)
    cpu = out.get("cpu_samples", [])
    node_pct = store_pct = loadgen_pct = pg_pct = machine = node_us = None
    if cpu and stored and out.get("drained_at"):
        first = min(cpu, key=lambda s: abs(s[0] - start))
        drained = min(cpu, key=lambda s: abs(s[0] - out["drained_at"]))
        store_s = (drained[5] - first[5]) if first[5] is not None and drained[5] is not None else 0.0
        node_us = round(1e6 * (drained[1] - first[1] + store_s) / stored, 1)
    if cpu:
        first = min(cpu, key=lambda s: abs(s[0] - start))
        last = min(cpu, key=lambda s: abs(s[0] - end))
        span = last[0] - first[0]
        node_pct = pct(first[1], last[1], span)
        store_pct = pct(first[5], last[5], span)
        loadgen_pct = pct(first[2], last[2], span)
        pg_pct = pct(first[3], last[3], span)
        machine = machine_cpu_pct(first[4], last[4], sum(x for x in (node_pct, store_pct, loadgen_pct, pg_pct) if x))
    batches = out.get("batches", [])
    busy = [b for b in batches if b[0] > 1]
    drain_s = out["drained_at"] - end if out.get("drained_at") and end else 0.0
    result = {
        "ingest_frames_per_s": round(stored / (send_seconds + max(0.0, drain_s)), 1),
        "stored_per_sending_s": round(stored / send_seconds, 1),
        "committed_frames_per_s_while_sending": round(committed_rate, 1) if committed_rate is not None else None,
        "target_frames_per_s": rate,
        "offered_frames_per_s": load.get("offered_frames_per_s"),
        "terminals": terminals,
        "terminals_logged_in": load.get("logged_in", 0),
        "batch_interval_ms": out.get("batch_interval_ms"),
        "seconds": seconds,
        "send_s": round(send_seconds, 3),
        "drain_s": round(drain_s, 3),
        "frames_sent": sent,
        "frames_stored": stored,
        "frames_archived": archived,
        "lost": sent - stored,
        "frames_skipped": load.get("frames_skipped", 0),
        "connections_lost": load.get("connections_lost", 0),
        "frame_bytes": load.get("frame_bytes"),
        "peak_rss_mb": round(peak_rss_mb + out.get("store_peak_rss_mb", 0.0), 1),
        "peak_rss_includes": "bench process = node (reactor, writer thread, query pool) + bench bookkeeping, "
                             "plus the node's store process; not the load generator, not PostgreSQL",
        "store_peak_rss_mb": out.get("store_peak_rss_mb") or None,
        "node_cpu_pct": node_pct,
        "store_cpu_pct": store_pct,
        "node_cpu_us_per_frame": node_us,
        "loadgen_cpu_pct": loadgen_pct,
        "postgres_cpu_pct": pg_pct,
        "machine_cpu_pct": machine,
        "writer_batches": len(batches),
        "writer_mean_batch_rows": round(sum(b[0] for b in busy) / len(busy), 1) if busy else None,
        "writer_mean_batch_ms": round(1000 * sum(b[1] for b in busy) / len(busy), 1) if busy else None,
        "writer_us_per_row": round(1e6 * sum(b[1] for b in busy) / max(1, sum(b[0] for b in busy)), 1)
        if busy else None,
        "backpressure_episodes": sum(1 for _, on in out.get("pressure", []) if on),
        "frames_refused": out.get("refusals", {}),
        "loadgen_exit_status": out.get("loadgen_rc"),
        **run_environment(),
    }
    ok = (bool(out.get("node_started")) and sent > 0 and result["lost"] == 0
          and result["terminals_logged_in"] == terminals and out.get("loadgen_rc") == 0)
    lines = [
        f"ingest: {terminals} terminals, target {rate:g} frames/s for {seconds:g} s "
        f"({result['frame_bytes']}-byte realtime frames), {result['database']}, {result['cpus']} CPUs",
        f"  sent {sent} frames in {result['send_s']} s (offered {result['offered_frames_per_s']} frames/s, "
        f"{result['frames_skipped']} turns skipped under back-pressure)",
        f"  stored {stored} ({result['lost']} lost): {result['ingest_frames_per_s']} frames/s from first frame "
        f"sent to last frame stored; committed while sending {result['committed_frames_per_s_while_sending']} frames/s; "
        f"drained {result['drain_s']} s after the last frame",
        f"  writer: {result['writer_batches']} batches, mean {result['writer_mean_batch_rows']} rows in "
        f"{result['writer_mean_batch_ms']} ms ({result['writer_us_per_row']} us/row); "
        f"back-pressure episodes {result['backpressure_episodes']}",
        f"  CPU while sending: node {node_pct}%, its store process {store_pct}%, load generator {loadgen_pct}%, "
        f"PostgreSQL {pg_pct}% "
        f"(100% = one core); whole machine {machine}",
        f"  peak RSS {result['peak_rss_mb']} MiB ({result['peak_rss_includes']})",
        "  result: " + ("ok" if ok else "FAILED (frames lost, terminals not logged in, or no frames sent)"),
    ]
    emit(result, args.json, lines)
    return 0 if ok else 1
