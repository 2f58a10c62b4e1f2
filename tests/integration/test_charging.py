"""Charging facilities through the tiers (issue 5): operators push T/CEC 102.4-style JSON over
HTTP to the city node (Nanjing, 3201) or send 0xC1-0xC5 frames over a platform link; the city
stores them and forwards the public facilities to the province (Jiangsu, 32) over its
platform link. Real nodes on loopback, each tier with its own PostgreSQL database.

The simulated operators run on the test's clock (``tests.support.charging``): each message is
one second after the one before, so every message is distinct for the receivers'
deduplication and the expected order is known. Every count is exact and every wait has a
deadline."""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta

import pytest
import pytest_twisted
import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

from codec import tcec
from relay.simulate_piles import PileFleet
from tests.support.charging import (CHARGING_FRAMES, COMMANDS, OPERATOR, OTHER, OTHER_SECRETS, SECRETS, T0,
                                    ClockedHttpOperator, ClockedLinkOperator, Poster, Tiers, alarm, audited,
                                    charging_url, commands, count_is, expected, facilities, frames_in_order,
                                    municipal_config, per_command, provincial_config, refusals, rows, scalar, tell,
                                    to_province)
from tests.support.processes import run_command
from tests.support.wait import until

pytestmark = pytest.mark.timeout(90)

UNKNOWN = "MA09NOONE"  # an operator id nobody configured


def fleet(piles: int = 8, seed: int = 3) -> PileFleet:
    """Two stations of four piles (one connector each) in Xuanwu, Nanjing (320102)."""
    return PileFleet.make(piles, seed=seed, region_code="320102")


def alarms_of(f: PileFleet, at) -> list[tuple[str, dict]]:
    """An equipment alarm raised and cleared, and a connector alarm left open."""
    c = f.connectors[0]
    return [alarm({"EquipmentID": c.equipment_id}, at, True), alarm({"EquipmentID": c.equipment_id}, at, False),
            alarm({"ConnectorID": f.connectors[-1].connector_id}, at, True, code="13")]


def latest_status(messages) -> dict[str, tuple]:
    """Each connector's last status message: (status, park, lock, time)."""
    out = {}
    for m in messages:
        if m.kind == 0xC2:
            out[m.data["connector_id"]] = (m.data["status"], m.data["park_status"], m.data["lock_status"],
                                           m.collected_at)
    return out


async def backlog(node, dsn: str, upstream: str = "provincial") -> list[tuple]:
    """Outbox rows the upstream has not acknowledged, in order: (command, collected_at)."""
    return await rows(reactor, dsn, "SELECT command, collected_at FROM outbox WHERE upstream = %s AND id > %s "
                                    "ORDER BY id", upstream, node.forwarders[upstream].durable)


async def same_at_both(city_dsn: str, prov_dsn: str, sent) -> None:
    """The province holds what the city holds: the same frames in the same order (the
    operator's order), the same counts per command, the same facility rows."""
    city = await frames_in_order(reactor, city_dsn)
    assert [(c, t, s) for c, _, t, s, _ in city] == expected(sent)
    assert {op for _, op, _, _, _ in city} == {OPERATOR}
    assert await frames_in_order(reactor, prov_dsn) == city
    counts = per_command(sent)
    assert await commands(reactor, city_dsn) == await commands(reactor, prov_dsn) == counts
    at_city = await facilities(reactor, city_dsn)
    assert await facilities(reactor, prov_dsn) == at_city
    assert [len(at_city[t]) for t in ("connector_status", "charging_measurements", "charging_records",
                                      "charging_alarms")] == [counts[c] for c in (0xC2, 0xC3, 0xC4, 0xC5)]
    assert {(op, cid): (s, p, lk, at) for op, cid, *_, s, p, lk, at in at_city["charging_connectors"]
            if at is not None} == {(OPERATOR, cid): v for cid, v in latest_status(sent).items()}


# --- 1. HTTP in at the city, platform link up to the province -------------------------------

@pytest_twisted.ensureDeferred
async def test_operator_pushes_to_the_city_and_the_province_gets_the_same_records_in_order(make_db):
    city_db, prov_db = make_db(), make_db()
    tiers = Tiers(reactor)
    try:
        prov = await tiers.start("provincial", provincial_config(prov_db))
        city = await tiers.start("municipal", municipal_config(city_db, [to_province(prov.port("platforms"))]))
        f = fleet()
        op = ClockedHttpOperator(reactor, charging_url(city))
        await op.login()
        await tell(op, f, ticks=6, extra=alarms_of(f, T0 + timedelta(hours=1)))
        await op.close()
        sent = op.accepted
        counts = per_command(sent)
        assert all(counts[c] > 0 for c in COMMANDS), counts
        assert op.sent == len(sent) and op.refused == {}
        assert (len(f.stations), len(f.connectors)) == (2, 8)

        await count_is(reactor, city_db, CHARGING_FRAMES, len(sent), "charging messages at the city")
        await count_is(reactor, prov_db, CHARGING_FRAMES, len(sent), "charging messages at the province")
        await same_at_both(city_db, prov_db, sent)
        assert [len(await rows(reactor, city_db, f"SELECT * FROM {t}")) for t in (
            "charging_stations", "charging_equipment", "charging_connectors")] == [2, 8, 8]
        assert await rows(reactor, prov_db, "SELECT DISTINCT peer FROM frames") == [("platform:nanjing",)]
        assert await rows(reactor, city_db, "SELECT DISTINCT peer FROM frames WHERE peer NOT LIKE %s",
                          f"http:{OPERATOR}@%") == []
        assert city.charging_api.messages_stored == len(sent) and city.charging_api.refused == {}
        await until(reactor, lambda: Deferred.fromCoroutine(backlog(city, city_db)).addCallback(lambda b: b == []),
                    10, what="the city's outbox acknowledged")
    finally:
        await tiers.stop_all()


# --- 2. the city -> province link down for a while --------------------------------------------

@pytest_twisted.ensureDeferred
async def test_province_down_and_back_gets_the_backlog_whole_and_in_order(make_db):
    """The province stops while the operator keeps pushing to the city: the city's outbox
    holds exactly the messages of the outage, in order; the province, started again on the
    same port and database, ends with every message once, in order, and so do its tables."""
    city_db, prov_db = make_db(), make_db()
    tiers = Tiers(reactor)
    try:
        prov = await tiers.start("provincial", provincial_config(prov_db))
        prov_port = prov.port("platforms")
        city = await tiers.start("municipal", municipal_config(city_db, [to_province(prov_port)]))
        link = city.links["provincial"]
        f = fleet(seed=5)
        op = ClockedHttpOperator(reactor, charging_url(city))
        await op.login()
        await tell(op, f, ticks=2)
        before = len(op.accepted)
        await count_is(reactor, prov_db, CHARGING_FRAMES, before, "messages before the outage at the province")
        await until(reactor, lambda: Deferred.fromCoroutine(backlog(city, city_db)).addCallback(lambda b: b == []),
                    10, what="everything before the outage acknowledged")

        await tiers.stop("provincial")
        await until(reactor, lambda: link.state != "online", 10, what="the city's link to notice the outage")
        await tell(op, f, ticks=4, extra=alarms_of(f, T0 + timedelta(hours=1)), static=False)
        during = op.accepted[before:]
        assert len(during) >= 10 and op.refused == {}
        await count_is(reactor, city_db, CHARGING_FRAMES, len(op.accepted), "every message at the city")
        # the backlog: exactly the outage's messages, in the operator's order
        assert await backlog(city, city_db) == [(m.kind, m.collected_at) for m in during]
        assert await scalar(reactor, prov_db, CHARGING_FRAMES) == before

        again = provincial_config(prov_db, endpoint=f"tcp:{prov_port}:interface=127.0.0.1")
        prov = await tiers.start("provincial", again)
        await until(reactor, lambda: link.state == "online", 10, what="the link back online")
        await tell(op, f, ticks=2, static=False)  # and life goes on after the outage
        await count_is(reactor, prov_db, CHARGING_FRAMES, len(op.accepted), "every message at the province")
        await until(reactor, lambda: Deferred.fromCoroutine(backlog(city, city_db)).addCallback(lambda b: b == []),
                    10, what="the backlog acknowledged")
        # nothing arrived twice: the restarted province stored each message it heard once
        assert (prov.writer.stored, prov.writer.duplicates) == (len(op.accepted) - before, 0)

        # a second outage with messages in flight: the province stops right after a burst
        # (what it had not acknowledged is sent again; its deduplication keeps one copy)
        await tell(op, f, ticks=2, static=False)
        await tiers.stop("provincial")
        await tell(op, f, ticks=2, static=False)
        prov = await tiers.start("provincial", again)
        await tell(op, f, ticks=1, static=False)
        await op.close()
        sent = op.accepted
        await count_is(reactor, city_db, CHARGING_FRAMES, len(sent), "every message at the city")
        await count_is(reactor, prov_db, CHARGING_FRAMES, len(sent), "every message at the province")
        await same_at_both(city_db, prov_db, sent)
        await until(reactor, lambda: Deferred.fromCoroutine(backlog(city, city_db)).addCallback(lambda b: b == []),
                    10, what="the backlog acknowledged")
    finally:
        await tiers.stop_all()


# --- 3. refusals -----------------------------------------------------------------------------

def status(connector: str, value: int = 2) -> dict:
    return {"ConnectorStatusInfo": {"ConnectorID": connector, "Status": value, "ParkStatus": 50, "LockStatus": 10}}


def signed(envelope: dict, secrets=SECRETS) -> dict:
    """``envelope`` with its Sig computed again (after the test changed a field)."""
    envelope["Sig"] = tcec.sign(secrets.sig_secret, envelope["OperatorID"], envelope["Data"], envelope["TimeStamp"],
                                envelope["Seq"])
    return envelope


def renamed(station: dict, station_id: str, prefix: str, **changes) -> dict:
    """A copy of ``station`` as station ``station_id``, its pile and connector ids prefixed."""
    out = json.loads(json.dumps(station))
    out.update(StationID=station_id, **changes)
    for eq in out["EquipmentInfos"]:
        eq["EquipmentID"] = prefix + eq["EquipmentID"]
        for con in eq["ConnectorInfos"]:
            con["ConnectorID"] = prefix + con["ConnectorID"]
    return out


@pytest_twisted.ensureDeferred
async def test_refusals_carry_their_ret_are_audited_and_leave_good_data_alone(make_db):
    """Each kind of bad request gets its ``Ret`` (signed with the operator's secrets when the
    operator is known), is audited as ``charging_http`` / ``refused`` with the code, and
    stores nothing; the good operator's messages sent around them all arrive, in order."""
    dsn = make_db()
    tiers = Tiers(reactor)
    try:
        city = await tiers.start("municipal", municipal_config(dsn))
        f = fleet()
        good = ClockedHttpOperator(reactor, charging_url(city))
        await good.login()
        await tell(good, f, ticks=2)
        p = Poster(reactor, charging_url(city))
        token = (await p.token())["Data"]["AccessToken"]
        other_token = (await p.token(OTHER, OTHER_SECRETS))["Data"]["AccessToken"]
        assert token and other_token and token != other_token
        connector = f.connectors[1].connector_id
        iface = "notification_stationStatus"
        wanted = []

        async def refused(ret: int, body, interface: str = iface, tok: str | None = token, actor: str = OPERATOR,
                          signed_with=SECRETS) -> dict:
            code, answer = await p.post(interface, body, tok)
            assert (code, answer.get("Ret")) == (200, ret), answer
            assert answer["Data"] == "" and answer["Msg"], answer
            if signed_with is not None:
                tcec.verify_response(answer, signed_with)
            else:
                assert answer["Sig"] == "", answer
            wanted.append((actor, interface, str(ret)))
            await tell(good, f, ticks=1, static=False)  # good data after each refusal
            return answer

        # 4001: a signature that does not match (made up; over other fields; with another key)
        bad = p.request(status(connector))
        bad["Sig"] = "0" * 32
        await refused(tcec.RET_SIGNATURE, bad)
        bad = p.request(status(connector))
        bad["Seq"] = f"{(int(bad['Seq']) + 1) % 10000:04d}"
        await refused(tcec.RET_SIGNATURE, bad)
        await refused(tcec.RET_SIGNATURE, signed(p.request(status(connector)), OTHER_SECRETS))

        # 4002: no token, another operator's token, a token nobody issued
        await refused(tcec.RET_TOKEN, p.request(status(connector)), tok=None)
        await refused(tcec.RET_TOKEN, p.request(status(connector)), tok=other_token)
        await refused(tcec.RET_TOKEN, p.request(status(connector)), tok="not-a-token")

        # 4003: an envelope field missing or empty, a body that is not JSON, not an object
        # (the audit names the operator whenever the body says who it is)
        for field in tcec.ENVELOPE_FIELDS:
            missing = p.request(status(connector))
            del missing[field]
            await refused(tcec.RET_ENVELOPE, missing, actor="?" if field == "OperatorID" else OPERATOR,
                          signed_with=None)
        empty = p.request(status(connector))
        empty["Data"] = ""
        await refused(tcec.RET_ENVELOPE, empty, actor=OPERATOR, signed_with=None)
        await refused(tcec.RET_ENVELOPE, b'{"OperatorID": "MA01SIM01", "Data": ', actor="?", signed_with=None)
        await refused(tcec.RET_ENVELOPE, b"\xff\xfe not even text", actor="?", signed_with=None)
        await refused(tcec.RET_ENVELOPE, b'["OperatorID"]', actor="?", signed_with=None)

        # 4004: Data that does not decrypt, is not JSON, is not a JSON object
        undecryptable = p.request(status(connector))
        undecryptable["Data"] = base64.b64encode(os.urandom(48)).decode()
        await refused(tcec.RET_BUSINESS, signed(undecryptable))
        not_base64 = p.request(status(connector))
        not_base64["Data"] = "@@@ not base64 @@@"
        await refused(tcec.RET_BUSINESS, signed(not_base64))
        await refused(tcec.RET_BUSINESS, p.request("this is not JSON"))
        await refused(tcec.RET_BUSINESS, p.request("[1, 2, 3]"))
        # 4004: a connector the city has no station info for (accepted once its station info
        # is in); an unknown Status
        late = renamed(f.stations["ST0000"], "ST0009", "L")
        late_connector = late["EquipmentInfos"][0]["ConnectorInfos"][0]["ConnectorID"]
        await refused(tcec.RET_BUSINESS, p.request(status(late_connector)))
        assert await good.push("notification_stationInfo", {"StationInfo": late})
        assert await good.push("notification_stationStatus", status(late_connector, 4))
        await refused(tcec.RET_BUSINESS, p.request(status(connector, 7)))
        # 4004: a station outside the city's region (Shanghai), and then its connector
        shanghai = renamed(f.stations["ST0000"], "SH0001", "SH", AreaCode="310101")
        await refused(tcec.RET_BUSINESS, p.request({"StationInfo": shanghai}), interface="notification_stationInfo")
        await refused(tcec.RET_BUSINESS, p.request(status(shanghai["EquipmentInfos"][0]["ConnectorInfos"][0][
            "ConnectorID"])))
        # an interface the city does not offer
        await refused(tcec.RET_BUSINESS, p.request({"StationIDs": ["ST0000"]}), interface="query_station_status")

        # an operator id nobody configured: no secrets to sign the answer with
        await refused(tcec.RET_TOKEN, p.request(status(connector), operator=UNKNOWN), tok=token, actor=UNKNOWN,
                      signed_with=None)
        await refused(tcec.RET_BUSINESS, p.request({"OperatorID": UNKNOWN, "OperatorSecret": "x"},
                                                   operator=UNKNOWN), interface="query_token", tok=None,
                      actor=UNKNOWN, signed_with=None)

        # a wrong OperatorSecret: Ret 0 with SuccStat 1 / FailReason 2 and no token, audited
        answer = await p.token(operator_secret="not-the-secret")
        assert answer["Data"] == {"OperatorID": OPERATOR, "SuccStat": 1, "AccessToken": "", "TokenAvailableTime": 0,
                                  "FailReason": 2}
        assert await refusals(reactor, dsn, 1, "charging_token") == [(OPERATOR, "", None)]
        assert await audited(reactor, dsn, 3, "SELECT actor FROM audit WHERE action = 'charging_token' "
                                              "AND result = 'accepted' ORDER BY id") == [
            (OPERATOR,), (OPERATOR,), (OTHER,)]  # the good operator's, the poster's for both

        # the good operator's token still works after all that
        await tell(good, f, ticks=1, static=False)
        await good.close()

        assert await refusals(reactor, dsn, len(wanted)) == wanted
        sent = good.accepted
        await count_is(reactor, dsn, CHARGING_FRAMES, len(sent), "the good messages")
        stored = await frames_in_order(reactor, dsn)
        assert [(c, t, s) for c, _, t, s, _ in stored] == expected(sent)
        assert await rows(reactor, dsn, "SELECT operator_id, station_id FROM charging_stations ORDER BY 2") == [
            (OPERATOR, "ST0000"), (OPERATOR, "ST0001"), (OPERATOR, "ST0009")]
        assert await scalar(reactor, dsn, "SELECT count(*) FROM connector_status") == per_command(sent)[0xC2]
        by_ret = {}
        for _, _, ret in wanted:
            by_ret[int(ret)] = by_ret.get(int(ret), 0) + 1
        assert city.charging_api.refused == by_ret
        assert city.charging_api.messages_stored == len(sent)
        # one accepted row per good request (its seq counts the token query too)
        accepted = await audited(reactor, dsn, good.seq - 1, "SELECT actor, (detail->>'messages')::int FROM audit "
                                                             "WHERE action = 'charging_http' AND result = 'accepted'")
        assert accepted == [(OPERATOR, 1)] * (good.seq - 1)
    finally:
        await tiers.stop_all()


@pytest_twisted.ensureDeferred
async def test_an_expired_token_is_refused_with_4002_and_a_new_one_works(make_db):
    """``token_lifetime`` of two seconds: a token works while it is valid, is refused with
    4002 (audited) once the node's clock has passed its expiry, and a new one works."""
    dsn = make_db()
    tiers = Tiers(reactor)
    lifetime = 2.0
    try:
        city = await tiers.start("municipal", municipal_config(dsn, token_lifetime=lifetime))
        f = fleet(piles=4)
        op = ClockedHttpOperator(reactor, charging_url(city))
        await op.login()
        issued = reactor.seconds()  # the node issued it before this: it expires before issued + lifetime
        station = f.static()[0]
        assert await op.push(*station)
        await until(reactor, lambda: reactor.seconds() > issued + lifetime + 0.05, 5, what="the token's expiry")
        connector = f.connectors[0].connector_id
        assert not await op.push("notification_stationStatus", status(connector, 3))
        assert op.refused == {tcec.RET_TOKEN: 1}
        assert await refusals(reactor, dsn, 1) == [(OPERATOR, "notification_stationStatus", str(tcec.RET_TOKEN))]
        assert await scalar(reactor, dsn, "SELECT detail->>'reason' FROM audit WHERE action = 'charging_http' "
                                          "AND result = 'refused'") == "token expired"
        await op.login()
        assert await op.push("notification_stationStatus", status(connector, 3))
        await op.close()
        await count_is(reactor, dsn, CHARGING_FRAMES, 2, "the two accepted messages")
        assert [(c, t, s) for c, _, t, s, _ in await frames_in_order(reactor, dsn)] == expected(op.accepted)
    finally:
        await tiers.stop_all()


# --- bugs found: bad Data that crashes the request instead of a 4004 --------------------------

def _seq_data(connector: str, **extra) -> dict:
    return {"StartChargeSeq": f"{OPERATOR}000000000000000001", "StartChargeSeqStat": 2, "ConnectorID": connector,
            "StartTime": "2026-11-25 09:00:00", "EndTime": "2026-11-25 09:10:00", "VoltageA": 400.0,
            "CurrentA": 100.0, "Soc": 50, "TotalPower": 10.0, **extra}


BAD_DATA = [
    pytest.param("query_token", lambda f: "this is not JSON", id="query_token-data-not-json"),
    pytest.param("notification_stationInfo", lambda f: {"StationInfo": {**f.stations["ST0000"],
                                                                       "EquipmentInfos": ["not an object"]}},
                 id="equipment-entry-not-an-object"),
    pytest.param("notification_alarmInfo", lambda f: {"AlarmInfos": ["not an object"]},
                 id="alarm-entry-not-an-object"),
    pytest.param("notification_stationInfo", lambda f: {"StationInfo": {**f.stations["ST0000"], "StationLng": None}},
                 id="station-longitude-null"),
    pytest.param("notification_equip_charge_status", lambda f: _seq_data(f.connectors[0].connector_id, VoltageA=None),
                 id="voltage-null"),
    # each value in its range, but 2000 V x 4000 A = 8000 kW > 6553.3 kW, the most power_kw holds
    pytest.param("notification_equip_charge_status",
                 lambda f: _seq_data(f.connectors[0].connector_id, VoltageA=2000.0, CurrentA=4000.0),
                 id="power-beyond-the-wire-field"),
]


@pytest.mark.parametrize("interface, payload", BAD_DATA)
@pytest_twisted.ensureDeferred
async def test_data_of_the_wrong_shape_is_refused_with_4004(make_db, observe_errors, interface, payload):
    dsn = make_db()
    tiers = Tiers(reactor)
    try:
        city = await tiers.start("municipal", municipal_config(dsn))
        f = fleet(piles=4)
        op = ClockedHttpOperator(reactor, charging_url(city))
        await op.login()
        assert await op.push(*f.static()[0])
        p = Poster(reactor, charging_url(city))
        code, answer = await p.post(interface, p.request(payload(f)), None if interface == "query_token" else op.token)
        errors = list(observe_errors)
        observe_errors.clear()  # asserted here, not by the fixture
        assert (code, answer.get("Ret")) == (200, tcec.RET_BUSINESS), (code, answer)
        assert errors == []
        assert await refusals(reactor, dsn, 1) == [(OPERATOR, interface, str(tcec.RET_BUSINESS))]
        await op.close()
    finally:
        await tiers.stop_all()


# --- 4. an operator over the platform link -----------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_operator_over_the_platform_link_is_stored_and_forwarded_and_others_refused(make_db):
    """An operator's platform logs in to the city with the account ``chargeop`` (allowed
    operator MA01SIM01) and sends 0xC1-0xC5 frames: stored and forwarded like HTTP input.
    Frames of an operator the account may not send for are refused and audited."""
    city_db, prov_db = make_db(), make_db()
    tiers = Tiers(reactor)
    try:
        prov = await tiers.start("provincial", provincial_config(prov_db))
        city = await tiers.start("municipal", municipal_config(city_db, [to_province(prov.port("platforms"))]))
        f = fleet(seed=7)
        op = ClockedLinkOperator(reactor, "127.0.0.1", city.port("platforms"), "chargeop", "chargeop-demo")
        await op.login()
        await tell(op, f, ticks=5, extra=alarms_of(f, T0 + timedelta(hours=1)))
        await Deferred.fromCoroutine(op.close()).addTimeout(20, reactor)  # its heartbeat: all committed
        sent = op.accepted
        assert all(n > 0 for n in per_command(sent).values()), per_command(sent)
        assert await scalar(reactor, city_db, CHARGING_FRAMES) == len(sent)
        await count_is(reactor, prov_db, CHARGING_FRAMES, len(sent), "the link operator's messages at the province")
        await same_at_both(city_db, prov_db, sent)
        assert await rows(reactor, city_db, "SELECT DISTINCT peer FROM frames WHERE command BETWEEN 193 AND 197") == [
            ("platform:chargeop",)]

        # the same account sending for an operator it may not send for
        intruder = ClockedLinkOperator(reactor, "127.0.0.1", city.port("platforms"), "chargeop", "chargeop-demo",
                                       operator=OTHER, start=T0 + timedelta(hours=3))
        await intruder.login()
        other = PileFleet.make(4, seed=1, operator=OTHER, region_code="320102")
        await tell(intruder, other, ticks=1)
        await Deferred.fromCoroutine(intruder.close()).addTimeout(20, reactor)
        n = len(intruder.accepted)
        got = await audited(reactor, city_db, len(intruder.accepted), "SELECT actor, target, detail->>'reason', "
                            "(detail->>'command')::int FROM audit WHERE action = 'frame_refused' ORDER BY id")
        assert got == [("chargeop", OTHER, "operator_not_allowed", m.kind) for m in intruder.accepted] and n >= 2
        assert city.platforms.frames_refused == {"operator_not_allowed": n}
        assert await scalar(reactor, city_db, CHARGING_FRAMES) == len(sent)
        assert await scalar(reactor, city_db, "SELECT count(*) FROM frames WHERE vin = %s", OTHER) == 0
        # and nothing of it reached the province (its heartbeat after them was answered)
        assert await scalar(reactor, prov_db, CHARGING_FRAMES) == len(sent)
    finally:
        await tiers.stop_all()


# --- 5. private stations ------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_private_stations_stay_at_the_city_unless_the_upstream_takes_them(make_db):
    """Station ST0001 is private (type 50): its messages are stored at the city and go only
    to the upstream with ``charging_private: true``, not to the plain one."""
    city_db, prov_db, sup_db = make_db(), make_db(), make_db()
    tiers = Tiers(reactor)
    try:
        prov = await tiers.start("provincial", provincial_config(prov_db))
        sup = await tiers.start("supervision", provincial_config(sup_db, node_id="JS32SUP"))
        city = await tiers.start("municipal", municipal_config(city_db, [
            to_province(prov.port("platforms")),
            to_province(sup.port("platforms"), name="supervision", charging_private=True)]))
        f = fleet(seed=11)
        f.stations["ST0001"]["StationType"] = 50
        op = ClockedHttpOperator(reactor, charging_url(city))
        await op.login()
        first = f.connectors[0]  # of the public station ST0000
        # the last message is about the public station: once it is at the province, anything
        # of the private station sent before it would be there too (the outbox is in order)
        await tell(op, f, ticks=5, extra=[*alarms_of(f, T0 + timedelta(hours=1)),
                                          alarm({"ConnectorID": first.connector_id}, T0 + timedelta(hours=2), True)])
        await op.close()
        sent = op.accepted
        private = [m for m in sent if m.subject_id.startswith("ST0001")]
        public = [m for m in sent if not m.subject_id.startswith("ST0001")]
        assert {m.kind for m in private} >= {0xC1, 0xC2, 0xC3} and public[-1] is sent[-1]

        await count_is(reactor, city_db, CHARGING_FRAMES, len(sent), "everything at the city")
        await count_is(reactor, sup_db, CHARGING_FRAMES, len(sent), "everything at the supervision platform")
        await count_is(reactor, prov_db, CHARGING_FRAMES, len(public), "the public station's messages at the province")
        await same_at_both(city_db, sup_db, sent)
        at_prov = await frames_in_order(reactor, prov_db)
        assert [(c, t, s) for c, _, t, s, _ in at_prov] == expected(public)
        assert await rows(reactor, prov_db, "SELECT station_id, station_type FROM charging_stations") == [
            ("ST0000", 1)]
        assert await rows(reactor, city_db, "SELECT station_id, station_type FROM charging_stations ORDER BY 1") == [
            ("ST0000", 1), ("ST0001", 50)]
        assert await scalar(reactor, prov_db, "SELECT count(*) FROM charging_connectors "
                                              "WHERE station_id = 'ST0001'") == 0
    finally:
        await tiers.stop_all()


# --- 6. `relay simulate piles --http` as a process ----------------------------------------------

@pytest_twisted.ensureDeferred
async def test_simulate_piles_over_http_sends_what_the_city_stores(make_db, tmp_path):
    """Two ``relay simulate piles --http`` processes at once against a running city: the demo
    operator with the built-in demo secrets, and MA02OTHER with ``--secrets-file``. Each exits
    0 and prints ``messages_sent``, which is what the city stored for that operator."""
    dsn = make_db()
    tiers = Tiers(reactor)
    try:
        city = await tiers.start("municipal", municipal_config(dsn))
        secrets_file = tmp_path / "other-secrets.yaml"
        secrets_file.write_text(yaml.safe_dump({"operator_secret": OTHER_SECRETS.operator_secret,
                                                "data_secret": OTHER_SECRETS.data_secret,
                                                "data_iv": OTHER_SECRETS.data_iv,
                                                "sig_secret": OTHER_SECRETS.sig_secret}), encoding="utf-8")
        common = ["simulate", "piles", "--http", charging_url(city), "--count", "8", "--seconds", "3",
                  "--interval", "1", "--region", "320102"]
        runs = {OPERATOR: [*common, "--seed", "2"],
                OTHER: [*common, "--seed", "4", "--operator", OTHER, "--secrets-file", str(secrets_file)]}
        ended = await gatherResults([Deferred.fromCoroutine(run_command(reactor, args, tmp_path, timeout=60))
                                     for args in runs.values()], consumeErrors=True)
        for operator, (exit_, out, err) in zip(runs, ended):
            assert exit_.code == 0, (operator, exit_, err)
            result = json.loads(out.strip().splitlines()[-1])
            assert (result["piles"], result["stations"], result["refused"]) == (8, 2, {}), result
            # the static info of two stations, then the first interval's news (seeds 2 and 4: 3 and 2)
            assert result["messages_sent"] >= 2 + 2, result
            await count_is(reactor, dsn, "SELECT count(*) FROM frames WHERE vin = %s", result["messages_sent"],
                           f"{operator}'s messages", operator)
        assert await rows(reactor, dsn, "SELECT operator_id, count(*) FROM charging_stations "
                                        "GROUP BY 1 ORDER BY 1") == [(OPERATOR, 2), (OTHER, 2)]
        assert city.charging_api.refused == {}
    finally:
        await tiers.stop_all()
