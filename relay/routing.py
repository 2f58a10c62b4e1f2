"""Where a stored frame goes: the router the batch store asks for each new frame.

:class:`RegistryRouter` applies :mod:`relay.policy` over the in-memory registry (vehicles:
registered public-service sectors x each upstream's regions) and, for charging messages,
the node's :class:`relay.charging.FacilityIndex` (which learns stations from their static
information as it is stored).
"""

from __future__ import annotations

from .policy import CHARGING_COMMANDS, Route, vehicle_routes
from .store.batch import Router


class RegistryRouter(Router):
    """Routes frames with :mod:`relay.policy` over the in-memory registry; charging messages
    through the node's facility index when it has one."""

    def __init__(self, registry, public_sectors: frozenset[str], routes: tuple[Route, ...], charging=None) -> None:
        self.registry = registry
        self.public_sectors = public_sectors
        self.routes_cfg = routes
        self.charging = charging
        self.names = tuple(r.name for r in routes)
        #: (sector, region code) -> upstreams: what a vehicle's routes depend on, asked per frame
        self._by_class: dict[tuple[str, str], list[str]] = {}

    def routes(self, frame) -> tuple[list[str], bool]:
        if frame.command in CHARGING_COMMANDS:
            if self.charging is None:
                return [], True
            return self.charging.routes(frame, self.routes_cfg), True
        entry = self.registry.get(frame.vin)
        if entry is None:
            return [], False
        key = (entry.sector, entry.region_code)
        names = self._by_class.get(key)
        if names is None:
            names = self._by_class[key] = vehicle_routes(entry, self.public_sectors, self.routes_cfg)
        return names, True
