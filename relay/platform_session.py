"""Lower platforms logged in with platform login 0x05 (municipal and provincial roles).

A platform logs in with an account from the config (scrypt-hashed password, optional
source allow-list, lockout after repeated failures), then forwards vehicle frames
(login, realtime, reissue, logout) and charging-facility messages. Each frame is checked
against the account: a VIN must belong to an owner the account may send for (or match
one of its VIN prefixes), must not be private, and must be in this node's region; a
charging message must carry one of the account's operator ids. Every login, logout and
refusal is audited.

The heartbeat is answered only after everything received before it is committed, so
its answer is the sender's acknowledgement that its data is durable here (the sending
forwarder advances its cursor on it).
"""

from __future__ import annotations

import enum

from twisted.internet.defer import maybeDeferred
from twisted.python.failure import Failure

import codec
from codec import Command, Frame, Response

from .accounts import LoginGuard, address_allowed, find, verify_password
from .framing import FrameProtocol, ListenerFactory
from .ingest import Received
from .policy import CHARGING_COMMANDS, FORWARDED_VEHICLE_COMMANDS


class PState(enum.Enum):
    NEW = "new"
    ONLINE = "online"
    CLOSING = "closing"


PLATFORM_TRANSITIONS: dict[tuple[PState, int], str] = {
    (PState.NEW, Command.PLATFORM_LOGIN): "on_login",
    (PState.NEW, Command.HEARTBEAT): "refuse_not_logged_in",
    (PState.NEW, Command.PLATFORM_LOGOUT): "refuse_not_logged_in",
    **{(PState.NEW, c): "refuse_not_logged_in" for c in FORWARDED_VEHICLE_COMMANDS | CHARGING_COMMANDS},
    (PState.ONLINE, Command.PLATFORM_LOGIN): "on_login",
    (PState.ONLINE, Command.PLATFORM_LOGOUT): "on_logout",
    (PState.ONLINE, Command.HEARTBEAT): "on_heartbeat",
    (PState.ONLINE, Command.TIME_SYNC): "on_time_sync",
    **{(PState.ONLINE, c): "on_vehicle_frame" for c in FORWARDED_VEHICLE_COMMANDS},
    **{(PState.ONLINE, c): "on_charging_frame" for c in CHARGING_COMMANDS},
}


class PlatformSession(FrameProtocol):
    factory: "PlatformFactory"

    def __init__(self) -> None:
        super().__init__()
        self.state = PState.NEW
        self.account = None
        self._login_timer = None

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.reader is None:
            return
        self._login_timer = self.factory.clock.callLater(self.factory.login_timeout, self._login_timed_out)

    def _login_timed_out(self) -> None:
        self._login_timer = None
        if self.state is PState.NEW:
            self.factory.audit.record(self.peer, "platform_login", "refused", reason="login_timeout")
            self.lose()

    def session_closed(self, reason: Failure) -> None:
        if self._login_timer is not None and self._login_timer.active():
            self._login_timer.cancel()
        self._login_timer = None
        if self.account is not None and self.factory.online.get(self.account.username) is self:
            del self.factory.online[self.account.username]
        self.state = PState.CLOSING

    # -- dispatch ---------------------------------------------------------------------
    def frame_received(self, frame: Frame) -> None:
        if frame.is_answer:
            self.log.debug("frame_ignored", reason="answer_from_platform", command=frame.command)
            return
        handler = PLATFORM_TRANSITIONS.get((self.state, frame.command))
        if handler is None:
            return self.refuse(frame, "not_allowed_here")
        getattr(self, handler)(frame)

    def refuse(self, frame: Frame, reason: str, answer: bool = True, **detail) -> None:
        self.factory.count_refusal(reason)
        actor = self.account.username if self.account else self.peer
        self.factory.audit.record(actor, "frame_refused", "refused", target=frame.vin, reason=reason,
                                  command=frame.command, peer=self.peer, **detail)
        if answer:
            self.send(codec.answer(frame, Response.ERROR, self.now()))

    def refuse_not_logged_in(self, frame: Frame) -> None:
        self.refuse(frame, "not_logged_in")

    # -- login ------------------------------------------------------------------------
    def on_login(self, frame: Frame) -> None:
        body = frame.body
        username = getattr(body, "username", "")
        now = self.factory.clock.seconds()
        guard = self.factory.guard
        account = find(self.factory.accounts, username)

        def refuse(reason: str) -> None:
            locked_now = account is not None and reason == "bad_password" and guard.failed(username, now)
            self.factory.audit.record(username or self.peer, "platform_login", "refused", reason=reason,
                                      peer=self.peer, locked=locked_now)
            self.factory.count_refusal(f"login_{reason}")
            self.send(codec.answer(frame, Response.ERROR, self.now()))

        if account is None:
            return refuse("unknown_account")
        if guard.locked(username, now):
            return refuse("locked_out")
        if not address_allowed(self.address, account.allowed_addresses):
            return refuse("address_not_allowed")

        def checked(ok: bool) -> None:
            if self.state is PState.CLOSING:
                return
            if not ok:
                return refuse("bad_password")
            guard.succeeded(username)
            other = self.factory.online.get(username)
            if other is not None and other is not self:
                other.log.info("session_replaced", account=username)
                other.lose()
            self.account = account
            self.state = PState.ONLINE
            self.factory.online[username] = self
            if self._login_timer is not None and self._login_timer.active():
                self._login_timer.cancel()
            self._login_timer = None
            self.log = self.log.bind(account=username)
            self.factory.audit.record(username, "platform_login", "accepted", peer=self.peer,
                                      serial=getattr(body, "serial", None))
            self.send(codec.answer(frame, Response.SUCCESS, self.now()))

        self.factory.check_password(body.password, account.password_hash).addCallback(checked).addErrback(
            lambda f: self.log.error("password_check_failed", error=f.getErrorMessage()))

    def on_logout(self, frame: Frame) -> None:
        self.factory.audit.record(self.account.username, "platform_logout", "accepted", peer=self.peer)
        self._after_commit(frame, barrier=True)
        self.state = PState.NEW
        if self.factory.online.get(self.account.username) is self:
            del self.factory.online[self.account.username]

    def on_heartbeat(self, frame: Frame) -> None:
        self._after_commit(frame, barrier=True)

    def on_time_sync(self, frame: Frame) -> None:
        self.send(codec.answer(frame, Response.SUCCESS, self.now()))

    def _after_commit(self, frame: Frame, barrier: bool = False, answer: bool = True):
        item = Received(frame, f"platform:{self.account.username}", self.now(), "platform", self.account.username,
                        barrier=barrier)
        if not answer and not barrier:
            # nothing waits for it: storage tells us only of a refusal, which is answered
            item.on_refused = self._not_stored
            self.factory.ingest.submit(item)
            return None
        d = self.factory.ingest.accept(item)

        def stored(_):
            if answer:
                self.send(codec.answer(frame, Response.SUCCESS, self.now()))

        def failed(f: Failure):
            self.log.error("frame_not_stored", vin=frame.vin, command=frame.command, error=f.getErrorMessage())
            self.send(codec.answer(frame, Response.ERROR, self.now()))

        return d.addCallbacks(stored, failed)

    def _not_stored(self, item: Received, reason: str) -> None:
        frame = item.frame
        self.log.error("frame_not_stored", vin=frame.vin, command=frame.command, error=reason)
        self.send(codec.answer(frame, Response.ERROR, self.now()))

    # -- data -------------------------------------------------------------------------
    def on_vehicle_frame(self, frame: Frame) -> None:
        reason = self.factory.vehicle_refusal(self.account, frame.vin)
        if reason is not None:
            return self.refuse(frame, reason, answer=self.factory.answer_data)
        self._after_commit(frame, answer=self.factory.answer_data or frame.command in (
            Command.VEHICLE_LOGIN, Command.VEHICLE_LOGOUT))

    def on_charging_frame(self, frame: Frame) -> None:
        if frame.vin not in self.account.allowed_operators:
            return self.refuse(frame, "operator_not_allowed", answer=self.factory.answer_data)
        msg = frame.body
        if (self.factory.region and isinstance(msg, codec.ChargingMessage) and msg.kind == Command.CHARGING_STATIC
                and not msg.data["region_code"].startswith(self.factory.region)):
            return self.refuse(frame, "outside_region", answer=self.factory.answer_data)
        self._after_commit(frame, answer=self.factory.answer_data)


class PlatformFactory(ListenerFactory):
    protocol = PlatformSession

    def __init__(self, reactor, ingest, registry, audit, accounts, guard: LoginGuard, *, name: str = "platforms",
                 region: str = "", public_sectors: frozenset[str] = frozenset(), max_connections: int = 200,
                 max_per_address: int = 20, idle_timeout: float = 180.0, max_frame_bytes: int = 65531,
                 login_timeout: float = 30.0, answer_data: bool = False, password_checker=None) -> None:
        super().__init__(reactor, ingest, name=name, max_connections=max_connections, max_per_address=max_per_address,
                         idle_timeout=idle_timeout, max_frame_bytes=max_frame_bytes)
        self.registry = registry
        self.audit = audit
        self.accounts = accounts
        self.guard = guard
        self.region = region
        self.public_sectors = public_sectors
        self.login_timeout = login_timeout
        self.answer_data = answer_data
        self._password_checker = password_checker
        self.online: dict[str, PlatformSession] = {}

    def protocol_for(self, addr) -> PlatformSession:
        return PlatformSession()

    def check_password(self, password: str, stored: str):
        """Verify off the reactor thread when the reactor has a thread pool (scrypt is slow
        on purpose); tests on a memory reactor verify inline."""
        if self._password_checker is not None:
            return maybeDeferred(self._password_checker, password, stored)
        pool = getattr(self.reactor, "getThreadPool", None)
        if pool is None:
            return maybeDeferred(verify_password, password, stored)
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(self.reactor, pool(), verify_password, password, stored)

    def vehicle_refusal(self, account, vin: str) -> str | None:
        """Why ``account`` may not send ``vin`` here, or None when it may."""
        entry = self.registry.get(vin)
        if entry is not None:
            if entry.sector not in self.public_sectors:
                return "private_vehicle"
            if self.region and not entry.region_code.startswith(self.region):
                return "outside_region"
            if entry.owner in account.allowed_owners:
                return None
        if any(vin.startswith(p) for p in account.allowed_vin_prefixes):
            return None
        return "vin_not_owned" if entry is not None else "vin_not_registered"
