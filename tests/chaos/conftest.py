"""Helpers of the chaos suite: real ``relay run`` processes (tests/support/processes.py),
real PostgreSQL with an admin connection that cuts or refuses the node's connections,
counting terminals, and the log events of a node read back from its stderr.

Every wait is on an event (a log line, a row count, an answer) with a deadline. The few
places that watch for something *not* happening use an explicit observation window
(``QUIET``), named as such.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import threading
from collections import Counter
from datetime import datetime

import psycopg
import pytest
import treq
from psycopg import sql
from twisted.internet.threads import deferToThread

import codec
from codec import Command, Frame, FrameReader
from relay import registry
from relay import simulate
from relay.api import hash_token
from tests.support.processes import RELAY, NodeProcess, logfmt, write_config
from tests.support.wait import until
from tests.support.counts import _query, at_least, count_is, query, rows, scalar, within  # noqa: F401 - the suite's helpers

#: seconds during which a test watches that something does NOT happen (a spinning writer)
QUIET = 2.0

#: bearer token of the read-only API client every chaos node is given
TOKEN = "chaos-read-token"

DATA_COMMANDS = (Command.REALTIME, Command.REISSUE)


# --- PostgreSQL ---------------------------------------------------------------------------------

def dbname(dsn: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]


async def stored_keys(dsn: str) -> Counter:
    """How many realtime rows each (vin, collection time) has."""
    return Counter(dict(((vin, at), n) for vin, at, n in await rows(
        dsn, "SELECT vin, collected_at, count(*) FROM realtime GROUP BY 1, 2")))


def covered(acknowledged: Counter, stored: Counter) -> bool:
    """Is every acknowledged frame among the stored ones (as many times)?"""
    return all(stored[key] >= n for key, n in acknowledged.items())


def _terminate(pg_server: str, name: str) -> list[str]:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        return [app for app, cut in conn.execute(
            "SELECT application_name, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)) if cut]


async def terminate_backends(pg_server: str, name: str) -> list[str]:
    """Cut every connection to database ``name`` (from a separate admin connection);
    returns the application names of the connections cut."""
    return await within(deferToThread(_terminate, pg_server, name))


def _allow_connections(pg_server: str, name: str, allow: bool) -> int:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allow else "false")))
    return 0 if allow else len(_terminate(pg_server, name))


async def database_down(pg_server: str, name: str) -> int:
    """The database refuses new connections and loses its current ones."""
    return await within(deferToThread(_allow_connections, pg_server, name, False))


async def database_up(pg_server: str, name: str) -> None:
    await within(deferToThread(_allow_connections, pg_server, name, True))


def seed(dsn: str, entries: list[tuple]) -> None:
    """The node's vehicle registry (before the node starts: it loads it at start)."""
    with psycopg.connect(dsn) as conn:
        registry.upsert(conn, entries)


def fleet_rows(fleet) -> list[tuple]:
    return [(v.vin, v.sector, v.region_code, v.owner, "SIM-EV", "") for v in fleet]


# --- nodes ----------------------------------------------------------------------------------------

def node_file(raw: dict, tmp_path, name: str, level: str = "info"):
    """``raw`` as ``tmp_path/<name>.yaml`` for ``relay run`` (logfmt on stderr at ``level``)."""
    return write_config(tmp_path / f"{name}.yaml", {**raw, "data_dir": str(tmp_path / name),
                                                    "log": {"level": level, "format": "logfmt"}})


def with_api(raw: dict) -> dict:
    """``raw`` with an HTTP API on a free port and a read token (``TOKEN``)."""
    return {**raw, "http": {"endpoint": "tcp:0:interface=127.0.0.1",
                            "tokens": [{"name": "chaos", "token_hash": hash_token(TOKEN), "role": "read"}]}}


async def api_get(port: int, path: str) -> tuple[int, dict]:
    resp = await within(treq.get(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": [f"Bearer {TOKEN}"]}), 30)
    return resp.code, json.loads(await within(resp.content(), 30))


def events(proc: NodeProcess, name: str, run: int = -1, **fields: str) -> list[dict]:
    """The ``name`` events of one run of ``proc`` (the current one by default), in order."""
    return [e for e in proc.runs[run].events
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())]


async def logged(proc: NodeProcess, name: str, count: int, timeout: float = 10.0) -> list[dict]:
    """The ``name`` events of the current run once there are at least ``count`` of them.
    The node's log comes through a pipe and the test reactor may read a socket first: a
    line the node wrote before it closed a connection or sent an answer can arrive after
    the test saw the close or the answer."""
    await until(proc.reactor, lambda: len(events(proc, name)) >= count, timeout,
                what=f"{count} {name} line(s) from {proc.name}")
    return events(proc, name)


def pressure_switches(proc: NodeProcess) -> list[bool]:
    """The ``writer_backpressure`` switches of the current run, in order. (logfmt renders
    ``on=True`` as a bare ``on`` flag, which ``logfmt()`` does not return as a pair.)"""
    out = []
    for line in proc.proto.lines:
        if "event=writer_backpressure" in line:
            out.append(re.search(r"(?:^|\s)on(?:\s|$)", line) is not None)
    return out


def event_times(evs: list[dict]) -> list[float]:
    return [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp() for e in evs]


def rss_kib(proc: NodeProcess) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a running node process, in KiB, from /proc (``resource.getrusage``
    only sees the calling process and its ended children)."""
    pid = proc.proto.transport.pid
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


# --- terminals that count their answers -----------------------------------------------------------

class AnswerLog:
    """What a set of terminals got back for their data frames: counts by response flag,
    and how many success answers each (vin, collection time) got (the answer carries the
    time of the frame it acknowledges; the simulator's times are whole seconds, so a
    vehicle sending faster than 1/s has several frames per time)."""

    def __init__(self) -> None:
        self.by_response: Counter = Counter()
        self.acknowledged: Counter[tuple[str, datetime]] = Counter()

    def saw(self, frame: Frame) -> None:
        if frame.is_answer and frame.command in DATA_COMMANDS:
            self.by_response[frame.response] += 1
            if frame.response == codec.Response.SUCCESS:
                self.acknowledged[(frame.vin, frame.body.collected_at)] += 1


class _TeeReader:
    """A FrameReader that shows every decoded frame to an :class:`AnswerLog`."""

    def __init__(self, answers: AnswerLog) -> None:
        self._reader = FrameReader()
        self._answers = answers

    def feed(self, data: bytes):
        items = self._reader.feed(data)
        for item in items:
            if isinstance(item, Frame):
                self._answers.saw(item)
        return items


def counting_simulator(monkeypatch, answers: AnswerLog):
    """Make ``relay.simulate.VehicleSimulator`` terminals report their answers to ``answers``
    (the simulator itself ignores answers to data frames)."""

    class CountingTerminal(simulate.TerminalClient):
        def __init__(self, sim, vehicle) -> None:
            super().__init__(sim, vehicle)
            self.reader = _TeeReader(answers)

    monkeypatch.setattr(simulate, "TerminalClient", CountingTerminal)


# --- process limits ---------------------------------------------------------------------------------

@pytest.fixture
def many_files():
    """Raise RLIMIT_NOFILE to its hard limit for this test (node processes inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    yield target
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def platform_login(username: str, password: str, serial: int = 1, platform_id: str = "ENT01") -> Frame:
    """A platform login 0x05 (2016) as a lower platform sends it."""
    from tests.support.fixtures import T0

    return Frame(codec.Edition.V2016, Command.PLATFORM_LOGIN, codec.Response.COMMAND, platform_id,
                 codec.Encryption.NONE, codec.PlatformLogin(T0, serial, username, password, 1))


# --- a node for blocking (non-reactor) tests ----------------------------------------------------------

class SyncNode:
    """``relay run --config FILE`` for tests that use blocking sockets (Hypothesis examples
    cannot run inside the reactor): its output is read by a thread, ``start`` waits for the
    ``node_ready`` line (an event, with a deadline)."""

    def __init__(self, config) -> None:
        self.config = config
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.events: list[dict[str, str]] = []
        self.ports: dict[str, int] = {}
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> dict[str, int]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([str(RELAY), "run", "--config", str(self.config)], cwd=self.config.parent,
                                        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, name="node-output", daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or not self.ports:
            self.stop()
            raise AssertionError(f"node not ready within {timeout}s:\n" + "\n".join(self.lines[-40:]))
        return self.ports

    def _read(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if "event=" in line:
                event = logfmt(line)
                self.events.append(event)
                if event.get("event") == "node_ready":
                    self.ports = {k[:-len("_port")]: int(v) for k, v in event.items()
                                  if k.endswith("_port") and v.isdigit()}
                    self._ready.set()
        self._ready.set()  # ended: start() sees no ports

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def named(self, name: str) -> list[dict[str, str]]:
        return [e for e in list(self.events) if e.get("event") == name]

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.process.returncode

    def output(self, last: int = 40) -> str:
        return "\n".join(self.lines[-last:])
