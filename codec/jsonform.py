"""Frames as JSON objects (interfaces.md, "Decoded frame JSON") and back.

``frame_to_json`` gives plain JSON-ready values: times as ISO 8601 with +08:00, bytes
as hex. ``frame_from_json`` is its inverse, so decode -> JSON -> encode reproduces the
frame byte for byte.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import bodies, bodies_2025, charging, params
from .commands import (COMMAND_NAMES, ENCRYPTION_NAMES, RESPONSE_NAMES, Command, Edition, Response, name_of,
                       value_of)
from .errors import EncodeError
from .fields import PackedValues
from .frame import Frame
from .realtime import PendingRealtime, RealtimeData, Signature
from .timefield import format_iso, parse_iso


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_iso(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, PackedValues)):
        return [_jsonable(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """Realtime items as JSON-native values: packed arrays become lists."""
    if isinstance(value, PackedValues):
        return value.values()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def body_to_json(body: Any, edition: Edition = Edition.V2016) -> Any:
    if isinstance(body, PendingRealtime):
        body = body.decode(False)
    if body is None:
        return None
    if isinstance(body, RealtimeData):
        out: dict = {"collected_at": format_iso(body.collected_at)}
        out.update(_plain(body.items))
        if body.signature is not None:
            out["signature"] = body.signature.to_json()
        if body.trailing:
            out["trailing"] = body.trailing.hex()
        return out
    if isinstance(body, bodies.Undecoded):
        return {"hex": body.data.hex(), "undecoded": body.reason}
    if isinstance(body, bodies.Opaque):
        return {"hex": body.data.hex()}
    if isinstance(body, params.ParamQuery):
        table = params.parameter_table(edition)
        return {"collected_at": format_iso(body.collected_at), "ids": list(body.ids),
                "names": [table.get(i, (f"0x{i:02X}",))[0] for i in body.ids]}
    if isinstance(body, params.ParamList):
        table = params.parameter_table(edition)
        items = []
        for pid, value in body.params:
            spec = table.get(pid)
            if spec is None:
                items.append({"id": pid, "hex": bytes(value).hex()})
            else:
                items.append({"id": pid, "name": spec[0], "value": value})
        return {"collected_at": format_iso(body.collected_at), "params": items}
    if isinstance(body, params.TerminalControl):
        return {"collected_at": format_iso(body.collected_at), "command_id": body.command_id,
                "command": params.CONTROL_COMMANDS.get(body.command_id, f"0x{body.command_id:02X}"),
                "params_hex": body.params.hex()}
    if isinstance(body, charging.ChargingMessage):
        return _jsonable({"collected_at": body.collected_at, **body.data})
    if isinstance(body, bodies.VehicleLogin):
        out = {"collected_at": format_iso(body.collected_at), "serial": body.serial, "iccid": body.iccid,
               "subsystem_codes": list(body.subsystem_codes)}
        if isinstance(body, bodies_2025.VehicleLogin2025):
            out["packs_per_system"] = list(body.packs_per_system)
        elif body.code_length and body.code_length != max((len(x) for x in body.subsystem_codes), default=0):
            out["code_length"] = body.code_length
        return out
    if isinstance(body, (bodies_2025.Activation, bodies_2025.ActivationAnswer, bodies_2025.KeySync)):
        return bodies_2025.to_json(body)
    if hasattr(body, "__dataclass_fields__"):
        return _jsonable({k: getattr(body, k) for k in body.__dataclass_fields__})
    raise TypeError(f"no JSON form for {type(body).__name__}")


def frame_to_json(frame: Frame, raw: bool = False) -> dict:
    out = {
        "protocol": frame.edition.value,
        "command": name_of(COMMAND_NAMES, frame.command),
        "command_id": frame.command,
        "response": name_of(RESPONSE_NAMES, frame.response),
        "vin": frame.vin,
        "encryption": name_of(ENCRYPTION_NAMES, frame.encryption),
        "body": body_to_json(frame.body, frame.edition),
    }
    if raw:
        out["raw"] = frame.raw.hex()
    return out


def _time(obj: dict, key: str = "collected_at") -> datetime:
    try:
        return parse_iso(obj[key])
    except KeyError:
        raise EncodeError(f"body.{key} is missing") from None
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"body.{key}: {exc}") from None


def body_from_json(edition: Edition, command: int, response: int, obj: Any) -> Any:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise EncodeError("body must be an object or null")
    if "hex" in obj and "undecoded" in obj:
        return bodies.Undecoded(bytes.fromhex(obj["hex"]), obj["undecoded"])
    if set(obj) == {"hex"}:
        return bodies.Opaque(bytes.fromhex(obj["hex"]))
    is_answer = response != Response.COMMAND
    if is_answer and set(obj) == {"collected_at"}:
        return bodies.TimeOnly(_time(obj))
    if command == Command.QUERY_PARAMS and not is_answer:
        return params.ParamQuery(_time(obj), tuple(int(i) for i in obj.get("ids", ())))
    if command == Command.SET_PARAMS or (command == Command.QUERY_PARAMS and is_answer):
        pairs = []
        for item in obj.get("params", ()):
            if "hex" in item:
                pairs.append((int(item["id"]), bytes.fromhex(item["hex"])))
            else:
                pid = int(item["id"]) if "id" in item else params.PARAMETER_IDS[item["name"]]
                pairs.append((pid, item["value"]))
        return params.ParamList(_time(obj), tuple(pairs))
    if command == Command.TERMINAL_CONTROL:
        cid = obj.get("command_id")
        if cid is None:
            cid = params.CONTROL_IDS[obj["command"]]
        return params.TerminalControl(_time(obj), int(cid), bytes.fromhex(obj.get("params_hex", "")))
    if command in (Command.REALTIME, Command.REISSUE):
        items = {k: v for k, v in obj.items() if k not in ("collected_at", "signature", "trailing")}
        sig = Signature.from_json(obj["signature"]) if obj.get("signature") else None
        return RealtimeData(_time(obj), items, sig, bytes.fromhex(obj.get("trailing", "")))
    if command == Command.VEHICLE_LOGIN:
        if edition is Edition.V2025:
            return bodies_2025.login_from_json(obj, _time(obj))
        codes = tuple(obj.get("subsystem_codes", ()))
        return bodies.VehicleLogin(_time(obj), int(obj["serial"]), obj["iccid"], codes,
                                   int(obj.get("code_length") or max((len(x) for x in codes), default=0)))
    if command in (Command.VEHICLE_LOGOUT, Command.PLATFORM_LOGOUT):
        return bodies.Logout(_time(obj), int(obj["serial"]))
    if command == Command.PLATFORM_LOGIN:
        return bodies.PlatformLogin(_time(obj), int(obj["serial"]), obj["username"], obj["password"],
                                    int(obj.get("encryption_rule", 1)))
    if command in charging.LAYOUTS:
        data = dict(obj)
        when = parse_iso(data.pop("collected_at"))
        for key in ("started_at", "ended_at"):
            if isinstance(data.get(key), str):
                data[key] = parse_iso(data[key])
        return charging.ChargingMessage(command, when, data)
    if command in (Command.ACTIVATION, Command.ACTIVATION_ANSWER, Command.KEY_SYNC):
        return bodies_2025.from_json(command, obj)
    if set(obj) == {"collected_at"}:
        return bodies.TimeOnly(_time(obj))
    raise EncodeError(f"no JSON layout for command 0x{command:02X}")


def frame_from_json(obj: dict) -> Frame:
    try:
        edition = Edition(str(obj["protocol"]))
        command = int(obj["command_id"]) if "command_id" in obj else value_of(COMMAND_NAMES, obj["command"])
        response = value_of(RESPONSE_NAMES, obj.get("response", "command"))
        encryption = value_of(ENCRYPTION_NAMES, obj.get("encryption", "none"))
        vin = obj["vin"]
    except KeyError as exc:
        raise EncodeError(f"frame JSON lacks {exc}") from None
    except ValueError as exc:
        raise EncodeError(str(exc)) from None
    body = body_from_json(edition, command, response, obj.get("body"))
    return Frame(edition, command, response, vin, encryption, body)
