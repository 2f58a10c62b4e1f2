"""The batch writer: the single path from accepted frames to PostgreSQL.

Reactor side: :meth:`BatchWriter.accept` appends to the pending batch and returns a
Deferred (:meth:`BatchWriter.submit` appends without one). A batch is handed to the
writer thread when ``batch_max_rows`` items are pending or ``batch_interval_ms`` has
passed; while one batch commits the next one accumulates (group commit). Above ``high_watermark`` pending items the pressure
listeners are told to stop reading; below ``low_watermark`` to resume.

Writer thread: one hop per batch to :class:`relay.store.batch.BatchStore` (one connection,
one transaction per batch). Only after the commit, back on the reactor, the items'
Deferreds fire in order and the commit listeners (forwarders) are woken.

If the database goes away the batch is kept and retried with backoff (nothing
acknowledged is lost; input is held back by the watermarks). If a statement fails for
a reason other than the connection, the batch is split to isolate the offending item,
which is refused; the others are stored.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import structlog
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ..ingest import Received, Refused
from .batch import BatchResult, BatchStore, Router
from .rows import dedup_key

log = structlog.get_logger("relay.writer")

#: seconds a committed platform frame is remembered, so that its second copy (the province
#: gets each frame from the enterprise and again from the city) is answered at once and
#: never reaches the store; a copy that comes later is deduplicated by the database. A
#: second copy that comes while the first is still on its way to the database does not
#: reach the store either: the first one's commit or refusal stands for both (a copy someone
#: waits for, a vehicle login say, is answered when the first one is)
DEDUP_WINDOW = 10.0
#: at most this many frames remembered (about 100 bytes each)
DEDUP_MAX = 100_000


class BatchWriter:
    """Reactor-side accumulator in front of :class:`relay.store.batch.BatchStore` (see the module docstring)."""

    def __init__(self, reactor, dsn: str, router: Router, *, max_rows: int = 2000, interval: float = 0.05,
                 high_watermark: int = 20000, low_watermark: int = 5000, extra: list | None = None,
                 store=None) -> None:
        """``store``: what the writer thread hands each batch to; by default a
        :class:`BatchStore` on ``dsn`` with ``router`` and the ``extra`` hooks in this process
        (a node passes a :class:`relay.store.process.StoreProcess` instead)."""
        self.reactor = reactor
        self.max_rows = max_rows
        self.interval = interval
        self.high = high_watermark
        self.low = low_watermark
        self.store = store if store is not None else BatchStore(dsn, router, extra or [])
        #: batches in flight at once: 2 for a store that decodes the next batch while the
        #: database writes the current one (it sends on one thread and receives on another)
        self.depth = getattr(self.store, "pipeline_depth", 1)
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="relay-writer")
        self._receiver = ThreadPool(minthreads=1, maxthreads=1, name="relay-writer-results") if self.depth > 1 \
            else None
        #: (item, its Deferred, or None for a submitted item)
        self._pending: list[tuple[Received, Deferred | None]] = []
        #: batches handed to the store, oldest first, each with the epoch it was sent in; a
        #: failure starts a new epoch, and results of an older one are not used
        self._inflight: deque[tuple[int, list[tuple[Received, Deferred | None]]]] = deque()
        #: items in those batches (the backlog is checked for every item accepted)
        self._inflight_items = 0
        self._epoch = 0
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
        #: platform frames committed in the last DEDUP_WINDOW seconds: keys, and (time, key) in order
        self._recent: set[tuple] = set()
        self._recent_order: deque[tuple[float, tuple]] = deque()
        #: platform frames accepted and not committed yet: key -> how many such items
        self._waiting: dict[tuple, int] = {}
        #: the Deferreds of second copies waiting for their first copy's outcome, by key
        self._followers: dict[tuple, list[Deferred]] = {}
        self.dedup_window = DEDUP_WINDOW
        self.running = False
        #: counters for stats and metrics
        self.batches = 0
        self.stored = 0
        self.duplicates = 0
        #: duplicates answered from memory, without a trip to the database
        self.duplicates_skipped = 0
        self.refused = 0
        self.last_batch_size = 0
        self.last_batch_seconds = 0.0

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> Deferred:
        self._pool.start()
        if self._receiver is not None:
            self._receiver.start()
        self.running = True
        return deferToThreadPool(self.reactor, self._pool, self.store.connect)

    def refresh(self) -> None:
        """The registry changed: a store that keeps its own copy (a store process) is told to
        reload it before its next batch; one that shares the node's copy has nothing to do."""
        refresh = getattr(self.store, "refresh", None)
        if refresh is not None and self.running:
            refresh()  # only marks it: no I/O here

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
        pending = [x for _, batch in self._inflight for x in batch] + self._pending
        log.error("writer_stop_abandoned", items=len(pending),
                  note="not stored and never acknowledged; senders re-send them")
        self._pending = []
        self._inflight.clear()
        self._inflight_items = 0
        self._waiting.clear()
        waiting = [d for _, d in pending if d is not None] + [f for fs in self._followers.values() for f in fs]
        self._followers.clear()
        self._epoch += 1  # results still to come are not used
        for d in waiting:
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
            if self._receiver is not None:
                self._receiver.stop()
            return None

        deferToThreadPool(self.reactor, self._pool, self.store.close).addBoth(closed).chainDeferred(d)

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
        if item.source == "platform" and item.frame.raw:
            key = item.dedup_key = dedup_key(item.frame)
            if key in self._recent or key in self._waiting:
                # committed here moments ago, or on its way: this copy never reaches the store
                self.duplicates += 1
                self.duplicates_skipped += 1
                if d is not None:
                    if key in self._recent:
                        d.callback(None)
                    else:  # answered as the first copy is
                        self._followers.setdefault(key, []).append(d)
                return
            self._waiting[key] = self._waiting.get(key, 0) + 1
        self._pending.append((item, d))
        if not self._pressure and self.backlog >= self.high:
            self._set_pressure(True)
        if len(self._pending) >= self.max_rows and not self._retrying:
            self._flush()
        elif self._timer is None:
            self._timer = self.reactor.callLater(self.interval, self._on_timer)

    def _barrier(self) -> Deferred:
        """Fires when the last item accepted so far has been committed (or refused)."""
        queue = self._pending or (self._inflight[-1][1] if self._inflight else None)
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
        return len(self._pending) + self._inflight_items

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
        if len(self._inflight) >= self.depth or not self._pending:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        batch, self._pending = self._pending[:self.max_rows], self._pending[self.max_rows:]
        first = not self._inflight
        epoch = self._epoch
        self._inflight.append((epoch, batch))
        self._inflight_items += len(batch)
        items = [item for item, _ in batch]
        if self._receiver is None:
            d = deferToThreadPool(self.reactor, self._pool, self.store.write, items)
        else:  # sends in order on one thread, results in the same order on the other
            d = deferToThreadPool(self.reactor, self._pool, self.store.send, items, first)
            d.addCallback(lambda child: deferToThreadPool(self.reactor, self._receiver, self.store.receive, child))
        d.addCallbacks(self._committed, self._failed, callbackArgs=(epoch,), errbackArgs=(epoch,))
        d.addErrback(lambda f: log.error("writer_internal_error", error=f.getErrorMessage(),
                                         traceback=f.getTraceback()))

    def _committed(self, result: BatchResult, epoch: int) -> None:
        if epoch != self._epoch or not self._inflight:
            return  # sent before a failure (and resent since), or abandoned at stop
        _, batch = self._inflight.popleft()
        self._inflight_items -= len(batch)
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
        self._forget_old()
        for i, (item, d) in enumerate(batch):
            key = item.dedup_key
            followers = self._settled(key) if key is not None else ()
            if i not in refused:
                if key is not None:
                    self._remember(key)
                if d is not None:
                    d.callback(None)
                for f in followers:  # second copies are answered after the first
                    f.callback(None)
                continue
            reason = refused[i]
            self.refused += 1
            if i in result.undecodable:
                why, _, detail = reason.partition(": ")
                log.warning("frame_refused", reason=why, detail=detail, vin=item.frame.vin, command=item.frame.command,
                            peer=item.peer)
            else:
                log.error("writer_item_refused", vin=item.frame.vin, command=item.frame.command, peer=item.peer,
                          reason=reason)
            if item.on_refused is not None:
                item.on_refused(item, reason)
            if d is not None:
                d.errback(Refused(reason))
            for f in followers:
                f.errback(Refused(reason))
        for listener in list(self._commit_listeners):
            try:
                listener(result)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("commit_listener_failed")
        self._after_batch()

    def _settled(self, key: tuple) -> list[Deferred]:
        """One item of ``key`` is committed or refused; the second copies waiting on it once
        no such item is left on its way."""
        n = self._waiting.pop(key, 0)
        if n > 1:
            self._waiting[key] = n - 1
            return []
        return self._followers.pop(key, [])

    def _remember(self, key: tuple) -> None:
        self._recent.add(key)
        self._recent_order.append((self.reactor.seconds(), key))

    def _forget_old(self) -> None:
        order, cutoff = self._recent_order, self.reactor.seconds() - self.dedup_window
        while order and (order[0][0] < cutoff or len(order) > DEDUP_MAX):
            self._recent.discard(order.popleft()[1])

    def _failed(self, failure, epoch: int) -> None:
        if epoch != self._epoch or not self._inflight:
            return  # sent before a failure (and resent since), or abandoned at stop
        # the batches after the failed one are sent again too (a store takes none after a
        # failure until the failed one comes back; what it did commit is deduplicated)
        batch = [x for _, b in self._inflight for x in b]
        self._inflight.clear()
        self._inflight_items = 0
        self._epoch += 1
        self._retry_delay = min(30.0, max(0.5, self._retry_delay * 2))
        log.error("writer_batch_failed", items=len(batch), error=failure.getErrorMessage().strip().splitlines()[0]
                  if failure.getErrorMessage() else failure.type.__name__, retry_in=self._retry_delay)
        # keep the batches, in order, in front of what arrived meanwhile
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
        if len(self._pending) >= self.max_rows or (self._pending and (self._stopping is not None or self._inflight)):
            # a full batch, the last ones at stop, or the next one for a pipelined store
            # (it decodes that one while the database writes the one in flight)
            self._flush_now()
        elif self._pending and self._timer is None:
            self._timer = self.reactor.callLater(self.interval, self._on_timer)
        self._maybe_finish_stop()

    def _set_pressure(self, on: bool) -> None:
        self._pressure = on
        log.info("writer_backpressure", on=on, backlog=self.backlog)
        for listener in list(self._pressure_listeners):
            listener(on)


__all__ = ["BatchWriter", "BatchResult", "BatchStore", "Router"]
