"""What goes upstream (relay/policy.py): pure functions over registry entries and routes.

This node's upstreams: "nanjing" (region prefix 3201, charging, public facilities only),
"jiangsu" (prefix 32, charging including private facilities), "national" (every region,
no charging).
"""

from __future__ import annotations

import pytest

from codec import Command
from relay.config import DEFAULT_PUBLIC_SECTORS
from relay.policy import Route, VehicleEntry, charging_routes, is_forwarded_command, region_matches, \
    vehicle_routes

PUBLIC = frozenset(DEFAULT_PUBLIC_SECTORS)
ROUTES = (
    Route("nanjing", ("3201",), charging=True, charging_private=False),
    Route("jiangsu", ("32",), charging=True, charging_private=True),
    Route("national", (), charging=False, charging_private=False),
)


def entry(sector: str = "bus", region: str = "320102") -> VehicleEntry:
    return VehicleEntry("LNBSMX01000000001", sector, region, "ENT01")


@pytest.mark.parametrize("vehicle, expected", [
    pytest.param(entry("bus", "320102"), ["nanjing", "jiangsu", "national"], id="nanjing_bus"),
    pytest.param(entry("taxi", "320500"), ["jiangsu", "national"], id="suzhou_taxi"),
    pytest.param(entry("bus", "310101"), ["national"], id="shanghai_bus"),
    pytest.param(entry("sanitation", "3201"), ["nanjing", "jiangsu", "national"], id="region_equal_to_prefix"),
    pytest.param(entry("bus", "32"), ["jiangsu", "national"], id="region_shorter_than_a_prefix"),
    pytest.param(entry("private", "320102"), [], id="private_car_goes_nowhere"),
    pytest.param(None, [], id="unregistered_goes_nowhere"),
    pytest.param(entry("Bus", "320102"), [], id="sector_names_are_exact"),
])
def test_vehicle_frames_go_to_the_upstreams_whose_region_prefixes_match(vehicle, expected):
    assert vehicle_routes(vehicle, PUBLIC, ROUTES) == expected


def test_a_sector_left_out_of_public_sectors_is_treated_as_private():
    assert vehicle_routes(entry("taxi"), frozenset({"bus"}), ROUTES) == []


def test_with_no_upstreams_nothing_goes_up():
    assert vehicle_routes(entry(), PUBLIC, ()) == []


@pytest.mark.parametrize("region, public, expected", [
    pytest.param("320102", True, ["nanjing", "jiangsu"], id="public_station_in_nanjing"),
    pytest.param("320102", False, ["jiangsu"], id="private_station_only_where_allowed"),
    pytest.param("320500", True, ["jiangsu"], id="public_station_in_suzhou"),
    pytest.param("310101", True, [], id="station_outside_every_charging_region"),
])
def test_charging_messages_go_to_charging_upstreams_by_region_and_facility_type(region, public, expected):
    assert charging_routes(region, public, ROUTES) == expected


@pytest.mark.parametrize("region, prefixes, expected", [
    pytest.param("320102", (), True, id="no_prefix_means_everywhere"),
    pytest.param("320102", ("31", "3201"), True, id="second_prefix_matches"),
    pytest.param("320102", ("320103",), False, id="sibling_district"),
    pytest.param("", ("32",), False, id="no_region"),
])
def test_region_prefixes(region, prefixes, expected):
    assert region_matches(region, prefixes) is expected


@pytest.mark.parametrize("command, forwarded", [
    *[pytest.param(c, True, id=c.name.lower()) for c in (
        Command.VEHICLE_LOGIN, Command.REALTIME, Command.REISSUE, Command.VEHICLE_LOGOUT, Command.CHARGING_STATIC,
        Command.CHARGING_STATUS, Command.CHARGING_MEASUREMENT, Command.CHARGING_RECORD, Command.CHARGING_ALARM)],
    *[pytest.param(c, False, id=c.name.lower()) for c in (
        Command.PLATFORM_LOGIN, Command.PLATFORM_LOGOUT, Command.HEARTBEAT, Command.TIME_SYNC, Command.ACTIVATION,
        Command.ACTIVATION_ANSWER, Command.KEY_SYNC, Command.QUERY_PARAMS, Command.SET_PARAMS,
        Command.TERMINAL_CONTROL)],
])
def test_only_vehicle_data_and_charging_messages_are_forwarded(command, forwarded):
    assert is_forwarded_command(command) is forwarded


def test_the_forwarded_command_list_names_every_command_once():
    assert {c for c in Command if is_forwarded_command(c)} | {
        Command.PLATFORM_LOGIN, Command.PLATFORM_LOGOUT, Command.HEARTBEAT, Command.TIME_SYNC, Command.ACTIVATION,
        Command.ACTIVATION_ANSWER, Command.KEY_SYNC, Command.QUERY_PARAMS, Command.SET_PARAMS,
        Command.TERMINAL_CONTROL} == set(Command)


def test_the_router_follows_a_registry_refresh_though_it_remembers_routes_per_vehicle_class():
    """RegistryRouter remembers the upstreams of each (sector, region) it has seen; a refresh
    that moves a vehicle to another sector or region routes its next frame anew."""
    from relay.registry import RegistryCache
    from relay.routing import RegistryRouter
    from tests.support.fixtures import T0, data_frame

    vin = "LNBSMX01000000001"
    frame = data_frame(vin, T0)
    registry = RegistryCache({vin: VehicleEntry(vin, "bus", "320102", "ENT01")})
    router = RegistryRouter(registry, PUBLIC, ROUTES)
    assert router.routes(frame) == (["nanjing", "jiangsu", "national"], True)
    assert router.routes(frame) == (["nanjing", "jiangsu", "national"], True)
    registry.replace({vin: VehicleEntry(vin, "bus", "320500", "ENT01")})
    assert router.routes(frame) == (["jiangsu", "national"], True)
    registry.replace({vin: VehicleEntry(vin, "private", "320500", "ENT01")})
    assert router.routes(frame) == ([], True)
    registry.replace({})
    assert router.routes(frame) == ([], False)
