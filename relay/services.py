"""Service plumbing: ordered start/stop and listeners that report their port or fail.

* :class:`SequentialService` starts its children one after the other (waiting for each
  ``startService`` Deferred) and stops them in reverse order, one at a time; Twisted's
  ``MultiService`` stops children concurrently.
* :class:`ListenerService` listens on an endpoint string and fails its start when the
  port cannot be bound (``StreamServerEndpointService`` only logs that).
"""

from __future__ import annotations

from typing import Callable

import structlog
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString

log = structlog.get_logger("relay.services")


class SequentialService(Service):
    def __init__(self) -> None:
        self.children: list[Service] = []
        self._started: list[Service] = []

    def add(self, child: Service) -> Service:
        self.children.append(child)
        return child

    def startService(self) -> Deferred:
        super().startService()
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        for child in self.children:
            await maybeDeferred(child.startService)
            self._started.append(child)

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        while self._started:
            child = self._started.pop()
            try:
                await maybeDeferred(child.stopService)
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                log.error("service_stop_failed", service=getattr(child, "name", type(child).__name__),
                          error=str(exc))


class FunctionService(Service):
    """A service made of two callables returning Deferreds (or None)."""

    def __init__(self, name: str, start: Callable[[], object] | None = None,
                 stop: Callable[[], object] | None = None) -> None:
        self.name = name
        self._start = start
        self._stop = stop

    def startService(self):
        super().startService()
        return maybeDeferred(self._start) if self._start else succeed(None)

    def stopService(self):
        super().stopService()
        return maybeDeferred(self._stop) if self._stop else succeed(None)


class ListenerService(Service):
    """Listen on ``endpoint`` (a Twisted endpoint string); ``port`` is the bound port."""

    def __init__(self, reactor, name: str, endpoint: str, factory) -> None:
        self.reactor = reactor
        self.name = name
        self.endpoint = endpoint
        self.factory = factory
        self.listening = None
        self.port: int | None = None

    def startService(self) -> Deferred:
        super().startService()
        d = serverFromString(self.reactor, self.endpoint).listen(self.factory)

        def listening(port):
            self.listening = port
            self.port = port.getHost().port
            log.info("listener_ready", listener=self.name, endpoint=self.endpoint, port=self.port)
            return port

        return d.addCallback(listening)

    def stopService(self) -> Deferred:
        super().stopService()
        d = maybeDeferred(self.listening.stopListening) if self.listening else succeed(None)
        close = getattr(self.factory, "close_all", None)
        if close is not None:
            d.addCallback(lambda _: close())
        return d
