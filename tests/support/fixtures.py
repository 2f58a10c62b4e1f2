"""Helpers shared by the relay tests: synchronous Deferred checks, frame builders,
waiting on a real reactor without sleeping blindly."""

from __future__ import annotations

from datetime import datetime

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

import codec
from codec import CST, Command, Edition, Encryption, Frame, Response
from codec.frame import realtime_frame
from codec.realtime import RealtimeData

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=CST)


def success_result_of(d: Deferred):
    results = []
    d.addBoth(results.append)
    assert results, "Deferred has no result yet"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def failure_result_of(d: Deferred, *types) -> Failure:
    results = []
    d.addBoth(results.append)
    assert results, "Deferred has no result yet"
    assert isinstance(results[0], Failure), f"expected a failure, got {results[0]!r}"
    if types:
        assert results[0].check(*types), f"unexpected failure {results[0]!r}"
    return results[0]


def assert_no_result(d: Deferred) -> None:
    results = []

    def seen(result):
        results.append(result)
        return result  # pass it on unchanged to the Deferred's owner

    d.addBoth(seen)
    assert not results, f"expected no result, got {results[0]!r}"


def login_frame(vin: str, when: datetime = T0, serial: int = 1, edition: Edition = Edition.V2016) -> Frame:
    return Frame(edition, Command.VEHICLE_LOGIN, Response.COMMAND, vin, Encryption.NONE,
                 codec.VehicleLogin(when, serial, "89860000000000000001", ("PACK01",), 6))


def logout_frame(vin: str, when: datetime = T0, serial: int = 1, edition: Edition = Edition.V2016) -> Frame:
    return Frame(edition, Command.VEHICLE_LOGOUT, Response.COMMAND, vin, Encryption.NONE,
                 codec.Logout(when, serial))


def small_items(speed: float = 30.0, soc: int = 80) -> dict:
    return {
        "vehicle": {"state": "started", "charging_state": "not_charging", "mode": "electric", "speed_kmh": speed,
                    "odometer_km": 1234.5, "total_voltage_v": 350.0, "total_current_a": 10.0, "soc_pct": soc,
                    "dcdc_state": "working", "gear": "D", "braking_force": False, "driving_force": True,
                    "insulation_kohm": 5000, "accelerator_pct": 20, "brake": 0},
        "position": {"valid": True, "longitude": 118.796877, "latitude": 32.060255},
        "alarm": {"max_level": 0, "flags": [], "battery_faults": [], "motor_faults": [], "engine_faults": [],
                  "other_faults": []},
    }


def data_frame(vin: str, when: datetime = T0, reissue: bool = False, items: dict | None = None,
               edition: Edition = Edition.V2016) -> Frame:
    return realtime_frame(edition, vin, RealtimeData(when, items or small_items()), reissue=reissue)


def encoded(frame: Frame) -> bytes:
    return codec.encode_frame(frame)


@pytest.fixture
def frames():
    """The frame builders, as one namespace."""
    import types

    return types.SimpleNamespace(login=login_frame, logout=logout_frame, data=data_frame, encoded=encoded,
                                 items=small_items, T0=T0)
