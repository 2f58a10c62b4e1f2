"""Province platform: accepts city (and enterprise) platforms, stores and aggregates per
city, enterprise and sector; may forward to a national platform the same way."""

from relay.role import Role

ROLE = Role(
    name="provincial",
    terminal_listener=False,
    platform_listener=True,
    charging_http=True,
    aggregates=True,
    description="cities and enterprises in, aggregates; optional national upstream",
)
