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
logging_in -> online -> logging_out -> offline.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timezone
from typing import Callable

import structlog
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.task import LoopingCall

import codec
from codec import Command, Edition, Encryption, Frame, FrameReader, Response

from .framing import lose, release_producer

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
    def __init__(self, reactor, cfg, password: str, *, endpoint_factory: Callable | None = None) -> None:
        self.reactor = reactor
        self.cfg = cfg
        self.name = cfg.name
        self._password = password
        self.edition = Edition(cfg.protocol)
        self.state = "offline"
        self.proto: UpstreamProtocol | None = None
        self._client: ClientService | None = None
        self._endpoint_factory = endpoint_factory
        self._heartbeat: LoopingCall | None = None
        self._serial_day = None
        self._serial = 0
        self._listeners: list = []
        self.logins = 0
        self.login_failures = 0
        self._refused_in_a_row = 0
        self._login_call: Deferred | None = None
        retry = cfg.retry
        self._backoff = backoffPolicy(initialDelay=retry.initial_delay, maxDelay=retry.max_delay,
                                      factor=retry.factor)

    # -- observers ------------------------------------------------------------------
    def add_listener(self, listener) -> None:
        """``listener.link_online(proto)`` / ``listener.link_offline()``."""
        self._listeners.append(listener)

    def _set_state(self, state: str, **kw) -> None:
        if state != self.state:
            self.state = state
            log.info("upstream_link_state", upstream=self.name, state=state, **kw)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)

    def _next_serial(self) -> int:
        """Platform login serial: counts up per day from 1 (2016 7.4 table 21)."""
        day = self.now().astimezone(codec.CST).date()
        if day != self._serial_day:
            self._serial_day, self._serial = day, 0
        self._serial = self._serial % 65531 + 1
        return self._serial

    # -- service --------------------------------------------------------------------
    def startService(self):
        super().startService()
        endpoint = (self._endpoint_factory or clientFromString)(self.reactor, self.cfg.endpoint)
        self._set_state("connecting")
        self._client = ClientService(endpoint, _Factory(self), clock=self.reactor, retryPolicy=self._retry_delay)
        self._client.startService()

    def _retry_delay(self, attempt: int) -> float:
        """Backoff over failed connections and refused logins in a row (ClientService
        counts only the former, and resets its count when a connection is made)."""
        attempt += max(0, self._refused_in_a_row - 1)
        delay = self._backoff(attempt)
        log.info("upstream_retry", upstream=self.name, attempt=attempt, delay=round(delay, 2))
        return delay

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        proto = self.proto if self.state == "online" else None
        if proto is not None:
            self._set_state("logging_out")
            self._stop_heartbeat()
            body = codec.Logout(self.now(), self._serial or 1)
            d = proto.request(Frame(self.edition, Command.PLATFORM_LOGOUT, Response.COMMAND, self.cfg.platform_id,
                                    Encryption.NONE, body))
            d.addTimeout(3.0, self.reactor)
            try:
                await d
                log.info("upstream_logout", upstream=self.name)
            except Exception as exc:  # noqa: BLE001 - logging out is best effort
                log.warning("upstream_logout_unanswered", upstream=self.name, error=str(exc) or type(exc).__name__)
        if self._login_call is not None and not self._login_call.called:
            self._login_call.cancel()
        if self.proto is not None:
            release_producer(self.proto.transport)  # the forwarder's; TLS waits for it
        if self._client is not None:
            await self._client.stopService()
        self._set_state("offline")

    # -- connection ---------------------------------------------------------------------
    def _connected(self, proto: UpstreamProtocol) -> None:
        self._set_state("logging_in")
        self._login_call = self._login(proto)

    def _login(self, proto: UpstreamProtocol) -> Deferred:
        body = codec.PlatformLogin(self.now(), self._next_serial(), self.cfg.username, self._password, 1)
        d = proto.request(Frame(self.edition, Command.PLATFORM_LOGIN, Response.COMMAND, self.cfg.platform_id,
                                Encryption.NONE, body))
        d.addTimeout(self.cfg.login_timeout, self.reactor)

        def ok(_):
            self._login_call = None
            self.logins += 1
            self._refused_in_a_row = 0
            self.proto = proto
            self._set_state("online")
            self._start_heartbeat()
            for listener in list(self._listeners):
                listener.link_online(proto)

        def refused(f):
            self._login_call = None
            if f.check(ConnectionError, CancelledError):
                return  # the connection went away first (ClientService reconnects), or we stop
            self.login_failures += 1
            self._refused_in_a_row += 1
            log.warning("upstream_login_refused", upstream=self.name, error=f.getErrorMessage() or f.type.__name__)
            if proto.transport is not None:
                proto.lose()

        return d.addCallbacks(ok, refused)

    def _disconnected(self, proto: UpstreamProtocol, reason) -> None:
        if self.state in ("online", "logging_in"):
            self._set_state("connecting", reason=reason.getErrorMessage())
        if proto is not self.proto:
            return
        self.proto = None
        self._stop_heartbeat()
        for listener in list(self._listeners):
            listener.link_offline()

    # -- heartbeats -----------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(self.cfg.heartbeat_interval, now=False).addErrback(
            lambda f: log.error("upstream_heartbeat_failed", upstream=self.name, error=f.getErrorMessage()))

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    def _beat(self) -> None:
        self.sync().addErrback(lambda f: None)

    def sync(self) -> Deferred:
        """Send a heartbeat; the Deferred fires with its answer. No answer within
        ``login_timeout`` drops the connection (the reconnect logic takes over)."""
        proto = self.proto
        if proto is None:
            return succeed(None)
        d = proto.request(Frame(self.edition, Command.HEARTBEAT, Response.COMMAND, self.cfg.platform_id,
                                Encryption.NONE, None))
        d.addTimeout(self.cfg.login_timeout, self.reactor)

        def missed(f):
            if proto is self.proto and proto.transport is not None:
                log.warning("upstream_heartbeat_missed", upstream=self.name, error=f.getErrorMessage())
                proto.lose()
            return f

        return d.addErrback(missed)
