"""Real ``relay`` processes for integration tests: spawned with ``reactor.spawnProcess``,
ready when their ``node_ready`` log event appears (tahoe's ``_MagicTextProtocol``), stopped
with a signal, their output kept for assertions.

Nothing here sleeps: every wait is on an event (a log line, the process's end) and
every such Deferred gets a deadline from the caller's ``reactor``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated

#: the venv's console script (setup.cfg: relay = relay.cli:main)
RELAY = Path(sys.executable).parent / "relay"

#: one logfmt pair: key=value or key="quoted value" (structlog's LogfmtRenderer)
_PAIR = re.compile(r'([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def logfmt(line: str) -> dict[str, str]:
    """The key/value pairs of one logfmt line (quotes removed)."""
    out = {}
    for key, value in _PAIR.findall(line):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key] = value
    return out


class NodeExited(Exception):
    """The process ended before it logged ``node_ready``."""


@dataclass(frozen=True)
class Exit:
    """How a process ended: an exit code, or the signal that killed it."""

    code: int | None
    signal: int | None


class _When:
    """A result that any number of waiters can await, each with its own Deferred."""

    def __init__(self) -> None:
        self.called = False
        self._result = None
        self._waiters: list[Deferred] = []

    def wait(self) -> Deferred:
        d: Deferred = Deferred()
        if self.called:
            self._fire(d)
        else:
            self._waiters.append(d)
        return d

    def _fire(self, d: Deferred) -> None:
        if isinstance(self._result, BaseException):
            d.errback(self._result)
        else:
            d.callback(self._result)

    def fire(self, result) -> None:
        self.called, self._result = True, result
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            self._fire(d)


class NodeProtocol(protocol.ProcessProtocol):
    """Collects a relay process's output line by line. ``ready`` gives the listener ports of
    the ``node_ready`` event (``{"terminals": 4321}``), or :class:`NodeExited` if the process
    ended first; ``ended`` gives an :class:`Exit` (never a failure, so a killed process is not
    an unhandled error)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = _When()
        self.ended = _When()
        self.lines: list[str] = []
        self.events: list[dict[str, str]] = []
        self.exit: Exit | None = None
        self._partial = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buf = self._partial.get(fd, b"") + data
        *complete, self._partial[fd] = buf.split(b"\n")
        for raw in complete:
            self._line(raw.decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if "event=" not in line:
            return
        event = logfmt(line)
        self.events.append(event)
        if event.get("event") == "node_ready" and not self.ready.called:
            ports = {k[:-len("_port")]: int(v) for k, v in event.items() if k.endswith("_port") and v.isdigit()}
            self.ready.fire(ports)

    def processEnded(self, reason) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._line(rest.decode("utf-8", "replace"))
        self._partial = {1: b"", 2: b""}
        value = reason.value
        if isinstance(value, (ProcessDone, ProcessTerminated)):
            self.exit = Exit(value.exitCode, value.signal)
        else:  # pragma: no cover - Twisted always gives one of the two
            self.exit = Exit(None, None)
        if not self.ready.called:
            self.ready.fire(NodeExited(f"{self.name} ended ({self.exit}) before node_ready:\n{self.output()}"))
        self.ended.fire(self.exit)

    def output(self, last: int = 40) -> str:
        return "\n".join(self.lines[-last:])

    def has_event(self, name: str, **fields: str) -> bool:
        return any(e.get("event") == name and all(e.get(k) == v for k, v in fields.items()) for e in self.events)


def write_config(path: Path, raw: dict) -> Path:
    """A node config as YAML (what ``relay run --config`` reads)."""
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class NodeProcess:
    """One ``relay run --config FILE``; may be started again after it ended."""

    def __init__(self, reactor, name: str, config: Path) -> None:
        self.reactor = reactor
        self.name = name
        self.config = config
        self.proto: NodeProtocol | None = None
        self.ports: dict[str, int] = {}
        self.runs: list[NodeProtocol] = []

    @property
    def running(self) -> bool:
        return self.proto is not None and self.proto.exit is None

    async def start(self, timeout: float = 30.0) -> dict[str, int]:
        """Spawn the node and wait for ``node_ready``; returns its listener ports."""
        assert not self.running, f"{self.name} is already running"
        self.proto = NodeProtocol(self.name)
        self.runs.append(self.proto)
        self.reactor.spawnProcess(self.proto, str(RELAY), [str(RELAY), "run", "--config", str(self.config)],
                                  env=_env(), path=str(self.config.parent))
        self.ports = await self.proto.ready.wait().addTimeout(timeout, self.reactor)
        return self.ports

    def signal(self, name: str) -> None:
        try:
            self.proto.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    async def wait(self, timeout: float = 30.0) -> Exit:
        """Wait for the process to end."""
        return await self.proto.ended.wait().addTimeout(timeout, self.reactor)

    async def kill(self, timeout: float = 10.0) -> Exit:
        """SIGKILL: no goodbye, no flush."""
        self.signal("KILL")
        return await self.wait(timeout)

    async def terminate(self, timeout: float = 30.0) -> Exit:
        """SIGTERM: the node stops gracefully (logout upstream, writer drained)."""
        self.signal("TERM")
        return await self.wait(timeout)

    def output(self, last: int = 40) -> str:
        return "\n\n".join(f"--- {self.name} run {i + 1} ---\n{p.output(last)}" for i, p in enumerate(self.runs))


async def stop_all(processes, timeout: float = 15.0) -> None:
    """Teardown, in the order given (lower tiers first, so they log out of upstreams that
    still listen): SIGTERM what still runs, SIGKILL it if it does not end in time."""
    for proc in processes:
        if not proc.running:
            continue
        proc.signal("TERM")
        try:
            await proc.wait(timeout)
        except Exception:  # noqa: BLE001 - the deadline passed: no mercy
            proc.signal("KILL")
            await proc.wait(10.0)


async def run_command(reactor, args: list[str], cwd: Path, timeout: float = 30.0) -> tuple[Exit, str, str]:
    """Run ``relay ARGS`` to completion; returns how it ended, its stdout and its stderr."""

    class Collect(protocol.ProcessProtocol):
        def __init__(self) -> None:
            self.out = {1: bytearray(), 2: bytearray()}
            self.ended: Deferred = Deferred()

        def connectionMade(self) -> None:
            self.transport.closeStdin()

        def childDataReceived(self, fd, data) -> None:
            self.out.setdefault(fd, bytearray()).extend(data)

        def processEnded(self, reason) -> None:
            v = reason.value
            self.ended.callback(Exit(getattr(v, "exitCode", None), getattr(v, "signal", None)))

    proto = Collect()
    process = reactor.spawnProcess(proto, str(RELAY), [str(RELAY), *args], env=_env(), path=str(cwd))
    ended = proto.ended
    try:
        code = await ended.addTimeout(timeout, reactor)
    except Exception:
        process.signalProcess("KILL")
        raise
    return code, proto.out[1].decode("utf-8", "replace"), proto.out[2].decode("utf-8", "replace")


__all__ = ["RELAY", "NodeProcess", "NodeProtocol", "NodeExited", "Exit", "write_config", "stop_all", "run_command",
           "logfmt"]
