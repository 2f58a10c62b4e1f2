"""Enterprise monitoring platform: accepts its vehicles' terminals, answers them per the
standard, stores everything, and forwards the public-service-sector vehicles to the city
and province platforms (private vehicles never leave this node)."""

from relay.role import Role

ROLE = Role(
    name="enterprise",
    terminal_listener=True,
    platform_listener=False,
    charging_http=False,
    aggregates=False,
    description="vehicle terminals in, public-sector vehicles out to city and province",
)
