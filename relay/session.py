"""Vehicle terminal sessions (enterprise role): login -> logged in -> logout.

The per-frame path is a transition table written as data: ``TRANSITIONS[(state, command)]``
names the handler; a pair that is not in the table is refused. ``docs/state-machines/
terminal-session.dot`` draws it, and a test walks every pair.

Answers follow GB/T 32960.3 clause 6.3.2 (``codec.answer``): the login answer waits for
the login to be committed; a frame before login gets the error answer; a VIN already
online elsewhere gets "VIN duplicate" unless that session has been silent for
``stale_session_after`` seconds, in which case the new session replaces it.
"""

from __future__ import annotations

import enum

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

import codec
from codec import Command, Edition, Frame, Response

from .framing import FrameProtocol, ListenerFactory, utc
from .ingest import Received
from .registry import valid_vin


class State(enum.Enum):
    NEW = "new"          # connected, not logged in
    ONLINE = "online"    # logged in
    CLOSING = "closing"


_DATA = (Command.REALTIME, Command.REISSUE)
_DOWNLINK = (Command.QUERY_PARAMS, Command.SET_PARAMS, Command.TERMINAL_CONTROL)

#: (state, command of a frame sent as a command) -> handler; anything else is refused
TRANSITIONS: dict[tuple[State, int], str] = {
    (State.NEW, Command.VEHICLE_LOGIN): "on_login",
    (State.NEW, Command.TIME_SYNC): "on_time_sync",
    (State.NEW, Command.HEARTBEAT): "on_heartbeat",
    (State.NEW, Command.ACTIVATION): "on_activation",
    (State.NEW, Command.REALTIME): "refuse_not_logged_in",
    (State.NEW, Command.REISSUE): "refuse_not_logged_in",
    (State.NEW, Command.VEHICLE_LOGOUT): "refuse_not_logged_in",
    (State.NEW, Command.KEY_SYNC): "refuse_not_logged_in",
    (State.ONLINE, Command.VEHICLE_LOGIN): "on_login",
    (State.ONLINE, Command.REALTIME): "on_data",
    (State.ONLINE, Command.REISSUE): "on_data",
    (State.ONLINE, Command.VEHICLE_LOGOUT): "on_logout",
    (State.ONLINE, Command.HEARTBEAT): "on_heartbeat",
    (State.ONLINE, Command.TIME_SYNC): "on_time_sync",
    (State.ONLINE, Command.KEY_SYNC): "on_key_sync",
    (State.ONLINE, Command.ACTIVATION): "on_activation",
}


class CommandTimeout(Exception):
    pass


class SessionGone(Exception):
    pass


class TerminalSession(FrameProtocol):
    factory: "TerminalFactory"

    def __init__(self) -> None:
        super().__init__()
        self.state = State.NEW
        self.vin: str | None = None
        self.edition = Edition.V2016
        self.last_frame_at = 0.0
        #: outstanding downlink commands: command id -> (Deferred, timeout call)
        self._outstanding: dict[int, tuple[Deferred, object]] = {}

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.reader is None:
            return
        self.last_frame_at = self.factory.clock.seconds()

    # -- dispatch ---------------------------------------------------------------------
    def frame_received(self, frame: Frame) -> None:
        self.last_frame_at = self.factory.clock.seconds()
        self.edition = frame.edition
        if frame.is_answer:
            if frame.command in _DOWNLINK and self.state is State.ONLINE:
                self.on_command_answer(frame)
            else:
                self.log.info("frame_ignored", reason="unexpected_answer", command=frame.command, vin=frame.vin)
            return
        handler = TRANSITIONS.get((self.state, frame.command))
        if handler is None:
            self.refuse(frame, "not_allowed_here", Response.ERROR)
            return
        getattr(self, handler)(frame)

    def refuse(self, frame: Frame, reason: str, response: int | None) -> None:
        self.factory.count_refusal(reason)
        self.log.warning("frame_refused", reason=reason, command=frame.command, vin=frame.vin, state=self.state.value)
        if response is not None:
            self.send(codec.answer(frame, response, self.now()))

    def store(self, frame: Frame) -> Deferred:
        return self.factory.ingest.accept(Received(frame, self.peer, self.now(), "terminal"))

    def _answer_after_commit(self, frame: Frame, d: Deferred, event: str | None = None) -> Deferred:
        def stored(_):
            self.send(codec.answer(frame, Response.SUCCESS, self.now()))
            if event:
                self.log.info(event, vin=frame.vin)

        def failed(f: Failure):
            self.log.error("frame_not_stored", vin=frame.vin, command=frame.command, error=f.getErrorMessage())
            self.send(codec.answer(frame, Response.ERROR, self.now()))

        return d.addCallbacks(stored, failed)

    # -- handlers ---------------------------------------------------------------------
    def refuse_not_logged_in(self, frame: Frame) -> None:
        self.refuse(frame, "not_logged_in", Response.ERROR)

    def on_login(self, frame: Frame) -> None:
        vin = frame.vin
        unknown = Response.VIN_UNKNOWN if frame.edition is Edition.V2025 else Response.ERROR
        if not valid_vin(vin):
            return self.refuse(frame, "bad_vin", Response.ERROR)
        if self.factory.strict and self.factory.registry.get(vin) is None:
            return self.refuse(frame, "vin_unknown", unknown)
        other = self.factory.online.get(vin)
        if other is not None and other is not self:
            silent = self.factory.clock.seconds() - other.last_frame_at
            if silent < self.factory.stale_session_after:
                return self.refuse(frame, "vin_duplicate", Response.VIN_DUPLICATE)
            self.log.info("session_replaced", vin=vin, old_peer=other.peer, silent_seconds=round(silent, 1))
            other.drop("replaced_by_new_login")
        if self.vin and self.vin != vin and self.factory.online.get(self.vin) is self:
            del self.factory.online[self.vin]
        self.vin = vin
        self.factory.online[vin] = self
        self.log = self.log.bind(vin=vin)
        # logged in at once: frames pipelined behind the login are stored after it (the
        # writer keeps order); only the answer waits for the commit
        self.state = State.ONLINE

        def stored(_):
            self.send(codec.answer(frame, Response.SUCCESS, self.now()))
            self.log.info("vehicle_login_accepted", serial=getattr(frame.body, "serial", None))

        def failed(f: Failure):
            if self.factory.online.get(vin) is self:
                del self.factory.online[vin]
            self.state = State.NEW
            self.log.error("vehicle_login_not_stored", error=f.getErrorMessage())
            self.send(codec.answer(frame, Response.ERROR, self.now()))

        self.store(frame).addCallbacks(stored, failed)

    def on_data(self, frame: Frame) -> None:
        if frame.vin != self.vin:
            return self.refuse(frame, "vin_mismatch", Response.ERROR)
        if self.factory.answer_realtime:
            self._answer_after_commit(frame, self.store(frame))
        else:  # nothing waits for it; storage logs a refusal (writer_item_refused, frame_refused)
            self.factory.ingest.submit(Received(frame, self.peer, self.now(), "terminal",
                                                on_refused=self._data_refused))

    def _data_refused(self, item: Received, reason: str) -> None:
        """Storage refused a data frame nobody waits for: count it with the listener's refusals."""
        self.factory.count_refusal("bad_body" if reason.startswith("bad_body") else "not_stored")

    def on_logout(self, frame: Frame) -> None:
        if frame.vin != self.vin:
            return self.refuse(frame, "vin_mismatch", Response.ERROR)
        self.state = State.NEW
        if self.factory.online.get(frame.vin) is self:
            del self.factory.online[frame.vin]
        self._answer_after_commit(frame, self.store(frame), "vehicle_logout_accepted")

    def on_heartbeat(self, frame: Frame) -> None:
        if self.state is State.ONLINE and frame.vin == self.vin:
            self._answer_after_commit(frame, self.store(frame))
        else:
            self.send(codec.answer(frame, Response.SUCCESS, self.now()))

    def on_time_sync(self, frame: Frame) -> None:
        self.send(codec.answer(frame, Response.SUCCESS, self.now()))

    def on_key_sync(self, frame: Frame) -> None:
        if frame.vin != self.vin:
            return self.refuse(frame, "vin_mismatch", Response.ERROR)
        self._answer_after_commit(frame, self.store(frame), "key_sync_stored")

    def on_activation(self, frame: Frame) -> None:
        """2025 activation: store it and answer with command 0x0A (annex B table B.4)."""
        from codec.bodies_2025 import ActivationAnswer

        vin = frame.vin
        if not valid_vin(vin) or (self.factory.strict and self.factory.registry.get(vin) is None):
            result = ActivationAnswer(2, 0)
        else:
            result = ActivationAnswer(1, 0)

        def stored(_):
            self.send(Frame(Edition.V2025, Command.ACTIVATION_ANSWER, Response.COMMAND, vin, codec.Encryption.NONE,
                            result))
            self.log.info("vehicle_activation", vin=vin, activated=result.result == 1)

        self.store(frame).addCallbacks(stored, lambda f: self.log.error("frame_not_stored", vin=vin,
                                                                        error=f.getErrorMessage()))

    # -- downlink commands (parameter query/set, terminal control) ----------------------
    def send_command(self, frame: Frame, timeout: float) -> Deferred:
        """Send a command to the terminal; the Deferred fires with its answer frame."""
        if frame.command in self._outstanding:
            raise ValueError(f"command 0x{frame.command:02X} already waits for an answer")
        d: Deferred = Deferred()
        call = self.factory.clock.callLater(timeout, self._command_timed_out, frame.command)
        self._outstanding[frame.command] = (d, call)
        self.send(frame)
        self.log.info("command_sent", command=frame.command)
        return d

    def _command_timed_out(self, command: int) -> None:
        d, _ = self._outstanding.pop(command)
        d.errback(CommandTimeout(f"no answer to command 0x{command:02X}"))

    def on_command_answer(self, frame: Frame) -> None:
        entry = self._outstanding.pop(frame.command, None)
        stored = self.store(frame)
        stored.addErrback(lambda f: self.log.error("frame_not_stored", vin=frame.vin, error=f.getErrorMessage()))
        if entry is None:
            self.log.info("frame_ignored", reason="answer_without_command", command=frame.command)
            return
        d, call = entry
        if call.active():
            call.cancel()
        stored.addCallback(lambda _: d.callback(frame))

    # -- end --------------------------------------------------------------------------
    def drop(self, reason: str) -> None:
        self.state = State.CLOSING
        if self.vin and self.factory.online.get(self.vin) is self:
            del self.factory.online[self.vin]
        self.log.info("connection_closing", reason=reason)
        self.lose()

    def session_closed(self, reason: Failure) -> None:
        if self.vin and self.factory.online.get(self.vin) is self:
            del self.factory.online[self.vin]
        self.state = State.CLOSING
        outstanding, self._outstanding = self._outstanding, {}
        for d, call in outstanding.values():
            if call.active():
                call.cancel()
            d.errback(SessionGone("the terminal disconnected"))


class TerminalFactory(ListenerFactory):
    protocol = TerminalSession

    def __init__(self, reactor, ingest, registry, *, name: str = "terminals", max_connections: int = 20000,
                 max_per_address: int = 100, idle_timeout: float = 300.0, max_frame_bytes: int = 65531,
                 answer_realtime: bool = False, stale_session_after: float = 60.0, strict: bool = False,
                 command_timeout: float = 30.0) -> None:
        super().__init__(reactor, ingest, name=name, max_connections=max_connections, max_per_address=max_per_address,
                         idle_timeout=idle_timeout, max_frame_bytes=max_frame_bytes)
        self.registry = registry
        self.answer_realtime = answer_realtime
        self.stale_session_after = stale_session_after
        self.strict = strict
        self.command_timeout = command_timeout
        #: VIN -> its logged-in session
        self.online: dict[str, TerminalSession] = {}

    def protocol_for(self, addr) -> TerminalSession:
        return TerminalSession()

    def send_command(self, vin: str, frame: Frame) -> Deferred:
        session = self.online.get(vin)
        if session is None:
            raise SessionGone(f"{vin} is not online")
        return session.send_command(frame, self.command_timeout)


__all__ = ["TerminalSession", "TerminalFactory", "State", "TRANSITIONS", "utc"]
