"""Security properties of real nodes.

* Private-sector vehicles never leave the enterprise: three ``relay run`` tiers, a mixed
  fleet in two cities; the city and the province hold no row of a private VIN in any
  table, and the province holds the other city's public vehicles that the city does not.
* No secret reaches a log or the database: the passwords of the upstream logins, of the
  platform logins and of refused attempts never appear in any node's output (at debug
  level), in the audit log or in the frame archive.
* ``registry.strict`` refuses a terminal login with an unknown VIN (0x02 in 2016, 0x04 in
  2025) and stores nothing for it.
* A platform cannot send vehicles it does not own (another owner, private, outside the
  region, unregistered): each is refused and audited; SQL goes through parameters, so
  usernames, passwords, VINs and API query values that look like SQL are refused or
  stored as text, and every table is still there.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
import pytest_twisted
from structlog.testing import capture_logs
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from codec import Command, Edition, Encryption, Frame, Response
from relay.simulate import VehicleSimulator, make_fleet
from tests.chaos.conftest import (api_get, count_is, events, fleet_rows, node_file, platform_login, query, rows,
                                  scalar, seed, with_api, within)
from tests.support.fixtures import T0, data_frame, login_frame
from tests.support.nodes import ENT01_HASH, NANJING_HASH, connect, enterprise_config, platform_config, start, upstream
from tests.support.processes import NodeProcess, stop_all
from tests.support.wait import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ENT01_PASSWORD, NANJING_PASSWORD = "ent01-demo", "nanjing-demo"  # the hashes in tests/support/nodes.py
WRONG_PASSWORD = "Wr0ng-but-secret-42"

#: tables where a vehicle's data can end up
VEHICLE_TABLES = ("frames", "realtime", "latest", "logins", "outbox", "unregistered")


def heartbeat(platform_id: str = "ENT01") -> Frame:
    return Frame(Edition.V2016, Command.HEARTBEAT, Response.COMMAND, platform_id, Encryption.NONE, None)


def online(proc: NodeProcess, name: str):
    return lambda: proc.proto.has_event("upstream_link_state", upstream=name, state="online")


async def rows_of(dsn: str, vins: list[str]) -> dict[str, int]:
    """Rows mentioning any of ``vins``, per table."""
    return {t: await scalar(dsn, f"SELECT count(*) FROM {t} WHERE vin = ANY(%s)", vins) for t in VEHICLE_TABLES}


def secrets_in(text: str, secrets: tuple[str, ...]) -> list[str]:
    return [s for s in secrets if s in text]


# --- three tiers: private data stays home, secrets stay out of logs -----------------------------------------

@pytest_twisted.ensureDeferred
async def test_private_vehicles_never_leave_the_enterprise_and_no_password_reaches_a_log(make_db, tmp_path):
    """enterprise -> city (Nanjing, 3201) and -> province (Jiangsu, 32); city -> province.
    A fleet in Nanjing and one in Suzhou (3205), each half private. The city holds exactly
    Nanjing's public frames, the province both cities' public frames, and neither holds a
    row of a private VIN in any table. Throughout (upstream logins, platform logins, one
    attempt with a wrong password) no password appears in any node's debug output, in the
    audit log or in the archived frames."""
    nanjing = make_fleet(8, public_share=0.5, seed=41)
    suzhou = make_fleet(6, public_share=0.5, seed=42, region_code="320500")
    fleet = nanjing + suzhou
    private = [v.vin for v in fleet if not v.public]
    dsns = {t: make_db() for t in ("enterprise", "municipal", "provincial")}
    for dsn in dsns.values():
        seed(dsn, fleet_rows(fleet))
    prov = NodeProcess(reactor, "provincial", node_file(platform_config(
        "provincial", "JS32", dsns["provincial"], region="32", accounts=[
            {"username": "nanjing", "password_hash": NANJING_HASH, "allowed_owners": ["ENT01"]},
            {"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"]}]),
        tmp_path, "provincial", level="debug"))
    procs = [prov]
    try:
        prov_port = (await prov.start())["platforms"]
        muni = NodeProcess(reactor, "municipal", node_file(platform_config(
            "municipal", "NJ3201", dsns["municipal"], region="3201",
            accounts=[{"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"]}],
            upstreams=[upstream("provincial", prov_port, "nanjing", NANJING_PASSWORD, "NJ3201", regions=["32"])]),
            tmp_path, "municipal", level="debug"))
        procs.insert(0, muni)
        muni_port = (await muni.start())["platforms"]
        ent = NodeProcess(reactor, "enterprise", node_file(enterprise_config(dsns["enterprise"], upstreams=[
            upstream("municipal", muni_port, "ent01", ENT01_PASSWORD, "ENT01", regions=["3201"]),
            upstream("provincial", prov_port, "ent01", ENT01_PASSWORD, "ENT01", regions=["32"])]),
            tmp_path, "enterprise", level="debug"))
        procs.insert(0, ent)
        terminals = (await ent.start())["terminals"]
        for proc, name in ((ent, "municipal"), (ent, "provincial"), (muni, "provincial")):
            await until(reactor, online(proc, name), 15, what=f"{proc.name} -> {name} online")

        # someone tries the city with a wrong password
        intruder = await within(Deferred.fromCoroutine(connect(reactor, muni_port)), 10)
        intruder.send(platform_login("ent01", WRONG_PASSWORD))
        (refused,) = await intruder.answers(reactor, 1)
        assert refused.response == Response.ERROR
        await within(Deferred.fromCoroutine(intruder.close()), 10)

        sims = [VehicleSimulator(reactor, "127.0.0.1", terminals, f, interval=0.5) for f in (nanjing, suzhou)]
        results = [await within(d, 40) for d in [Deferred.fromCoroutine(sim.run(3.0)) for sim in sims]]
        assert [r["login_failures"] for r in results] == [0, 0]
        (nj, sz) = [r["frames_sent"] for r in results]
        public_nanjing, public_all = nj["public"], nj["public"] + sz["public"]
        sent = {"all": sum(nj.values()) + sum(sz.values()), "private": nj["private"] + sz["private"]}
        assert public_nanjing and sz["public"] and sent["private"]

        await count_is(dsns["enterprise"], "SELECT count(*) FROM realtime", sent["all"], "enterprise")
        await count_is(dsns["municipal"], "SELECT count(*) FROM realtime", public_nanjing, "city: Nanjing public")
        await count_is(dsns["provincial"], "SELECT count(*) FROM realtime", public_all, "province: all public")
        # the enterprise holds the private vehicles' data; nothing of it is anywhere upstream
        assert (await rows_of(dsns["enterprise"], private))["realtime"] == sent["private"]
        for tier in ("municipal", "provincial"):
            assert await rows_of(dsns[tier], private) == dict.fromkeys(VEHICLE_TABLES, 0), tier
            assert await scalar(dsns[tier], "SELECT count(*) FROM alarms WHERE vin = ANY(%s)", private) == 0
        assert await scalar(dsns["municipal"], "SELECT count(*) FROM frames WHERE vin = ANY(%s)",
                            [v.vin for v in suzhou]) == 0
        # nothing private waits in an outbox either (the policy never queued it)
        assert await scalar(dsns["enterprise"], "SELECT count(*) FROM outbox WHERE vin = ANY(%s)", private) == 0
    finally:
        await stop_all(procs)

    # every login happened while the logs were being written ...
    assert ent.proto.has_event("upstream_link_state", upstream="municipal", state="online")
    assert muni.proto.has_event("audit", action="platform_login", result="accepted", actor="ent01")
    assert muni.proto.has_event("audit", action="platform_login", result="refused", reason="bad_password")
    assert prov.proto.has_event("audit", action="platform_login", result="accepted", actor="nanjing")
    # ... and no password is in them, nor in the databases
    secrets = (ENT01_PASSWORD, NANJING_PASSWORD, WRONG_PASSWORD)
    for proc in procs:
        text = "\n".join(line for run in proc.runs for line in run.lines)
        assert secrets_in(text, secrets) == [], f"{proc.name} logged a password"
    for tier, dsn in dsns.items():
        for secret in secrets:
            assert await scalar(dsn, "SELECT count(*) FROM audit WHERE detail::text LIKE %s OR actor LIKE %s "
                                     "OR target LIKE %s", *([f"%{secret}%"] * 3)) == 0, (tier, secret)
            assert await scalar(dsn, "SELECT count(*) FROM frames WHERE position(convert_to(%s, 'UTF8') IN raw) > 0",
                                secret) == 0, (tier, secret)


# --- strict registry ----------------------------------------------------------------------------------------

KNOWN, STRANGER = "LNBSMX43000000001", "LNBSMX43000000099"


@pytest_twisted.ensureDeferred
async def test_strict_registry_refuses_unknown_vin_logins_in_both_editions_and_stores_nothing(db_dsn):
    """``registry.strict: true``: a login with a VIN missing from the registry is answered
    0x02 (2016) or 0x04 "VIN unknown" (2025), the data sent after it is refused as not
    logged in, and nothing of that VIN is stored; a registered vehicle is served."""
    seed(db_dsn, [(KNOWN, "bus", "320100", "ENT01", "SIM-EV", "")])
    raw = enterprise_config(db_dsn, answer_realtime=True)
    raw["registry"] = {"strict": True}
    node = await within(Deferred.fromCoroutine(start(reactor, raw)))
    clients = []
    try:
        port = node.port("terminals")
        with capture_logs() as logs:
            for edition, expected in ((Edition.V2016, Response.ERROR), (Edition.V2025, Response.VIN_UNKNOWN)):
                client = await within(Deferred.fromCoroutine(connect(reactor, port)), 10)
                clients.append(client)
                client.send(login_frame(STRANGER, edition=edition), data_frame(STRANGER, T0, edition=edition))
                login, data = await client.answers(reactor, 2)
                assert (login.command, login.response, login.vin) == (Command.VEHICLE_LOGIN, expected, STRANGER)
                assert (data.command, data.response) == (Command.REALTIME, Response.ERROR)
            member = await within(Deferred.fromCoroutine(connect(reactor, port)), 10)
            clients.append(member)
            member.send(login_frame(KNOWN), data_frame(KNOWN, T0))
            assert [a.response for a in await member.answers(reactor, 2)] == [Response.SUCCESS] * 2
        refusals = [(e["reason"], e["vin"]) for e in logs if e["event"] == "frame_refused"]
        assert refusals == [("vin_unknown", STRANGER), ("not_logged_in", STRANGER)] * 2
        assert await rows_of(db_dsn, [STRANGER]) == dict.fromkeys(VEHICLE_TABLES, 0)
        assert await scalar(db_dsn, "SELECT count(*) FROM realtime WHERE vin = %s", KNOWN) == 1
    finally:
        for client in clients:
            await within(Deferred.fromCoroutine(client.close()), 10)
        await within(node.stop())


# --- a platform's reach, and SQL through parameters -----------------------------------------------------------

OWN, FOREIGN, PRIVATE, SUZHOU, UNREGISTERED = (f"LNBSMX44000000{i:03d}" for i in (1, 2, 3, 4, 99))
DROP_VIN = "'; TRUNCATE audit"      # 17 characters: no account may send it
PREFIXED_VIN = "L';TRUNCATE audit"  # 17 characters, and "L'" is one of the account's VIN prefixes
SQL_USER = "x'OR'1'='1"             # at most 12 characters (platform login field)
SQL_PASSWORD = "';DROP TABLE audit--"  # 20 characters
TABLES = ("vehicles", "frames", "realtime", "latest", "logins", "outbox", "outbox_cursors", "unregistered", "audit",
          "alarms")


@pytest_twisted.ensureDeferred
async def test_a_platform_cannot_inject_vehicles_it_does_not_own_and_sql_goes_through_parameters(db_dsn, tmp_path):
    """At the city, ``ent01`` may send ENT01's public Nanjing vehicles and VINs starting with
    "L'". Logins with SQL in the username or the password are refused; logged in, its
    frames for another owner's, a private, a Suzhou and an unregistered vehicle, and a
    VIN made of SQL, are refused and audited (target = the VIN as sent); a VIN with SQL
    that its prefix allows is stored as text; API filters with SQL find nothing; every
    table is still there, and no password was logged."""
    seed(db_dsn, [(OWN, "bus", "320100", "ENT01", "SIM-EV", ""), (FOREIGN, "taxi", "320100", "ENT02", "SIM-EV", ""),
                  (PRIVATE, "private", "320100", "ENT01", "SIM-EV", ""),
                  (SUZHOU, "bus", "320500", "ENT01", "SIM-EV", "")])
    raw = with_api(platform_config("municipal", "NJ3201", db_dsn, region="3201", accounts=[
        {"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"],
         "allowed_vin_prefixes": ["L'"]}]))
    muni = NodeProcess(reactor, "municipal", node_file(raw, tmp_path, "municipal", level="debug"))
    client = None
    try:
        ports = await muni.start()
        client = await within(Deferred.fromCoroutine(connect(reactor, ports["platforms"])), 10)
        client.send(platform_login(SQL_USER, SQL_PASSWORD), platform_login("ent01", SQL_PASSWORD, serial=2))
        assert [a.response for a in await client.answers(reactor, 2)] == [Response.ERROR, Response.ERROR]
        client.send(platform_login("ent01", ENT01_PASSWORD, serial=3))
        assert (await client.answers(reactor, 3))[2].response == Response.SUCCESS

        refused = [FOREIGN, PRIVATE, SUZHOU, UNREGISTERED, DROP_VIN]
        client.send(*[data_frame(vin, T0) for vin in (OWN, *refused, PREFIXED_VIN)],
                    login_frame(FOREIGN, T0), heartbeat())
        # refusals are not answered (answer_data is off); the heartbeat answers after the commit
        beat = (await client.answers(reactor, 4))[3]
        assert (beat.command, beat.response) == (Command.HEARTBEAT, Response.SUCCESS)
        assert sorted(await rows(db_dsn, "SELECT vin, command FROM frames")) == sorted(
            [(OWN, Command.REALTIME), (PREFIXED_VIN, Command.REALTIME)])
        assert await scalar(db_dsn, "SELECT count(*) FROM realtime WHERE vin = %s", PREFIXED_VIN) == 1

        audit_sql = ("SELECT actor, action, result, target, detail->>'reason' FROM audit "
                     "WHERE action IN ('platform_login', 'frame_refused') ORDER BY id")
        await until(reactor, lambda: Deferred.fromCoroutine(rows(db_dsn, audit_sql)).addCallback(
            lambda r: len(r) >= 9), 10, what="audit rows")
        assert await rows(db_dsn, audit_sql) == [
            (SQL_USER, "platform_login", "refused", "", "unknown_account"),
            ("ent01", "platform_login", "refused", "", "bad_password"),
            ("ent01", "platform_login", "accepted", "", None),
            ("ent01", "frame_refused", "refused", FOREIGN, "vin_not_owned"),
            ("ent01", "frame_refused", "refused", PRIVATE, "private_vehicle"),
            ("ent01", "frame_refused", "refused", SUZHOU, "outside_region"),
            ("ent01", "frame_refused", "refused", UNREGISTERED, "vin_not_registered"),
            ("ent01", "frame_refused", "refused", DROP_VIN, "vin_not_registered"),
            ("ent01", "frame_refused", "refused", FOREIGN, "vin_not_owned"),
        ]

        # SQL in API query values is a value, not SQL
        for path in (f"/api/v1/vehicles?owner={quote(SQL_PASSWORD)}", f"/api/v1/vehicles?sector={quote(DROP_VIN)}",
                     f"/api/v1/alarms?vin={quote(DROP_VIN)}"):
            code, body = await api_get(ports["http"], path)
            assert code in (200, 400) and body.get("total", 0) == 0, (path, code, body)
        code, body = await api_get(ports["http"], "/api/v1/vehicles/" + quote(DROP_VIN, safe=""))
        assert code in (400, 404), (code, body)

        present = query(db_dsn, "SELECT count(*) FROM unnest(%s::text[]) t WHERE to_regclass(t) IS NOT NULL",
                        list(TABLES))
        assert present == [(len(TABLES),)]
        assert await scalar(db_dsn, "SELECT count(*) FROM vehicles") == 4
        assert await scalar(db_dsn, "SELECT count(*) FROM audit") >= 9
    finally:
        if client is not None:
            await within(Deferred.fromCoroutine(client.close()), 10)
        await stop_all([muni])
    text = "\n".join(muni.proto.lines)
    assert secrets_in(text, (ENT01_PASSWORD, SQL_PASSWORD)) == [], "the city logged a password"
    assert events(muni, "unhandled_error") == [] and events(muni, "api_error") == []
