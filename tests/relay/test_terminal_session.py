"""Vehicle terminal sessions (relay/session.py) over a StringTransport with a memory clock.

Every (state, command) pair of ``TRANSITIONS`` is walked, and every pair outside it; the
expected answers are the standard's (GB/T 32960.3 clause 6.3.2), built by hand with
``tests.support.codec_frames.frame`` (its own check code) or with ``codec.answer``.
The storage collaborator is ``InMemoryIngest``; ``hold()`` makes it slow.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import structlog
from twisted.internet.defer import Deferred

import codec
from codec import Command, Edition, Encryption, Frame, ParamList, ParamQuery, Response
from relay.framing import MAX_CONSECUTIVE_ERRORS
from relay.ingest import InMemoryIngest
from relay.policy import VehicleEntry
from relay.registry import RegistryCache
from relay.session import TRANSITIONS, CommandTimeout, SessionGone, State, TerminalFactory
from tests.support.codec_frames import frame as hand_frame
from tests.support.fixtures import T0, data_frame, failure_result_of, login_frame, \
    logout_frame, success_result_of

from .samples import OTHER_VIN, VIN, answer_bytes, assert_no_result, connect, events, hang_up, hang_up_all, \
    heartbeat, make_clock, sample, take, time_sync, utc, wire

#: T0 (2026-11-25 10:00:00 +08:00) as the standard's six time bytes
T0_BYTES = bytes.fromhex("1a0b190a0000")


@pytest.fixture
def clock():
    return make_clock()


@pytest.fixture
def ingest():
    return InMemoryIngest()


@pytest.fixture
def registry():
    return RegistryCache({VIN: VehicleEntry(VIN, "bus", "320102", "ENT01")})


@pytest.fixture
def logs():
    with structlog.testing.capture_logs() as entries:
        yield entries


@pytest.fixture
def make_factory(clock, ingest, registry):
    """TerminalFactory builder; at the end every connection hangs up and no timer may be left."""
    made = []

    def make(**options) -> TerminalFactory:
        factory = TerminalFactory(clock, ingest, registry, **options)
        made.append(factory)
        return factory

    yield make
    for factory in made:
        hang_up_all(factory)
    assert clock.getDelayedCalls() == []


@pytest.fixture
def factory(make_factory):
    return make_factory()


def logged_in(factory, vin: str = VIN, host: str = "10.0.0.1", port: int = 40000,
              edition: Edition = Edition.V2016):
    proto, transport = connect(factory, host, port)
    login = login_frame(vin, edition=edition)
    proto.dataReceived(wire(login))
    assert take(transport) == answer_bytes(login, Response.SUCCESS, T0)
    assert proto.state is State.ONLINE
    return proto, transport


# --- the transition table ----------------------------------------------------------------

#: (state, command) -> (answer, stored?, state after, refusal reason); worked from the module docstring
#: and clause 6.3.2: "success"/"error" are codec.answer() with that flag, "activated" is 0x0A (1, 0)
EXPECTED = {
    (State.NEW, Command.VEHICLE_LOGIN): ("success", True, State.ONLINE, None),
    (State.NEW, Command.TIME_SYNC): ("success", False, State.NEW, None),
    (State.NEW, Command.HEARTBEAT): ("success", False, State.NEW, None),
    (State.NEW, Command.ACTIVATION): ("activated", True, State.NEW, None),
    (State.NEW, Command.REALTIME): ("error", False, State.NEW, "not_logged_in"),
    (State.NEW, Command.REISSUE): ("error", False, State.NEW, "not_logged_in"),
    (State.NEW, Command.VEHICLE_LOGOUT): ("error", False, State.NEW, "not_logged_in"),
    (State.NEW, Command.KEY_SYNC): ("error", False, State.NEW, "not_logged_in"),
    (State.ONLINE, Command.VEHICLE_LOGIN): ("success", True, State.ONLINE, None),
    (State.ONLINE, Command.REALTIME): (None, True, State.ONLINE, None),
    (State.ONLINE, Command.REISSUE): (None, True, State.ONLINE, None),
    (State.ONLINE, Command.VEHICLE_LOGOUT): ("success", True, State.NEW, None),
    (State.ONLINE, Command.HEARTBEAT): ("success", True, State.ONLINE, None),
    (State.ONLINE, Command.TIME_SYNC): ("success", False, State.ONLINE, None),
    (State.ONLINE, Command.KEY_SYNC): ("success", True, State.ONLINE, None),
    (State.ONLINE, Command.ACTIVATION): ("activated", True, State.ONLINE, None),
}

NOT_IN_TABLE = [(s, c) for s in State for c in Command if (s, c) not in TRANSITIONS]


def _id(state: State, command: int) -> str:
    return f"{state.value}-{Command(command).name.lower()}"


def test_the_expectations_name_every_pair_of_the_transition_table():
    assert set(EXPECTED) == set(TRANSITIONS)


def _open_in(factory, state: State, edition: Edition):
    if state is State.ONLINE:
        return logged_in(factory, edition=edition)
    proto, transport = connect(factory)
    proto.state = state  # CLOSING: after drop(), before the socket is gone
    return proto, transport


@pytest.mark.parametrize("state, command", [pytest.param(s, c, id=_id(s, c)) for s, c in EXPECTED])
def test_each_pair_of_the_table_answers_stores_and_moves_as_written(factory, clock, ingest, logs, state, command):
    answer, stored, after, reason = EXPECTED[(state, command)]
    frame = sample(command)
    proto, transport = _open_in(factory, state, frame.edition)
    before = len(ingest.items)

    proto.dataReceived(wire(frame))

    expected = {
        "success": answer_bytes(frame, Response.SUCCESS, utc(clock)),
        "error": answer_bytes(frame, Response.ERROR, utc(clock)),
        # activation answer 0x0A (2025 annex B table B.4): result 1 activated, detail 0
        "activated": hand_frame("2025", 0x0A, 0xFE, bytes([0x01, 0x00]), vin=VIN),
        None: b"",
    }[answer]
    assert take(transport) == expected
    assert [item.frame.command for item in ingest.items[before:]] == ([command] if stored else [])
    assert proto.state is after
    assert [e["reason"] for e in events(logs, "frame_refused")] == ([reason] if reason else [])
    assert not transport.disconnecting


@pytest.mark.parametrize("state, command", [pytest.param(s, c, id=_id(s, c)) for s, c in NOT_IN_TABLE])
def test_a_command_outside_the_table_gets_the_error_answer_not_allowed_here(factory, clock, ingest, logs, state,
                                                                            command):
    frame = sample(command)
    proto, transport = _open_in(factory, state, frame.edition)
    before = len(ingest.items)

    proto.dataReceived(wire(frame))

    assert take(transport) == answer_bytes(frame, Response.ERROR, utc(clock))
    (refused,) = events(logs, "frame_refused")
    assert (refused["reason"], refused["command"], refused["state"]) == ("not_allowed_here", command, state.value)
    assert ingest.items[before:] == []
    assert proto.state is state
    assert factory.frames_refused == {"not_allowed_here": 1}


# --- login -------------------------------------------------------------------------------------

def test_a_vehicle_login_is_answered_success_with_the_login_time(factory, ingest, logs):
    proto, transport = connect(factory)
    proto.dataReceived(wire(login_frame(VIN)))
    # ## 01 01 VIN 01 0006 <2026-11-25 10:00:00> BCC; the VIN's bytes XOR to 0x36, the time's to 0x02,
    # so BCC = 01^01^36^01^06^02 = 0x33
    assert take(transport) == bytes.fromhex("2323 0101 4c4e42534d583031303030303030303031 01 0006 1a0b190a0000 33")
    assert factory.online == {VIN: proto}
    assert [i.frame.command for i in ingest.items] == [Command.VEHICLE_LOGIN]
    assert events(logs, "vehicle_login_accepted")[0]["vin"] == VIN


@pytest.mark.parametrize("vin", [
    pytest.param("LNBSMX0100000000I", id="letter_I"),
    pytest.param("LNBSMX0100000000O", id="letter_O"),
    pytest.param("LNBSMX0100000000Q", id="letter_Q"),
    pytest.param("LNBSMX0100000001", id="16_characters"),
    pytest.param("lnbsmx01000000001", id="lower_case"),
])
def test_a_login_with_a_malformed_vin_gets_the_error_answer(factory, clock, ingest, logs, vin):
    proto, transport = connect(factory)
    login = login_frame(vin)
    proto.dataReceived(wire(login))
    assert take(transport) == hand_frame("2016", 0x01, 0x02, T0_BYTES, vin=vin)
    assert events(logs, "frame_refused")[0]["reason"] == "bad_vin"
    assert proto.state is State.NEW and factory.online == {} and ingest.items == []


@pytest.mark.parametrize("edition, start, response", [
    pytest.param(Edition.V2016, "2016", 0x02, id="2016_error"),
    pytest.param(Edition.V2025, "2025", 0x04, id="2025_vin_unknown"),
])
def test_strict_registry_refuses_an_unknown_vin(make_factory, ingest, logs, edition, start, response):
    factory = make_factory(strict=True)
    proto, transport = connect(factory)
    proto.dataReceived(wire(login_frame(OTHER_VIN, edition=edition)))
    assert take(transport) == hand_frame(start, 0x01, response, T0_BYTES, vin=OTHER_VIN)
    assert events(logs, "frame_refused")[0]["reason"] == "vin_unknown"
    assert proto.state is State.NEW and ingest.items == []

    proto.dataReceived(wire(login_frame(VIN, edition=edition)))  # registered: accepted
    assert take(transport) == hand_frame(start, 0x01, 0x01, T0_BYTES, vin=VIN)
    assert proto.state is State.ONLINE


@pytest.mark.parametrize("silent", [pytest.param(0, id="just_now"), pytest.param(59, id="59s_of_60")])
def test_a_second_login_of_a_vin_whose_session_is_recent_gets_vin_duplicate(make_factory, clock, logs, silent):
    factory = make_factory(stale_session_after=60)
    first, first_transport = logged_in(factory)
    clock.advance(silent)
    second, transport = connect(factory, "10.0.0.2", 40001)
    second.dataReceived(wire(login_frame(VIN, serial=2)))
    assert take(transport) == hand_frame("2016", 0x01, 0x03, T0_BYTES, vin=VIN)
    assert events(logs, "frame_refused")[-1]["reason"] == "vin_duplicate"
    assert factory.online == {VIN: first}
    assert not first_transport.disconnecting and second.state is State.NEW


@pytest.mark.parametrize("silent", [pytest.param(60, id="60s_of_60"), pytest.param(3600, id="an_hour")])
def test_a_login_replaces_a_session_silent_for_stale_session_after(make_factory, clock, logs, silent):
    factory = make_factory(stale_session_after=60)
    old, old_transport = logged_in(factory)
    clock.advance(silent)
    new, transport = connect(factory, "10.0.0.2", 40001)
    login = login_frame(VIN, serial=2)
    new.dataReceived(wire(login))

    assert take(transport) == answer_bytes(login, Response.SUCCESS, utc(clock))
    assert old_transport.disconnecting and old.state is State.CLOSING
    (replaced,) = events(logs, "session_replaced")
    assert (replaced["old_peer"], replaced["silent_seconds"]) == ("tcp:10.0.0.1:40000", silent)
    hang_up(old)  # the old socket closes afterwards: the new session stays the VIN's
    assert factory.online == {VIN: new}


def test_a_new_login_with_another_vin_on_the_same_connection_frees_the_first_vin(factory):
    proto, transport = logged_in(factory)
    login = login_frame(OTHER_VIN)
    proto.dataReceived(wire(login))
    assert take(transport) == answer_bytes(login, Response.SUCCESS, T0)
    assert factory.online == {OTHER_VIN: proto}


def test_the_login_answer_waits_until_the_store_has_committed(factory, ingest):
    proto, transport = connect(factory)
    ingest.hold()
    login = login_frame(VIN)
    data = data_frame(VIN, T0 + timedelta(seconds=1))
    proto.dataReceived(wire(login, data))  # a terminal that does not wait for the answer
    assert transport.value() == b""
    assert ingest.items == []
    ingest.release()
    assert take(transport) == answer_bytes(login, Response.SUCCESS, T0)
    assert proto.state is State.ONLINE
    # the data behind the login was taken as logged in, and stored after the login
    assert [i.frame.command for i in ingest.items] == [Command.VEHICLE_LOGIN, Command.REALTIME]


# --- data, logout, heartbeat, time ---------------------------------------------------------------

@pytest.mark.parametrize("answer_realtime", [True, False], ids=["answer_realtime_on", "answer_realtime_off"])
@pytest.mark.parametrize("reissue", [False, True], ids=["realtime", "reissue"])
def test_data_is_answered_after_commit_only_when_answer_realtime_is_on(make_factory, ingest, answer_realtime,
                                                                       reissue):
    factory = make_factory(answer_realtime=answer_realtime)
    proto, transport = logged_in(factory)
    ingest.hold()
    data = data_frame(VIN, T0 + timedelta(seconds=10), reissue=reissue)
    proto.dataReceived(wire(data))
    assert transport.value() == b""
    ingest.release()
    command = 0x03 if reissue else 0x02
    # the answer carries the data's collection time, 10:00:10
    expected = hand_frame("2016", command, 0x01, bytes.fromhex("1a0b190a000a"), vin=VIN)
    assert take(transport) == (expected if answer_realtime else b"")
    assert ingest.items[-1].frame.command == command


@pytest.mark.parametrize("command", [Command.REALTIME, Command.REISSUE, Command.VEHICLE_LOGOUT])
def test_a_frame_with_another_vin_than_the_logged_in_one_is_refused_vin_mismatch(make_factory, clock, ingest, logs,
                                                                                 command):
    factory = make_factory(answer_realtime=True)
    proto, transport = logged_in(factory)
    frame = sample(command, vin=OTHER_VIN)
    proto.dataReceived(wire(frame))
    assert take(transport) == answer_bytes(frame, Response.ERROR, utc(clock))
    assert events(logs, "frame_refused")[0]["reason"] == "vin_mismatch"
    assert [i.frame.vin for i in ingest.items] == [VIN]
    assert proto.state is State.ONLINE


def test_logout_returns_the_session_to_new_and_frees_the_vin(factory, clock, ingest, logs):
    proto, transport = logged_in(factory)
    proto.dataReceived(wire(logout_frame(VIN, T0 + timedelta(minutes=5))))
    assert take(transport) == hand_frame("2016", 0x04, 0x01, bytes.fromhex("1a0b190a0500"), vin=VIN)
    assert proto.state is State.NEW and factory.online == {}
    assert events(logs, "vehicle_logout_accepted")[0]["vin"] == VIN
    data = data_frame(VIN)
    proto.dataReceived(wire(data))  # logged out: data is refused again
    assert take(transport) == answer_bytes(data, Response.ERROR, utc(clock))
    assert events(logs, "frame_refused")[-1]["reason"] == "not_logged_in"


@pytest.mark.parametrize("online", [False, True], ids=["before_login", "logged_in"])
def test_a_heartbeat_is_answered_with_an_empty_data_unit(factory, online):
    proto, transport = logged_in(factory) if online else connect(factory)
    proto.dataReceived(wire(heartbeat()))
    # ## 07 01 VIN 01 0000 BCC; the VIN's bytes XOR to 0x36, so BCC = 07^01^36^01 = 0x31
    assert take(transport) == bytes.fromhex("2323 0701 4c4e42534d583031303030303030303031 01 0000 31")
    assert take(transport) == b""


def test_time_sync_is_answered_with_the_platform_clock(factory, clock):
    proto, transport = connect(factory)
    clock.advance(3723)  # 10:00:00 + 1 h 2 min 3 s
    proto.dataReceived(wire(time_sync()))
    assert take(transport) == hand_frame("2016", 0x08, 0x01, bytes.fromhex("1a0b190b0203"), vin=VIN)


def test_a_frame_with_an_impossible_time_gets_the_error_answer_with_the_platform_time(factory, clock, logs):
    proto, transport = logged_in(factory)
    clock.advance(60)
    proto.dataReceived(hand_frame("2016", 0x04, 0xFE, bytes.fromhex("1a0d190a0000 0001"), vin=VIN))  # month 13
    assert take(transport) == hand_frame("2016", 0x04, 0x02, bytes.fromhex("1a0b190a0100"), vin=VIN)
    assert events(logs, "frame_refused")[0]["reason"] == "bad_time"
    assert not transport.disconnecting


def test_a_frame_with_a_wrong_check_code_is_refused_without_an_answer(factory, logs):
    proto, transport = logged_in(factory)
    raw = bytearray(wire(heartbeat()))
    raw[-1] ^= 0xFF
    proto.dataReceived(bytes(raw))
    assert take(transport) == b""
    assert events(logs, "frame_refused")[0]["reason"] == "bad_bcc"
    assert factory.frames_refused["bad_bcc"] == 1


def test_a_frame_with_an_unknown_command_gets_the_error_answer_and_the_connection_stays(factory, clock, logs):
    proto, transport = logged_in(factory)
    proto.dataReceived(hand_frame("2016", 0x42, 0xFE, T0_BYTES, vin=VIN))
    assert events(logs, "frame_refused")[0]["reason"] == "unknown_command"
    assert take(transport) == hand_frame("2016", 0x42, 0x02, T0_BYTES, vin=VIN)
    assert not transport.disconnecting


# --- idle timeout, bad input ----------------------------------------------------------------------

def test_a_connection_silent_for_idle_timeout_is_closed(make_factory, clock, logs):
    factory = make_factory(idle_timeout=300)
    proto, transport = connect(factory)
    clock.advance(299)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    assert events(logs, "connection_idle_timeout")[0]["seconds"] == 300


def test_each_good_frame_restarts_the_idle_timer(make_factory, clock):
    factory = make_factory(idle_timeout=300)
    proto, transport = connect(factory)
    for _ in range(3):
        clock.advance(299)
        proto.dataReceived(wire(heartbeat()))
    clock.advance(299)
    assert not transport.disconnecting  # 1196 s connected, never 300 s silent
    clock.advance(1)
    assert transport.disconnecting


def test_garbage_does_not_restart_the_idle_timer(make_factory, clock, logs):
    factory = make_factory(idle_timeout=300)
    proto, transport = connect(factory)
    clock.advance(299)
    proto.dataReceived(b"\x00garbage\xff")
    clock.advance(1)
    assert transport.disconnecting
    assert events(logs, "frame_refused")[0]["reason"] == "garbage"


def test_too_many_consecutive_refused_stretches_close_the_connection(factory, logs):
    proto, transport = connect(factory)
    for _ in range(MAX_CONSECUTIVE_ERRORS - 1):
        proto.dataReceived(b"\x00\x01")
    assert not transport.disconnecting
    proto.dataReceived(b"\x00\x01")
    assert transport.disconnecting
    closing = events(logs, "connection_closing")
    assert [(e["reason"], e["errors"]) for e in closing] == [("too_many_errors", MAX_CONSECUTIVE_ERRORS)]
    assert factory.frames_refused == {"garbage": MAX_CONSECUTIVE_ERRORS}


def test_a_good_frame_resets_the_count_of_refused_stretches(factory):
    proto, transport = connect(factory)
    for _ in range(MAX_CONSECUTIVE_ERRORS - 1):
        proto.dataReceived(b"\x00\x01")
    proto.dataReceived(wire(heartbeat()))
    take(transport)
    for _ in range(MAX_CONSECUTIVE_ERRORS - 1):
        proto.dataReceived(b"\x00\x01")
    assert not transport.disconnecting


# --- back-pressure and connection limits -----------------------------------------------------------

def test_a_slow_store_pauses_every_terminal_and_catching_up_resumes_them(factory, ingest):
    a, ta = connect(factory, "10.0.0.1", 40000)
    b, tb = connect(factory, "10.0.0.2", 40000)
    ingest.hold()
    assert (ta.producerState, tb.producerState) == ("paused", "paused")
    c, tc = connect(factory, "10.0.0.3", 40000)  # connects while the store is behind
    assert tc.producerState == "paused"
    ingest.release()
    assert (ta.producerState, tb.producerState, tc.producerState) == ("producing",) * 3


def test_connections_beyond_the_limits_are_refused(make_factory, logs):
    factory = make_factory(max_connections=3, max_per_address=2)
    a, _ = connect(factory, "10.0.0.1", 1)
    connect(factory, "10.0.0.1", 2)
    assert connect(factory, "10.0.0.1", 3) == (None, None)
    connect(factory, "10.0.0.2", 1)
    assert connect(factory, "10.0.0.3", 1) == (None, None)
    refused = events(logs, "connection_refused")
    assert [(e["peer"], e["reason"]) for e in refused] == [("10.0.0.1", "too_many_from_address"),
                                                         ("10.0.0.3", "too_many_connections")]
    assert factory.refused_connections == 2
    hang_up(a)
    assert connect(factory, "10.0.0.1", 4)[0] is not None


# --- downlink commands ------------------------------------------------------------------------------

QUERY = Frame(Edition.V2016, Command.QUERY_PARAMS, Response.COMMAND, VIN, Encryption.NONE,
              ParamQuery(T0, (0x01, 0x02)))
#: the terminal's answer: local storage period 1000 ms, reporting interval 10 s
QUERY_ANSWER = Frame(Edition.V2016, Command.QUERY_PARAMS, Response.SUCCESS, VIN, Encryption.NONE,
                     ParamList(T0, ((0x01, 1000), (0x02, 10))))


def test_a_parameter_query_is_sent_and_resolved_by_the_terminals_answer(factory, ingest):
    proto, transport = logged_in(factory)
    d = factory.send_command(VIN, QUERY)
    # ## 80 FE VIN 01 0009 <time> 02 01 02 BCC
    assert take(transport) == hand_frame("2016", 0x80, 0xFE, T0_BYTES + bytes([2, 0x01, 0x02]), vin=VIN)
    assert_no_result(d)
    proto.dataReceived(wire(QUERY_ANSWER))
    answer = success_result_of(d)
    assert (answer.command, answer.response, answer.body.params) == (0x80, 0x01, ((0x01, 1000), (0x02, 10)))
    assert ingest.items[-1].frame.raw == wire(QUERY_ANSWER)  # the answer is archived too
    assert take(transport) == b""  # an answer is never answered


def test_a_parameter_query_without_answer_fails_after_command_timeout(make_factory, clock, logs):
    factory = make_factory(command_timeout=30)
    proto, transport = logged_in(factory)
    d = factory.send_command(VIN, QUERY)
    clock.advance(29)
    assert_no_result(d)
    clock.advance(1)
    failure_result_of(d, CommandTimeout)
    proto.dataReceived(wire(QUERY_ANSWER))  # too late: stored, matched to nothing
    assert events(logs, "frame_ignored")[0]["reason"] == "answer_without_command"


def test_a_parameter_query_fails_with_session_gone_when_the_terminal_disconnects(factory):
    proto, transport = logged_in(factory)
    d = factory.send_command(VIN, QUERY)
    hang_up(proto)
    failure_result_of(d, SessionGone)


def test_a_command_for_a_vin_that_is_not_online_is_refused_with_session_gone(factory):
    with pytest.raises(SessionGone):
        factory.send_command(VIN, QUERY)


def test_a_second_command_of_the_same_kind_waits_for_the_first(factory):
    logged_in(factory)
    d = factory.send_command(VIN, QUERY)
    with pytest.raises(ValueError):
        factory.send_command(VIN, QUERY)
    assert_no_result(d)
    d.addErrback(lambda f: f.trap(SessionGone))  # the fixture's hang-up ends it


def test_close_all_closes_every_connection_and_fires_when_they_are_gone(factory, ingest):
    a, ta = connect(factory, "10.0.0.1", 1)
    b, tb = connect(factory, "10.0.0.2", 1)
    d: Deferred = factory.close_all()
    assert ta.disconnecting and tb.disconnecting
    assert_no_result(d)
    hang_up(a)
    hang_up(b)
    success_result_of(d)
    assert ingest.listeners == []


def test_encoded_sample_frames_are_what_the_terminal_sends():
    """The samples used above decode to themselves (guards the table tests against a bad sample)."""
    for command in Command:
        frame = sample(command)
        assert codec.decode_frame(wire(frame)).body == frame.body
