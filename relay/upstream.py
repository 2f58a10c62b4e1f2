"""The link to a higher platform: connect with backoff, platform login, heartbeats, logout.

:class:`UpstreamLink` wraps Twisted's ``ClientService`` for connecting and reconnecting
with ``backoffPolicy``. The platform login (0x05) runs once the connection is made; a
refused or unanswered login closes the connection, and the retry policy counts refused
logins in a row, so a wrong password is retried later with growing delays, never in a
tight loop. (``prepareConnection`` is not used: a connection it rejects cannot be closed
without tripping ClientService's state machine.) While logged in the link sends a
heartbeat every ``heartbeat_interval``; the forwarder also asks for a heartbeat after
each batch (:meth:`UpstreamLink.sync`), whose answer acknowledges everything sent before
it. A heartbeat unanswered for ``login_timeout`` seconds drops the connection. On stop
the link sends platform logout 0x06 and waits briefly for its answer.

Link states (``docs/state-machines/upstream-link.dot``): offline -> connecting ->
logging_in -> online -> logging_out -> offline; the lifecycle is an Automat typed state
machine, declared in :mod:`relay.upstream_machine`.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Callable

import structlog
from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString

import codec
from codec import Command, Frame, FrameReader, Response

from .framing import lose
from .upstream_machine import LinkCore, LinkInputs, LinkMachine

log = structlog.get_logger("relay.upstream")


class LoginRefused(Exception):
    pass


class UpstreamProtocol(protocol.Protocol):
    """Speaks to the higher platform: sends frames, matches answers to requests."""

    def __init__(self, link: "UpstreamLink") -> None:
        self.link = link
        self.reader = FrameReader()
        self._login: Deferred | None = None
        self._logout: Deferred | None = None
        self._heartbeats: deque[Deferred] = deque()
        self.answers_refused = 0

    def connectionMade(self) -> None:
        self.link._connected(self)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        for d in (self._login, self._logout):
            if d is not None and not d.called:
                d.errback(ConnectionError("upstream connection lost"))
        self._login = self._logout = None
        while self._heartbeats:
            self._heartbeats.popleft().errback(ConnectionError("upstream connection lost"))
        self.link._disconnected(self, reason)

    def dataReceived(self, data: bytes) -> None:
        for item in self.reader.feed(data):
            if not isinstance(item, Frame):
                log.warning("upstream_frame_refused", upstream=self.link.name, reason=item.reason, detail=item.detail,
                            raw=item.raw[:64].hex())
                continue
            self._answer(item)

    def _answer(self, frame: Frame) -> None:
        if not frame.is_answer:
            log.info("upstream_command_ignored", upstream=self.link.name, command=frame.command)
            return
        if frame.command == Command.PLATFORM_LOGIN and self._login is not None:
            d, self._login = self._login, None
            if frame.response == Response.SUCCESS:
                d.callback(frame)
            else:
                d.errback(LoginRefused(f"platform login refused (response 0x{frame.response:02X})"))
        elif frame.command == Command.HEARTBEAT and self._heartbeats:
            d = self._heartbeats.popleft()
            if frame.response == Response.SUCCESS:
                d.callback(frame)
            else:  # not an acknowledgement: the upstream does not take our data (not logged in?)
                d.errback(LoginRefused(f"heartbeat refused (response 0x{frame.response:02X})"))
        elif frame.command == Command.PLATFORM_LOGOUT and self._logout is not None:
            d, self._logout = self._logout, None
            d.callback(frame)
        elif frame.response != Response.SUCCESS:
            self.answers_refused += 1
            log.warning("upstream_refused_frame", upstream=self.link.name, command=frame.command, vin=frame.vin,
                        response=frame.response)

    def request(self, frame: Frame) -> Deferred:
        d: Deferred = Deferred()
        if frame.command == Command.PLATFORM_LOGIN:
            self._login = d
        elif frame.command == Command.PLATFORM_LOGOUT:
            self._logout = d
        elif frame.command == Command.HEARTBEAT:
            self._heartbeats.append(d)
        self.transport.write(codec.encode_frame(frame))
        return d

    def write_raw(self, raw: bytes) -> None:
        self.transport.write(raw)

    def lose(self) -> None:
        """Close (the forwarder is this transport's producer)."""
        lose(self.transport)


class _Factory(protocol.Factory):
    noisy = False

    def __init__(self, link: "UpstreamLink") -> None:
        self.link = link

    def buildProtocol(self, addr):
        return UpstreamProtocol(self.link)


class UpstreamLink(Service):
    """One upstream: the lifecycle is :data:`relay.upstream_machine.LinkMachine`; this
    service feeds it (start, stop, the connection's events) and shows its fields."""

    def __init__(self, reactor, cfg, password: str, *, endpoint_factory: Callable | None = None) -> None:
        self.reactor = reactor
        self.cfg = cfg
        self.name = cfg.name
        self._core = LinkCore(reactor, cfg, password, endpoint_factory or clientFromString, _Factory(self))
        self.edition = self._core.edition
        self._machine: LinkInputs = LinkMachine(self._core)

    # -- observers ------------------------------------------------------------------
    @property
    def state(self) -> str:
        """offline, connecting, logging_in, online or logging_out (``upstream_link_state``)."""
        return self._core.state

    @property
    def proto(self) -> UpstreamProtocol | None:
        """The logged-in connection (online, logging_out), else None."""
        return self._core.logged_in()

    @property
    def logins(self) -> int:
        return self._core.logins

    @property
    def login_failures(self) -> int:
        return self._core.login_failures

    def add_listener(self, listener) -> None:
        """``listener.link_online(proto)`` / ``listener.link_offline()``."""
        self._core.listeners.append(listener)

    def now(self) -> datetime:
        return self._core.now()

    # -- service --------------------------------------------------------------------
    def startService(self):
        self._machine.start()  # raises automat.NoTransition while a stop is still logging out
        super().startService()

    def stopService(self) -> Deferred:
        super().stopService()
        return self._machine.stop()

    # -- the connection's events (events of a connection that is not the link's are dropped) --
    def _connected(self, proto: UpstreamProtocol) -> None:
        self._machine.connected(proto)

    def _disconnected(self, proto: UpstreamProtocol, reason) -> None:
        if proto is self._core.conn:
            self._machine.connection_lost(reason)

    # -- heartbeats -----------------------------------------------------------------------
    def sync(self) -> Deferred:
        """Send a heartbeat; the Deferred fires with its answer. No answer within
        ``login_timeout`` drops the connection (the reconnect logic takes over)."""
        return self._core.sync(self._machine)
