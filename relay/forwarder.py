"""The forwarder of one upstream: the outbox, in order, to a logged-in link.

The outbox of an upstream is every archived frame marked with its bit (``frames.routes``,
written in the frame's own transaction; migration 0005), in frame id order, after the
upstream's cursor. Cursor rules (ARCHITECTURE.md, issue 4):

* ``position``: the last frame written to the current logged-in link;
* ``durable``: the last frame the upstream has acknowledged — everything written before a
  heartbeat whose answer came back (the receiving node answers heartbeats only after
  committing what preceded them). Only ``durable`` is saved in ``outbox_cursors``.

When the link drops, ``position`` falls back to ``durable`` and the unacknowledged rows
are sent again after the next login: nothing is lost, and what arrives twice is dropped
by the receiver's deduplication (VIN + command class + collection time + data unit).

A row older than ``realtime_window`` when it is written goes out as reissue (0x03). The
forwarder is a push producer on the link's transport: a slow upstream pauses it, and it
holds at most one batch of rows in memory.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import structlog
from twisted.internet.task import LoopingCall
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from codec import Command
from codec.forwarding import retag

from .framing import release_producer
from .store.routes import route_bits

log = structlog.get_logger("relay.forwarder")


class OutboxRow(NamedTuple):
    id: int
    command: int
    #: when the frame was received, epoch seconds
    received_at: float
    frame: bytes


def load_cursor(conn, upstream: str) -> tuple[int, int]:
    """The upstream's saved cursor (a frame id) and its bit in ``frames.routes``."""
    bit = route_bits(conn, [upstream])[upstream]
    with conn.transaction():
        conn.execute("INSERT INTO outbox_cursors (upstream) VALUES (%s) ON CONFLICT DO NOTHING", (upstream,))
        last = conn.execute("SELECT last_id FROM outbox_cursors WHERE upstream = %s", (upstream,)).fetchone()[0]
    return last, bit


_SAVE_AND_FETCH = """
WITH saved AS (
    UPDATE outbox_cursors SET last_id = greatest(last_id, %(durable)s), delivered = delivered + %(delivered)s,
                              updated_at = now()
    WHERE upstream = %(upstream)s AND %(save)s)
SELECT h.last_id, f.id, f.command, f.received, f.frame
FROM outbox_head h
LEFT JOIN LATERAL (
    SELECT id, command, extract(epoch FROM received_at)::float8 AS received, coalesce(forward, raw) AS frame
    FROM frames WHERE routes <> 0 AND routes & %(mask)s <> 0 AND id > %(after)s ORDER BY id LIMIT %(limit)s) f ON true
"""


def save_and_fetch(conn, upstream: str, bit: int, durable: int, delivered: int, after: int, limit: int,
                   save: bool = True) -> tuple[int, list[OutboxRow]]:
    """Save the acknowledged cursor (``save``: something was acknowledged since the last
    save) and fetch the next ``limit`` frames for the upstream after ``after``, with the
    outbox head (migration 0007) as of the same snapshot: one statement, one round trip, its
    own transaction. Returns (head, rows)."""
    conn.autocommit = True
    try:
        # binary results: the frames come as bytes, not hex text the server encodes and psycopg decodes
        got = conn.execute(_SAVE_AND_FETCH, {"durable": durable, "delivered": delivered, "upstream": upstream,
                                             "save": save, "mask": 1 << bit, "after": after, "limit": max(0, limit)},
                           binary=True).fetchall()
    finally:
        if not conn.closed:
            conn.autocommit = False
    return got[0][0], [OutboxRow(r[1], r[2], r[3], r[4]) for r in got if r[1] is not None]


@implementer(IPushProducer)
class Forwarder:
    def __init__(self, reactor, pool, link, *, batch_rows: int = 500, realtime_window: float = 30.0,
                 poll_interval: float = 5.0, save_delay: float = 0.2) -> None:
        self.reactor = reactor
        self.pool = pool
        self.link = link
        self.name = link.name
        self.batch_rows = batch_rows
        self.realtime_window = realtime_window
        self.poll_interval = poll_interval
        self.save_delay = save_delay
        self._save_call = None
        self.position = 0
        self.durable = 0
        #: this upstream's bit in frames.routes (known once started)
        self.bit: int | None = None
        self._saved = 0
        self._acked_since_save = 0
        self._rows: deque[OutboxRow] = deque()
        #: every frame for this upstream with an id up to this one is in hand or written
        #: (the last fetch did not stop at its limit; the outbox head as of its snapshot), so a
        #: commit that moves the head on from exactly here hands over its frames and no fetch
        #: is needed; None when not known
        self._frontier: int | None = None
        self._fetching_rows = False
        #: ids written to the link and not yet acknowledged
        self._unacked: deque[int] = deque()
        self._proto = None
        self._fetching = False
        self._more = False
        self._paused = False
        self._syncing = False
        self._sync_again = False
        self._poll: LoopingCall | None = None
        self.running = False
        #: counters
        self.sent = 0
        self.sent_reissue = 0
        self.acked = 0
        self.resent = 0
        #: rows taken from the writer's commits rather than read back
        self.from_commits = 0
        link.add_listener(self)

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        self._rows.clear()
        self._unacked.clear()
        self._frontier = None
        cursor, self.bit = await self.pool.run(load_cursor, self.name)
        self.durable = self.position = self._saved = cursor
        self.running = True
        self._poll = LoopingCall(self.wake)
        self._poll.clock = self.reactor
        self._poll.start(self.poll_interval, now=False).addErrback(
            lambda f: log.error("forwarder_poll_failed", upstream=self.name, error=f.getErrorMessage()))
        log.info("forwarder_started", upstream=self.name, cursor=self.durable)
        self.wake()  # the link may have logged in before the cursor was loaded

    def _release_transport(self) -> None:
        release_producer(getattr(self._proto, "transport", None))

    async def stop(self) -> None:
        self.running = False
        self._release_transport()
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        if self._save_call is not None and self._save_call.active():
            self._save_call.cancel()
        self._save_call = None
        if self.bit is not None:
            await self.pool.run(save_and_fetch, self.name, self.bit, self.durable, self._acked_since_save,
                                self.durable, 0)
        self._acked_since_save = 0
        log.info("forwarder_stopped", upstream=self.name, cursor=self.durable, sent=self.sent,
                 from_commits=self.from_commits, reissue=self.sent_reissue, resent=self.resent)

    # -- link events ------------------------------------------------------------------
    def link_online(self, proto) -> None:
        self._proto = proto
        self._paused = False
        self._rows.clear()
        if self.running:  # before start() the cursor is not loaded yet; start() wakes us
            self._rewind()
        proto.transport.registerProducer(self, True)
        self.wake()

    def link_offline(self) -> None:
        self._release_transport()
        self._proto = None
        self._rows.clear()
        self._rewind()
        self._syncing = False

    def _rewind(self) -> None:
        """Unacknowledged rows will be sent again from the durable cursor."""
        self._frontier = None
        if self._unacked:
            self.resent += len(self._unacked)
            log.info("forwarder_rewind", upstream=self.name, rows=len(self._unacked), cursor=self.durable)
            self._unacked.clear()
        self.position = self.durable

    # -- IPushProducer (the link's transport calls these) ------------------------------
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        self._paused = True

    # -- the loop -----------------------------------------------------------------------
    def on_commit(self, result) -> None:
        """Writer commit listener: new rows may be waiting for this upstream. When everything
        before the batch is in hand and the batch says what it marked for this upstream,
        its rows are taken as they are; otherwise they are read back."""
        head = result.head
        if head is None:  # marked nothing (or the store does not say)
            if result.outbox.get(self.name):
                self._frontier = None
                self.wake()
            return
        before, after = head
        rows = result.routed.get(self.name, ()) if result.routed is not None else None
        if (rows is not None and self._frontier == before and not self._fetching_rows and not self._rows
                and not self._paused and self._proto is not None and self.running
                and (not rows or rows[0][0] > self.position)):
            self._frontier = after
            if rows:
                self._rows.extend(map(OutboxRow._make, rows))
                self.from_commits += len(rows)
                self._pump()
            return
        self._frontier = None  # someone else marked frames in between, or rows are in hand: read back
        if result.outbox.get(self.name):
            self.wake()

    def wake(self) -> None:
        """New rows may wait: fetch them now, or once the rows in hand are written."""
        if not self.running or self._proto is None:
            return
        if self._fetching or self._rows or self._paused:
            self._more = True
            return
        self._fetch()

    def _fetch(self, limit: int | None = None) -> None:
        """Save the acknowledged cursor and fetch up to ``limit`` rows (``batch_rows``; 0: only
        save, rows being in hand or no link to write them to)."""
        limit = self.batch_rows if limit is None else limit
        self._fetching = True
        self._fetching_rows = bool(limit)
        if limit:
            self._more = False
        durable, delivered = self.durable, self._acked_since_save
        proto, after = self._proto, self.position
        d = self.pool.run(save_and_fetch, self.name, self.bit, durable, delivered, after, limit,
                          durable > self._saved or delivered > 0)

        def fetched(answer: tuple[int, list[OutboxRow]]) -> None:
            head, rows = answer
            self._fetching = self._fetching_rows = False
            self._saved = durable
            self._acked_since_save -= delivered
            if self._proto is None:
                return
            if limit and (self._proto is not proto or self.position != after):
                # the link went and came back meanwhile (the position was rewound): these
                # rows follow a position that no longer holds; read again from the new one
                self._more = True
                self._pump()
                return
            if rows and rows[0].id > self.position:
                self._rows.extend(r for r in rows if r.id > self.position)
            if limit:
                # all frames for this upstream up to the head were in that snapshot: unless
                # the fetch stopped at its limit, they are in hand now (or written before)
                self._frontier = head if len(rows) < limit else None
            if len(rows) >= self.batch_rows:
                self._more = True  # a full fetch: more rows are likely waiting
            self._pump()

        def failed(f) -> None:
            self._fetching = self._fetching_rows = False
            self._frontier = None
            log.error("forwarder_fetch_failed", upstream=self.name, error=f.getErrorMessage())

        d.addCallbacks(fetched, failed)

    def _pump(self) -> None:
        proto = self._proto
        if proto is None or not self.running:
            return
        now = self.reactor.seconds()
        wrote = False
        while self._rows and not self._paused and self._proto is proto:
            row = self._rows.popleft()
            raw = row.frame
            if row.command == Command.REALTIME and now - row.received_at > self.realtime_window:
                raw = retag(raw, Command.REISSUE)
                self.sent_reissue += 1
            proto.write_raw(raw)
            self.position = row.id
            self._unacked.append(row.id)
            self.sent += 1
            wrote = True
        if wrote:
            self._request_sync()
        if not self._rows and not self._paused and self._more and not self._fetching:
            self._fetch()  # only when rows may be waiting: a commit woke us, or the fetch was full

    def _save_soon(self) -> None:
        """Save the acknowledged cursor within ``save_delay`` (with the next fetch, or on its
        own when none comes): it bounds what a restart sends again, not what is lost."""
        if self._save_call is None:
            self._save_call = self.reactor.callLater(self.save_delay, self._save_now)

    def _save_now(self) -> None:
        self._save_call = None
        if self.durable <= self._saved or self._fetching or not self.running:
            return  # saved meanwhile, or the fetch in progress saves it
        idle = self._proto is not None and not self._rows and not self._paused
        self._fetch(None if idle else 0)

    def _request_sync(self) -> None:
        if self._syncing:
            self._sync_again = True
            return
        self._syncing = True
        self._sync_again = False
        upto = self.position
        proto = self._proto

        def acked(answer) -> None:
            self._syncing = False
            if answer is not None and proto is self._proto and upto > self.durable:
                n = 0
                while self._unacked and self._unacked[0] <= upto:
                    self._unacked.popleft()
                    n += 1
                self.acked += n
                self._acked_since_save += n
                self.durable = upto
                self._save_soon()
            if self._sync_again and self._proto is not None:
                self._request_sync()

        def lost(f) -> None:
            self._syncing = False

        self.link.sync().addCallbacks(acked, lost)
