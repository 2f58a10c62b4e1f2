"""City platform: accepts enterprise platforms (platform login 0x05) and charging operators,
keeps the vehicles and facilities of its region, and forwards them to the province."""

from relay.role import Role

ROLE = Role(
    name="municipal",
    terminal_listener=False,
    platform_listener=True,
    charging_http=True,
    aggregates=False,
    description="enterprise platforms and charging operators in, province out",
)
