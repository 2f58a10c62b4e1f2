"""An enterprise node on loopback with a real PostgreSQL: a scripted terminal logs in,
sends realtime and reissue frames between bad bytes, logs out; everything good is stored
and answered byte-exactly."""

from __future__ import annotations

import psycopg
import pytest_twisted
from twisted.internet import reactor

import codec
from codec import Command, Response
from tests.support.fixtures import T0, data_frame, login_frame, logout_frame
from tests.support.nodes import connect, enterprise_config, start
from tests.support.wait import until

VIN = "LNBSMX01000000001"


def _count(dsn: str, sql: str, *args) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchone()[0]


@pytest_twisted.ensureDeferred
async def test_terminal_session_is_stored_and_answered(db_dsn):
    node = await start(reactor, enterprise_config(db_dsn, answer_realtime=True))
    try:
        client = await connect(reactor, node.port("terminals"))
        login = login_frame(VIN)
        client.send(login)
        (answer,) = await client.answers(reactor, 1)
        # the standard's login answer: same command, success flag, the login's time, BCC over it
        assert codec.encode_frame(answer) == codec.encode_frame(codec.answer(login, Response.SUCCESS, T0))
        assert answer.response == Response.SUCCESS

        frames = [data_frame(VIN, T0.replace(second=s)) for s in range(1, 6)]
        frames.append(data_frame(VIN, T0.replace(minute=1), reissue=True))
        good = codec.encode_frame(frames[0])
        bad_bcc = bytearray(good)
        bad_bcc[-1] ^= 0xFF
        client.send(b"\x00garbage##", frames[0], bytes(bad_bcc), *frames[1:], b"$$\x01")
        client.send(logout_frame(VIN, T0.replace(minute=2)))
        answers = await client.answers(reactor, 1 + len(frames) + 1)
        assert [a.command for a in answers[1:]] == [Command.REALTIME] * 5 + [Command.REISSUE, Command.VEHICLE_LOGOUT]
        assert all(a.response == Response.SUCCESS for a in answers)

        assert _count(db_dsn, "SELECT count(*) FROM realtime WHERE vin = %s", VIN) == 6
        assert _count(db_dsn, "SELECT count(*) FROM realtime WHERE reissue") == 1
        assert _count(db_dsn, "SELECT count(*) FROM frames WHERE vin = %s", VIN) == 8  # login + 6 data + logout
        assert _count(db_dsn, "SELECT count(*) FROM logins WHERE vin = %s", VIN) == 2
        assert _count(db_dsn, "SELECT soc_pct FROM latest WHERE vin = %s", VIN) == 80
        with psycopg.connect(db_dsn) as conn:
            raw = conn.execute("SELECT raw FROM frames WHERE command = 2 ORDER BY collected_at LIMIT 1").fetchone()[0]
        assert bytes(raw) == good  # archived exactly as received
        assert node.terminals.frames_refused.get("bad_bcc") == 1
        await client.close()
    finally:
        await node.stop()


@pytest_twisted.ensureDeferred
async def test_frames_before_login_get_the_error_answer_and_are_not_stored(db_dsn):
    node = await start(reactor, enterprise_config(db_dsn))
    try:
        client = await connect(reactor, node.port("terminals"))
        client.send(data_frame(VIN))
        (answer,) = await client.answers(reactor, 1)
        assert (answer.command, answer.response) == (Command.REALTIME, Response.ERROR)
        assert _count(db_dsn, "SELECT count(*) FROM frames") == 0
        await client.close()
    finally:
        await node.stop()


@pytest_twisted.ensureDeferred
async def test_a_second_login_of_an_online_vin_is_a_duplicate(db_dsn):
    node = await start(reactor, enterprise_config(db_dsn, stale_session_after=60))
    try:
        first = await connect(reactor, node.port("terminals"))
        first.send(login_frame(VIN))
        await first.answers(reactor, 1)
        second = await connect(reactor, node.port("terminals"))
        second.send(login_frame(VIN, serial=2))
        (answer,) = await second.answers(reactor, 1)
        assert answer.response == Response.VIN_DUPLICATE
        await first.close()
        await until(reactor, lambda: VIN not in node.terminals.online, what="first session gone")
        second.send(login_frame(VIN, serial=3))
        answers = await second.answers(reactor, 2)
        assert answers[1].response == Response.SUCCESS
        await second.close()
    finally:
        await node.stop()
