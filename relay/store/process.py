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
import signal
import socket
import subprocess
import sys
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


class StoreProcess:
    """The parent's side: the same calls as :class:`BatchStore` (``connect``, ``write``,
    ``close``) plus ``refresh``, made on the writer thread (one at a time)."""

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        #: children started so far (1 + restarts after a child was lost)
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def connect(self) -> None:
        if self._conn is not None:
            return
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "relay.store.process", str(theirs.fileno())],
                                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        self._proc, self._conn = proc, conn
        self.starts += 1
        try:
            conn.send(("start", self.spec))
            if not conn.poll(START_TIMEOUT):
                raise StoreUnavailable(f"the store process did not start within {START_TIMEOUT:.0f} s")
            kind, detail = conn.recv()
        except (OSError, EOFError) as exc:
            self._lost()
            raise StoreUnavailable(f"the store process ended while starting ({exc or type(exc).__name__})") from None
        except StoreUnavailable:
            self._lost()
            raise
        if kind != "ready":
            self._lost()
            raise StoreUnavailable(detail)
        log.info("store_process_started", pid=proc.pid, starts=self.starts)

    def write(self, batch: list[Received]) -> BatchResult:
        self.connect()
        items = [(it.frame.raw, it.peer, it.received_at.timestamp(), it.source, it.account) for it in batch]
        kind, detail = self._call(("write", items))
        if kind == "ok":
            return detail
        if kind == "unavailable":  # the child lost its database connection; it keeps running
            raise StoreUnavailable(detail)
        raise RuntimeError(f"the store process failed: {detail}")

    def refresh(self) -> None:
        """Reload the registry (after the node reloaded its own copy)."""
        if self._conn is None:
            return  # a child starting later loads the current registry
        kind, detail = self._call(("refresh", None))
        if kind != "ok":
            raise StoreUnavailable(detail)

    def close(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.send(("close", None))
            if conn.poll(30.0):
                conn.recv()
        except (OSError, EOFError):
            pass
        self._lost(wait=True)

    def _call(self, message) -> tuple[str, object]:
        try:
            self._conn.send(message)
            return self._conn.recv()
        except (OSError, EOFError) as exc:
            code = self._proc.poll() if self._proc is not None else None
            self._lost()
            raise StoreUnavailable(f"the store process is gone (exit status {code}; {exc or type(exc).__name__})") \
                from None

    def _lost(self, wait: bool = False) -> None:
        """Forget the child: close the socket (it exits when it sees that), reap it."""
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        if conn is not None:
            conn.close()
        if proc is not None:
            try:
                proc.wait(10.0 if wait else 2.0)
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


class _Child:
    def __init__(self, spec: StoreSpec) -> None:
        from .. import registry as registry_mod
        from ..charging import load_index
        from ..routing import RegistryRouter

        self._load_registry = registry_mod.load
        self.registry = registry_mod.RegistryCache()
        self.facilities = None
        router = RegistryRouter(self.registry, spec.public_sectors, spec.routes)
        self.store = BatchStore(spec.dsn, router, [_hook(h) for h in spec.hooks])
        conn = self.store.connect()
        self.refresh()
        router.charging = load_index(conn)

    def refresh(self) -> None:
        self.registry.replace(self._load_registry(self.store.connect()))

    def write(self, items: list[tuple]) -> BatchResult:
        from codec.frame import decode_checked, parse_header

        batch = []
        for raw, peer, at, source, account in items:
            # the parent checked the header and the check code and decoded what it had to
            frame = decode_checked(raw, *parse_header(raw)[:5], packed=True, lazy=True)
            batch.append(Received(frame, peer, datetime.fromtimestamp(at, timezone.utc), source, account))
        return self.store.write(batch)


def serve(conn: Connection) -> None:
    """Answer the parent's calls until it closes the socket or says ``close``."""
    kind, spec = conn.recv()
    from ..logs import configure
    from ..runtime import settle_gc

    configure(spec.log_level, spec.log_format)
    try:
        child = _Child(spec)
        settle_gc()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which retries
        conn.send(("unavailable", f"{type(exc).__name__}: {str(exc).strip()}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            break
        try:
            if kind == "write":
                conn.send(("ok", child.write(payload)))
            elif kind == "refresh":
                child.refresh()
                conn.send(("ok", None))
            elif kind == "close":
                child.store.close()
                conn.send(("ok", None))
                break
        except psycopg.OperationalError as exc:
            child.store.close()  # a new connection on the next call
            conn.send(("unavailable", f"{type(exc).__name__}: {str(exc).strip()}"))
        except Exception:  # noqa: BLE001 - reported to the parent
            conn.send(("failed", traceback.format_exc()))


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
