"""Bad input over real TCP against a live ``relay run`` enterprise node.

A Hypothesis campaign (a fixed number of derandomised examples, so CI sees the same
campaign every run; ``CHAOS_FUZZ_EXAMPLES`` / ``CHAOS_FUZZ_RANDOM=1`` widen it locally).
Each example logs a fresh terminal in and sends, in chunks cut where Hypothesis says,
valid data frames with bad stretches between them — random bytes, truncated frames,
oversized and lying lengths, wrong check codes, wrong and ill-formed VINs, unknown
commands, undecodable bodies, commands a terminal may not send, answers, time syncs,
heartbeats, repeated logins — while other connections, interleaved between the chunks,
send frames before login, log the same VIN in again, flood logins, log out and go on
sending. Every answer is checked against GB/T 32960.3 clause 6.3.2 as the node applies
it (``relay/session.py``, ``relay/framing.py``), every valid frame between the bad ones
is stored (exact count and times), nothing of the refused ones is, and the node keeps
serving fresh logins.

The sockets are blocking (Hypothesis runs its examples synchronously), so the node is a
subprocess read by a thread (``SyncNode``); every read has a deadline.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import codec
from codec import CST, Command, Edition, Encryption, Frame, Response
from tests.chaos.conftest import SyncNode, node_file, query
from tests.conftest import clone_database, drop_database
from tests.support.codec_frames import frame as raw_frame
from tests.support.fixtures import T0, data_frame, login_frame, logout_frame
from tests.support.nodes import enterprise_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

#: the listener's bound on a data unit (a declared length above it is refused at once)
MAX_FRAME = 2048
#: an answer whose time is the node's clock (refusals, time sync): not compared
ANY = "any time"

EXAMPLES = int(os.environ.get("CHAOS_FUZZ_EXAMPLES", "60"))


# --- a blocking client that splits what it receives at the header level ---------------------------

@dataclass(frozen=True)
class Answer:
    command: int
    response: int
    vin: str
    time: datetime | None


def _time_of(unit: bytes) -> datetime | None:
    if len(unit) != 6:
        return None
    y, mo, d, h, mi, s = unit
    return datetime(2000 + y, mo, d, h, mi, s, tzinfo=CST)


class Wire:
    """One TCP connection with blocking reads; answers are split by their header (an answer
    to an unknown command is not decodable by the codec, by design)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.answers: list[Answer] = []
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, n: int, timeout: float = 10.0) -> list[Answer]:
        """Wait until ``n`` answers have arrived in all; returns them all."""
        deadline = time.monotonic() + timeout
        while len(self.answers) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.eof:
                raise AssertionError(f"{len(self.answers)} answers of {n} (eof={self.eof}): {self.answers}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                self.eof = True
                continue
            self.buf += data
            self._split()
        return self.answers

    def _split(self) -> None:
        while len(self.buf) >= 25:
            assert self.buf[:2] in (b"##", b"$$"), bytes(self.buf[:40])
            command, response = self.buf[2], self.buf[3]
            vin = bytes(self.buf[4:21]).rstrip(b"\x00").decode("ascii")
            length = int.from_bytes(self.buf[22:24], "big")
            end = 24 + length + 1
            if len(self.buf) < end:
                return
            unit = bytes(self.buf[24:24 + length])
            self.answers.append(Answer(command, response, vin, _time_of(unit)))
            del self.buf[:end]

    def close(self) -> None:
        self.sock.close()


def enc(frame: Frame) -> bytes:
    return codec.encode_frame(frame)


def heartbeat(vin: str) -> bytes:
    return enc(Frame(Edition.V2016, Command.HEARTBEAT, Response.COMMAND, vin, Encryption.NONE, None))


def time_sync(vin: str) -> bytes:
    return enc(Frame(Edition.V2016, Command.TIME_SYNC, Response.COMMAND, vin, Encryption.NONE, None))


def platform_login(vin: str, when: datetime) -> bytes:
    return enc(Frame(Edition.V2016, Command.PLATFORM_LOGIN, Response.COMMAND, vin, Encryption.NONE,
                     codec.PlatformLogin(when, 1, "intruder", "guess", 1)))


def with_bcc(head_and_unit: bytes) -> bytes:
    x = 0
    for b in head_and_unit[2:]:
        x ^= b
    return head_and_unit + bytes((x,))


# --- the bad stretches of a terminal's stream ---------------------------------------------------------

@dataclass
class Step:
    """Bytes to send and the answers they must get: (command, response, vin, time or ANY)."""

    data: bytes
    answers: list[tuple] = field(default_factory=list)
    stored: list[datetime] = field(default_factory=list)  # data frames that must be stored


class Clock:
    """Collection times for one example: every frame gets its own second."""

    def __init__(self, base: datetime) -> None:
        self._next = itertools.count(1)
        self.base = base

    def __call__(self) -> datetime:
        return self.base + timedelta(seconds=next(self._next))


def build_step(kind: tuple, vin: str, clock: Clock) -> Step:
    name, *arg = kind
    if name == "garbage":
        return Step(arg[0])
    if name == "truncated":
        raw = enc(data_frame(vin, clock()))
        cut = max(1, min(len(raw) - 1, int(len(raw) * arg[0])))
        return Step(raw[:cut])
    if name == "oversized":  # refused at once: above the listener's bound or the standard's
        length, tail = arg
        head = b"##" + bytes((Command.REALTIME, Response.COMMAND)) + vin.encode() + b"\x01" + length.to_bytes(2, "big")
        return Step(head + tail)
    if name == "lying_length":  # within the bound, but the bytes end long before
        length, tail = arg
        head = b"##" + bytes((Command.REALTIME, Response.COMMAND)) + vin.encode() + b"\x01" + length.to_bytes(2, "big")
        return Step(head + tail[:max(0, length - 1)])
    if name == "bad_bcc":
        raw = bytearray(enc(data_frame(vin, clock())))
        raw[-1] ^= arg[0]
        return Step(bytes(raw))
    if name == "wrong_vin":  # a well-formed id that is not the session's
        other = arg[0]
        when = clock()
        return Step(enc(data_frame(other, when)), [(Command.REALTIME, Response.ERROR, other, when)])
    if name == "ill_formed_vin":  # a control byte in the id: the header is refused
        position, byte = arg
        raw = bytearray(enc(data_frame(vin, clock())))
        raw[4 + position] = byte
        return Step(with_bcc(bytes(raw[:-1])))
    if name == "unknown_command":
        command, as_answer, unit = arg
        response = Response.SUCCESS if as_answer else Response.COMMAND
        raw = raw_frame("2016", command, response, unit, vin=vin)
        return Step(raw, [] if as_answer else [(command, Response.ERROR, vin, ANY)])
    if name == "bad_body":  # a realtime frame whose time is impossible
        unit = bytes((26, 13, 32, 24, 60, 60)) + arg[0]
        return Step(raw_frame("2016", Command.REALTIME, Response.COMMAND, unit, vin=vin),
                    [(Command.REALTIME, Response.ERROR, vin, ANY)])
    if name == "platform_login":  # not a terminal's command
        when = clock()
        return Step(platform_login(vin, when), [(Command.PLATFORM_LOGIN, Response.ERROR, vin, when)])
    if name == "an_answer":  # terminals' answers to nothing are ignored
        ans = codec.answer(data_frame(vin, clock()), Response.SUCCESS, T0)
        return Step(enc(ans))
    if name == "time_sync":
        return Step(time_sync(vin), [(Command.TIME_SYNC, Response.SUCCESS, vin, ANY)])
    if name == "heartbeat":
        return Step(heartbeat(vin), [(Command.HEARTBEAT, Response.SUCCESS, vin, None)])
    if name == "login_again":  # the same VIN on the same connection: accepted again
        when = clock()
        return Step(enc(login_frame(vin, when, serial=2)), [(Command.VEHICLE_LOGIN, Response.SUCCESS, vin, when)])
    raise ValueError(name)


def valid_step(vin: str, clock: Clock, reissue: bool) -> Step:
    when = clock()
    command = Command.REISSUE if reissue else Command.REALTIME
    return Step(enc(data_frame(vin, when, reissue=reissue)), [(command, Response.SUCCESS, vin, when)], [when])


ids = st.sampled_from(["LNBSMX90000000000", "lnbsmx90000000001", "ABC", "12345678901234567", "LNBSMX9ZZZZZZZZZZ"])
bad_kinds = st.one_of(
    st.tuples(st.just("garbage"), st.one_of(st.binary(min_size=1, max_size=20),
                                            st.lists(st.sampled_from(b"#$\x01\x02\xfeA0 "), min_size=1, max_size=20)
                                            .map(bytes))),
    st.tuples(st.just("truncated"), st.floats(0.0, 1.0)),
    st.tuples(st.just("oversized"), st.integers(MAX_FRAME + 1, 0xFFFF), st.binary(max_size=16)),
    st.tuples(st.just("lying_length"), st.integers(60, MAX_FRAME), st.binary(max_size=40)),
    st.tuples(st.just("bad_bcc"), st.integers(1, 255)),
    st.tuples(st.just("wrong_vin"), ids),
    st.tuples(st.just("ill_formed_vin"), st.integers(0, 16), st.sampled_from([0x01, 0x1F, 0x7F, 0x80, 0xFF])),
    st.tuples(st.just("unknown_command"), st.sampled_from([0x0C, 0x10, 0x42, 0x7F, 0x83, 0xB0, 0xC6, 0xFD]),
              st.booleans(), st.binary(max_size=12)),
    st.tuples(st.just("bad_body"), st.binary(max_size=8)),
    st.tuples(st.just("platform_login")),
    st.tuples(st.just("an_answer")),
    st.tuples(st.just("time_sync")),
    st.tuples(st.just("heartbeat")),
    st.tuples(st.just("login_again")),
)
#: what other connections do between the chunks of the main stream
abuses = st.one_of(
    st.tuples(st.just("before_login"), st.sampled_from([Command.REALTIME, Command.REISSUE, Command.VEHICLE_LOGOUT])),
    st.tuples(st.just("duplicate_login")),
    st.tuples(st.just("login_flood"), st.integers(2, 40)),
    st.tuples(st.just("heartbeat_before_login")),
    st.tuples(st.just("logout_then_data")),
    st.tuples(st.just("garbage_and_gone"), st.binary(min_size=1, max_size=200)),
)
campaigns = st.fixed_dictionaries({
    # each gap: up to two bad stretches, then a valid data frame (realtime or reissue)
    "gaps": st.lists(st.tuples(st.lists(bad_kinds, max_size=2), st.booleans()), min_size=1, max_size=6),
    "trailing_bad": st.lists(bad_kinds, max_size=2),
    "cuts": st.lists(st.floats(0.0, 1.0), max_size=6),
    "abuses": st.lists(abuses, max_size=4),
})


#: one campaign with every kind of bad stretch and every abuse, whatever Hypothesis draws
EVERY_KIND = {
    "gaps": [([("garbage", b"##\x02\xfe garbage #"), ("truncated", 0.5)], False),
             ([("oversized", 40000, b"\x00" * 8), ("lying_length", 1500, b"\x01" * 30)], True),
             ([("bad_bcc", 0x5A), ("wrong_vin", "LNBSMX90000000000")], False),
             ([("ill_formed_vin", 7, 0x01), ("unknown_command", 0x42, False, b"\x01\x02")], False),
             ([("unknown_command", 0x42, True, b""), ("bad_body", b"\x00")], True),
             ([("platform_login",), ("an_answer",)], False),
             ([("time_sync",), ("heartbeat",)], False),
             ([("login_again",), ("truncated", 0.05)], True)],
    "trailing_bad": [("lying_length", 700, b""), ("garbage", b"$$")],
    "cuts": [0.1, 0.33, 0.5, 0.51, 0.9],
    "abuses": [("before_login", Command.REALTIME), ("before_login", Command.VEHICLE_LOGOUT), ("duplicate_login",),
               ("login_flood", 40), ("heartbeat_before_login",), ("logout_then_data",),
               ("garbage_and_gone", b"#" * 100)],
}


# --- the node -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_node(pg_server, pg_template, tmp_path_factory):
    name, dsn = clone_database(pg_server, pg_template)
    tmp = tmp_path_factory.mktemp("fuzz")
    raw = enterprise_config(dsn, answer_realtime=True, max_frame_bytes=MAX_FRAME)
    node = SyncNode(node_file(raw, tmp, "enterprise"))
    try:
        node.start()
        yield node, dsn
    finally:
        node.stop()
        drop_database(pg_server, name)


_vins = itertools.count(1)


def fresh_vin() -> str:
    return f"LNBSMX7{next(_vins):010d}"


def run_abuse(port: int, abuse: tuple, main_vin: str, clock: Clock) -> list[str]:
    """One abuse on its own connection, answers checked; returns the VINs it used."""
    name, *arg = abuse
    wire = Wire(port)
    try:
        if name == "before_login":
            vin, when = fresh_vin(), clock()
            frame = data_frame(vin, when, reissue=arg[0] == Command.REISSUE) if arg[0] != Command.VEHICLE_LOGOUT \
                else logout_frame(vin, when)
            wire.send(enc(frame))
            assert wire.read(1) == [Answer(arg[0], Response.ERROR, vin, when)]
            return [vin]
        if name == "duplicate_login":  # the main terminal is online and talking
            when = clock()
            wire.send(enc(login_frame(main_vin, when, serial=3)))
            assert wire.read(1) == [Answer(Command.VEHICLE_LOGIN, Response.VIN_DUPLICATE, main_vin, when)]
            return []
        if name == "login_flood":  # one connection, many logins of other VINs, back to back
            vins, frames, expected = [], [], []
            for _ in range(arg[0]):
                vin, when = fresh_vin(), clock()
                vins.append(vin)
                frames.append(enc(login_frame(vin, when)))
                expected.append(Answer(Command.VEHICLE_LOGIN, Response.SUCCESS, vin, when))
            wire.send(b"".join(frames))
            assert wire.read(len(expected)) == expected  # answered in order, after commit
            return vins
        if name == "heartbeat_before_login":
            vin = fresh_vin()
            wire.send(heartbeat(vin))
            assert wire.read(1) == [Answer(Command.HEARTBEAT, Response.SUCCESS, vin, None)]
            return [vin]
        if name == "logout_then_data":
            vin = fresh_vin()
            t1, t2, t3 = clock(), clock(), clock()
            wire.send(enc(login_frame(vin, t1)) + enc(logout_frame(vin, t2)) + enc(data_frame(vin, t3)))
            got = wire.read(3)
            # the refusal is immediate, the two others wait for their commit
            assert Counter(got) == Counter([Answer(Command.VEHICLE_LOGIN, Response.SUCCESS, vin, t1),
                                            Answer(Command.VEHICLE_LOGOUT, Response.SUCCESS, vin, t2),
                                            Answer(Command.REALTIME, Response.ERROR, vin, t3)]), got
            return [vin]
        if name == "garbage_and_gone":
            wire.send(arg[0])
            return []
        raise ValueError(name)
    finally:
        wire.close()


def normalise(answers: list, loose: set) -> Counter:
    """Answers as comparable keys; the time is dropped where the node answers with its clock."""
    out = Counter()
    for a in answers:
        key = (a.command, a.response, a.vin) if isinstance(a, Answer) else tuple(a[:3])
        when = a.time if isinstance(a, Answer) else a[3]
        out[key + ((ANY,) if key in loose else (when,))] += 1
    return out


@settings(max_examples=EXAMPLES, derandomize=not os.environ.get("CHAOS_FUZZ_RANDOM"), deadline=None,
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@example(campaign=EVERY_KIND)
@given(campaign=campaigns)
def test_bad_input_never_stops_the_node_and_every_valid_frame_between_is_stored(fuzz_node, campaign):
    node, dsn = fuzz_node
    port = node.ports["terminals"]
    vin = fresh_vin()
    clock = Clock(T0 + timedelta(days=next(_vins) % 300))

    # the stream of the logged-in terminal
    steps: list[Step] = []
    for bad, reissue in campaign["gaps"]:
        steps += [build_step(k, vin, clock) for k in bad]
        steps.append(valid_step(vin, clock, reissue))
    steps += [build_step(k, vin, clock) for k in campaign["trailing_bad"]]
    stream = b"".join(s.data for s in steps)
    expected = [a for s in steps for a in s.answers]
    stored = [t for s in steps for t in s.stored]
    loose = {tuple(a[:3]) for a in expected if a[3] is ANY}
    cuts = sorted({int(len(stream) * c) for c in campaign["cuts"]} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]

    main = Wire(port)
    others: list[str] = []
    try:
        login_at = clock()
        main.send(enc(login_frame(vin, login_at)))
        assert main.read(1) == [Answer(Command.VEHICLE_LOGIN, Response.SUCCESS, vin, login_at)], node.output()
        abuse_list = list(campaign["abuses"])
        for i, chunk in enumerate(chunks):
            main.send(chunk)
            if i < len(abuse_list):
                others += run_abuse(port, abuse_list[i], vin, clock)
        for abuse in abuse_list[len(chunks):]:
            others += run_abuse(port, abuse, vin, clock)
        # a heartbeat last: answered after everything before it is committed
        main.send(heartbeat(vin))
        got = main.read(1 + len(expected) + 1)
        assert got[-1] == Answer(Command.HEARTBEAT, Response.SUCCESS, vin, None)
        assert normalise(got[1:-1], loose) == normalise(expected, loose), (campaign, got)
        assert not main.eof, "the node closed a terminal that sent valid frames between the bad ones"
    finally:
        main.close()

    # exactly the valid data frames are stored, at their times; nothing of the refused ones
    times = sorted(t for (t,) in query(dsn, "SELECT collected_at FROM realtime WHERE vin = %s", vin))
    assert times == sorted(stored), (campaign, times, stored)
    assert query(dsn, "SELECT count(*) FROM frames WHERE vin = %s AND command IN (2, 3)", vin) == [(len(stored),)]
    if others:
        assert query(dsn, "SELECT count(*) FROM realtime WHERE vin = ANY(%s)", others) == [(0,)]
    assert node.alive, node.output()


def test_after_the_campaign_the_node_still_serves_and_logged_no_internal_error(fuzz_node):
    """Runs after the campaign (same node): a fresh terminal logs in and is stored; the node
    logged no unhandled error and refused no item in its writer; refusals were logged
    with their reasons."""
    node, dsn = fuzz_node
    vin = fresh_vin()
    wire = Wire(node.ports["terminals"])
    try:
        wire.send(enc(login_frame(vin)) + enc(data_frame(vin, T0 + timedelta(seconds=1))))
        assert wire.read(2) == [Answer(Command.VEHICLE_LOGIN, Response.SUCCESS, vin, T0),
                                Answer(Command.REALTIME, Response.SUCCESS, vin, T0 + timedelta(seconds=1))]
    finally:
        wire.close()
    assert query(dsn, "SELECT count(*) FROM realtime WHERE vin = %s", vin) == [(1,)]
    assert node.alive
    assert node.named("unhandled_error") == [] and node.named("writer_internal_error") == []
    assert node.named("writer_item_refused") == [] and node.named("writer_batch_failed") == []
    reasons = Counter(e.get("reason") for e in node.named("frame_refused"))
    for reason in ("garbage", "bad_bcc", "bad_length", "truncated", "unknown_command", "vin_mismatch",
                   "not_logged_in", "vin_duplicate", "not_allowed_here"):
        assert reasons[reason] > 0, reasons
