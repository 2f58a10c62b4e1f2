"""The web dashboard in headless Chromium, over a real enterprise node with an HTTP listener.

A scripted terminal feeds four vehicles (one with a level-3 alarm, one alarming often, two
parked together) plus one registered vehicle that never reported; Debian's ``chromium``
then loads the dashboard with a read token in the address (``#token=...``) and the test
checks (a) the DOM after the scripts ran (``--dump-dom``): overview numbers, the VIN, the
level-3 count, the hazard lists, the charging overview, the vehicle page's archive, the
request for a token when there is none; (b) screenshots: not blank, the position scatter
coloured by alarm level, the vehicle's speed plot drawn; (c) the acknowledge button, driven
over the DevTools pipe: refused with an explanation for the read token, done for operate.

Chromium is required, not optional: without it the test fails and says how to install it.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.threads import deferToThread

import relay
from codec import CST
from relay.api import hash_token
from tests.support import browser
from tests.support.fixtures import data_frame, login_frame, small_items
from tests.support.nodes import connect, enterprise_config, start
from tests.support.wait import until

READ, OPERATE = "dashboard-read-token", "dashboard-operate-token"

#: V1 drives with a level-3 alarm at the end; V2 raises a level-1 alarm three times; V3 and V5
#: are parked side by side (a cluster of two); V4 is registered but silent for 100 days.
V1, V2, V3, V4, V5 = (f"LDASHB0100000000{i}" for i in range(1, 6))
REGISTRY = [(V1, "bus", "320100", "ENT01", "K9 bus", "AB12345"),
            (V2, "taxi", "320100", "ENT01", "E5 taxi", "AT67890"),
            (V3, "private", "320102", "ENT01", "Model P", "AP11111"),
            (V4, "bus", "320104", "ENT01", "K9 bus", "AB99999"),
            (V5, "logistics", "320102", "ENT01", "Van L", "AL22222")]
V1_FRAMES = 30
RED, YELLOW, BLUE_LINE = (0xD3, 0x2F, 0x2F), (0xF9, 0xA8, 0x25), (0x15, 0x65, 0xC0)


def _config(dsn: str) -> dict:
    raw = enterprise_config(dsn, answer_realtime=True)
    raw["http"] = {"endpoint": "tcp:0:interface=127.0.0.1",
                   "tokens": [{"name": "viewer", "token_hash": hash_token(READ), "role": "read"},
                              {"name": "duty", "token_hash": hash_token(OPERATE), "role": "operate"}]}
    raw["hazards"] = {"frequent_alarms": 3, "frequent_alarms_window_hours": 24.0, "cluster_radius_m": 100.0,
                      "cluster_min_vehicles": 2, "cluster_min_hours": 0.1}
    return raw


def _items(speed: float, soc: int, voltage: float, lon: float, lat: float, level: int = 0,
           flags: list[str] | None = None) -> dict:
    items = small_items(speed=speed, soc=soc)
    items["vehicle"]["total_voltage_v"] = voltage
    items["vehicle"]["state"] = "started" if speed > 0 else "off"
    items["position"] = {"valid": True, "longitude": lon, "latitude": lat}
    items["alarm"] = {"max_level": level, "flags": flags or ([] if level == 0 else ["insulation"]),
                      "battery_faults": [7] if level >= 3 else [], "motor_faults": [], "engine_faults": [],
                      "other_faults": []}
    return items


def scripts(now: datetime) -> dict[str, list]:
    """The frames of each vehicle (collection times relative to ``now``, so that the
    dashboard's "last 30 days" and "online" views hold them whatever the date)."""
    base = now.astimezone(CST).replace(microsecond=0)
    out: dict[str, list] = {}
    start1 = base - timedelta(minutes=10)
    frames = []
    for i in range(V1_FRAMES):
        speed = round(40 + 25 * math.sin(i / 4), 1)
        level = 3 if i >= V1_FRAMES - 3 else 0
        frames.append(data_frame(V1, start1 + timedelta(seconds=10 * i), items=_items(
            speed, 80 - i // 6, round(352 - i * 0.4, 1), 118.7800 + i * 0.0006, 32.0500 + i * 0.0003, level)))
    out[V1] = [login_frame(V1, start1 - timedelta(seconds=5)), *frames]
    start2 = base - timedelta(minutes=8)
    levels2 = [1, 0, 1, 0, 1, 1]
    out[V2] = [login_frame(V2, start2 - timedelta(seconds=5))] + [
        data_frame(V2, start2 + timedelta(seconds=10 * i), items=_items(20.0 + i, 60, 340.0, 118.8400, 32.0200,
                                                                       level, ["dcdc_temperature"] if level else []))
        for i, level in enumerate(levels2)]
    start3 = base - timedelta(minutes=20)
    for vin, lon in ((V3, 118.7600), (V5, 118.7603)):
        out[vin] = [login_frame(vin, start3 - timedelta(seconds=5))] + [
            data_frame(vin, start3 + timedelta(seconds=10 * i), items=_items(0.0, 55, 330.0, lon, 32.0700))
            for i in range(4)]
    return out


def register(dsn: str) -> None:
    """The registry; V4 entered it 100 days ago (registered_at, and updated_at on schemas
    that count silence from it)."""
    with psycopg.connect(dsn) as conn:
        for row in REGISTRY:
            conn.execute("INSERT INTO vehicles (vin, sector, region_code, owner, model, plate) "
                         "VALUES (%s, %s, %s, %s, %s, %s)", row)
        columns = {name for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'vehicles' "
            "AND column_name IN ('registered_at', 'updated_at')")}
        for column in sorted(columns):
            conn.execute(f"UPDATE vehicles SET {column} = now() - interval '100 days' WHERE vin = %s", (V4,))


def charging(dsn: str) -> None:
    """A charging station as the T/CEC input would have stored it (the dashboard only reads
    the tables): three connectors (idle, charging, faulted), one finished session, one fault."""
    op = "MA01H3BQ2"
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO charging_stations (operator_id, station_id, name, region_code, station_type, "
                     "station_status, updated_at) VALUES (%s, 'ST0001', 'Depot 1', '320100', 100, 50, now())", (op,))
        for connector, status in (("C01", 1), ("C02", 3), ("C03", 255)):
            conn.execute("INSERT INTO charging_connectors (operator_id, connector_id, equipment_id, station_id, "
                         "status, status_at) VALUES (%s, %s, 'EQ01', 'ST0001', %s, now())", (op, connector, status))
        conn.execute("INSERT INTO charging_records (operator_id, session_id, connector_id, started_at, ended_at, "
                     "energy_kwh, collected_at, frame_id) VALUES (%s, 'S0001', 'C02', now() - interval '2 hours', "
                     "now() - interval '1 hour', 42.5, now(), 1)", (op,))
        conn.execute("INSERT INTO charging_alarms (operator_id, target_id, code, level, state, started_at, "
                     "collected_at, frame_id) VALUES (%s, 'C03', 'E12', 2, 1, now(), now(), 2)", (op,))


async def feed(node) -> int:
    """Send every vehicle's frames from its own terminal connection, each frame after the
    answer to the previous one (as a terminal reporting every 10 s would, so each is stored
    in its own writer batch); returns the number of data frames sent."""
    sent = 0
    for vin, frames in scripts(datetime.now(CST)).items():
        client = await connect(reactor, node.port("terminals"))
        for n, frame in enumerate(frames, start=1):
            client.send(frame)
            await client.answers(reactor, n)
        await client.close()
        sent += len(frames) - 1
    return sent


async def api_get(port: int, path: str):
    resp = await treq.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": [f"Bearer {READ}"]})
    return json.loads(await resp.content())


#: clicks the first "Acknowledge" button of the open-alarms list and waits (real time) for the
#: message it shows and for the list to be reloaded
CLICK_ACKNOWLEDGE = """(async () => {
  const until = async (f, ms) => { const end = Date.now() + ms;
    for (;;) { const v = f(); if (v || Date.now() > end) return v; await new Promise(r => setTimeout(r, 50)); } };
  const button = await until(() => document.querySelector('#alarms button[data-action="acknowledge"]'), 10000);
  if (!button) return {error: "no acknowledge button"};
  const alarm = button.dataset.alarm;
  button.click();
  const box = await until(() => { const m = document.getElementById("alarm-message");
                                  return !m.hidden && m.textContent ? m : null; }, 10000);
  const reloaded = await until(() => document.getElementById("alarms").textContent.includes("duty"), 10000);
  return {alarm, text: box && box.textContent, error: box && box.classList.contains("error"), reloaded};
})()"""


def test_dashboard_uses_no_internet_resources():
    """Everything the page loads comes from the node (/static/...), nothing from a CDN."""
    folder = Path(relay.__file__).parent / "dashboard"
    for name in ("index.html", "app.js", "style.css"):
        text = (folder / name).read_text(encoding="utf-8")
        assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", text, re.I), name
        assert not re.search(r"""url\(\s*["']?(https?:)?//|@import|https?://""", text, re.I), name


def _box(el: browser.Element) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in el.attrs["data-box"].split(","))
    return x, y, w, h


@pytest_twisted.ensureDeferred
async def test_dashboard_in_headless_chromium(db_dsn, tmp_path):
    chromium = browser.find_chromium()
    register(db_dsn)
    charging(db_dsn)
    node = await start(reactor, _config(db_dsn))
    try:
        port = node.port("http")
        data_frames = await feed(node)

        async def stored():
            stats = await api_get(port, "/api/v1/stats")
            alarms = await api_get(port, "/api/v1/alarms?limit=1")
            return stats["frames"]["data"] == data_frames and alarms["total"] == 4

        await until(reactor, stored, 10, what="the frames and alarms in the database")
        base = f"http://127.0.0.1:{port}/"
        overview, vehicle_page = f"{base}#token={READ}", f"{base}#token={READ}&vin={V1}"
        started = time.monotonic()
        # the read-only runs at once, each browser in its own thread and profile
        dom, bare_dom, vehicle_dom, overview_png, vehicle_png = await gatherResults([
            deferToThread(browser.dump_dom, chromium, overview),
            deferToThread(browser.dump_dom, chromium, base),
            deferToThread(browser.dump_dom, chromium, vehicle_page),
            deferToThread(browser.screenshot, chromium, overview, tmp_path / "overview.png"),
            deferToThread(browser.screenshot, chromium, vehicle_page, tmp_path / "vehicle.png")])
        (tmp_path / "overview.html").write_text(dom, encoding="utf-8")
        (tmp_path / "vehicle.html").write_text(vehicle_dom, encoding="utf-8")

        # -- (a) the overview's DOM after its scripts ran
        el = browser.elements(dom)
        assert el["banner"].attrs.get("hidden") is not None, f"unexpected banner: {el['banner'].text}"
        assert el["stat-registered"].text == "5"
        assert el["stat-seen"].text == "4"
        assert el["stat-online"].text == "4"
        assert el["stat-open-alarms"].text == "2"  # V1's level 3 and V2's last level 1
        assert el["stat-frames"].text == str(data_frames)
        assert el["alarm-level-3"].text == "1" and el["alarm-level-1"].text == "3" and el["alarm-level-2"].text == "0"
        for vin in (V1, V2, V3, V5):
            assert vin in el["vehicles"].text
        assert V4 not in el["vehicles"].text  # never online
        assert V1 in el["alarms"].text and V2 in el["alarms"].text
        assert "Acknowledge" in el["alarms"].text and "Handle" in el["alarms"].text
        assert V4 in el["hz-offline"].text and el["hz-offline-count"].text == "(1)"
        assert V3 in el["hz-clusters"].text and V5 in el["hz-clusters"].text and el["hz-clusters-count"].text == "(1)"
        assert V2 in el["hz-frequent"].text and V1 not in el["hz-frequent"].text
        assert el["map"].attrs["data-points"] == "4"
        assert "ST0001" in el["charging"].text and "42.50" in el["charging"].text and "C03" in el["charging"].text

        # -- no token: the page asks for one instead of showing data
        bare = browser.elements(bare_dom)
        assert bare["banner"].attrs.get("hidden") is None and "API token" in bare["banner"].text
        assert bare["stat-registered"].text == "–"

        # -- (b) the overview's screenshot: not blank, the scatter coloured by alarm level
        picture = browser.read_png(overview_png)
        assert (picture.width, picture.height) == browser.WINDOW
        assert len(picture.colours(step=2)) > 50, "the overview screenshot looks blank"
        map_box = _box(el["map"])
        assert picture.has_colour(RED, map_box), "no level-3 (red) point on the position scatter"
        assert picture.has_colour(YELLOW, map_box), "no level-1 (yellow) point on the position scatter"

        # -- the vehicle page: archive in the DOM, plots in the screenshot
        v = browser.elements(vehicle_dom)
        assert v["view-vehicle"].attrs.get("hidden") is None and v["view-overview"].attrs.get("hidden") is not None
        assert v["v-vin"].text == V1
        assert "K9 bus" in v["v-registry"].text and "AB12345" in v["v-registry"].text
        assert v["v-alarm-level-3"].text == "1"
        assert f"{V1_FRAMES}" in v["v-life"].text
        assert "insulation" in v["v-alarms"].text
        assert "login" in v["v-logins"].text
        for plot in ("plot-speed", "plot-soc", "plot-voltage"):
            assert v[plot].attrs["data-points"] == str(V1_FRAMES), plot
        picture = browser.read_png(vehicle_png)
        assert len(picture.colours(step=2)) > 30, "the vehicle page screenshot looks blank"
        speed_box = _box(v["plot-speed"])
        assert speed_box[1] + speed_box[3] <= picture.height, "the speed plot is below the screenshot"
        assert len(picture.colours(speed_box)) > 10, "the speed plot is blank"
        assert picture.has_colour(BLUE_LINE, speed_box), "no speed line on the speed plot"
        assert picture.has_colour(RED, speed_box), "no level-3 alarm mark on the speed plot"

        # -- acknowledge: refused for the read token (the page says why), done with operate
        refused = await deferToThread(browser.evaluate, chromium, f"{base}#token={READ}", CLICK_ACKNOWLEDGE)
        assert refused["error"] and "operate role" in refused["text"], refused
        done = await deferToThread(browser.evaluate, chromium, f"{base}#token={OPERATE}", CLICK_ACKNOWLEDGE)
        assert not done["error"] and "acknowledged by duty" in done["text"] and done["reloaded"], done
        alarm = await api_get(port, f"/api/v1/alarms?vin={V1}")
        assert alarm["items"][0]["acknowledged_by"] == "duty" and str(alarm["items"][0]["id"]) == done["alarm"]
        print(f"browser part: {time.monotonic() - started:.1f}s; pages and screenshots in {tmp_path}")
    finally:
        await node.stop()
