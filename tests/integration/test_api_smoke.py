"""The HTTP API over a real node: authentication, roles, audit, a few queries."""

from __future__ import annotations

import json

import psycopg
import pytest_twisted
import treq
from twisted.internet import reactor

from relay.api import hash_token
from tests.support.fixtures import T0, data_frame, login_frame, small_items
from tests.support.nodes import connect, enterprise_config, start

VIN = "LNBSMX01000000002"
READ, OPERATE = "read-token-for-tests", "operate-token-for-tests"


def _config(dsn):
    raw = enterprise_config(dsn, answer_realtime=True)
    raw["http"] = {"endpoint": "tcp:0:interface=127.0.0.1",
                   "tokens": [{"name": "viewer", "token_hash": hash_token(READ), "role": "read"},
                              {"name": "duty", "token_hash": hash_token(OPERATE), "role": "operate"}]}
    return raw


async def _get(port, path, token=READ):
    headers = {"Authorization": [f"Bearer {token}"]} if token else {}
    resp = await treq.get(f"http://127.0.0.1:{port}{path}", headers=headers)
    return resp.code, json.loads(await resp.content())


@pytest_twisted.ensureDeferred
async def test_api_needs_a_token_and_audits_every_request(db_dsn):
    with psycopg.connect(db_dsn) as conn:
        conn.execute("INSERT INTO vehicles (vin, sector, region_code, owner) VALUES (%s, 'bus', '320100', 'ENT01')",
                     (VIN,))
    node = await start(reactor, _config(db_dsn))
    try:
        port = node.port("http")
        client = await connect(reactor, node.port("terminals"))
        alarm = small_items()
        alarm["alarm"] = {"max_level": 3, "flags": ["insulation"], "battery_faults": [7], "motor_faults": [],
                          "engine_faults": [], "other_faults": []}
        client.send(login_frame(VIN), data_frame(VIN, T0.replace(second=1)), data_frame(VIN, T0.replace(second=2),
                                                                                    items=alarm))
        await client.answers(reactor, 3)
        await client.close()

        code, body = await _get(port, "/api/v1/vehicles", token=None)
        assert code == 401
        code, body = await _get(port, "/api/v1/vehicles")
        assert code == 200 and body["total"] == 1 and body["items"][0]["vin"] == VIN
        code, body = await _get(port, f"/api/v1/vehicles/{VIN}")
        assert code == 200 and body["alarm_level"] == 3
        code, body = await _get(port, f"/api/v1/alarms?vin={VIN}")
        assert body["total"] == 1 and body["items"][0]["max_level"] == 3
        alarm_id = body["items"][0]["id"]
        resp = await treq.post(f"http://127.0.0.1:{port}/api/v1/alarms/{alarm_id}/acknowledge",
                               json.dumps({"note": "crew informed"}).encode(),
                               headers={"Authorization": [f"Bearer {READ}"]})
        assert resp.code == 403
        resp = await treq.post(f"http://127.0.0.1:{port}/api/v1/alarms/{alarm_id}/acknowledge",
                               json.dumps({"note": "crew informed"}).encode(),
                               headers={"Authorization": [f"Bearer {OPERATE}"]})
        acked = json.loads(await resp.content())
        assert resp.code == 200 and acked["acknowledged_by"] == "duty" and acked["note"] == "crew informed"
        code, spec = await _get(port, "/api/v1/openapi.json", token=None)
        assert code == 200 and "/api/v1/vehicles/{vin}/archive" in spec["paths"]
        resp = await treq.get(f"http://127.0.0.1:{port}/api/v1/export?vin={VIN}&from=2026-11-25T00:00:00%2B08:00"
                              f"&to=2026-11-26T00:00:00%2B08:00&format=csv",
                              headers={"Authorization": [f"Bearer {READ}"]})
        text = (await resp.content()).decode()
        assert resp.code == 200 and text.splitlines()[0].startswith("vin,collected_at") and len(text.splitlines()) == 3
        resp = await treq.get(f"http://127.0.0.1:{port}/metrics")
        body = await resp.content()
        assert b"relay_frames_received" in body
        assert b"relay_writer_duplicates_in_memory_total 0.0" in body
        await node.audit.flush()
        with psycopg.connect(db_dsn) as conn:
            results = dict(conn.execute("SELECT result, count(*) FROM audit WHERE action = 'api' GROUP BY 1").fetchall())
        assert results["refused"] >= 2 and results["ok"] >= 5
    finally:
        await node.stop()
