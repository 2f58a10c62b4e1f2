"""TLS between tiers, configured with Twisted endpoint strings only.

The city listens with ``ssl:0:interface=127.0.0.1:privateKey=KEY:certKey=CERT``; the
enterprise's upstream is ``tls:host=127.0.0.1:port=P:trustRoots=DIR`` (every ``*.pem`` in
DIR is a trusted CA; the certificate must name the host, here the IP address
127.0.0.1). Certificates come from ``tests/support/tls.py``.

* the right CA and name: the link logs in over TLS and frames flow; a client speaking
  plain TCP to the TLS listener gets nothing;
* a certificate from another CA, or one that does not name 127.0.0.1: the link never
  comes online, no login (so no password) reaches the city, nothing is forwarded, the
  frames wait in the enterprise's outbox, and the enterprise logs why.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from structlog.testing import capture_logs
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString

from codec import Response
from tests.chaos.conftest import count_is, platform_login, query, rows, scalar, seed, within
from tests.support.fixtures import T0, data_frame, login_frame, logout_frame
from tests.support.nodes import ENT01_HASH, ScriptedClient, connect, enterprise_config, platform_config, start, upstream
from tests.support.tls import CertificateAuthority, endpoint_path
from tests.support.wait import until

pytestmark = pytest.mark.timeout(90)

VIN = "LNBSMX51000000001"


def _at(i: int):
    from datetime import timedelta
    return T0 + timedelta(seconds=10 * i)


def tls_listener(cert, key) -> str:
    return f"ssl:0:interface=127.0.0.1:privateKey={endpoint_path(key)}:certKey={endpoint_path(cert)}"


def tls_upstream(port: int, trust_dir, client=None) -> dict:
    endpoint = f"tls:host=127.0.0.1:port={port}:trustRoots={endpoint_path(trust_dir)}"
    if client is not None:
        cert, key = client
        endpoint += f":certificate={endpoint_path(cert)}:privateKey={endpoint_path(key)}"
    return {**upstream("municipal", port, "ent01", "ent01-demo", "ENT01", regions=["3201"]), "endpoint": endpoint}


def city(dsn: str, endpoint: str) -> dict:
    return platform_config("municipal", "NJ3201", dsn, region="3201", endpoint=endpoint, accounts=[
        {"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"]}])


async def send_vehicle(port: int, frames: int) -> None:
    terminal = await within(Deferred.fromCoroutine(connect(reactor, port)), 10)
    try:
        terminal.send(login_frame(VIN), *[data_frame(VIN, _at(i + 1)) for i in range(frames)],
                      logout_frame(VIN, _at(frames + 1)))
        answers = await terminal.answers(reactor, 2)
        assert [a.response for a in answers] == [Response.SUCCESS] * 2
    finally:
        await within(Deferred.fromCoroutine(terminal.close()), 10)


def _abort_tls(node) -> None:
    """Drop every connection of ``node`` without a TLS goodbye (what a network failure does)."""
    for link in node.links.values():
        if link.proto is not None and link.proto.transport is not None:
            link.proto.transport.abortConnection()
    for factory in (node.platforms, node.terminals):
        for session in list(factory.sessions) if factory is not None else []:
            session.transport.abortConnection()


async def stop_promptly(node, seconds: float = 5.0) -> bool:
    """Stop ``node``; True if it stopped by itself within ``seconds``. If it did not, its
    connections are aborted so that the stop can end (a stop left hanging keeps the node's
    threads alive, and the test process could not exit)."""
    d = node.stop()
    done: list = []
    d.addBoth(lambda result: (done.append(True), result)[1])
    try:
        await until(reactor, lambda: done, seconds, every=0.05, what="the node stopped")
        prompt = True
    except AssertionError:
        prompt = False
        _abort_tls(node)
    await within(d, 30)
    return prompt


class Nodes:
    def __init__(self) -> None:
        self.started = []

    async def start(self, raw: dict):
        node = await within(Deferred.fromCoroutine(start(reactor, raw)))
        self.started.append(node)
        return node

    async def stop(self) -> list[bool]:
        """Stop the nodes, last started first; whether each stopped by itself."""
        prompt = []
        while self.started:
            prompt.append(await stop_promptly(self.started.pop()))
        return prompt


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """One CA with a server certificate for 127.0.0.1, one for another name, a client
    certificate; and another CA that signed none of them."""
    base = tmp_path_factory.mktemp("pki")
    ca, other = CertificateAuthority.create("relay test CA"), CertificateAuthority.create("someone else's CA")
    return {
        "trust": ca.write_trust_root(base / "trust"),
        "other_trust": other.write_trust_root(base / "other-trust"),
        "server": ca.issue("municipal", ips=["127.0.0.1"]).write(base / "server"),
        "misnamed": ca.issue("municipal", dns=["municipal.example"]).write(base / "misnamed"),
        "client": ca.issue("ENT01", client=True).write(base / "client"),
    }


@pytest_twisted.ensureDeferred
async def test_frames_flow_over_tls_between_enterprise_and_city(make_db, pki):
    """A TLS listener at the city and a TLS upstream at the enterprise that trusts the
    city's CA: the link logs in and every frame arrives; plain TCP to the same port gets
    no answer."""
    ent_db, muni_db = make_db(), make_db()
    for dsn in (ent_db, muni_db):
        seed(dsn, [(VIN, "bus", "320100", "ENT01", "SIM-EV", "")])
    nodes = Nodes()
    try:
        muni = await nodes.start(city(muni_db, tls_listener(*pki["server"])))
        port = muni.port("platforms")
        ent = await nodes.start(enterprise_config(ent_db, answer_realtime=True, upstreams=[
            tls_upstream(port, pki["trust"], client=pki["client"])]))
        link = ent.links["municipal"]
        await until(reactor, lambda: link.state == "online", 15, what="the TLS link online")
        await send_vehicle(ent.port("terminals"), 5)
        await count_is(muni_db, "SELECT count(*) FROM frames", 7, "login, 5 frames and logout at the city")
        assert await scalar(muni_db, "SELECT count(*) FROM realtime WHERE vin = %s", VIN) == 5
        assert link.logins == 1 and link.login_failures == 0

        # the listener speaks TLS only: a platform login in clear text is not understood
        plain = await within(Deferred.fromCoroutine(connect(reactor, port)), 10)
        plain.send(platform_login("ent01", "ent01-demo"))
        await within(plain.lost, 10)  # the TLS layer gives up on bytes that are no handshake
        assert plain.received == []
        logins = "SELECT actor, result FROM audit WHERE action = 'platform_login'"
        # the audit log is written in small batches: wait for it, then check nothing else came
        await until(reactor, lambda: Deferred.fromCoroutine(rows(muni_db, logins)), 10, what="the login audited")
        assert await rows(muni_db, logins) == [("ent01", "accepted")]
    finally:
        await nodes.stop()


@pytest.mark.parametrize("trust, server", [
    pytest.param("other_trust", "server", id="certificate_from_another_ca"),
    pytest.param("trust", "misnamed", id="certificate_for_another_name"),
])
@pytest_twisted.ensureDeferred
async def test_an_upstream_whose_certificate_does_not_check_out_is_never_used(make_db, pki, trust, server):
    """The enterprise refuses the city's certificate: its link retries with backoff but is
    never online, the city sees no platform login (no password left the enterprise) and no
    frame; the frames wait in the enterprise's outbox; the enterprise logs the failed
    connection with the TLS reason."""
    ent_db, muni_db = make_db(), make_db()
    for dsn in (ent_db, muni_db):
        seed(dsn, [(VIN, "bus", "320100", "ENT01", "SIM-EV", "")])
    nodes = Nodes()
    try:
        with capture_logs() as logs:
            muni = await nodes.start(city(muni_db, tls_listener(*pki[server])))
            ent = await nodes.start(enterprise_config(ent_db, answer_realtime=True, upstreams=[
                tls_upstream(muni.port("platforms"), pki[trust])]))
            link = ent.links["municipal"]
            await send_vehicle(ent.port("terminals"), 3)
            retries = lambda: [e for e in logs if e["event"] == "upstream_retry"]  # noqa: E731
            await until(reactor, lambda: len(retries()) >= 3, 15, what="three failed connection attempts")
        assert link.state != "online" and link.logins == 0
        states = [e for e in logs if e["event"] == "upstream_link_state"]
        assert "online" not in [e["state"] for e in states]
        reasons = [e.get("reason", "") for e in states if e["state"] == "connecting" and e.get("reason")]
        # OpenSSL's "certificate verify failed" for an unknown CA; service_identity's
        # IPAddressMismatch for a certificate that does not name 127.0.0.1
        assert reasons and all("certificate verify failed" in r or "Mismatch" in r for r in reasons), reasons
        assert await scalar(muni_db, "SELECT count(*) FROM audit WHERE action = 'platform_login'") == 0
        assert await scalar(muni_db, "SELECT count(*) FROM frames") == 0
        assert query(ent_db, "SELECT count(*) FROM outbox WHERE upstream = 'municipal'") == [(5,)]
    finally:
        await nodes.stop()


# --- closing TLS connections ------------------------------------------------------------------------------

async def tls_client(port: int, trust_dir) -> ScriptedClient:
    client = ScriptedClient()
    endpoint = clientFromString(reactor, f"tls:host=127.0.0.1:port={port}:trustRoots={endpoint_path(trust_dir)}")
    await within(endpoint.connect(protocol.Factory.forProtocol(lambda: client)), 10)
    return client


@pytest_twisted.ensureDeferred
async def test_an_enterprise_with_a_tls_upstream_stops_promptly(make_db, pki):
    """Stopping a node whose upstream link is TLS: it logs out and closes the link within
    a few seconds (as it does over plain TCP)."""
    ent_db, muni_db = make_db(), make_db()
    nodes = Nodes()
    try:
        muni = await nodes.start(city(muni_db, tls_listener(*pki["server"])))
        ent = await nodes.start(enterprise_config(ent_db, upstreams=[
            tls_upstream(muni.port("platforms"), pki["trust"])]))
        await until(reactor, lambda: ent.links["municipal"].state == "online", 15, what="the TLS link online")
        nodes.started.remove(ent)
        assert await stop_promptly(ent, 5.0), "the enterprise did not stop within 5 s"
    finally:
        await nodes.stop()


@pytest_twisted.ensureDeferred
async def test_a_tls_listener_closes_idle_sessions_and_closes_all_on_stop(make_db, pki):
    """A city with a TLS listener and a 1 s idle timeout: a platform that logs in over TLS
    and then says nothing is closed after about a second; one still connected when the
    city stops is closed and the stop ends within a few seconds."""
    nodes = Nodes()
    clients = []
    try:
        raw = city(make_db(), tls_listener(*pki["server"]))
        raw["listeners"]["platforms"]["idle_timeout"] = 1.0
        muni = await nodes.start(raw)
        port = muni.port("platforms")
        for _ in range(2):
            client = await tls_client(port, pki["trust"])
            clients.append(client)
            client.send(platform_login("ent01", "ent01-demo"))
            (answer,) = await client.answers(reactor, 1)
            assert answer.response == Response.SUCCESS  # the handshake is done, the platform logged in
        started = reactor.seconds()
        try:
            await within(clients[0].lost, 5)
            idle_closed = reactor.seconds() - started
        except Exception:  # noqa: BLE001 - reported below
            idle_closed = None
        stopped = await nodes.stop()
        assert idle_closed is not None and idle_closed < 3.0, f"idle TLS session closed after {idle_closed}"
        assert stopped == [True], "the city did not stop within 5 s"
    finally:
        await nodes.stop()
        for client in clients:
            if client.transport is not None and not client.lost.called:
                client.transport.abortConnection()
