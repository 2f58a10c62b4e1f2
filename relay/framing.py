"""What every listener's connections share: framing, limits, idle timeout, back-pressure.

:class:`ListenerFactory` bounds connections (total and per source address; refusals
are logged as ``connection_refused``), tracks live sessions, pauses them all while
storage is behind, and closes them on stop. :class:`FrameProtocol` feeds bytes to a
:class:`codec.FrameReader`, logs each refused stretch as ``frame_refused`` with its reason
and offset, closes connections that stay silent or send nothing but garbage, and hands
good frames to ``frame_received``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import structlog
from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.python.failure import Failure

import codec
from codec import Frame, FrameError, FrameReader
from codec.frame import HEADER, parse_header

log = structlog.get_logger("relay.listener")

#: consecutive refused stretches after which a connection is closed
MAX_CONSECUTIVE_ERRORS = 50


def release_producer(transport) -> None:
    """Unregister whatever produces into ``transport``: a TLS transport does not close while
    it has a producer, so every close of ours goes through here."""
    if transport is None:
        return
    try:
        transport.unregisterProducer()
    except RuntimeError:  # none registered (a test transport says so)
        pass


def lose(transport) -> None:
    if transport is not None:
        release_producer(transport)
        transport.loseConnection()


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class ListenerFactory(protocol.Factory):
    noisy = False

    def __init__(self, reactor, ingest, *, name: str, max_connections: int, max_per_address: int,
                 idle_timeout: float, max_frame_bytes: int) -> None:
        self.reactor = reactor
        self.clock = reactor
        self.ingest = ingest
        self.name = name
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.idle_timeout = idle_timeout
        self.max_frame_bytes = max_frame_bytes
        self.sessions: set[FrameProtocol] = set()
        self.per_address: dict[str, int] = {}
        self.paused = False
        self.refused_connections = 0
        self.frames_in = 0
        self.frames_refused: dict[str, int] = {}
        ingest.add_pressure_listener(self._pressure)

    def now(self) -> datetime:
        return utc(self.clock.seconds())

    def buildProtocol(self, addr):
        host = getattr(addr, "host", str(addr))
        if len(self.sessions) >= self.max_connections:
            return self._refuse(host, "too_many_connections")
        proto = self.protocol_for(addr)
        proto.factory = self
        proto.address = host
        return proto

    def admit(self, proto: "FrameProtocol") -> bool:
        """The per-address bound, judged on the connection's real peer (behind a PROXY
        protocol listener that is known only once the connection is made)."""
        if self.per_address.get(proto.address, 0) >= self.max_per_address:
            self._refuse(proto.address, "too_many_from_address")
            return False
        return True

    def protocol_for(self, addr) -> "FrameProtocol":  # pragma: no cover - abstract
        raise NotImplementedError

    def _refuse(self, host: str, reason: str):
        self.refused_connections += 1
        log.warning("connection_refused", listener=self.name, peer=host, reason=reason,
                    connections=len(self.sessions))
        return None

    def session_started(self, proto: "FrameProtocol") -> None:
        self.sessions.add(proto)
        self.per_address[proto.address] = self.per_address.get(proto.address, 0) + 1
        if self.paused:
            proto.pause()

    def session_moved(self, proto: "FrameProtocol", old: str, new: str) -> None:
        n = self.per_address.get(old, 0) - 1
        if n > 0:
            self.per_address[old] = n
        else:
            self.per_address.pop(old, None)
        self.per_address[new] = self.per_address.get(new, 0) + 1

    def session_ended(self, proto: "FrameProtocol") -> None:
        self.sessions.discard(proto)
        n = self.per_address.get(proto.address, 0) - 1
        if n > 0:
            self.per_address[proto.address] = n
        else:
            self.per_address.pop(proto.address, None)

    def count_refusal(self, reason: str) -> None:
        self.frames_refused[reason] = self.frames_refused.get(reason, 0) + 1

    def _pressure(self, on: bool) -> None:
        self.paused = on
        for proto in list(self.sessions):
            proto.pause() if on else proto.resume()

    def close_all(self) -> Deferred:
        """Close every connection (after a goodbye where the protocol has one)."""
        self.ingest.remove_pressure_listener(self._pressure)
        waits = [proto.close("node_stopping") for proto in list(self.sessions)]
        return DeferredList(waits, consumeErrors=True) if waits else succeed(None)


@implementer(IPushProducer)
class FrameProtocol(protocol.Protocol):
    factory: ListenerFactory
    address = "?"

    def __init__(self) -> None:
        self.reader: FrameReader | None = None
        self._idle = None
        #: when the last frame came (the idle timer looks at it when it fires)
        self._active_at = 0.0
        self._errors = 0
        self._identified = False
        #: why reading is paused: "store" (writer behind), "output" (peer not reading)
        self._held: set[str] = set()
        self._closed: Deferred | None = None
        self.peer = "?"
        self.log = log

    # -- connection lifecycle -------------------------------------------------------
    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.address = getattr(peer, "host", self.address)
        self.peer = f"tcp:{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self.log = log.bind(listener=self.factory.name, peer=self.peer)
        if not self.factory.admit(self):
            self.reader = None
            self._closed = None
            self.lose()
            return
        # realtime data units are decoded by storage (the writer), not here: see codec.PendingRealtime
        self.reader = FrameReader(max_length=self.factory.max_frame_bytes, packed=True, lazy=True)
        self._closed = Deferred()
        self.transport.registerProducer(self, True)
        self.factory.session_started(self)
        self._reset_idle()
        self.log.debug("connection_opened")

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.reader is None:  # refused in connectionMade: never counted as a session
            return
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self.reader is not None:
            for err in self.reader.close():
                self._refused(err)
        self.factory.session_ended(self)
        self.session_closed(reason)
        self.log.debug("connection_closed", reason=reason.getErrorMessage())
        d, self._closed = self._closed, None
        if d is not None:
            d.callback(None)

    def session_closed(self, reason: Failure) -> None:
        """Hook for subclasses."""

    def close(self, reason: str) -> Deferred:
        """Close the connection; the Deferred fires when it is gone."""
        d = Deferred()
        if self._closed is None:
            return succeed(None)
        self._closed.addBoth(lambda _: d.callback(None))
        self.log.info("connection_closing", reason=reason)
        self.lose()
        return d

    def lose(self) -> None:
        """Close the connection (the session is the producer of its own transport)."""
        lose(self.transport)

    # -- flow control: stop reading while storage is behind, or while the peer does not read
    #    the answers it is sent (this protocol is the push producer of its own output) -----
    def pause(self) -> None:
        """Storage is behind (the writer's high watermark)."""
        self._hold("store")

    def resume(self) -> None:
        self._release("store")

    def pauseProducing(self) -> None:
        """The transport's outgoing buffer is full: the peer reads nothing."""
        self._hold("output")

    def resumeProducing(self) -> None:
        self._release("output")

    def stopProducing(self) -> None:
        self._held.clear()

    def _hold(self, reason: str) -> None:
        if not self._held:
            self.transport.pauseProducing()
        self._held.add(reason)

    def _release(self, reason: str) -> None:
        if reason in self._held:
            self._held.discard(reason)
            if not self._held and self.transport is not None and self._closed is not None:
                self.transport.resumeProducing()

    def _reset_idle(self) -> None:
        """A frame came: the connection is idle only ``idle_timeout`` from now. The timer is
        not moved on every frame (a busy link would pay for that per frame): it fires when
        it was due and looks at when the last frame came."""
        self._active_at = self.factory.clock.seconds()
        if self._idle is None:
            self._idle = self.factory.clock.callLater(self.factory.idle_timeout, self._idle_due)

    def _idle_due(self) -> None:
        self._idle = None
        rest = self._active_at + self.factory.idle_timeout - self.factory.clock.seconds()
        if rest > 0:
            self._idle = self.factory.clock.callLater(rest, self._idle_due)
            return
        self.log.info("connection_idle_timeout", seconds=self.factory.idle_timeout)
        self.lose()

    # -- bytes in ---------------------------------------------------------------------
    def _identify(self) -> bool:
        """Behind a PROXY-protocol listener the real peer is known only once the header has
        been read, i.e. at the first data: re-judge the per-address bound then."""
        self._identified = True
        peer = self.transport.getPeer()
        host = getattr(peer, "host", self.address)
        self.peer = f"tcp:{host}:{getattr(peer, 'port', '?')}"
        if host == self.address:
            return True
        self.factory.session_moved(self, self.address, host)
        self.address = host
        self.log = log.bind(listener=self.factory.name, peer=self.peer)
        if self.factory.per_address.get(host, 0) > self.factory.max_per_address:
            self.factory._refuse(host, "too_many_from_address")
            self.lose()
            return False
        return True

    def dataReceived(self, data: bytes) -> None:
        if self.reader is None:
            return
        if not self._identified and not self._identify():
            return
        for item in self.reader.feed(data):
            if isinstance(item, Frame):
                self._errors = 0
                self.factory.frames_in += 1
                self._active_at = self.factory.clock.seconds()  # _reset_idle without the timer
                self.frame_received(item)
            else:
                self._refused(item)
                self._errors += 1
                if self._errors >= MAX_CONSECUTIVE_ERRORS:
                    self.log.warning("connection_closing", reason="too_many_errors", errors=self._errors)
                    self.lose()
                    return

    def _refused(self, err: FrameError) -> None:
        self.factory.count_refusal(err.reason)
        self.log.warning("frame_refused", reason=err.reason, offset=err.offset, detail=err.detail,
                         bytes=len(err.raw))
        self.frame_refused(err)

    def frame_received(self, frame: Frame) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def frame_refused(self, err: FrameError) -> None:
        """Answer a refused frame with the standard's error answer when its header is sound
        and it was a command (never answer an answer, or bytes without a frame)."""
        if err.reason not in ("bad_body", "bad_time", "unknown_command") or len(err.raw) < HEADER.size + 1:
            return
        try:
            _, _, response, _, _, _ = parse_header(err.raw)
        except FrameError:
            return
        if response != codec.Response.COMMAND or self.transport is None or self._closed is None:
            return
        from codec.answers import refusal

        self.transport.write(refusal(err.raw, codec.Response.ERROR, self.now()))

    # -- bytes out --------------------------------------------------------------------
    def send(self, frame: Frame) -> None:
        if self.transport is None or self._closed is None:
            return
        try:
            data = codec.encode_frame(frame)
        except codec.CodecError as exc:
            self.log.error("answer_not_encodable", command=frame.command, error=str(exc))
            return
        self.transport.write(data)

    def now(self) -> datetime:
        return self.factory.now()
