"""Lower platforms logging in with platform login 0x05 (relay/platform_session.py).

StringTransport + memory clock; accounts carry scrypt hashes made by
``relay.accounts.hash_password``; the audit collaborator is a recorder with the
``record(actor, action, result, target="", **detail)`` interface; storage is
``InMemoryIngest``. This node is a municipal platform for region prefix "3201" (Nanjing).
"""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.testing import StringTransport
from twisted.protocols.haproxy import proxyEndpoint

from codec import Command, Response
from relay.accounts import LoginGuard, hash_password, verify_password
from relay.config import DEFAULT_PUBLIC_SECTORS, Account, Lockout
from relay.ingest import InMemoryIngest
from relay.platform_session import PLATFORM_TRANSITIONS, PlatformFactory, PState
from relay.policy import VehicleEntry
from relay.registry import RegistryCache
from tests.support.codec_frames import frame as hand_frame
from tests.support.fixtures import T0, data_frame

from .samples import OPERATOR, AuditRecorder, answer_bytes, connect, hang_up, hang_up_all, heartbeat, \
    make_clock, platform_login, sample, take, utc, wire

PASSWORD = "ent01-secret"
T0_BYTES = bytes.fromhex("1a0b190a0000")

OWNED = "LNBSMX01000000001"         # bus, Nanjing, owner ENT01
FOREIGN = "LNBSMX01000000002"       # bus, Nanjing, owner ENT02
PRIVATE = "LNBSMX01000000003"       # private car, Nanjing, owner ENT01
ELSEWHERE = "LNBSMX01000000004"     # bus, Shanghai, owner ENT01
UNREGISTERED = "LNBSMX01000000009"
BY_PREFIX = "LZZAB100000000001"     # unregistered, but ENT01 may send WMI LZZ
PRIVATE_BY_PREFIX = "LZZAB100000000003"  # registered private car whose WMI ENT01 may send

REGISTRY = {
    OWNED: VehicleEntry(OWNED, "bus", "320102", "ENT01"),
    FOREIGN: VehicleEntry(FOREIGN, "bus", "320104", "ENT02"),
    PRIVATE: VehicleEntry(PRIVATE, "private", "320102", "ENT01"),
    ELSEWHERE: VehicleEntry(ELSEWHERE, "bus", "310101", "ENT01"),
    PRIVATE_BY_PREFIX: VehicleEntry(PRIVATE_BY_PREFIX, "private", "320102", "ENT02"),
}


#: the real scrypt check, remembered per (password, hash): each pair costs its ~0.1 s once
checked_password = functools.lru_cache(maxsize=None)(verify_password)


@pytest.fixture(scope="module")
def password_hash():
    return hash_password(PASSWORD)


@pytest.fixture
def clock():
    return make_clock()


@pytest.fixture
def ingest():
    return InMemoryIngest()


@pytest.fixture
def audit():
    return AuditRecorder()


@pytest.fixture
def make_factory(clock, ingest, audit, password_hash):
    """PlatformFactory builder; at the end every connection hangs up and no timer may be left."""
    made = []

    def make(lockout: Lockout = Lockout(failures=3, window=300, duration=900), allowed_addresses=(),
             **options) -> PlatformFactory:
        account = Account("ent01", password_hash, allowed_owners=("ENT01",), allowed_vin_prefixes=("LZZ",),
                          allowed_operators=(OPERATOR,), allowed_addresses=allowed_addresses)
        options.setdefault("login_timeout", 30.0)
        options.setdefault("password_checker", checked_password)
        factory = PlatformFactory(clock, ingest, RegistryCache(dict(REGISTRY)), audit, (account,),
                                  LoginGuard(lockout), region="3201",
                                  public_sectors=frozenset(DEFAULT_PUBLIC_SECTORS), **options)
        made.append(factory)
        return factory

    yield make
    for factory in made:
        hang_up_all(factory)
    assert clock.getDelayedCalls() == []


@pytest.fixture
def factory(make_factory):
    return make_factory()


def logged_in(factory, host: str = "10.1.2.3", port: int = 50000):
    proto, transport = connect(factory, host, port)
    proto.dataReceived(wire(platform_login("ent01", PASSWORD)))
    assert take(transport) == hand_frame("2016", 0x05, 0x01, T0_BYTES, vin="ENT01")
    assert proto.state is PState.ONLINE
    return proto, transport


# --- login -----------------------------------------------------------------------------------------

def test_a_platform_with_the_right_password_is_logged_in_and_audited(factory, clock, audit):
    proto, transport = connect(factory, "10.1.2.3", 50000)
    proto.dataReceived(wire(platform_login("ent01", PASSWORD, serial=7)))
    # ## 05 01 "ENT01"+12 NUL 01 0006 <10:00:00> BCC; "ENT01" XORs to 0x5E, the time to 0x02,
    # so BCC = 05^01^5E^01^06^02 = 0x5F
    assert take(transport) == bytes.fromhex("2323 0501 454e543031" + "00" * 12 + "01 0006 1a0b190a0000 5f")
    assert factory.online == {"ent01": proto}
    assert audit.entries == [{"actor": "ent01", "action": "platform_login", "result": "accepted", "target": "",
                              "peer": "tcp:10.1.2.3:50000", "serial": 7}]
    clock.advance(factory.login_timeout)  # the login timer is gone with the login
    assert not transport.disconnecting


@pytest.mark.parametrize("username, password, reason", [
    pytest.param("nobody", PASSWORD, "unknown_account", id="unknown_account"),
    pytest.param("ent01", "wrong", "bad_password", id="bad_password"),
    pytest.param("ent01", "", "bad_password", id="empty_password"),
    pytest.param("ENT01", PASSWORD, "unknown_account", id="username_is_case_sensitive"),
])
def test_a_refused_login_gets_the_error_answer_and_an_audit_entry(factory, audit, username, password, reason):
    proto, transport = connect(factory, "10.1.2.3", 50000)
    proto.dataReceived(wire(platform_login(username, password)))
    assert take(transport) == hand_frame("2016", 0x05, 0x02, T0_BYTES, vin="ENT01")
    assert proto.state is PState.NEW and factory.online == {}
    assert audit.entries == [{"actor": username, "action": "platform_login", "result": "refused", "target": "",
                              "reason": reason, "peer": "tcp:10.1.2.3:50000", "locked": False}]
    assert factory.frames_refused == {f"login_{reason}": 1}


def test_an_account_is_locked_after_n_failures_even_for_the_right_password_until_duration(make_factory, clock,
                                                                                          audit):
    factory = make_factory(login_timeout=3600)
    proto, transport = connect(factory)
    for _ in range(3):
        proto.dataReceived(wire(platform_login("ent01", "wrong")))
    assert [e["locked"] for e in audit.entries] == [False, False, True]
    take(transport)

    proto.dataReceived(wire(platform_login("ent01", PASSWORD)))
    assert take(transport) == hand_frame("2016", 0x05, 0x02, T0_BYTES, vin="ENT01")
    assert audit.entries[-1]["reason"] == "locked_out"

    clock.advance(899)
    proto.dataReceived(wire(platform_login("ent01", PASSWORD)))
    assert audit.entries[-1]["reason"] == "locked_out"
    clock.advance(1)  # 900 s after the third failure
    proto.dataReceived(wire(platform_login("ent01", PASSWORD)))
    assert audit.entries[-1]["result"] == "accepted"
    assert proto.state is PState.ONLINE


def test_failures_spread_wider_than_the_window_do_not_lock(make_factory, clock, audit):
    factory = make_factory(login_timeout=3600)
    proto, transport = connect(factory)
    for gap in (0, 200, 200):  # at 0, 200, 400 s: never 3 within 300 s
        clock.advance(gap)
        proto.dataReceived(wire(platform_login("ent01", "wrong")))
    assert [e["locked"] for e in audit.entries] == [False, False, False]
    proto.dataReceived(wire(platform_login("ent01", PASSWORD)))
    assert proto.state is PState.ONLINE


@pytest.mark.parametrize("host, accepted", [
    pytest.param("10.1.0.1", True, id="inside_10.1.0.0/16"),
    pytest.param("10.1.255.254", True, id="last_host_of_the_network"),
    pytest.param("192.168.7.7", True, id="listed_address"),
    pytest.param("10.2.0.1", False, id="outside"),
    pytest.param("192.168.7.8", False, id="next_to_the_listed_address"),
])
def test_a_login_from_a_source_address_not_allowed_is_refused(make_factory, audit, host, accepted):
    factory = make_factory(allowed_addresses=("10.1.0.0/16", "192.168.7.7"))
    proto, transport = connect(factory, host, 50000)
    proto.dataReceived(wire(platform_login("ent01", PASSWORD)))
    response = 0x01 if accepted else 0x02
    assert take(transport) == hand_frame("2016", 0x05, response, T0_BYTES, vin="ENT01")
    assert audit.entries[-1]["result"] == ("accepted" if accepted else "refused")
    if not accepted:
        assert audit.entries[-1]["reason"] == "address_not_allowed"


def test_a_connection_that_does_not_log_in_within_login_timeout_is_closed(make_factory, clock, audit):
    factory = make_factory(login_timeout=30)
    proto, transport = connect(factory, "10.1.2.3", 50000)
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    assert audit.entries == [{"actor": "tcp:10.1.2.3:50000", "action": "platform_login", "result": "refused",
                              "target": "", "reason": "login_timeout"}]


def test_a_slow_password_check_answers_when_it_completes(make_factory, clock):
    checks: list[Deferred] = []

    def slow_checker(password, stored):
        d: Deferred = Deferred()
        checks.append(d)
        return d

    factory = make_factory(password_checker=slow_checker)
    proto, transport = connect(factory)
    proto.dataReceived(wire(platform_login("ent01", PASSWORD)))
    assert transport.value() == b"" and proto.state is PState.NEW
    checks[0].callback(True)
    assert take(transport) == hand_frame("2016", 0x05, 0x01, T0_BYTES, vin="ENT01")


# --- after login: what an account may send ------------------------------------------------------------

@pytest.mark.parametrize("vin, reason", [
    pytest.param(OWNED, None, id="owned"),
    pytest.param(BY_PREFIX, None, id="unregistered_but_allowed_prefix"),
    pytest.param(FOREIGN, "vin_not_owned", id="foreign_owner"),
    pytest.param(UNREGISTERED, "vin_not_registered", id="unregistered"),
    pytest.param(PRIVATE, "private_vehicle", id="private"),
    pytest.param(PRIVATE_BY_PREFIX, "private_vehicle", id="private_despite_prefix"),
    pytest.param(ELSEWHERE, "outside_region", id="outside_region"),
])
@pytest.mark.parametrize("command", [Command.VEHICLE_LOGIN, Command.REALTIME, Command.REISSUE,
                                     Command.VEHICLE_LOGOUT])
def test_vehicle_frames_are_taken_only_for_vins_the_account_may_send(factory, ingest, audit, vin, reason, command):
    proto, transport = logged_in(factory)
    frame = sample(command, vin=vin)
    proto.dataReceived(wire(frame))
    if reason is None:
        (item,) = ingest.items
        assert (item.frame.vin, item.frame.command, item.source, item.account, item.peer) == (
            vin, command, "platform", "ent01", "platform:ent01")
        # vehicle login/logout are acknowledged; data is not unless answer_data is on
        answered = command in (Command.VEHICLE_LOGIN, Command.VEHICLE_LOGOUT)
        assert take(transport) == (answer_bytes(frame, Response.SUCCESS, T0) if answered else b"")
        assert audit.refusals() == []
    else:
        assert ingest.items == []
        assert take(transport) == b""
        assert audit.refusals() == [{"actor": "ent01", "action": "frame_refused", "result": "refused", "target": vin,
                                     "reason": reason, "command": command, "peer": "tcp:10.1.2.3:50000"}]


@pytest.mark.parametrize("vin, reason", [pytest.param(OWNED, None, id="owned"),
                                         pytest.param(FOREIGN, "vin_not_owned", id="foreign_owner")])
def test_with_answer_data_every_vehicle_frame_gets_an_answer(make_factory, clock, vin, reason):
    factory = make_factory(answer_data=True)
    proto, transport = logged_in(factory)
    frame = data_frame(vin)
    proto.dataReceived(wire(frame))
    response = Response.ERROR if reason else Response.SUCCESS
    assert take(transport) == answer_bytes(frame, response, utc(clock))


@pytest.mark.parametrize("command", sorted(c for c in Command if 0xC1 <= c <= 0xC5))
@pytest.mark.parametrize("operator, reason", [pytest.param(OPERATOR, None, id="allowed_operator"),
                                              pytest.param("MA0000000", "operator_not_allowed", id="other_operator")])
def test_charging_messages_are_taken_only_for_the_accounts_operators(factory, ingest, audit, command, operator,
                                                                     reason):
    proto, transport = logged_in(factory)
    proto.dataReceived(wire(sample(command, vin=operator)))
    assert take(transport) == b""
    if reason is None:
        assert [(i.frame.vin, i.frame.command) for i in ingest.items] == [(operator, command)]
        assert audit.refusals() == []
    else:
        assert ingest.items == []
        assert [(e["target"], e["reason"], e["command"]) for e in audit.refusals()] == [(operator, reason, command)]


def test_frames_before_login_are_refused_and_audited_with_the_peer(factory, ingest, audit, clock):
    proto, transport = connect(factory, "10.1.2.3", 50000)
    frame = data_frame(OWNED)
    proto.dataReceived(wire(frame))
    assert take(transport) == answer_bytes(frame, Response.ERROR, utc(clock))
    assert ingest.items == []
    assert audit.refusals() == [{"actor": "tcp:10.1.2.3:50000", "action": "frame_refused", "result": "refused",
                                 "target": OWNED, "reason": "not_logged_in", "command": Command.REALTIME,
                                 "peer": "tcp:10.1.2.3:50000"}]


# --- heartbeat, logout ---------------------------------------------------------------------------------

def test_a_heartbeat_is_answered_only_after_everything_before_it_is_committed(factory, ingest):
    proto, transport = logged_in(factory)
    ingest.hold()
    frames = [data_frame(OWNED, T0 + timedelta(seconds=s)) for s in range(3)]
    proto.dataReceived(wire(*frames, heartbeat("ENT01")))
    assert transport.value() == b""
    ingest.release()
    assert [i.frame.collected_at for i in ingest.items] == [f.collected_at for f in frames]
    # ## 07 01 "ENT01"+NUL*12 01 0000 BCC
    assert take(transport) == hand_frame("2016", 0x07, 0x01, b"", vin="ENT01")


def test_a_heartbeat_with_nothing_pending_is_answered_at_once(factory):
    proto, transport = logged_in(factory)
    proto.dataReceived(wire(heartbeat("ENT01")))
    assert take(transport) == hand_frame("2016", 0x07, 0x01, b"", vin="ENT01")


def test_platform_logout_is_answered_after_commit_and_audited(factory, ingest, audit):
    proto, transport = logged_in(factory)
    ingest.hold()
    proto.dataReceived(wire(data_frame(OWNED), sample(Command.PLATFORM_LOGOUT, vin="ENT01")))
    assert transport.value() == b""
    assert proto.state is PState.NEW and factory.online == {}
    ingest.release()
    assert take(transport) == hand_frame("2016", 0x06, 0x01, T0_BYTES, vin="ENT01")
    assert audit.entries[-1] == {"actor": "ent01", "action": "platform_logout", "result": "accepted", "target": "",
                                 "peer": "tcp:10.1.2.3:50000"}


def test_a_second_login_of_an_account_closes_the_first_connection(factory):
    first, first_transport = logged_in(factory, port=50000)
    second, _ = logged_in(factory, port=50001)
    assert first_transport.disconnecting
    assert factory.online == {"ent01": second}


def test_after_a_replacement_the_account_still_has_exactly_one_live_session(factory):
    first, _ = logged_in(factory, port=50000)
    second, second_transport = logged_in(factory, port=50001)
    hang_up(first)  # the replaced connection finishes closing
    assert factory.online == {"ent01": second}
    third, _ = logged_in(factory, port=50002)
    assert second_transport.disconnecting  # not two live sessions of one account


# --- the transition table ---------------------------------------------------------------------------

def _outcome(state: PState, command: int):
    """What the table's handler for (state, command) shows: (answer flag or None, stored?, state after)."""
    handler = PLATFORM_TRANSITIONS.get((state, command))
    if handler is None or handler == "refuse_not_logged_in":
        return Response.ERROR, False, state
    return {
        "on_login": (Response.SUCCESS, False, PState.ONLINE),
        "on_logout": (Response.SUCCESS, False, PState.NEW),
        "on_heartbeat": (Response.SUCCESS, False, PState.ONLINE),
        "on_time_sync": (Response.SUCCESS, False, PState.ONLINE),
        "on_vehicle_frame": (Response.SUCCESS if command in (Command.VEHICLE_LOGIN, Command.VEHICLE_LOGOUT) else None,
                             True, PState.ONLINE),
        "on_charging_frame": (None, True, PState.ONLINE),
    }[handler]


def _platform_sample(command: int):
    if command == Command.PLATFORM_LOGIN:
        return platform_login("ent01", PASSWORD)
    if 0xC1 <= command <= 0xC5:
        return sample(command, vin=OPERATOR)
    if command in (Command.VEHICLE_LOGIN, Command.REALTIME, Command.REISSUE, Command.VEHICLE_LOGOUT):
        return sample(command, vin=OWNED)
    return sample(command, vin="ENT01")


@pytest.mark.parametrize("state, command", [
    pytest.param(s, c, id=f"{s.value}-{Command(c).name.lower()}") for s in (PState.NEW, PState.ONLINE)
    for c in Command])
def test_every_state_and_command_of_a_platform_session(factory, clock, ingest, audit, state, command):
    answer, stored, after = _outcome(state, command)
    proto, transport = logged_in(factory) if state is PState.ONLINE else connect(factory, "10.1.2.3", 50000)
    frame = _platform_sample(command)
    proto.dataReceived(wire(frame))
    assert take(transport) == (answer_bytes(frame, answer, utc(clock)) if answer is not None else b"")
    assert [i.frame.command for i in ingest.items] == ([command] if stored else [])
    assert proto.state is after
    if answer == Response.ERROR:
        reason = "not_allowed_here" if (state, command) not in PLATFORM_TRANSITIONS else "not_logged_in"
        assert [e["reason"] for e in audit.refusals()] == [reason]


def test_behind_a_proxy_protocol_balancer_the_allow_list_judges_the_platforms_own_address(make_factory, clock, audit):
    factory = make_factory(allowed_addresses=("10.1.0.0/16",))
    proxyEndpoint(TCP4ServerEndpoint(clock, 32961)).listen(factory)
    (_, wrapping_factory, _, _) = clock.tcpServers[-1]
    balancer = IPv4Address("TCP", "10.9.9.9", 61000)
    proto = wrapping_factory.buildProtocol(balancer)
    transport = StringTransport(peerAddress=balancer)
    proto.makeConnection(transport)
    proto.dataReceived(b"PROXY TCP4 10.1.2.3 10.0.0.1 50000 32961\r\n" + wire(platform_login("ent01", PASSWORD)))
    assert audit.entries[-1]["peer"] == "tcp:10.1.2.3:50000"
    assert take(transport) == hand_frame("2016", 0x05, 0x01, T0_BYTES, vin="ENT01")
