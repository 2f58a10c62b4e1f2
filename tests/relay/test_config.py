"""Node configuration (relay/config.py): YAML in, frozen dataclasses out, one-line errors.

Every error is one line: the file, the dotted path of the key, what was expected
(house rule 11). Expected messages are written out in full.
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from relay.config import Config, ConfigError, Retry, Upstream, config_from_dict, load_config

ENTERPRISE = {"role": "enterprise", "node_id": "ENT01", "listeners": {"terminals": {}}}


def upstream(**fields) -> dict:
    return {"name": "nanjing", "endpoint": "tcp:host=10.0.0.2:port=32961", "username": "ent01",
            "platform_id": "ENT01", "password_env": "RELAY_NANJING_PASSWORD", **fields}


def with_upstreams(*ups: dict) -> dict:
    return {**ENTERPRISE, "upstreams": list(ups)}


def error_of(raw, source: str = "conf/enterprise.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, source)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("raw, message", [
    # unknown key
    pytest.param(with_upstreams(upstream(retry={"maxdelay": 60})),
                 "upstreams[0].retry.maxdelay: unknown key (expected one of factor, initial_delay, max_delay)",
                 id="unknown_key"),
    pytest.param({**ENTERPRISE, "log": {"level": "info", "colour": True}},
                 "log.colour: unknown key (expected one of format, level)", id="unknown_key_in_a_section"),
    # missing key
    pytest.param({"role": "enterprise", "listeners": {"terminals": {}}},
                 "node_id: missing (expected a string)", id="missing_top_level_key"),
    pytest.param(with_upstreams({k: v for k, v in upstream().items() if k != "platform_id"}),
                 "upstreams[0].platform_id: missing (expected a string)", id="missing_key_in_a_list_item"),
    # wrong type
    pytest.param(with_upstreams(upstream(retry={"max_delay": "ten"})),
                 "upstreams[0].retry.max_delay: expected a number, got 'ten'", id="text_for_a_number"),
    pytest.param({**ENTERPRISE, "database": {"pool_size": "4"}},
                 "database.pool_size: expected an integer, got '4'", id="text_for_an_integer"),
    pytest.param({**ENTERPRISE, "database": {"pool_size": 4.5}},
                 "database.pool_size: expected an integer, got 4.5", id="fraction_for_an_integer"),
    pytest.param({**ENTERPRISE, "database": {"pool_size": True}},
                 "database.pool_size: expected an integer, got True", id="boolean_for_an_integer"),
    pytest.param({**ENTERPRISE, "listeners": {"terminals": {"answer_realtime": "yes"}}},
                 "listeners.terminals.answer_realtime: expected true or false, got 'yes'", id="text_for_a_boolean"),
    pytest.param({**ENTERPRISE, "listeners": {"terminals": {"idle_timeout": None}}},
                 "listeners.terminals.idle_timeout: expected a number, got None", id="null_for_a_number"),
    pytest.param({**ENTERPRISE, "accounts": {"username": "ent01"}},
                 "accounts: expected a list of a mapping (Account), got {'username': 'ent01'}",
                 id="mapping_for_a_list"),
    pytest.param({**ENTERPRISE, "listeners": {"terminals": 5}},
                 "listeners.terminals: expected a mapping (TerminalListener), got 5", id="number_for_a_section"),
    pytest.param(with_upstreams(upstream(regions="3201")),
                 "upstreams[0].regions: expected a list of a string, got '3201'", id="text_for_a_list"),
    pytest.param(["role", "enterprise"], "top level: expected a mapping (Config), got ['role', 'enterprise']",
                 id="a_list_instead_of_a_mapping"),
    # bad literal
    pytest.param({**ENTERPRISE, "role": "city"},
                 "role: expected one of 'enterprise', 'municipal', 'provincial', got 'city'", id="unknown_role"),
    pytest.param({**ENTERPRISE, "log": {"level": "verbose"}},
                 "log.level: expected one of 'debug', 'info', 'warning', 'error', got 'verbose'",
                 id="unknown_log_level"),
    pytest.param(with_upstreams(upstream(protocol="2020")),
                 "upstreams[0].protocol: expected one of '2016', '2025', got '2020'", id="unknown_protocol"),
    # rules across keys
    pytest.param({"role": "enterprise", "node_id": "ENT01"},
                 "listeners.terminals: the enterprise role needs a terminal listener",
                 id="enterprise_without_terminals"),
    pytest.param({"role": "municipal", "node_id": "NJ01", "listeners": {"terminals": {}}},
                 "listeners.platforms: the municipal role needs a platform listener", id="municipal_without_platforms"),
    pytest.param({"role": "provincial", "node_id": "JS01", "listeners": {"platforms": None}},
                 "listeners.platforms: the provincial role needs a platform listener", id="provincial_with_null"),
    pytest.param(with_upstreams(upstream(), upstream(endpoint="tcp:host=10.0.0.3:port=32961")),
                 "upstreams[1].name: 'nanjing' is used twice", id="duplicate_upstream_names"),
    pytest.param(with_upstreams(upstream(username="ent01-nanjing")),
                 "upstreams[0].username: at most 12 characters (platform login field)", id="username_13_characters"),
    pytest.param(with_upstreams(upstream(platform_id="ENT01-NANJING-0001")),
                 "upstreams[0].platform_id: expected 1-17 characters", id="platform_id_18_characters"),
    pytest.param(with_upstreams({k: v for k, v in upstream().items() if k != "password_env"}),
                 "upstreams[0]: give password_env or password_file", id="upstream_without_a_password"),
    pytest.param(with_upstreams(upstream(retry={"initial_delay": 10, "max_delay": 5})),
                 "upstreams[0].retry: need 0 < initial_delay <= max_delay and factor >= 1",
                 id="retry_max_below_initial"),
    pytest.param({**ENTERPRISE, "database": {"high_watermark": 100, "low_watermark": 100}},
                 "database.low_watermark: must be below database.high_watermark", id="watermarks_equal"),
    pytest.param({**ENTERPRISE, "node_id": "ENT01-NODE-NANJING"}, "node_id: expected 1-17 ASCII characters",
                 id="node_id_18_characters"),
    pytest.param({**ENTERPRISE, "region": "3201a"},
                 "region: expected a 2-6 digit administrative code prefix", id="region_not_digits"),
    pytest.param({**ENTERPRISE, "accounts": [{"username": "nj", "password_hash": "plain"}]},
                 "accounts[0].password_hash: expected a hash made by `relay hash-password`", id="account_without_hash"),
])
def test_a_config_error_is_one_line_naming_the_file_the_key_and_what_was_expected(raw, message):
    assert error_of(raw) == f"conf/enterprise.yaml: {message}"


def test_a_username_of_exactly_12_characters_is_accepted():
    cfg = config_from_dict(with_upstreams(upstream(username="ent01nanjing")))
    assert cfg.upstreams[0].username == "ent01nanjing"


def test_numbers_and_protocols_written_as_yaml_integers_are_taken():
    cfg = config_from_dict(with_upstreams(upstream(protocol=2025, retry={"max_delay": 60}), ), "x")
    up = cfg.upstreams[0]
    assert (up.protocol, up.retry) == ("2025", Retry(initial_delay=1.0, max_delay=60.0, factor=1.5))
    assert isinstance(up.retry.max_delay, float)


def test_unknown_keys_of_mixed_types_still_give_the_one_line_error(tmp_path):
    path = tmp_path / "enterprise.yaml"
    path.write_text("role: enterprise\nnode_id: ENT01\nlisteners: {terminals: {}}\n"
                    "3201: nanjing     # a region pasted as a key\n"
                    "regoin: '3201'    # and a misspelt key\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: 3201: unknown key")


# --- files ----------------------------------------------------------------------------------------------

def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "enterprise.yaml"
    path.write_text("role: enterprise\nnode_id: ENT01\nlisteners:\n  terminals: {endpoint: 'tcp:32960'\n"
                    "upstreams: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line 5 not valid YAML (")  # the flow mapping left open on line 4


def test_an_error_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "enterprise.yaml"
    path.write_text("role: enterprise\nnode_id: ENT01\nlisteners: {terminals: {}}\n"
                    "upstreams:\n  - name: nanjing\n    endpoint: tcp:host=10.0.0.2:port=32961\n"
                    "    username: ent01\n    platform_id: ENT01\n    password_env: PW\n"
                    "    retry: {max_delay: ten}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: upstreams[0].retry.max_delay: expected a number, got 'ten'"


def test_a_missing_file_is_one_line(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read (No such file or directory)"


def test_an_empty_file_asks_for_the_first_required_key(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: role: missing (expected one of 'enterprise', 'municipal', 'provincial')"


ENT01_HASH = ("scrypt$16384$8$1$00112233445566778899aabbccddeeff$"
              "d399d4c1d347d4d782420ed697cdc0331189063da5b6ea2654aad604df7e9aab")

FULL = f"""\
role: municipal
node_id: NJ-MUNICIPAL-01
data_dir: var/nj
region: "3201"
database:
  dsn: postgresql://relay@127.0.0.1/relay
  pool_size: 6
  batch_max_rows: 1000
  batch_interval_ms: 15
  high_watermark: 10000
  low_watermark: 2000
log: {{level: debug, format: json}}
listeners:
  platforms:
    endpoint: tcp:32961:interface=0.0.0.0
    login_timeout: 20
    answer_data: true
accounts:
  - username: ent01
    password_hash: {ENT01_HASH}
    allowed_owners: [ENT01]
    allowed_vin_prefixes: [LZZ]
    allowed_addresses: [10.1.0.0/16]
lockout: {{failures: 4, window: 120, duration: 600}}
registry: {{strict: true, public_sectors: [bus, taxi]}}
upstreams:
  - name: jiangsu
    endpoint: tcp:host=10.0.0.9:port=32962
    username: nanjing
    platform_id: NJ-MUNICIPAL-01
    password_env: RELAY_JIANGSU_PASSWORD
    protocol: 2025
    regions: ["32"]
    charging: false
    heartbeat_interval: 20
    retry: {{initial_delay: 2, max_delay: 120, factor: 2}}
"""


def _plain(value):
    """A config value as YAML would hold it (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_a_valid_config_loads_into_frozen_dataclasses_and_round_trips(tmp_path):
    path = tmp_path / "municipal.yaml"
    path.write_text(FULL)
    cfg = load_config(path)
    assert cfg.source == str(path)
    assert cfg.upstreams[0] == Upstream(
        name="jiangsu", endpoint="tcp:host=10.0.0.9:port=32962", username="nanjing", platform_id="NJ-MUNICIPAL-01",
        password_env="RELAY_JIANGSU_PASSWORD", protocol="2025", regions=("32",), charging=False,
        heartbeat_interval=20.0, retry=Retry(initial_delay=2.0, max_delay=120.0, factor=2.0))
    assert cfg.accounts[0].allowed_addresses == ("10.1.0.0/16",)
    assert cfg.listeners.terminals is None and cfg.listeners.platforms.login_timeout == 20.0
    assert cfg.resolve(cfg.data_dir) == tmp_path / "var" / "nj"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.region = "32"  # type: ignore[misc]

    written = _plain(dataclasses.asdict(cfg))
    del written["source"]
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(written))
    assert dataclasses.replace(load_config(again), source=cfg.source) == cfg


def test_overrides_replace_single_keys_and_keep_the_rest():
    cfg = config_from_dict(with_upstreams(upstream()), "x",
                           overrides={"database": {"dsn": "postgresql:///t"}, "listeners": {"terminals":
                                                                                             {"idle_timeout": 5}}})
    assert (cfg.database.dsn, cfg.database.pool_size) == ("postgresql:///t", 4)
    assert (cfg.listeners.terminals.idle_timeout, cfg.listeners.terminals.endpoint) == (5.0, "tcp:32960")


def test_a_password_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    cfg = config_from_dict(with_upstreams(upstream()))
    with pytest.raises(ConfigError) as info:
        cfg.upstreams[0].secret()
    assert str(info.value) == "upstream nanjing: environment variable RELAY_NANJING_PASSWORD is not set"
    monkeypatch.setenv("RELAY_NANJING_PASSWORD", "from-env")
    assert cfg.upstreams[0].secret() == "from-env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    up = config_from_dict(with_upstreams({**upstream(password_env=""), "password_file": str(secret)})).upstreams[0]
    assert up.secret() == "from-file"


def test_the_defaults_make_a_valid_enterprise_node():
    cfg = config_from_dict(ENTERPRISE)
    assert isinstance(cfg, Config)
    assert (cfg.listeners.terminals.endpoint, cfg.listeners.terminals.idle_timeout) == ("tcp:32960", 300.0)
    assert (cfg.database.high_watermark, cfg.database.low_watermark) == (20000, 5000)
