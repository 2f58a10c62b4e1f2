"""Node configuration: YAML in, frozen dataclasses out, validated once at start-up.

One generic converter walks the dataclasses below by their type hints, so every error
names the file, the dotted path and what was expected, e.g.::

    conf/enterprise.yaml: upstreams[0].retry.max_delay: expected a number, got 'ten'

Secrets never sit in the examples: a password is given as ``password_env`` (name of an
environment variable) or ``password_file``; accounts of downstream platforms carry only a
``password_hash`` (``relay hash-password`` makes one).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

ROLES = ("enterprise", "municipal", "provincial")

#: use sectors counted as public service (platform-requirements.md); "private" never is
DEFAULT_PUBLIC_SECTORS = ("bus", "taxi", "ride_hailing", "sanitation", "logistics", "postal", "official",
                          "rental", "car_sharing", "coach", "school_bus", "engineering", "other_public")


class ConfigError(Exception):
    """A configuration problem, with the location already in the message."""


@dataclass(frozen=True)
class Retry:
    initial_delay: float = 1.0
    max_delay: float = 60.0
    factor: float = 1.5


@dataclass(frozen=True)
class Database:
    #: libpq connection string; empty = start an embedded PostgreSQL under data_dir/pg
    dsn: str = ""
    #: connections for queries (forwarders, API, monitoring)
    pool_size: int = 4
    #: the writer commits after this many items ...
    batch_max_rows: int = 2000
    #: ... or this many milliseconds, whichever comes first (each batch costs 1.6–2.5 ms of
    #: CPU whatever its size, node and PostgreSQL together: 20 ms took 6–12 % more CPU per
    #: frame than 50 ms through three tiers at 5,500 frames/s)
    batch_interval_ms: int = 50
    #: pending items at which listeners stop reading their sockets
    high_watermark: int = 20000
    #: pending items at which they resume
    low_watermark: int = 5000
    #: where the batch store runs: a child process (decoding and COPY on a second core) or
    #: the node's writer thread
    store: Literal["process", "thread"] = "process"


@dataclass(frozen=True)
class Log:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"


@dataclass(frozen=True)
class TerminalListener:
    """Vehicle terminals (enterprise role)."""

    #: Twisted endpoint string; port 0 picks a free port
    endpoint: str = "tcp:32960"
    max_connections: int = 20000
    max_per_address: int = 100
    #: seconds without a frame before the connection is closed
    idle_timeout: float = 300.0
    #: largest data unit accepted (the standard allows 65531)
    max_frame_bytes: int = 65531
    #: answer realtime/reissue frames with a success answer (many platforms do)
    answer_realtime: bool = False
    #: a second login of a VIN replaces the first session if that one has been silent this long
    stale_session_after: float = 60.0
    #: seconds to wait for a terminal's answer to a parameter query/set or control command
    command_timeout: float = 30.0


@dataclass(frozen=True)
class PlatformListener:
    """Lower platforms logging in with platform login 0x05 (municipal, provincial)."""

    endpoint: str = "tcp:32961"
    max_connections: int = 200
    max_per_address: int = 20
    idle_timeout: float = 180.0
    max_frame_bytes: int = 65531
    #: seconds a connection may take to log in
    login_timeout: float = 30.0
    #: answer forwarded realtime/reissue frames (0x02/0x03) with a success answer
    answer_data: bool = False


@dataclass(frozen=True)
class Listeners:
    terminals: TerminalListener | None = None
    platforms: PlatformListener | None = None


@dataclass(frozen=True)
class Account:
    """A lower platform allowed to log in here."""

    username: str
    #: "scrypt$n$r$p$salt_hex$hash_hex", made by ``relay hash-password``
    password_hash: str
    #: owners (enterprise ids in the vehicle registry) whose VINs it may send
    allowed_owners: tuple[str, ...] = ()
    #: VIN prefixes it may send (WMI codes), in addition to allowed_owners
    allowed_vin_prefixes: tuple[str, ...] = ()
    #: operator ids (charging) it may send
    allowed_operators: tuple[str, ...] = ()
    #: source addresses or networks (CIDR) it may connect from; empty = any
    allowed_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lockout:
    failures: int = 5
    window: float = 300.0
    duration: float = 900.0


@dataclass(frozen=True)
class Registry:
    #: refuse vehicle logins of VINs missing from the registry
    strict: bool = False
    public_sectors: tuple[str, ...] = DEFAULT_PUBLIC_SECTORS


@dataclass(frozen=True)
class Upstream:
    """A higher platform this node forwards to."""

    name: str
    endpoint: str
    username: str
    platform_id: str
    password_env: str = ""
    password_file: str = ""
    #: inline password; allowed for tests and demos, refused by nothing, never in examples
    password: str = ""
    protocol: Literal["2016", "2025"] = "2016"
    #: region code prefixes forwarded there (e.g. "3201" Nanjing, "32" Jiangsu); empty = all
    regions: tuple[str, ...] = ()
    #: forward charging-facility messages too
    charging: bool = True
    #: forward charging facilities whose station type is not public
    charging_private: bool = False
    heartbeat_interval: float = 30.0
    #: frames older than this (seconds since received) are sent as reissue (0x03)
    realtime_window: float = 30.0
    login_timeout: float = 15.0
    #: frames read from the outbox per round trip
    batch_rows: int = 500
    retry: Retry = field(default_factory=Retry)

    def secret(self) -> str:
        if self.password:
            return self.password
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"upstream {self.name}: environment variable {self.password_env} is not set")
            return value
        if self.password_file:
            return Path(self.password_file).read_text().strip()
        raise ConfigError(f"upstream {self.name}: give password_env or password_file")


@dataclass(frozen=True)
class Token:
    """An API client: ``token_hash`` is "sha256$<hex>" of the bearer token
    (``relay hash-token`` makes one)."""

    name: str
    token_hash: str
    role: Literal["read", "operate", "admin"] = "read"


@dataclass(frozen=True)
class Http:
    #: Twisted endpoint string of the API, dashboard and /metrics; empty = none
    endpoint: str = ""
    tokens: tuple[Token, ...] = ()
    #: seconds since the last frame within which a vehicle counts as online
    online_seconds: float = 300.0


@dataclass(frozen=True)
class Hazards:
    offline_days_public: float = 60.0
    offline_days_private: float = 90.0
    cluster_radius_m: float = 100.0
    cluster_min_vehicles: int = 10
    cluster_min_hours: float = 2.0
    frequent_alarms: int = 10
    frequent_alarms_window_hours: float = 24.0


@dataclass(frozen=True)
class Storage:
    """Storage watch: database size and growth, and a warning when less than six months of
    growth fit in the free room."""

    #: a directory on the database's disk, for the free room; empty = the embedded
    #: database's directory (a remote server's disk cannot be seen: no warning then)
    path: str = ""
    #: seconds between size samples
    sample_interval: float = 3600.0


@dataclass(frozen=True)
class Charging:
    """T/CEC 102.4-style HTTP input from charging operators (municipal, provincial)."""

    #: Twisted endpoint string of the HTTP listener; empty = no HTTP input
    endpoint: str = ""
    #: seconds an access token stays valid
    token_lifetime: float = 7200.0
    #: largest request body accepted, bytes
    max_body_bytes: int = 1048576
    operators: tuple["Operator", ...] = ()


@dataclass(frozen=True)
class Operator:
    """A charging operator allowed to push over HTTP, with the four T/CEC 102.4 secrets:
    from ``secrets_file`` (YAML with operator_secret, data_secret, data_iv, sig_secret) or,
    for demos and tests, inline."""

    operator_id: str
    secrets_file: str = ""
    operator_secret: str = ""
    data_secret: str = ""
    data_iv: str = ""
    sig_secret: str = ""

    def secrets(self, base: Path | None = None):
        from codec.tcec import Secrets

        values = {"operator_secret": self.operator_secret, "data_secret": self.data_secret,
                  "data_iv": self.data_iv, "sig_secret": self.sig_secret}
        if self.secrets_file:
            path = Path(self.secrets_file)
            if base is not None and not path.is_absolute():
                path = base / path
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            values.update({k: str(v) for k, v in loaded.items() if k in values})
        missing = [k for k, v in values.items() if not v]
        if missing:
            raise ConfigError(f"charging operator {self.operator_id}: missing {', '.join(missing)}")
        for k in ("data_secret", "data_iv"):
            if len(values[k].encode("utf-8")) != 16:
                raise ConfigError(f"charging operator {self.operator_id}: {k} must be 16 bytes")
        return Secrets(**values)


@dataclass(frozen=True)
class Config:
    role: Literal["enterprise", "municipal", "provincial"]
    #: this node's name in logs and its 17-character platform id when it forwards
    node_id: str
    #: where the embedded PostgreSQL and runtime files live (relative to the config file)
    data_dir: str = "var"
    database: Database = field(default_factory=Database)
    log: Log = field(default_factory=Log)
    listeners: Listeners = field(default_factory=Listeners)
    accounts: tuple[Account, ...] = ()
    lockout: Lockout = field(default_factory=Lockout)
    registry: Registry = field(default_factory=Registry)
    upstreams: tuple[Upstream, ...] = ()
    http: Http = field(default_factory=Http)
    hazards: Hazards = field(default_factory=Hazards)
    storage: Storage = field(default_factory=Storage)
    charging: Charging = field(default_factory=Charging)
    #: region code of this platform (6 digits; a city keeps only its region's vehicles)
    region: str = ""
    #: where the config came from (set by the loader)
    source: str = ""

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        p = Path(path)
        if p.is_absolute() or not self.source:
            return p
        return Path(self.source).parent / p


# --- the converter -----------------------------------------------------------------

def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (tuple, list):
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) if a is not type(None) else "null" for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str, hints_cache: dict) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path, hints_cache)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp) and str(value) not in get_args(tp):
            raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
        return value if value in get_args(tp) else str(value)
    if origin in (tuple, list):
        if value is None:
            return ()
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
        (item,) = get_args(tp)[:1]
        return tuple(_convert(item, v, f"{path}[{i}]", hints_cache) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, path, hints_cache)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp!r}")


def _dataclass(cls: type, value: Any, path: str, hints_cache: dict) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path or 'top level'}: expected {_describe(cls)}, got {value!r}")
    hints = hints_cache.get(cls)
    if hints is None:
        hints = hints_cache[cls] = typing.get_type_hints(cls, globals())
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    prefix = f"{path}." if path else ""
    unknown = sorted((str(k) for k in set(value) - set(fields)))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (expected one of {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], prefix + name, hints_cache)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: missing (expected {_describe(hints[name])})")
    return cls(**kwargs)


_REGION = re.compile(r"^\d{2,6}$")


def _check(cfg: Config) -> None:
    """Rules that types alone cannot state."""
    if not 1 <= len(cfg.node_id) <= 17 or not cfg.node_id.isascii():
        raise ConfigError("node_id: expected 1-17 ASCII characters")
    if cfg.region and not _REGION.match(cfg.region):
        raise ConfigError("region: expected a 2-6 digit administrative code prefix")
    db = cfg.database
    if db.low_watermark >= db.high_watermark:
        raise ConfigError("database.low_watermark: must be below database.high_watermark")
    if db.batch_max_rows < 1 or db.batch_interval_ms < 1:
        raise ConfigError("database.batch_max_rows: batch size and interval must be positive")
    if cfg.role == "enterprise" and cfg.listeners.terminals is None:
        raise ConfigError("listeners.terminals: the enterprise role needs a terminal listener")
    if cfg.role != "enterprise" and cfg.listeners.platforms is None:
        raise ConfigError(f"listeners.platforms: the {cfg.role} role needs a platform listener")
    for lname in ("terminals", "platforms"):
        lst = getattr(cfg.listeners, lname)
        if lst is not None and not 0 <= lst.max_frame_bytes <= 65531:
            raise ConfigError(f"listeners.{lname}.max_frame_bytes: expected 0-65531")
    names = set()
    for i, up in enumerate(cfg.upstreams):
        if up.name in names:
            raise ConfigError(f"upstreams[{i}].name: {up.name!r} is used twice")
        names.add(up.name)
        if not 1 <= len(up.platform_id) <= 17:
            raise ConfigError(f"upstreams[{i}].platform_id: expected 1-17 characters")
        if len(up.username) > 12:
            raise ConfigError(f"upstreams[{i}].username: at most 12 characters (platform login field)")
        if not (up.password or up.password_env or up.password_file):
            raise ConfigError(f"upstreams[{i}]: give password_env or password_file")
        if up.retry.initial_delay <= 0 or up.retry.max_delay < up.retry.initial_delay or up.retry.factor < 1:
            raise ConfigError(f"upstreams[{i}].retry: need 0 < initial_delay <= max_delay and factor >= 1")
    for i, tok in enumerate(cfg.http.tokens):
        if not tok.token_hash.startswith("sha256$"):
            raise ConfigError(f"http.tokens[{i}].token_hash: expected a hash made by `relay hash-token`")
    users = set()
    for i, acc in enumerate(cfg.accounts):
        if acc.username in users:
            raise ConfigError(f"accounts[{i}].username: {acc.username!r} is used twice")
        users.add(acc.username)
        from .accounts import valid_hash

        if not valid_hash(acc.password_hash):
            raise ConfigError(f"accounts[{i}].password_hash: expected a hash made by `relay hash-password`")


def check_secrets(cfg: Config) -> None:
    """Read every secret the node will need, so a missing one is a config error at start."""
    for up in cfg.upstreams:
        up.secret()
    base = Path(cfg.source).parent if cfg.source and Path(cfg.source).exists() else None
    for op in cfg.charging.operators:
        try:
            op.secrets(base)
        except OSError as exc:
            raise ConfigError(f"charging operator {op.operator_id}: cannot read secrets_file ({exc})") from None


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> Config:
    """Read and validate a config file; raise :class:`ConfigError` naming file and key."""
    source = str(path)
    try:
        with open(source, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return config_from_dict(raw, source, overrides)


def config_from_dict(raw: Any, source: str = "<config>", overrides: dict | None = None) -> Config:
    if overrides:
        raw = _merge(raw or {}, overrides)
    try:
        cfg = _dataclass(Config, raw, "", {})
        _check(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return dataclasses.replace(cfg, source=source)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
