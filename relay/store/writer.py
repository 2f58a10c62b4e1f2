"""The batch writer: the single path from accepted frames to PostgreSQL.

Reactor side: :meth:`BatchWriter.accept` appends to the pending batch and returns a
Deferred (:meth:`BatchWriter.submit` appends without one). A batch is handed to the writer thread when ``batch_max_rows`` items are
pending or ``batch_interval_ms`` has passed; while one batch commits the next one
accumulates (group commit). Above ``high_watermark`` pending items the pressure
listeners are told to stop reading; below ``low_watermark`` to resume.

Writer thread (one connection, one transaction per batch): reserve frame ids, COPY the
frames into a staging table, insert them with ``ON CONFLICT DO NOTHING`` (a frame that
arrives twice is stored once), COPY decoded realtime rows, upsert the latest state,
record logins, COPY one outbox row per (new frame, upstream) the policy allows, and
commit. Only then, back on the reactor, the items' Deferreds fire in order and the
commit listeners (forwarders) are woken.

If the database goes away the batch is kept and retried with backoff (nothing
acknowledged is lost; input is held back by the watermarks). If a statement fails for
a reason other than the connection, the batch is split to isolate the offending item,
which is refused; the others are stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg
import structlog
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from codec import Command, RealtimeData, VehicleLogin
from codec.forwarding import forwardable

from ..ingest import Received, Refused
from ..policy import FORWARDED_VEHICLE_COMMANDS, is_forwarded_command
from .partitions import Partitions, month_of
from .rows import DATA_COMMANDS, FRAME_COLUMNS, LATEST_COLUMNS, REALTIME_COLUMNS, frame_row, latest_row, realtime_row

log = structlog.get_logger("relay.writer")

_FRAME_TYPES = ["int8", "timestamptz", "timestamptz", "text", "int2", "int2", "int2", "int2", "text", "int2",
                "bytea", "bytea"]
_REALTIME_TYPES = ["text", "timestamptz", "timestamptz", "int8", "bool", "text", "text", "text", "float4", "float8",
                   "float4", "float4", "int2", "int4", "text", "bool", "float8", "float8", "int2", "text[]", "int4",
                   "float4", "float4", "int2", "int2", "int2", "int2"]
_OUTBOX_TYPES = ["text", "text", "int2", "timestamptz", "timestamptz", "bytea"]

_LATEST_TYPES = ["text", "timestamptz", "timestamptz", "text", "text", "float4", "float8", "float4", "float4", "int2",
                 "bool", "float8", "float8", "int2", "text[]", "timestamptz"]

# the newest state per vehicle (one staged row per vehicle and batch, copied in, then merged
# in one statement); moving_at remembers the last time it was seen moving
_LATEST_UPSERT = (
    f"INSERT INTO latest ({', '.join(LATEST_COLUMNS)}, moving_at) "
    f"SELECT {', '.join(LATEST_COLUMNS)}, moving_at FROM stage_latest "
    f"ON CONFLICT (vin) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in LATEST_COLUMNS[1:])}, "
    "moving_at = CASE WHEN EXCLUDED.speed_kmh > 0 THEN EXCLUDED.collected_at ELSE latest.moving_at END "
    "WHERE latest.collected_at <= EXCLUDED.collected_at")


@dataclass
class BatchResult:
    items: int = 0
    stored: int = 0
    duplicates: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    unregistered: list[str] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # index in batch -> reason
    seconds: float = 0.0


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class Router:
    """Decides the upstreams of a frame; the node gives one built from config and registry.
    ``routes(frame)`` returns (upstream names, registered?)."""

    def routes(self, frame) -> tuple[list[str], bool]:  # pragma: no cover - interface
        return [], True


class _Worker:
    """Everything that runs on the writer thread (owns the connection)."""

    def __init__(self, dsn: str, router: Router, extra: list) -> None:
        self.dsn = dsn
        self.router = router
        self.extra = extra
        self.conn: psycopg.Connection | None = None
        self.partitions = Partitions()

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, application_name="relay-writer", connect_timeout=10)
            self.conn.execute("""CREATE TEMP TABLE IF NOT EXISTS stage_frames
                                 (LIKE frames INCLUDING DEFAULTS, seq integer) ON COMMIT DELETE ROWS""")
            self.conn.execute("""CREATE TEMP TABLE IF NOT EXISTS stage_latest
                                 (LIKE latest) ON COMMIT DELETE ROWS""")
            self.conn.commit()
            self.partitions.forget()
        return self.conn

    def _forget(self) -> None:
        """A rolled-back transaction: caches may claim what the database does not hold."""
        self.partitions.forget()
        for hook in self.extra:
            reset = getattr(hook, "reset", None)
            if reset is not None:
                reset()

    def close(self) -> None:
        self._forget()
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def write(self, batch: list[Received]) -> BatchResult:
        started = time.perf_counter()
        conn = self.connect()
        try:
            result = self._write(conn, batch)
        except psycopg.OperationalError:
            self.close()
            raise
        except psycopg.Error as exc:
            conn.rollback()
            self._forget()
            if len(batch) == 1:  # nothing to isolate: this item is the one the database refuses
                result = BatchResult(items=1, refused={0: _reason(exc)})
            else:
                result = self._isolate(batch)
        result.seconds = time.perf_counter() - started
        return result

    def _isolate(self, batch: list[Received]) -> BatchResult:
        """A statement failed: store items one by one, refusing the ones that fail."""
        total = BatchResult(items=len(batch))
        for i, item in enumerate(batch):
            try:
                part = self._write(self.connect(), [item])
            except psycopg.OperationalError:
                self.close()
                raise
            except psycopg.Error as exc:
                self.conn.rollback()
                self._forget()
                total.refused[i] = _reason(exc)
                continue
            total.stored += part.stored
            total.duplicates += part.duplicates
            total.unregistered += part.unregistered
            for k, v in part.outbox.items():
                total.outbox[k] = total.outbox.get(k, 0) + v
        return total

    def _write(self, conn: psycopg.Connection, batch: list[Received]) -> BatchResult:
        result = BatchResult(items=len(batch))
        months = {month_of(item.frame.collected_at or item.received_at) for item in batch}
        with conn.transaction():
            self.partitions.ensure(conn, months)
        with conn.transaction():
            cur = conn.cursor()
            ids = [r[0] for r in cur.execute("SELECT nextval('frames_id_seq') FROM generate_series(1, %s)",
                                             (len(batch),))]
            with cur.copy(f"COPY stage_frames ({', '.join(FRAME_COLUMNS)}, seq) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(_FRAME_TYPES + ["int4"])
                for seq, (fid, item) in enumerate(zip(ids, batch)):
                    cp.write_row(frame_row(fid, item.frame, item.peer, item.received_at) + (seq,))
            cols = ", ".join(FRAME_COLUMNS)
            inserted = {r[0] for r in cur.execute(
                f"INSERT INTO frames ({cols}) SELECT {cols} FROM stage_frames ORDER BY seq "
                f"ON CONFLICT DO NOTHING RETURNING id")}
            result.stored = len(inserted)
            result.duplicates = len(batch) - len(inserted)

            realtime, latest, logins, outbox = [], {}, [], []
            unregistered: dict[str, tuple] = {}  # vin -> (last received, frames)
            for fid, item in zip(ids, batch):
                if fid not in inserted:
                    continue
                frame = item.frame
                if frame.command in DATA_COMMANDS and isinstance(frame.body, RealtimeData):
                    row = realtime_row(fid, frame, item.received_at)
                    realtime.append(row)
                    prev = latest.get(frame.vin)
                    if prev is None or prev[1] <= row[1]:
                        latest[frame.vin] = latest_row(row) + (row[1],)
                elif frame.command in (Command.VEHICLE_LOGIN, Command.VEHICLE_LOGOUT) and not frame.is_answer \
                        and frame.body is not None and hasattr(frame.body, "serial"):
                    body = frame.body
                    is_login = isinstance(body, VehicleLogin)
                    logins.append((frame.vin, "login" if is_login else "logout", body.serial,
                                   body.iccid if is_login else "", list(body.subsystem_codes) if is_login else [],
                                   body.collected_at, item.received_at, item.peer))
                if frame.is_answer or not is_forwarded_command(frame.command):
                    continue
                routes, registered = self.router.routes(frame)
                if not registered and frame.command in FORWARDED_VEHICLE_COMMANDS:
                    seen = unregistered.get(frame.vin)
                    unregistered[frame.vin] = (item.received_at, (seen[1] if seen else 0) + 1)
                if routes:
                    payload = forwardable(frame)
                    collected = frame.collected_at or item.received_at
                    for name in routes:
                        outbox.append((name, frame.vin, frame.command, collected, item.received_at, payload))
                        result.outbox[name] = result.outbox.get(name, 0) + 1
            if realtime:
                with cur.copy(f"COPY realtime ({', '.join(REALTIME_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(_REALTIME_TYPES)
                    for row in realtime:
                        cp.write_row(row)
            if latest:
                with cur.copy(f"COPY stage_latest ({', '.join(LATEST_COLUMNS)}, moving_at) FROM STDIN "
                              "(FORMAT BINARY)") as cp:
                    cp.set_types(_LATEST_TYPES)
                    for row in latest.values():
                        cp.write_row(row)
                cur.execute(_LATEST_UPSERT)
            if logins:
                cur.executemany("INSERT INTO logins (vin, event, serial, iccid, codes, collected_at, received_at, peer) "
                                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", logins)
            if outbox:
                with cur.copy("COPY outbox (upstream, vin, command, collected_at, received_at, frame) "
                              "FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(_OUTBOX_TYPES)
                    for row in outbox:
                        cp.write_row(row)
            if unregistered:
                cur.executemany("INSERT INTO unregistered (vin, first_seen, last_seen, frames) VALUES (%s, %s, %s, %s) "
                                "ON CONFLICT (vin) DO UPDATE SET last_seen = EXCLUDED.last_seen, "
                                "frames = unregistered.frames + EXCLUDED.frames",
                                [(vin, at, at, n) for vin, (at, n) in unregistered.items()])
                result.unregistered = sorted(unregistered)
            for hook in self.extra:
                hook(cur, [(fid, item) for fid, item in zip(ids, batch) if fid in inserted])
        return result


class BatchWriter:
    """Reactor-side accumulator in front of :class:`_Worker` (see the module docstring)."""

    def __init__(self, reactor, dsn: str, router: Router, *, max_rows: int = 2000, interval: float = 0.02,
                 high_watermark: int = 20000, low_watermark: int = 5000, extra: list | None = None) -> None:
        self.reactor = reactor
        self.max_rows = max_rows
        self.interval = interval
        self.high = high_watermark
        self.low = low_watermark
        self._worker = _Worker(dsn, router, extra or [])
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="relay-writer")
        #: (item, its Deferred, or None for a submitted item)
        self._pending: list[tuple[Received, Deferred | None]] = []
        self._inflight: list[tuple[Received, Deferred | None]] = []
        self._timer = None
        self._retry_delay = 0.0
        #: a failed batch waits for its retry: arrivals must not trigger attempts sooner
        self._retrying = False
        self._pressure = False
        self._pressure_listeners: list[Callable[[bool], None]] = []
        self._commit_listeners: list[Callable[[BatchResult], None]] = []
        self._stopping: Deferred | None = None
        self._stop_deadline = None
        self._logged_unregistered: set[str] = set()
        self.running = False
        #: counters for stats and metrics
        self.batches = 0
        self.stored = 0
        self.duplicates = 0
        self.refused = 0
        self.last_batch_size = 0
        self.last_batch_seconds = 0.0

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> Deferred:
        self._pool.start()
        self.running = True
        return deferToThreadPool(self.reactor, self._pool, self._worker.connect)

    def stop(self, timeout: float = 30.0) -> Deferred:
        """Write everything pending, then close the connection and the thread. If the database
        stays away for ``timeout`` seconds, give up on what is pending: none of it was
        acknowledged (answers wait for the commit), so senders will send it again."""
        self.running = False
        d: Deferred = Deferred()
        self._stopping = d
        self._stop_deadline = self.reactor.callLater(timeout, self._abandon)
        self._flush()
        self._maybe_finish_stop()
        return d

    def _abandon(self) -> None:
        self._stop_deadline = None
        if self._stopping is None:
            return
        pending = self._pending + self._inflight
        log.error("writer_stop_abandoned", items=len(pending),
                  note="not stored and never acknowledged; senders re-send them")
        self._pending, self._inflight = [], []
        for _, d in pending:
            if d is not None:
                d.errback(Refused("the node stopped before the database came back"))
        self._maybe_finish_stop()

    def _maybe_finish_stop(self) -> None:
        if self._stopping is None or self._pending or self._inflight:
            return
        d, self._stopping = self._stopping, None
        if self._stop_deadline is not None and self._stop_deadline.active():
            self._stop_deadline.cancel()
        self._stop_deadline = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

        def closed(_):
            self._pool.stop()
            return None

        deferToThreadPool(self.reactor, self._pool, self._worker.close).addBoth(closed).chainDeferred(d)

    # -- interface used by listeners ----------------------------------------------------
    def accept(self, item: Received) -> Deferred:
        if item.barrier:
            return self._barrier()
        d: Deferred = Deferred()
        self._add(item, d)
        return d

    def submit(self, item: Received) -> None:
        self._add(item, None)

    def _add(self, item: Received, d: Deferred | None) -> None:
        self._pending.append((item, d))
        if not self._pressure and len(self._pending) + len(self._inflight) >= self.high:
            self._set_pressure(True)
        if len(self._pending) >= self.max_rows and not self._retrying:
            self._flush()
        elif self._timer is None:
            self._timer = self.reactor.callLater(self.interval, self._on_timer)

    def _barrier(self) -> Deferred:
        """Fires when the last item accepted so far has been committed (or refused)."""
        queue = self._pending or self._inflight
        if not queue:
            return succeed(None)
        item, last = queue[-1]
        if last is None:  # a submitted item: give it a Deferred to wait on (its refusal is logged)
            last = Deferred()
            last.addErrback(lambda _: None)
            queue[-1] = (item, last)
        d: Deferred = Deferred()

        def fire(result):
            d.callback(None)
            return result

        last.addBoth(fire)
        return d

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._inflight)

    def add_pressure_listener(self, callback: Callable[[bool], None]) -> None:
        self._pressure_listeners.append(callback)

    def remove_pressure_listener(self, callback: Callable[[bool], None]) -> None:
        if callback in self._pressure_listeners:
            self._pressure_listeners.remove(callback)

    def add_commit_listener(self, callback: Callable[[BatchResult], None]) -> None:
        self._commit_listeners.append(callback)

    # -- batching ---------------------------------------------------------------------
    def _on_timer(self) -> None:
        self._timer = None
        self._flush()

    def _flush_now(self) -> None:
        """A flush not caused by the timer: skipped while a failed batch waits for its retry."""
        if not self._retrying:
            self._flush()

    def _flush(self) -> None:
        if self._inflight or not self._pending:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        batch, self._pending = self._pending[:self.max_rows], self._pending[self.max_rows:]
        self._inflight = batch
        d = deferToThreadPool(self.reactor, self._pool, self._worker.write, [item for item, _ in batch])
        d.addCallbacks(self._committed, self._failed)
        d.addErrback(lambda f: log.error("writer_internal_error", error=f.getErrorMessage(),
                                         traceback=f.getTraceback()))

    def _committed(self, result: BatchResult) -> None:
        batch, self._inflight = self._inflight, []
        if not batch:  # abandoned at stop while the batch was in the database
            return
        self._retry_delay = 0.0
        self._retrying = False
        self.batches += 1
        self.stored += result.stored
        self.duplicates += result.duplicates
        self.last_batch_size = len(batch)
        self.last_batch_seconds = result.seconds
        log.debug("writer_batch_committed", items=len(batch), stored=result.stored, duplicates=result.duplicates,
                  seconds=round(result.seconds, 4))
        for vin in result.unregistered:
            if vin not in self._logged_unregistered:
                self._logged_unregistered.add(vin)
                log.warning("vehicle_unregistered", vin=vin, note="not in the registry: stored, not forwarded")
        refused = result.refused
        for i, (item, d) in enumerate(batch):
            if i not in refused:
                if d is not None:
                    d.callback(None)
                continue
            reason = refused[i]
            self.refused += 1
            log.error("writer_item_refused", vin=item.frame.vin, command=item.frame.command, peer=item.peer,
                      reason=reason)
            if item.on_refused is not None:
                item.on_refused(item, reason)
            if d is not None:
                d.errback(Refused(reason))
        for listener in list(self._commit_listeners):
            try:
                listener(result)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("commit_listener_failed")
        self._after_batch()

    def _failed(self, failure) -> None:
        batch, self._inflight = self._inflight, []
        if not batch:  # abandoned at stop
            return
        self._retry_delay = min(30.0, max(0.5, self._retry_delay * 2))
        log.error("writer_batch_failed", items=len(batch), error=failure.getErrorMessage().strip().splitlines()[0]
                  if failure.getErrorMessage() else failure.type.__name__, retry_in=self._retry_delay)
        # keep the batch, in order, in front of what arrived meanwhile
        self._pending = batch + self._pending
        self._retrying = True
        if not self._pressure and self.backlog >= self.high:
            self._set_pressure(True)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()  # a batch timer started during the failed attempt
        self._timer = self.reactor.callLater(self._retry_delay, self._on_timer)

    def _after_batch(self) -> None:
        if self._pressure and self.backlog <= self.low:
            self._set_pressure(False)
        if len(self._pending) >= self.max_rows or (self._pending and self._stopping is not None):
            self._flush_now()
        elif self._pending and self._timer is None:
            self._timer = self.reactor.callLater(self.interval, self._on_timer)
        self._maybe_finish_stop()

    def _set_pressure(self, on: bool) -> None:
        self._pressure = on
        log.info("writer_backpressure", on=on, backlog=self.backlog)
        for listener in list(self._pressure_listeners):
            listener(on)
