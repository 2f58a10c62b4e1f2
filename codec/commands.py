"""Header enumerations of GB/T 32960.3, both editions.

Each enumeration cites the clause and table it comes from. Where the 2025 edition
adds values, they are marked; :func:`valid_commands` and :func:`valid_responses`
tell which values an edition accepts on the wire.
"""

from __future__ import annotations

import enum


class Edition(enum.Enum):
    """Protocol edition, told apart by the start bytes (2016/2025 clause 6.2, table 2)."""

    V2016 = "2016"
    V2025 = "2025"

    # members are singletons compared by identity: hash them so too (Enum's own __hash__ is
    # Python code, and tables keyed by edition are looked up several times per frame)
    __hash__ = object.__hash__

    @property
    def start(self) -> bytes:
        return b"##" if self is Edition.V2016 else b"$$"

    @classmethod
    def from_start(cls, start: bytes) -> "Edition | None":
        return _START_TO_EDITION.get(bytes(start))


_START_TO_EDITION = {b"##": Edition.V2016, b"$$": Edition.V2025}


class Command(enum.IntEnum):
    """Command identifiers (2016 clause 6.3.1 table 3; 2025 clause 6.3.1 table 3).

    0xC0-0xFE are left to platform exchange by both editions; this project uses
    0xC1-0xC5 for charging-facility messages (see ``codec.charging``).
    """

    VEHICLE_LOGIN = 0x01
    REALTIME = 0x02
    REISSUE = 0x03
    VEHICLE_LOGOUT = 0x04
    PLATFORM_LOGIN = 0x05
    PLATFORM_LOGOUT = 0x06
    HEARTBEAT = 0x07
    TIME_SYNC = 0x08
    ACTIVATION = 0x09  # 2025 only
    ACTIVATION_ANSWER = 0x0A  # 2025 only
    KEY_SYNC = 0x0B  # 2025 only: payload (data-unit) key synchronisation
    QUERY_PARAMS = 0x80
    SET_PARAMS = 0x81
    TERMINAL_CONTROL = 0x82
    # platform-exchange range 0xC0-0xFE, assigned by this project (docs/charging-wire.md)
    CHARGING_STATIC = 0xC1
    CHARGING_STATUS = 0xC2
    CHARGING_MEASUREMENT = 0xC3
    CHARGING_RECORD = 0xC4
    CHARGING_ALARM = 0xC5


#: JSON names of commands (interfaces.md); others render as "0xNN".
COMMAND_NAMES: dict[int, str] = {
    Command.VEHICLE_LOGIN: "vehicle_login",
    Command.REALTIME: "realtime",
    Command.REISSUE: "reissue",
    Command.VEHICLE_LOGOUT: "vehicle_logout",
    Command.PLATFORM_LOGIN: "platform_login",
    Command.PLATFORM_LOGOUT: "platform_logout",
    Command.HEARTBEAT: "heartbeat",
    Command.TIME_SYNC: "time_sync",
    Command.ACTIVATION: "activation",
    Command.ACTIVATION_ANSWER: "activation_answer",
    Command.KEY_SYNC: "key_sync",
    Command.QUERY_PARAMS: "query_params",
    Command.SET_PARAMS: "set_params",
    Command.TERMINAL_CONTROL: "terminal_control",
    Command.CHARGING_STATIC: "charging_static",
    Command.CHARGING_STATUS: "charging_status",
    Command.CHARGING_MEASUREMENT: "charging_measurement",
    Command.CHARGING_RECORD: "charging_record",
    Command.CHARGING_ALARM: "charging_alarm",
}

_COMMON_COMMANDS = frozenset(
    {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x80, 0x81, 0x82, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5}
)
_COMMANDS = {
    Edition.V2016: _COMMON_COMMANDS,
    Edition.V2025: _COMMON_COMMANDS | {0x09, 0x0A, 0x0B},
}


def valid_commands(edition: Edition) -> frozenset[int]:
    """Command ids this codec understands in ``edition``."""
    return _COMMANDS[edition]


class Response(enum.IntEnum):
    """Response flags (2016 clause 6.3.2 table 4; 2025 clause 6.3.2 table 4)."""

    SUCCESS = 0x01
    ERROR = 0x02
    VIN_DUPLICATE = 0x03
    VIN_UNKNOWN = 0x04  # 2025 only
    SIGNATURE_INVALID = 0x05  # 2025 only
    STRUCTURE_INVALID = 0x06  # 2025 only
    DECRYPTION_FAILED = 0x07  # 2025 only
    COMMAND = 0xFE


RESPONSE_NAMES: dict[int, str] = {
    Response.SUCCESS: "success",
    Response.ERROR: "error",
    Response.VIN_DUPLICATE: "vin_duplicate",
    Response.VIN_UNKNOWN: "vin_unknown",
    Response.SIGNATURE_INVALID: "signature_invalid",
    Response.STRUCTURE_INVALID: "structure_invalid",
    Response.DECRYPTION_FAILED: "decryption_failed",
    Response.COMMAND: "command",
}

_RESPONSES = {
    Edition.V2016: frozenset({0x01, 0x02, 0x03, 0xFE}),
    Edition.V2025: frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0xFE}),
}


def valid_responses(edition: Edition) -> frozenset[int]:
    return _RESPONSES[edition]


class Encryption(enum.IntEnum):
    """Data-unit encryption flag (2016 clause 6.2 table 2; 2025 adds SM2 and SM4)."""

    NONE = 0x01
    RSA = 0x02
    AES128 = 0x03
    SM2 = 0x04  # 2025 only
    SM4 = 0x05  # 2025 only
    ABNORMAL = 0xFE
    INVALID = 0xFF


ENCRYPTION_NAMES: dict[int, str] = {
    Encryption.NONE: "none",
    Encryption.RSA: "rsa",
    Encryption.AES128: "aes128",
    Encryption.SM2: "sm2",
    Encryption.SM4: "sm4",
    Encryption.ABNORMAL: "abnormal",
    Encryption.INVALID: "invalid",
}

_ENCRYPTIONS = {
    Edition.V2016: frozenset({0x01, 0x02, 0x03, 0xFE, 0xFF}),
    Edition.V2025: frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0xFE, 0xFF}),
}


def valid_encryptions(edition: Edition) -> frozenset[int]:
    return _ENCRYPTIONS[edition]


def name_of(names: dict[int, str], value: int) -> str:
    """The JSON name of ``value``, or ``"0xNN"`` when it has none."""
    name = names.get(value)
    return name if name is not None else f"0x{value:02X}"


def value_of(names: dict[int, str], name: str | int) -> int:
    """Inverse of :func:`name_of`; accepts names, ``"0xNN"`` and integers."""
    if isinstance(name, int):
        return name
    for value, known in names.items():
        if known == name:
            return int(value)
    if name.lower().startswith("0x"):
        return int(name, 16)
    raise ValueError(f"unknown name {name!r}")
