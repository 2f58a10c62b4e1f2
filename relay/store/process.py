"""The batch store in a process of its own (``database.store: process``, the default).

A node's reactor thread frames, answers and batches; decoding realtime data units, building
rows and running COPY is most of what a stored frame costs, and in one Python process it
all competes for one core (the GIL). So the node runs :class:`relay.store.batch.BatchStore`
in a child process: the writer thread (one hop per batch, as before) sends the batch over
a socket pair and waits for the :class:`relay.store.batch.BatchResult`. The reactor never
waits; the two processes use two cores.

What crosses, per item: the frame as received, the peer, the receive time (epoch seconds),
the source and the account — plain values; the child decodes the frame again (only the
header for anything but realtime data, whose data unit the reader left pending anyway).
The child builds its own router (the registry and the charging facilities, loaded from the
database and reloaded when the node's registry is: :meth:`StoreProcess.refresh`) and its
own hooks (charging tables, alarm episodes).

Failure: if the child dies or its socket closes, the batch in flight fails like a lost
database connection (the writer keeps it and retries with backoff) and the next attempt
starts a new child. A batch the old child committed before dying is stored once all the
same (frames are deduplicated on insert). The child exits when its socket closes (the node
stopped or was killed) and ignores SIGINT/SIGTERM, which the node handles for both.

Run as ``python -m relay.store.process FD`` by :class:`StoreProcess`, never by hand.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import import_module
from multiprocessing.connection import Connection

import psycopg
import structlog

from ..ingest import Received
from ..policy import Route
from .batch import BatchResult, BatchStore

log = structlog.get_logger("relay.writer")

#: seconds a new child may take to connect to the database and load the registry
START_TIMEOUT = 60.0

#: the hooks a node's store runs, as ``module:name`` (a class is instantiated once per child)
NODE_HOOKS = ("relay.charging:store_rows", "relay.alarms:AlarmTracker")


class StoreUnavailable(psycopg.OperationalError):
    """The store process is gone or could not start: the batch is kept and retried, as for a
    lost database connection."""


@dataclass(frozen=True)
class StoreSpec:
    """Everything the child needs to build the store a node would build in its writer thread."""

    dsn: str
    public_sectors: frozenset[str]
    routes: tuple[Route, ...]
    log_level: str = "info"
    log_format: str = "logfmt"
    hooks: tuple[str, ...] = NODE_HOOKS


class _Child:
    """One child process and the parent's end of its socket."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        # a duplicate descriptor: shutting the socket down wakes a thread blocked on it
        self.conn = Connection(os.dup(sock.fileno()))

    def end(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.sock.close()


class StoreProcess:
    """The parent's side, used from the writer's threads.

    ``write(batch)`` sends a batch and waits for its result (as :meth:`BatchStore.write`).
    A writer that keeps two batches in flight (``pipeline_depth``) calls ``send`` on one
    thread and ``receive`` on another, so the child decodes the next batch while
    PostgreSQL works on the current one; results come back in the order sent. After a
    failure the child takes no further batch until one is sent with ``first`` set (the
    writer resends the failed batch first), so batches are never committed out of order.
    ``refresh()`` has the child reload the registry before its next batch; ``close()``
    ends the child (nothing may be in flight)."""

    pipeline_depth = 2

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._refresh = False
        #: children started so far (1 + restarts after a child was lost)
        self.starts = 0

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None else None

    def connect(self) -> None:
        with self._lock:
            if self._child is None:
                self._child = self._start()

    def _start(self) -> _Child:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "relay.store.process", str(theirs.fileno())],
                                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        child = _Child(proc, ours)
        self.starts += 1
        try:
            child.conn.send(("start", self.spec))
            if not child.conn.poll(START_TIMEOUT):
                raise StoreUnavailable(f"the store process did not start within {START_TIMEOUT:.0f} s")
            kind, detail = child.conn.recv()
        except (OSError, EOFError) as exc:
            self._reap(child)
            raise StoreUnavailable(f"the store process ended while starting ({exc or type(exc).__name__})") from None
        except StoreUnavailable:
            self._reap(child)
            raise
        if kind != "ready":
            self._reap(child)
            raise StoreUnavailable(detail)
        self._refresh = False  # a new child has just loaded the registry
        log.info("store_process_started", pid=proc.pid, starts=self.starts)
        return child

    def refresh(self) -> None:
        self._refresh = True

    def send(self, batch: list[Received], first: bool = True) -> _Child:
        """Send ``batch``; ``first``: nothing is in flight before it (a lost child is replaced,
        and a child that failed the previous batch takes this one)."""
        if first:
            self.connect()
        child = self._child
        if child is None:
            raise StoreUnavailable("no store process: the batch before this one failed")
        refresh, self._refresh = self._refresh, False
        items = [(it.frame.raw, it.peer, it.received_at.timestamp(), it.source, it.account) for it in batch]
        try:
            child.conn.send(("write", (first, refresh, items)))
        except (OSError, EOFError) as exc:
            self._lost(child, exc)
        return child

    def receive(self, child: _Child) -> BatchResult:
        """The result of the oldest batch sent to ``child`` and not yet received."""
        try:
            kind, detail = child.conn.recv()
        except (OSError, EOFError) as exc:
            self._lost(child, exc)
        if kind == "ok":
            return detail
        if kind == "unavailable":  # the child lost its database connection; it keeps running
            raise StoreUnavailable(detail)
        raise RuntimeError(f"the store process failed: {detail}")

    def write(self, batch: list[Received]) -> BatchResult:
        return self.receive(self.send(batch))

    def close(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is None:
            return
        try:
            child.conn.send(("close", None))
            if child.conn.poll(30.0):
                child.conn.recv()
        except (OSError, EOFError):
            pass
        self._reap(child, wait=10.0)

    def _lost(self, child: _Child, exc: BaseException):
        """``child`` is gone (or its socket failed): forget it and raise StoreUnavailable."""
        with self._lock:
            if self._child is child:
                self._child = None
        self._reap(child)
        raise StoreUnavailable(f"the store process is gone (exit status {child.proc.returncode}; "
                               f"{exc or type(exc).__name__})") from None

    @staticmethod
    def _reap(child: _Child, wait: float = 2.0) -> None:
        """Close the socket (a child exits when it sees that) and wait for the child."""
        child.end()
        proc = child.proc
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, None):
            log.error("store_process_exited", pid=proc.pid, status=proc.returncode)


# --- the child ------------------------------------------------------------------------------------

def _hook(path: str):
    module, _, name = path.partition(":")
    obj = getattr(import_module(module), name)
    return obj() if isinstance(obj, type) else obj


class _Store:
    """The child's side: a :class:`BatchStore` with its own router and hooks."""

    def __init__(self, spec: StoreSpec) -> None:
        from .. import registry as registry_mod
        from ..charging import load_index
        from ..routing import RegistryRouter

        self._load_registry = registry_mod.load
        self.registry = registry_mod.RegistryCache()
        router = RegistryRouter(self.registry, spec.public_sectors, spec.routes)
        self.store = BatchStore(spec.dsn, router, [_hook(h) for h in spec.hooks])
        conn = self.store.connect()
        self.refresh()
        router.charging = load_index(conn)

    def refresh(self) -> None:
        self.registry.replace(self._load_registry(self.store.connect()))

    @staticmethod
    def decode(items: list[tuple]) -> tuple[list[Received], dict[int, str]]:
        """The batch as the store takes it: frames decoded again, data units included (the
        parent checked the header and the check code, and only the collection time of a
        realtime data unit); the undecodable ones by index, with the reason
        :func:`relay.ingest.decode_pending` would give."""
        from codec import Edition, Frame, FrameError
        from codec.frame import decode_checked, parse_header

        batch, refused = [], {}
        utc = timezone.utc
        for i, (raw, peer, at, source, account) in enumerate(items):
            try:
                frame = decode_checked(raw, *parse_header(raw)[:5], packed=True)
            except FrameError as exc:  # a data unit that does not follow the layout: refused
                refused[i] = f"{exc.reason}: {exc.detail}"
                frame = Frame(Edition.V2016, raw[2], raw[3], "?", 1, None, raw)
            batch.append(Received(frame, peer, datetime.fromtimestamp(at, utc), source, account))
        return batch, refused


def _read(conn: Connection, inbox: queue.Queue) -> None:
    """The child's reader thread: takes the parent's messages and decodes each batch as it
    arrives, while the main thread may still be writing the one before."""
    try:
        while True:
            kind, payload = conn.recv()
            if kind == "write":
                first, refresh, items = payload
                payload = (first, refresh, _Store.decode(items))
            inbox.put((kind, payload))
            if kind == "close":
                return
    except (EOFError, OSError):
        inbox.put(("gone", None))
    except Exception:  # noqa: BLE001 - reported as the next reply
        inbox.put(("broken", traceback.format_exc()))


def serve(conn: Connection) -> None:
    """Answer the parent's calls, in order, until it closes the socket or says ``close``."""
    kind, spec = conn.recv()
    from ..logs import configure
    from ..runtime import settle_gc

    configure(spec.log_level, spec.log_format)
    try:
        child = _Store(spec)
        settle_gc()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which retries
        conn.send(("unavailable", f"{type(exc).__name__}: {str(exc).strip()}"))
        return
    conn.send(("ready", os.getpid()))
    inbox: queue.Queue = queue.Queue(maxsize=2)
    threading.Thread(target=_read, args=(conn, inbox), name="store-reader", daemon=True).start()
    failed = False  # the last batch failed: take none until the parent sends one as "first"
    while True:
        kind, payload = inbox.get()
        if kind in ("gone", "close"):
            if kind == "close":
                child.store.close()
                conn.send(("ok", None))
            return
        if kind == "broken":
            conn.send(("failed", payload))
            return
        first, refresh, (batch, undecodable) = payload
        if failed and not first:
            conn.send(("unavailable", "not written: the batch before it failed"))
            continue
        try:
            if refresh:
                child.refresh()
            result = child.store.write_decoded(batch, undecodable)
        except psycopg.OperationalError as exc:
            failed = True
            child.store.close()  # a new connection for the next batch
            conn.send(("unavailable", f"{type(exc).__name__}: {str(exc).strip()}"))
            continue
        except Exception:  # noqa: BLE001 - reported to the parent
            failed = True
            conn.send(("failed", traceback.format_exc()))
            continue
        failed = False
        conn.send(("ok", result))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # the node stops this process (it closes the socket): a signal to the whole process
    # group (Ctrl-C, a service manager's SIGTERM) must not cut a batch short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(int(args[0]))
    try:
        serve(conn)
    except (EOFError, OSError):
        pass  # the parent went away
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
