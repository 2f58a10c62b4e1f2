"""One batch in one transaction: what the writer thread (or the store process) runs.

:class:`BatchStore` owns one connection. ``write(batch)`` decodes the data units the
reader left pending (an item whose data unit does not follow the layout is refused),
decides where each frame goes (the router), reserves frame ids, COPYs the frames into the
archive with the bits of their upstreams (the outbox: a mark on the archived frame, see
migration 0005) — straight in, or, when duplicates arrive, through a staging table and
``ON CONFLICT DO NOTHING`` (a frame that arrives twice is stored once) —, COPYs decoded
realtime rows, upserts the latest state, records
logins, runs the hooks (charging tables, alarm episodes), and commits; it returns a plain
:class:`BatchResult`.

A ``psycopg.OperationalError`` (the connection is gone) closes the connection and is
raised: the caller keeps the batch and retries. Any other database error rolls back and
the batch is written again item by item, so that only the offending item is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg
import structlog

from codec import Command, RealtimeData, VehicleLogin
from codec.forwarding import forwardable

from ..ingest import Received, decode_pending
from ..policy import FORWARDED_VEHICLE_COMMANDS, is_forwarded_command
from .partitions import Partitions, month_of
from .routes import route_bits
from .rows import DATA_COMMANDS, FRAME_COLUMNS, LATEST_COLUMNS, REALTIME_COLUMNS, frame_row, latest_row, realtime_row

log = structlog.get_logger("relay.writer")

_FRAME_TYPES = ["int8", "timestamptz", "timestamptz", "text", "int2", "int2", "int2", "int2", "text", "int2",
                "bytea", "bytea"]
_REALTIME_TYPES = ["text", "timestamptz", "timestamptz", "int8", "bool", "text", "text", "text", "float4", "float8",
                   "float4", "float4", "int2", "int4", "text", "bool", "float8", "float8", "int2", "text[]", "int4",
                   "float4", "float4", "int2", "int2", "int2", "int2"]
#: what is copied for each frame: the archive row, then the upstreams it goes to (a bit per
#: upstream, relay/store/routes.py) and what is forwarded when it is not the frame as received
_STORED_COLUMNS = FRAME_COLUMNS + ("routes", "forward")
_STORED_TYPES = _FRAME_TYPES + ["int4", "bytea"]

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


#: frame ids for a batch
_IDS = "SELECT nextval('frames_id_seq') FROM generate_series(1, %s)"
#: ... for a batch that marks frames for upstreams. Frame ids must commit in id order, or a
#: forwarder reading "id > cursor" could pass over a frame another writer on this database
#: commits later: writers that route take turns (a transaction-scoped advisory lock) from
#: their first id to their commit. The lock is taken once (a materialized CTE) and before the
#: first id (every row of the join needs the CTE's row), in the same round trip.
_IDS_IN_TURN = ("WITH turn AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended('relay:outbox', 0))) "
                "SELECT nextval('frames_id_seq') FROM turn, generate_series(1, %s)")


class _Duplicate(Exception):
    """The straight copy into the archive met a frame it holds already (the transaction is
    aborted)."""


@dataclass
class BatchResult:
    items: int = 0
    stored: int = 0
    duplicates: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    unregistered: list[str] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # index in batch -> reason
    #: charging stations' static information stored in this batch: (operator, ChargingMessage)
    stations: list = field(default_factory=list)
    #: the refused items whose data unit did not follow the layout (bad input, not storage)
    undecodable: set[int] = field(default_factory=set)
    seconds: float = 0.0
    #: the outbox head (migration 0007) before and after this batch: None when the batch
    #: marked no frame for any upstream
    head: tuple[int, int] | None = None
    #: per upstream, the frames this batch marked for it, in id order, as the forwarder
    #: sends them: (frame id, command, received_at as epoch seconds, bytes to send); None
    #: when not known (a batch written item by item after a failure: the forwarder reads
    #: them back)
    routed: dict[str, list[tuple]] | None = None


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class Router:
    """Decides the upstreams of a frame; the node gives one built from config and registry.
    ``routes(frame)`` returns (upstream names, registered?); ``names`` are every upstream
    it may name."""

    names: tuple[str, ...] = ()

    def routes(self, frame) -> tuple[list[str], bool]:  # pragma: no cover - interface
        return [], True


class BatchStore:
    """Everything that runs on the writer thread (owns the connection)."""

    def __init__(self, dsn: str, router: Router, extra: list) -> None:
        self.dsn = dsn
        self.router = router
        self.extra = extra
        self.conn: psycopg.Connection | None = None
        self.partitions = Partitions()
        #: upstream name -> its bit in frames.routes
        self.bits: dict[str, int] = {}
        #: archive straight into frames (no duplicate seen lately), see _archive
        self._direct = True

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, application_name="relay-writer", connect_timeout=10)
            self.conn.execute("""CREATE TEMP TABLE IF NOT EXISTS stage_frames
                                 (LIKE frames INCLUDING DEFAULTS, seq integer) ON COMMIT DELETE ROWS""")
            self.conn.execute("""CREATE TEMP TABLE IF NOT EXISTS stage_latest
                                 (LIKE latest) ON COMMIT DELETE ROWS""")
            self.conn.commit()
            self.partitions.forget()
            self.bits = route_bits(self.conn, list(self.router.names))
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
        return self.write_decoded(batch, decode_pending(batch))

    def write_decoded(self, batch: list[Received], undecodable: dict[int, str]) -> BatchResult:
        """Write ``batch`` whose pending data units :func:`decode_pending` has decoded,
        refusing the ``undecodable`` items it reported (by index, with the reason)."""
        started = time.perf_counter()
        kept = [i for i in range(len(batch)) if i not in undecodable] if undecodable else None
        items = batch if kept is None else [batch[i] for i in kept]
        result = self._write_decoded(items) if items else BatchResult()
        if kept is not None:
            result.refused = {kept[i]: reason for i, reason in result.refused.items()}
            result.refused.update(undecodable)
            result.undecodable = set(undecodable)
            result.items = len(batch)
        result.seconds = time.perf_counter() - started
        return result

    def _write_decoded(self, batch: list[Received]) -> BatchResult:
        conn = self.connect()
        try:
            return self._write(conn, batch)
        except psycopg.OperationalError:
            self.close()
            raise
        except psycopg.Error as exc:
            conn.rollback()
            self._forget()
            if len(batch) == 1:  # nothing to isolate: this item is the one the database refuses
                return BatchResult(items=1, refused={0: _reason(exc)})
            return self._isolate(batch)

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
            total.stations += part.stations
            for k, v in part.outbox.items():
                total.outbox[k] = total.outbox.get(k, 0) + v
        return total

    def _plan(self, frame) -> tuple[int, bytes | None, list[str], bool] | None:
        """Where ``frame`` goes: (bits of its upstreams, what is forwarded when it is not the
        frame as received, the upstreams' names, whether its sender is registered); None for
        what is never forwarded (answers, platform commands)."""
        if frame.is_answer or not is_forwarded_command(frame.command):
            return None
        names, registered = self.router.routes(frame)
        if not names:
            return 0, None, names, registered
        bits = 0
        for name in names:
            bits |= 1 << self.bits[name]
        payload = forwardable(frame)
        return bits, (None if payload is frame.raw else payload), names, registered

    def _archive(self, cur, ids: list[int], rows: list[tuple], direct: bool) -> set[int]:
        """Insert the frames' archive rows; the ids of those stored (a frame already archived
        is not stored again). ``direct``: straight into ``frames`` (a duplicate fails the
        COPY, and with it the transaction: :class:`_Duplicate`); otherwise through a staging
        table and ``ON CONFLICT DO NOTHING``."""
        cols = ", ".join(_STORED_COLUMNS)
        if direct:
            try:
                with cur.copy(f"COPY frames ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(_STORED_TYPES)
                    for row in rows:
                        cp.write_row(row)
            except psycopg.errors.UniqueViolation as exc:
                raise _Duplicate() from exc
            return set(ids)
        with cur.copy(f"COPY stage_frames ({cols}, seq) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(_STORED_TYPES + ["int4"])
            for seq, row in enumerate(rows):
                cp.write_row(row + (seq,))
        return {r[0] for r in cur.execute(
            f"INSERT INTO frames ({cols}) SELECT {cols} FROM stage_frames ORDER BY seq "
            f"ON CONFLICT DO NOTHING RETURNING id")}

    def _write(self, conn: psycopg.Connection, batch: list[Received]) -> BatchResult:
        months = {month_of(item.frame.collected_at or item.received_at) for item in batch}
        if self.partitions.missing(months):
            with conn.transaction():
                self.partitions.ensure(conn, months)
        # where each frame goes, decided before the transaction (a duplicate's plan is unused)
        plans = [self._plan(item.frame) for item in batch]
        if self._direct:
            try:
                return self._transaction(conn, batch, plans, direct=True)
            except _Duplicate:
                # rolled back before anything but the archive was written: the batch again,
                # staged, and the next ones too until one has no duplicate
                self._direct = False
        result = self._transaction(conn, batch, plans, direct=False)
        if not result.duplicates:
            self._direct = True  # no duplicate in this batch: try straight in again
        return result

    def _transaction(self, conn: psycopg.Connection, batch: list[Received], plans: list, direct: bool) -> BatchResult:
        result = BatchResult(items=len(batch))
        with conn.transaction():
            cur = conn.cursor()
            ids = [r[0] for r in cur.execute(
                _IDS_IN_TURN if any(plan is not None and plan[0] for plan in plans) else _IDS, (len(batch),))]
            rows = [frame_row(fid, item.frame, item.peer, item.received_at, item.dedup_key)
                    + ((plan[0], plan[1]) if plan is not None else (0, None))
                    for fid, item, plan in zip(ids, batch, plans)]
            inserted = self._archive(cur, ids, rows, direct)
            result.stored = len(inserted)
            result.duplicates = len(batch) - len(inserted)

            realtime, latest, logins = [], {}, []
            unregistered: dict[str, tuple] = {}  # vin -> (last received, frames)
            routed: dict[str, list[tuple]] = {}
            last_routed = 0
            for fid, item, plan in zip(ids, batch, plans):
                if fid not in inserted:
                    continue
                frame = item.frame
                if frame.command == Command.CHARGING_STATIC and not frame.is_answer:
                    result.stations.append((frame.vin, frame.body))
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
                if plan is None:
                    continue
                _, _, names, registered = plan
                if not registered and frame.command in FORWARDED_VEHICLE_COMMANDS:
                    seen = unregistered.get(frame.vin)
                    unregistered[frame.vin] = (item.received_at, (seen[1] if seen else 0) + 1)
                if not names:
                    continue
                last_routed = max(last_routed, fid)
                sent = (fid, frame.command, item.received_at.timestamp(), frame.raw if plan[1] is None else plan[1])
                for name in names:
                    result.outbox[name] = result.outbox.get(name, 0) + 1
                    routed.setdefault(name, []).append(sent)
            if last_routed:
                # under the outbox lock (taken above: this batch marks frames)
                before = cur.execute("WITH prev AS (SELECT last_id FROM outbox_head) UPDATE outbox_head "
                                     "SET last_id = greatest(last_id, %s) RETURNING (SELECT last_id FROM prev)",
                                     (last_routed,)).fetchone()[0]
                result.head = (before, max(before, last_routed))
                # the forwarders take these instead of reading them back (from a store process
                # they cross the socket pickled: some 0.05 us a frame each way)
                result.routed = routed
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
            if unregistered:
                cur.executemany("INSERT INTO unregistered (vin, first_seen, last_seen, frames) VALUES (%s, %s, %s, %s) "
                                "ON CONFLICT (vin) DO UPDATE SET last_seen = EXCLUDED.last_seen, "
                                "frames = unregistered.frames + EXCLUDED.frames",
                                [(vin, at, at, n) for vin, (at, n) in unregistered.items()])
                result.unregistered = sorted(unregistered)
            for hook in self.extra:
                hook(cur, [(fid, item) for fid, item in zip(ids, batch) if fid in inserted])
        return result
