"""What a listener hands to storage, and the interface it hands it through.

A protocol turns each accepted frame into a :class:`Received` and calls
``ingest.accept(received)``; the returned Deferred fires once the frame is committed
(or fails with :class:`Refused` when storage refuses that one item). Answers that
acknowledge data wait for it (house rule 3). A frame nobody answers goes through
``ingest.submit(received)`` instead: no Deferred (the hot path of a node is one
realtime frame after another); storage logs a refusal and calls the item's
``on_refused`` when it has one.

A realtime frame may arrive with its data unit still pending (``FrameReader(lazy=True)``):
storage decodes it, and refuses the item (reason ``bad_body: ...``) when it does not follow
the layout, as it refuses an item the database will not take.

``InMemoryIngest`` implements the same interface for protocol tests; it passes the same
contract tests as the PostgreSQL-backed :class:`relay.store.writer.BatchWriter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Protocol

from twisted.internet.defer import Deferred, fail, succeed

from codec import Frame, FrameError, PendingRealtime, resolve


class Refused(Exception):
    """Storage refused this item (it is logged with the reason)."""


@dataclass(slots=True)
class Received:
    frame: Frame
    #: who sent it: "tcp:1.2.3.4:5555" for a terminal, "platform:<account>" for a platform
    peer: str
    received_at: datetime
    #: "terminal" or "platform"
    source: str = "terminal"
    #: account of the sending platform, for audit and ownership
    account: str = ""
    #: not stored: its Deferred fires once everything accepted before it is committed
    #: (a platform's heartbeat is answered that way, so its answer acknowledges the data)
    barrier: bool = False
    #: for a submitted item: called with (item, reason) if storage refuses it
    on_refused: Callable[["Received", str], None] | None = None
    #: set by storage that remembers what it committed (a platform's frames arrive twice)
    dedup_key: tuple | None = None


def decode_pending(batch: list[Received]) -> dict[int, str]:
    """Decode the pending realtime data units of ``batch`` in place (``FrameReader(lazy=True)``);
    the items whose data unit does not follow the layout, by index, with the reason."""
    refused = {}
    for i, item in enumerate(batch):
        if type(item.frame.body) is PendingRealtime:
            try:
                item.frame = resolve(item.frame)
            except FrameError as exc:
                refused[i] = f"{exc.reason}: {exc.detail}"
    return refused


class Ingest(Protocol):
    def accept(self, item: Received) -> Deferred: ...

    def submit(self, item: Received) -> None:
        """Store ``item`` in order with the accepted ones; nobody waits for it."""

    def add_pressure_listener(self, callback: Callable[[bool], None]) -> None:
        """``callback(True)`` when storage falls behind (stop reading), ``False`` when caught up."""

    def remove_pressure_listener(self, callback: Callable[[bool], None]) -> None: ...


@dataclass
class InMemoryIngest:
    """Keeps accepted items in a list; ``hold()`` simulates a slow store."""

    items: list = field(default_factory=list)
    held: list = field(default_factory=list)
    holding: bool = False
    listeners: list = field(default_factory=list)

    def accept(self, item: Received) -> Deferred:
        refused = decode_pending([item])  # as the writer: decode, refuse what does not
        if refused:
            if item.on_refused is not None:
                item.on_refused(item, refused[0])
            return fail(Refused(refused[0]))
        if item.barrier:
            if self.held:
                d0: Deferred = Deferred()
                self.held[-1][1].addBoth(lambda r: (d0.callback(None), r)[1])
                return d0
            return succeed(None)
        if self.holding:
            d: Deferred = Deferred()
            self.held.append((item, d))
            return d
        self.items.append(item)
        return succeed(None)

    def submit(self, item: Received) -> None:
        self.accept(item).addErrback(lambda f: f.trap(Refused))

    def hold(self) -> None:
        self.holding = True
        for cb in list(self.listeners):
            cb(True)

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for cb in list(self.listeners):
            cb(False)
        for item, d in held:
            self.items.append(item)
            d.callback(None)

    def add_pressure_listener(self, callback) -> None:
        self.listeners.append(callback)

    def remove_pressure_listener(self, callback) -> None:
        if callback in self.listeners:
            self.listeners.remove(callback)
