"""The upstream link's lifecycle: an Automat typed state machine (house rule 4).

:class:`relay.upstream.UpstreamLink` owns one machine built from :data:`LinkMachine` around a
:class:`LinkCore`, which holds the link's fields (configuration, the ``ClientService``, the
current connection, counters). The link's Twisted callbacks only translate what happened
into the inputs of :class:`LinkInputs`; what each input does in each state is declared
below and drawn in ``docs/state-machines/upstream-link.dot`` (a test compares the two).

States (also the values of ``UpstreamLink.state`` and of ``upstream_link_state state=...``):

* ``offline``: not started, or stopped;
* ``connecting``: ``ClientService`` connects, or waits to retry with backoff;
* ``logging_in``: connected, platform login 0x05 sent, answer awaited;
* ``online``: logged in; heartbeats; the forwarder writes the outbox;
* ``logging_out``: stopping; platform logout 0x06 sent, answer awaited (at most 3 s).

Each (state, input) pair is a transition (to another state, or a loop that acts or ignores
the input on purpose) or is listed in :data:`REFUSED`: no transition, so the input raises
``automat.NoTransition``. Refused pairs are the ones the link's adapters make impossible
(``ClientService`` holds one connection at a time, a login is answered once, a logout is
only sent from ``online``); reaching one is a bug, and it is loud.

Events of a connection that is no longer the link's (a late answer, a close after a stop)
never reach the machine: ``UpstreamLink`` and the request callbacks compare the connection
with :attr:`LinkCore.conn` first. In ``offline`` and ``connecting``, where there is no
connection, such inputs are ignored by the machine as well.

Only link events feed the machine (a few per connection): frames are written by the
forwarder straight to the connection, and :meth:`LinkCore.sync` reads plain fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Callable, Protocol

import structlog
from automat import TypeMachineBuilder
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

import codec
from codec import Command, Edition, Encryption, Frame, Response

from .framing import release_producer

log = structlog.get_logger("relay.upstream")

#: seconds the link waits for the answer to its platform logout
LOGOUT_TIMEOUT = 3.0


class Connection(Protocol):
    """What the machine needs of a connection (``relay.upstream.UpstreamProtocol``)."""

    transport: object

    def request(self, frame: Frame) -> Deferred: ...

    def lose(self) -> None: ...


class LinkInputs(Protocol):
    """Everything that can happen to a link."""

    def start(self) -> None:
        """The service started."""

    def connected(self, conn: Connection) -> None:
        """``ClientService`` made a connection (``connectionMade``)."""

    def login_accepted(self) -> None:
        """The platform login was answered with success."""

    def login_refused(self, error: str) -> None:
        """The platform login was answered with an error, or not within ``login_timeout``."""

    def heartbeat_missed(self, error: str) -> None:
        """A heartbeat was refused, or not answered within ``login_timeout``."""

    def connection_lost(self, reason: Failure) -> None:
        """The link's connection closed (``connectionLost``)."""

    def stop(self) -> Deferred[None]:
        """The service stops; fires once the connection is closed and ``ClientService`` stopped."""

    def logout_answered(self) -> None:
        """The platform logout was answered."""

    def logout_unanswered(self) -> None:
        """The platform logout failed: no answer within 3 s, or the connection went away."""


@dataclass(eq=False)
class LinkCore:
    """The link's fields, shared by all states."""

    reactor: object
    cfg: object
    password: str
    #: ``(reactor, description) -> IStreamClientEndpoint``
    endpoint_factory: Callable
    #: builds ``UpstreamProtocol`` for this link
    factory: object
    name: str = field(init=False)
    edition: Edition = field(init=False)
    state: str = "offline"
    #: the connection of ``logging_in``, ``online`` and ``logging_out``; None otherwise
    conn: Connection | None = None
    client: ClientService | None = None
    listeners: list = field(default_factory=list)
    logins: int = 0
    login_failures: int = 0
    refused_in_a_row: int = 0
    _login: Deferred | None = None
    _heartbeat: LoopingCall | None = None
    _serial_day: date | None = None
    _serial: int = 0
    #: Deferreds of stop() calls, fired once the ClientService of this run has stopped
    _stop_waiters: list[Deferred] = field(default_factory=list)
    #: the waiters of a ClientService still stopping after the link went offline
    _closing: list[Deferred] | None = None
    _backoff: Callable[[int], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = self.cfg.name
        self.edition = Edition(self.cfg.protocol)
        retry = self.cfg.retry
        self._backoff = backoffPolicy(initialDelay=retry.initial_delay, maxDelay=retry.max_delay,
                                      factor=retry.factor)

    # -- plain helpers ------------------------------------------------------------------
    def enter(self, state: str, **context) -> None:
        if state != self.state:
            self.state = state
            log.info("upstream_link_state", upstream=self.name, state=state, **context)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)

    def next_serial(self) -> int:
        """Platform login serial: counts up per day from 1 (2016 7.4 table 21)."""
        day = self.now().astimezone(codec.CST).date()
        if day != self._serial_day:
            self._serial_day, self._serial = day, 0
        self._serial = self._serial % 65531 + 1
        return self._serial

    def frame(self, command: Command, body) -> Frame:
        return Frame(self.edition, command, Response.COMMAND, self.cfg.platform_id, Encryption.NONE, body)

    def retry_delay(self, attempt: int) -> float:
        """``ClientService``'s retry policy: backoff over failed connections and refused
        logins in a row (ClientService counts only the former, and resets its count when a
        connection is made)."""
        attempt += max(0, self.refused_in_a_row - 1)
        delay = self._backoff(attempt)
        log.info("upstream_retry", upstream=self.name, attempt=attempt, delay=round(delay, 2))
        return delay

    def logged_in(self) -> Connection | None:
        """The connection a login was accepted on (``online``, ``logging_out``)."""
        return self.conn if self.state in ("online", "logging_out") else None

    def sync(self, inputs: LinkInputs) -> Deferred:
        """Send a heartbeat; the Deferred fires with its answer. A refusal or no answer
        within ``login_timeout`` is ``heartbeat_missed`` (the connection is dropped)."""
        conn = self.logged_in()
        if conn is None:
            return succeed(None)
        d = conn.request(self.frame(Command.HEARTBEAT, None))
        d.addTimeout(self.cfg.login_timeout, self.reactor)

        def missed(f: Failure) -> Failure:
            # a connection that closed fails its heartbeats: connection_lost follows
            if conn is self.conn and not f.check(ConnectionError):
                inputs.heartbeat_missed(f.getErrorMessage())
            return f

        return d.addErrback(missed)

    def start_heartbeat(self, inputs: LinkInputs) -> None:
        self._heartbeat = LoopingCall(lambda: self.sync(inputs).addErrback(lambda f: None))
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(self.cfg.heartbeat_interval, now=False).addErrback(
            lambda f: log.error("upstream_heartbeat_failed", upstream=self.name, error=f.getErrorMessage()))

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    def wait_stopped(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._stop_waiters.append(d)
        return d

    def close(self) -> None:
        """Forget the connection and stop ``ClientService`` (which closes it); the stop
        waiters fire once it has stopped."""
        if self.conn is not None:
            release_producer(self.conn.transport)  # the forwarder's; TLS waits for it
        self.conn = None
        client, self.client = self.client, None
        waiters, self._stop_waiters = self._stop_waiters, []
        self._closing = waiters

        def stopped(result) -> None:
            if self._closing is waiters:
                self._closing = None
            for d in waiters:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(None)

        (client.stopService() if client is not None else succeed(None)).addBoth(stopped)


_builder: TypeMachineBuilder[LinkInputs, LinkCore] = TypeMachineBuilder(LinkInputs, LinkCore)
offline = _builder.state("offline")  # the first state is the initial one
connecting = _builder.state("connecting")
logging_in = _builder.state("logging_in")
online = _builder.state("online")
logging_out = _builder.state("logging_out")

#: the states, in lifecycle order (``relay.metrics.LINK_STATES``)
STATES = ("offline", "connecting", "logging_in", "online", "logging_out")
#: the inputs, in the order of :class:`LinkInputs`
INPUTS = ("start", "connected", "login_accepted", "login_refused", "heartbeat_missed", "connection_lost", "stop",
          "logout_answered", "logout_unanswered")


def _transition(old, upon, new, context: Callable[..., dict] | None = None):
    """Register the decorated function as the output of ``old`` --upon--> ``new``.

    Entering a different state is logged first (``upstream_link_state``, with ``context``
    computed from the input's arguments), then the output runs. The output keeps its
    name, which the drawing shows."""

    def register(output):
        if new is old:
            run = output
        else:
            def run(inputs, core, *args):
                core.enter(new.name, **(context(*args) if context is not None else {}))
                return output(inputs, core, *args)

            run.__name__ = run.__qualname__ = output.__name__
        old.upon(upon).to(new)(run)
        return output

    return register


def _reason(reason: Failure) -> dict:
    return {"reason": reason.getErrorMessage()}


# -- offline ----------------------------------------------------------------------------------

@_transition(offline, LinkInputs.start, connecting)
def connect(inputs: LinkInputs, core: LinkCore) -> None:
    """A new ClientService per start: the endpoint description is read again."""
    endpoint = core.endpoint_factory(core.reactor, core.cfg.endpoint)
    core.client = ClientService(endpoint, core.factory, clock=core.reactor, retryPolicy=core.retry_delay)
    core.client.startService()


@_transition(offline, LinkInputs.connected, offline)
def close_stray(inputs: LinkInputs, core: LinkCore, conn: Connection) -> None:
    """Not expected (a stopped ClientService cancels its connection attempt); should an
    attempt complete all the same, the connection is not used."""
    conn.lose()


@_transition(offline, LinkInputs.stop, offline)
def already_stopped(inputs: LinkInputs, core: LinkCore) -> Deferred[None]:
    """Fires at once, or with the last stop when its ClientService is still stopping."""
    if core._closing is None:
        return succeed(None)
    d: Deferred[None] = Deferred()
    core._closing.append(d)
    return d


# -- connecting ---------------------------------------------------------------------------------

@_transition(connecting, LinkInputs.connected, logging_in)
def send_login(inputs: LinkInputs, core: LinkCore, conn: Connection) -> None:
    core.conn = conn
    body = codec.PlatformLogin(core.now(), core.next_serial(), core.cfg.username, core.password, 1)
    d = core._login = conn.request(core.frame(Command.PLATFORM_LOGIN, body))
    d.addTimeout(core.cfg.login_timeout, core.reactor)

    def accepted(_) -> None:
        if core._login is d:
            core._login = None
        if conn is core.conn:
            inputs.login_accepted()

    def refused(f: Failure) -> None:
        if core._login is d:
            core._login = None
        if f.check(ConnectionError, CancelledError):
            return  # the connection went away first (connection_lost), or the link stops
        if conn is core.conn:
            inputs.login_refused(f.getErrorMessage() or f.type.__name__)

    d.addCallbacks(accepted, refused)


@_transition(connecting, LinkInputs.stop, offline)
def disconnect(inputs: LinkInputs, core: LinkCore) -> Deferred[None]:
    """ClientService cancels the attempt or the wait for the next one."""
    d = core.wait_stopped()
    core.close()
    return d


# -- logging_in ----------------------------------------------------------------------------------

@_transition(logging_in, LinkInputs.login_accepted, online)
def go_online(inputs: LinkInputs, core: LinkCore) -> None:
    core.logins += 1
    core.refused_in_a_row = 0
    core.start_heartbeat(inputs)
    for listener in list(core.listeners):
        listener.link_online(core.conn)


@_transition(logging_in, LinkInputs.login_refused, logging_in)
def drop_refused_login(inputs: LinkInputs, core: LinkCore, error: str) -> None:
    """Count it (the retry delay grows with refusals in a row) and close the connection:
    connection_lost follows and ClientService retries."""
    core.login_failures += 1
    core.refused_in_a_row += 1
    log.warning("upstream_login_refused", upstream=core.name, error=error)
    if core.conn is not None:
        core.conn.lose()


@_transition(logging_in, LinkInputs.connection_lost, connecting, context=_reason)
def retry_login(inputs: LinkInputs, core: LinkCore, reason: Failure) -> None:
    """ClientService waits its backoff delay and connects again."""
    core.conn = None


@_transition(logging_in, LinkInputs.stop, offline)
def abandon_login(inputs: LinkInputs, core: LinkCore) -> Deferred[None]:
    d = core.wait_stopped()
    if core._login is not None:
        core._login.cancel()
    core.close()
    return d


# -- online ---------------------------------------------------------------------------------------

@_transition(online, LinkInputs.heartbeat_missed, online)
@_transition(logging_out, LinkInputs.heartbeat_missed, logging_out)
def drop_connection(inputs: LinkInputs, core: LinkCore, error: str) -> None:
    """connection_lost follows (online: the link reconnects; logging_out: the logout fails)."""
    log.warning("upstream_heartbeat_missed", upstream=core.name, error=error)
    if core.conn is not None:
        core.conn.lose()


@_transition(online, LinkInputs.connection_lost, connecting, context=_reason)
def reconnect(inputs: LinkInputs, core: LinkCore, reason: Failure) -> None:
    """The forwarder rewinds to its durable cursor; ClientService connects again."""
    core.stop_heartbeat()
    core.conn = None
    for listener in list(core.listeners):
        listener.link_offline()


@_transition(online, LinkInputs.stop, logging_out)
def send_logout(inputs: LinkInputs, core: LinkCore) -> Deferred[None]:
    done = core.wait_stopped()
    core.stop_heartbeat()
    d = core.conn.request(core.frame(Command.PLATFORM_LOGOUT, codec.Logout(core.now(), core._serial or 1)))
    d.addTimeout(LOGOUT_TIMEOUT, core.reactor)

    def answered(_) -> None:
        log.info("upstream_logout", upstream=core.name)
        inputs.logout_answered()

    def unanswered(f: Failure) -> None:  # logging out is best effort
        log.warning("upstream_logout_unanswered", upstream=core.name, error=f.getErrorMessage() or f.type.__name__)
        inputs.logout_unanswered()

    d.addCallbacks(answered, unanswered)
    return done


# -- logging_out ----------------------------------------------------------------------------------

@_transition(logging_out, LinkInputs.stop, logging_out)
def wait_for_stop(inputs: LinkInputs, core: LinkCore) -> Deferred[None]:
    return core.wait_stopped()


@_transition(logging_out, LinkInputs.logout_answered, offline)
@_transition(logging_out, LinkInputs.logout_unanswered, offline)
def finish_stop(inputs: LinkInputs, core: LinkCore) -> None:
    """The forwarder lets go of the connection; ClientService closes it."""
    for listener in list(core.listeners):
        listener.link_offline()
    core.close()


# -- inputs ignored on purpose -----------------------------------------------------------------

def ignore(inputs: LinkInputs, core: LinkCore, *args) -> None:
    return None


#: (state, input) pairs that leave the state as it is and do nothing, and why
IGNORED = {
    # already started: ClientService keeps connecting and logging in
    (connecting, LinkInputs.start), (logging_in, LinkInputs.start), (online, LinkInputs.start),
    # no connection here: only a late event of one given up (UpstreamLink drops those first)
    (offline, LinkInputs.login_accepted), (offline, LinkInputs.login_refused),
    (offline, LinkInputs.heartbeat_missed), (offline, LinkInputs.connection_lost),
    (connecting, LinkInputs.login_accepted), (connecting, LinkInputs.login_refused),
    (connecting, LinkInputs.heartbeat_missed), (connecting, LinkInputs.connection_lost),
    # the pending logout fails first when the connection closes (logout_unanswered)
    (logging_out, LinkInputs.connection_lost),
}
for _state, _input in sorted(IGNORED, key=lambda p: (STATES.index(p[0].name), INPUTS.index(p[1].__name__))):
    _transition(_state, _input, _state)(ignore)

#: (state, input) pairs without a transition: the input raises ``automat.NoTransition``
REFUSED = frozenset({
    # a second stop is fine, a start while stopping is not: await stopService() first
    ("logging_out", "start"),
    # ClientService holds one connection at a time
    ("logging_in", "connected"), ("online", "connected"), ("logging_out", "connected"),
    # a login is answered once, and only in logging_in
    ("online", "login_accepted"), ("online", "login_refused"),
    ("logging_out", "login_accepted"), ("logging_out", "login_refused"),
    # heartbeats go out only once logged in
    ("logging_in", "heartbeat_missed"),
    # a logout is sent only from online, and answered once
    *((state, answer) for state in ("offline", "connecting", "logging_in", "online")
      for answer in ("logout_answered", "logout_unanswered")),
})

LinkMachine = _builder.build()


def transitions() -> list[tuple[str, str, str, str]]:
    """(state, input, next state, output) of every transition of :data:`LinkMachine`."""
    return sorted((old.name, upon, new.name, "+".join(o.name for o in outputs))
                  for old, upon, new, outputs in LinkMachine.__automat_automaton__.allTransitions())
