"""What a role is: the small set of choices that differ between the three tiers.

``platforms/<role>/__init__.py`` each define a ``ROLE``; ``relay.cli.load_role`` imports
it by name. Nothing in ``relay/`` imports ``platforms``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    name: str
    #: accepts vehicle terminals (GB/T 32960.3 annex B, terminal <-> platform)
    terminal_listener: bool
    #: accepts lower platforms with platform login 0x05
    platform_listener: bool
    #: accepts charging operators over HTTP (T/CEC 102.4 style)
    charging_http: bool
    #: keeps per-city / per-enterprise / per-sector aggregates
    aggregates: bool
    description: str = ""
