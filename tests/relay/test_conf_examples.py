"""The operator-facing examples and drawings agree with the code.

* every ``conf/*.yaml`` (and each tier of ``conf/demo.yaml``) validates with
  :mod:`relay.config`, without any secret in the environment;
* every field of every config dataclass appears as a key in each role's example, either
  live or, for a section the role leaves empty (``null`` / ``[]``), in a commented-out
  example in the same file (house rule 11: every default is written, commented);
* the state-machine drawings in ``docs/state-machines/`` carry exactly the
  (state, command, handler) entries of ``TRANSITIONS`` and ``PLATFORM_TRANSITIONS``, and
  the transitions, refused pairs and states of the upstream link's Automat machine;
* ``docs/charging-wire.md`` names every field of the 0xC1-0xC5 layouts, and its example
  frames decode and re-encode byte for byte;
* ``docs/log-events.md`` names every log event and audit action the code emits
  (house rule 10: events are a vocabulary).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Union, get_args, get_origin

import pytest
import yaml

import codec
import relay.config as config_mod
import relay.upstream_machine as upstream_machine
from codec.charging import CONNECTOR, EQUIPMENT, LAYOUTS
from codec.commands import COMMAND_NAMES
from relay.accounts import verify_password
from relay.api import hash_token
from relay.config import Config, config_from_dict, load_config
from relay.metrics import LINK_STATES
from relay.platform_session import PLATFORM_TRANSITIONS, PState
from relay.session import TRANSITIONS, State

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
DOCS = ROOT / "docs"
ROLE_FILES = {role: CONF / f"{role}.yaml" for role in config_mod.ROLES}


# --- the examples validate --------------------------------------------------------------

@pytest.fixture
def no_secrets(monkeypatch):
    """Loading must not need the secrets: they are read when the node is built."""
    names = set()
    for path in ROLE_FILES.values():
        for up in (yaml.safe_load(path.read_text(encoding="utf-8")).get("upstreams") or []):
            names.add(up.get("password_env", ""))
    for name in names - {""}:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("role", [pytest.param(r, id=r) for r in config_mod.ROLES])
def test_role_example_validates(role, no_secrets):
    cfg = load_config(ROLE_FILES[role])
    assert cfg.role == role
    assert cfg.source == str(ROLE_FILES[role])


@pytest.mark.parametrize("role", [pytest.param(r, id=r) for r in config_mod.ROLES])
def test_role_example_keeps_secrets_out(role):
    """Upstream passwords only by environment variable, operator secrets only in a
    secrets file; account and token hashes are real hashes of the example secret their
    comment names (change-me-<name>)."""
    cfg = load_config(ROLE_FILES[role])
    for up in cfg.upstreams:
        assert up.password == "" and up.password_file == "" and up.password_env, up.name
    for acc in cfg.accounts:
        assert verify_password(f"change-me-{acc.username}", acc.password_hash), acc.username
    for tok in cfg.http.tokens:
        assert tok.token_hash == hash_token(f"change-me-{tok.name}"), tok.name
    for op in cfg.charging.operators:
        inline = (op.operator_secret, op.data_secret, op.data_iv, op.sig_secret)
        assert op.secrets_file and inline == ("", "", "", ""), op.operator_id


def _demo_tiers() -> dict:
    text = (CONF / "demo.yaml").read_text(encoding="utf-8")
    text = text.replace("{municipal_port}", "32961").replace("{provincial_port}", "32962")
    return yaml.safe_load(text)


@pytest.mark.parametrize("tier", [pytest.param(r, id=r) for r in config_mod.ROLES])
def test_demo_tier_validates(tier):
    cfg = config_from_dict(_demo_tiers()[tier], f"conf/demo.yaml[{tier}]")
    assert cfg.role == tier


def test_demo_has_exactly_the_three_tiers():
    assert sorted(_demo_tiers()) == sorted(config_mod.ROLES)


# --- every config field is written in every role's example ---------------------------------

_HINTS: dict[type, dict] = {}


def _hints(cls: type) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, vars(config_mod))
    return _HINTS[cls]


def _shape(tp) -> tuple[str, type | None]:
    """('dataclass', cls), ('list', cls) for a tuple of dataclasses, or ('value', None)."""
    if get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return _shape(inner[0])
    if get_origin(tp) in (tuple, list):
        item = get_args(tp)[0]
        if dataclasses.is_dataclass(item):
            return "list", item
    if dataclasses.is_dataclass(tp):
        return "dataclass", tp
    return "value", None


def _fields(cls: type):
    for f in dataclasses.fields(cls):
        if cls is Config and f.name == "source":  # set by the loader, not a setting
            continue
        yield f.name, _shape(_hints(cls)[f.name])


def _commented(text: str, name: str) -> bool:
    return re.search(rf"^\s*#.*?(?:^|[\s-]){re.escape(name)}:", text, re.M) is not None


def _missing_commented(cls: type, path: str, text: str) -> list[str]:
    """Fields of a section the file leaves empty must appear in a commented example."""
    out = []
    for name, (kind, sub) in _fields(cls):
        if not _commented(text, name):
            out.append(f"{path}{name} (commented example)")
        if sub is not None:
            out += _missing_commented(sub, f"{path}{name}{'[]' if kind == 'list' else ''}.", text)
    return out


def _missing(cls: type, value: dict, path: str, text: str) -> list[str]:
    out = []
    for name, (kind, sub) in _fields(cls):
        if name not in value:
            out.append(path + name)
            continue
        child = value[name]
        if kind == "dataclass":
            if child is None:
                out += _missing_commented(sub, f"{path}{name}.", text)
            else:
                out += _missing(sub, child, f"{path}{name}.", text)
        elif kind == "list":
            if not child:
                out += _missing_commented(sub, f"{path}{name}[].", text)
            for i, item in enumerate(child or []):
                out += _missing(sub, item, f"{path}{name}[{i}].", text)
    return out


@pytest.mark.parametrize("role", [pytest.param(r, id=r) for r in config_mod.ROLES])
def test_role_example_writes_every_setting(role):
    text = ROLE_FILES[role].read_text(encoding="utf-8")
    assert _missing(Config, yaml.safe_load(text), "", text) == []


def test_field_walk_reaches_every_config_dataclass():
    """Guards the walk above: it must see the nested and listed dataclasses too."""
    seen, todo = set(), [Config]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo += [sub for _, (_, sub) in _fields(cls) if sub is not None and sub not in seen]
    declared = {obj for obj in vars(config_mod).values()
                if dataclasses.is_dataclass(obj) and isinstance(obj, type) and obj.__module__ == config_mod.__name__}
    assert seen == declared


# --- state-machine drawings ----------------------------------------------------------------

_EDGE = re.compile(r"^\s*(\w+)\s*->\s*(\w+)\s*\[(.*)\];\s*$", re.M)
_LABEL = re.compile(r'label\s*=\s*"((?:[^"\\]|\\.)*)"')
_ENTRY = re.compile(r"^0x([0-9A-F]{2}) (\w+) / (\w+)$")


def _drawn_entries(dot: Path) -> set[tuple[str, int, str]]:
    """(tail state, command, handler) of every '0xNN name / handler' label line."""
    entries = set()
    for tail, _head, attrs in _EDGE.findall(dot.read_text(encoding="utf-8")):
        label = _LABEL.search(attrs)
        if label is None:
            continue
        for line in re.split(r"\\[nlr]", label.group(1)):
            m = _ENTRY.match(line.strip())
            if m:
                command = int(m.group(1), 16)
                assert COMMAND_NAMES.get(command) == m.group(2), f"{dot.name}: {line!r} misnames the command"
                entries.add((tail, command, m.group(3)))
    return entries


def _nodes(dot: Path) -> set[str]:
    text = dot.read_text(encoding="utf-8")
    declared = set(re.findall(r"^\s*(\w+)\s*\[", text, re.M))
    return declared | {n for tail, head, _ in _EDGE.findall(text) for n in (tail, head)}


@pytest.mark.parametrize("table, states, dot", [
    pytest.param(TRANSITIONS, State, "terminal-session.dot", id="terminal"),
    pytest.param(PLATFORM_TRANSITIONS, PState, "platform-session.dot", id="platform"),
])
def test_drawing_matches_transition_table(table, states, dot):
    path = DOCS / "state-machines" / dot
    expected = {(state.value, int(command), handler) for (state, command), handler in table.items()}
    drawn = _drawn_entries(path)
    assert sorted(expected - drawn) == [], "in the table, not in the drawing"
    assert sorted(drawn - expected) == [], "in the drawing, not in the table"
    assert {s.value for s in states} <= _nodes(path)


_LINK_ENTRY = re.compile(r"^([a-z_]+(?:, [a-z_]+)*) / ([a-z_]+)$")
_LINK_REFUSED = re.compile(r"^([a-z_]+): ([a-z_]+(?:, [a-z_]+)*)$")


def _label_lines(attrs: str) -> list[str]:
    label = _LABEL.search(attrs)
    return [] if label is None else [line.strip() for line in re.split(r"\\[nlr]", label.group(1))]


def test_upstream_drawing_matches_the_link_machine():
    """Every edge line "input / output" of upstream-link.dot is a transition of the Automat
    machine and the other way round; the note lists exactly the pairs without one."""
    text = (DOCS / "state-machines" / "upstream-link.dot").read_text(encoding="utf-8")
    drawn = set()
    for tail, head, attrs in _EDGE.findall(text):
        for line in _label_lines(attrs):
            m = _LINK_ENTRY.match(line)
            if m:
                drawn |= {(tail, upon, head, m.group(2)) for upon in m.group(1).split(", ")}
    expected = set(upstream_machine.transitions())
    assert sorted(expected - drawn) == [], "in the machine, not in the drawing"
    assert sorted(drawn - expected) == [], "in the drawing, not in the machine"

    (note,) = re.findall(r"^\s*refused\s*\[(.*)\];\s*$", text, re.M)
    refused = {(m.group(1), upon) for line in _label_lines(note) if (m := _LINK_REFUSED.match(line))
               for upon in m.group(2).split(", ")}
    assert refused == set(upstream_machine.REFUSED)
    nodes = _nodes(DOCS / "state-machines" / "upstream-link.dot") - {"graph", "node", "edge"}  # (defaults)
    assert nodes == set(upstream_machine.STATES) | {"refused"}
    assert upstream_machine.STATES == LINK_STATES  # the metrics' gauge has one series per state


# --- charging wire format ---------------------------------------------------------------------

def _wire_doc() -> str:
    return (DOCS / "charging-wire.md").read_text(encoding="utf-8")


def test_charging_doc_names_every_field():
    doc = _wire_doc()
    structs = [con for _, con, _ in LAYOUTS.values()] + [EQUIPMENT, CONNECTOR]
    names = {sc.name for con in structs for sc in con.subcons}
    assert sorted(n for n in names if f"`{n}`" not in doc) == []
    for command, (json_name, _, _) in LAYOUTS.items():
        assert f"0x{command:02X}" in doc and f"`{json_name}`" in doc


def test_charging_doc_examples_decode_and_reencode():
    blocks = re.findall(r"```hex\n(.*?)```", _wire_doc(), re.S)
    commands = []
    for block in blocks:
        raw = bytes.fromhex("".join(block.split()))
        frame = codec.decode_frame(raw)
        assert isinstance(frame.body, codec.ChargingMessage)
        assert codec.encode_frame(frame) == raw
        commands.append(frame.command)
    assert sorted(commands) == sorted(LAYOUTS)


# --- log vocabulary ---------------------------------------------------------------------------

_LOG_CALL = re.compile(r"\.(?:debug|info|warning|warn|error|exception|critical|msg)\(\s*\"([a-z][a-z0-9_]*)\"")
_EVENT_ARG = re.compile(r"_answer_after_commit\([^)]*?\"([a-z][a-z0-9_]*)\"\)")
_AUDIT = re.compile(r"\.record\(\s*[^,]+,\s*\"([a-z_]+)\",\s*\"([a-z_]+)\"")


def _sources():
    for package in ("relay", "platforms", "codec"):
        yield from sorted((ROOT / package).rglob("*.py"))


def test_log_events_doc_names_every_event():
    doc = (DOCS / "log-events.md").read_text(encoding="utf-8")
    events, audits = set(), set()
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        events |= set(_LOG_CALL.findall(text)) | set(_EVENT_ARG.findall(text))
        audits |= set(_AUDIT.findall(text))
    assert "upstream_link_state" in events and ("platform_login", "accepted") in audits
    assert sorted(e for e in events if f"`{e}`" not in doc) == []
    for action, result in sorted(audits):
        assert re.search(rf"^\| `{action}` \|[^|\n]*`{result}`[^|\n]*\|", doc, re.M), (action, result)
