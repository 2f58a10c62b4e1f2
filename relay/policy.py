"""What goes upstream: pure functions over the registry and the configuration.

Rules (ARCHITECTURE.md "Security", issue 4 "Policy"):

* vehicle frames go up only for VINs in the registry whose use sector is a configured
  public-service sector, and only to upstreams whose region prefixes match the vehicle's
  region code; private vehicles never leave the enterprise node;
* an unregistered VIN is never forwarded (the writer reports it);
* only vehicle login/logout, realtime, reissue and charging-facility messages are
  forwarded; charging messages go up when the upstream takes charging data and the
  facility is public (or the upstream is configured for private facilities too).
"""

from __future__ import annotations

from dataclasses import dataclass

from codec import Command

FORWARDED_VEHICLE_COMMANDS = frozenset({Command.VEHICLE_LOGIN, Command.REALTIME, Command.REISSUE,
                                        Command.VEHICLE_LOGOUT})
CHARGING_COMMANDS = frozenset({Command.CHARGING_STATIC, Command.CHARGING_STATUS, Command.CHARGING_MEASUREMENT,
                               Command.CHARGING_RECORD, Command.CHARGING_ALARM})


@dataclass(frozen=True, slots=True)
class VehicleEntry:
    vin: str
    sector: str
    region_code: str
    owner: str


@dataclass(frozen=True, slots=True)
class Route:
    """One upstream's filter."""

    name: str
    regions: tuple[str, ...]
    charging: bool
    charging_private: bool


def region_matches(region_code: str, prefixes: tuple[str, ...]) -> bool:
    return not prefixes or any(region_code.startswith(p) for p in prefixes)


def vehicle_routes(entry: VehicleEntry | None, public_sectors: frozenset[str], routes: tuple[Route, ...]) -> list[str]:
    """Upstreams a vehicle's frames go to (empty for private or unregistered vehicles)."""
    if entry is None or entry.sector not in public_sectors:
        return []
    return [r.name for r in routes if region_matches(entry.region_code, r.regions)]


def charging_routes(region_code: str, public: bool, routes: tuple[Route, ...]) -> list[str]:
    return [r.name for r in routes
            if r.charging and (public or r.charging_private) and region_matches(region_code, r.regions)]


def is_forwarded_command(command: int) -> bool:
    return command in FORWARDED_VEHICLE_COMMANDS or command in CHARGING_COMMANDS
