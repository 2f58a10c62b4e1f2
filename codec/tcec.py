"""Charging operators' HTTP+JSON exchange in the T/CEC 102.4 manner, without I/O.

Envelope (docs/charging-exchange.md sections 1-3): a request carries ``OperatorID``,
``Data`` (the business JSON, AES-128-CBC with PKCS#7 padding, key ``DataSecret``, IV
``DataSecretIV``, then Base64), ``TimeStamp`` (yyyyMMddHHmmss, +08:00), ``Seq`` (4 digits)
and ``Sig`` = upper-case hex HMAC-MD5 with ``SigSecret`` over OperatorID+Data+TimeStamp+Seq.
An answer carries ``Ret``, ``Msg``, ``Data`` (encrypted the same way) and ``Sig`` over
Ret+Msg+Data. ``Ret``: 0 ok, 4001 signature, 4002 token, 4003 envelope field missing or
malformed, 4004 business data invalid, 500 system error, -1 busy.

The business messages map onto this project's charging messages (``codec.charging``):
``notification_stationInfo`` -> 0xC1, ``notification_stationStatus`` -> 0xC2,
``notification_equip_charge_status`` -> 0xC3, ``notification_charge_order_info`` -> 0xC4,
``notification_alarmInfo`` -> 0xC5.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from .charging import OPERATOR_ID, ChargingMessage, valid_id
from .commands import Command
from .timefield import CST

RET_OK = 0
RET_BUSY = -1
RET_SIGNATURE = 4001
RET_TOKEN = 4002
RET_ENVELOPE = 4003
RET_BUSINESS = 4004
RET_SYSTEM = 500

ENVELOPE_FIELDS = ("OperatorID", "Data", "TimeStamp", "Seq", "Sig")


class ExchangeError(Exception):
    """A refused request: ``ret`` is the T/CEC return code, ``msg`` the reason."""

    def __init__(self, ret: int, msg: str) -> None:
        super().__init__(msg)
        self.ret = ret
        self.msg = msg


@dataclass(frozen=True)
class Secrets:
    """The secrets agreed with one operator (each a 16-character string for the AES parts)."""

    operator_secret: str
    data_secret: str
    data_iv: str
    sig_secret: str


def sign(secret: str, *parts: str) -> str:
    return hmac.new(secret.encode("utf-8"), "".join(parts).encode("utf-8"), hashlib.md5).hexdigest().upper()


def encrypt_data(plain: str, secrets: Secrets) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padder = padding.PKCS7(128).padder()
    data = padder.update(plain.encode("utf-8")) + padder.finalize()
    enc = Cipher(algorithms.AES(_key(secrets.data_secret)), modes.CBC(_key(secrets.data_iv))).encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode("ascii")


def decrypt_data(text: str, secrets: Secrets) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        raw = base64.b64decode(text, validate=True)
        dec = Cipher(algorithms.AES(_key(secrets.data_secret)), modes.CBC(_key(secrets.data_iv))).decryptor()
        padded = dec.update(raw) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except Exception as exc:  # noqa: BLE001 - any failure is "cannot decrypt"
        raise ExchangeError(RET_BUSINESS, f"Data cannot be decrypted ({type(exc).__name__})") from None


def _key(text: str) -> bytes:
    key = text.encode("utf-8")
    if len(key) != 16:
        raise ExchangeError(RET_SYSTEM, "secrets must be 16 bytes")
    return key


def make_request(operator_id: str, payload: str, secrets: Secrets, timestamp: str, seq: int) -> dict:
    data = encrypt_data(payload, secrets)
    seq_text = f"{seq % 10000:04d}"
    return {"OperatorID": operator_id, "Data": data, "TimeStamp": timestamp, "Seq": seq_text,
            "Sig": sign(secrets.sig_secret, operator_id, data, timestamp, seq_text)}


def check_envelope(obj: object) -> dict:
    """Fields present and of the right form, else :class:`ExchangeError` 4003."""
    if not isinstance(obj, dict):
        raise ExchangeError(RET_ENVELOPE, "the body is not a JSON object")
    missing = [f for f in ENVELOPE_FIELDS if not isinstance(obj.get(f), str) or not obj.get(f)]
    if missing:
        raise ExchangeError(RET_ENVELOPE, f"missing or empty: {', '.join(missing)}")
    if not OPERATOR_ID.match(obj["OperatorID"]):
        raise ExchangeError(RET_ENVELOPE, "OperatorID must be 9 characters [0-9A-Z]")
    if len(obj["TimeStamp"]) != 14 or not obj["TimeStamp"].isdigit():
        raise ExchangeError(RET_ENVELOPE, "TimeStamp must be yyyyMMddHHmmss")
    if len(obj["Seq"]) != 4 or not obj["Seq"].isdigit():
        raise ExchangeError(RET_ENVELOPE, "Seq must be 4 digits")
    return obj


def verify_request(obj: dict, secrets: Secrets) -> None:
    expected = sign(secrets.sig_secret, obj["OperatorID"], obj["Data"], obj["TimeStamp"], obj["Seq"])
    if not hmac.compare_digest(expected, obj["Sig"].upper()):
        raise ExchangeError(RET_SIGNATURE, "signature does not match")


def make_response(ret: int, msg: str, payload: str | None, secrets: Secrets | None) -> dict:
    data = encrypt_data(payload, secrets) if (payload is not None and secrets is not None) else ""
    sig = sign(secrets.sig_secret, str(ret), msg, data) if secrets is not None else ""
    return {"Ret": ret, "Msg": msg, "Data": data, "Sig": sig}


def verify_response(obj: dict, secrets: Secrets) -> None:
    expected = sign(secrets.sig_secret, str(obj.get("Ret")), obj.get("Msg", ""), obj.get("Data", ""))
    if not hmac.compare_digest(expected, str(obj.get("Sig", "")).upper()):
        raise ExchangeError(RET_SIGNATURE, "response signature does not match")


def parse_timestamp(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CST)
    except ValueError:
        raise ExchangeError(RET_ENVELOPE, f"TimeStamp {text!r} is not a time") from None


def _time(obj: dict, key: str) -> datetime:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ExchangeError(RET_BUSINESS, f"{key} missing")
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)
    except ValueError:
        raise ExchangeError(RET_BUSINESS, f"{key} {value!r} is not yyyy-MM-dd HH:mm:ss") from None


def _num(obj: dict, key: str, default=None, lo: float | None = None, hi: float | None = None):
    value = obj.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExchangeError(RET_BUSINESS, f"{key} must be a number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ExchangeError(RET_BUSINESS, f"{key} {value} out of range")
    return value


def _ident(obj: dict, key: str, kind: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not valid_id(kind, value):
        raise ExchangeError(RET_BUSINESS, f"{key} {value!r} breaks the identifier rules")
    return value


def _text(obj: dict, key: str, limit: int = 255) -> str:
    """At most ``limit`` characters and 255 UTF-8 bytes (the wire field's length byte)."""
    value = obj.get(key) or ""
    if not isinstance(value, str):
        raise ExchangeError(RET_BUSINESS, f"{key} must be a string")
    value = value[:limit]
    while len(value.encode("utf-8")) > 255:
        value = value[:-1]
    return value


def station_message(data: dict, when: datetime) -> ChargingMessage:
    info = data.get("StationInfo")
    if not isinstance(info, dict):
        raise ExchangeError(RET_BUSINESS, "StationInfo missing")
    area = str(info.get("AreaCode") or "")
    if len(area) != 6 or not area.isdigit():
        raise ExchangeError(RET_BUSINESS, "AreaCode must be a 6-digit administrative code")
    equipment = []
    for eq in info.get("EquipmentInfos") or []:
        connectors = []
        for con in eq.get("ConnectorInfos") or []:
            connectors.append({
                "connector_id": _ident(con, "ConnectorID", "connector_id"),
                "connector_type": int(_num(con, "ConnectorType", 255, 0, 255)),
                "voltage_upper_v": int(_num(con, "VoltageUpperLimits", 0, 0, 65535)),
                "voltage_lower_v": int(_num(con, "VoltageLowerLimits", 0, 0, 65535)),
                "current_a": int(_num(con, "Current", 0, 0, 65535)),
                "power_kw": float(_num(con, "Power", 0, 0, 100000)),
                "national_standard": int(_num(con, "NationalStandard", 2, 0, 255)),
            })
        equipment.append({
            "equipment_id": _ident(eq, "EquipmentID", "equipment_id"),
            "equipment_type": int(_num(eq, "EquipmentType", 5, 0, 255)),
            "rated_power_kw": float(_num(eq, "Power", 0, 0, 100000)),
            "manufacturer": _text(eq, "ManufacturerName", 30),
            "model": _text(eq, "EquipmentModel", 20),
            "production_date": _text(eq, "ProductionDate", 10),
            "connectors": connectors,
        })
    return ChargingMessage(Command.CHARGING_STATIC, when, {
        "station_id": _ident(info, "StationID", "station_id"),
        "station_name": _text(info, "StationName", 50),
        "region_code": area,
        "address": _text(info, "Address", 50),
        "longitude": round(float(_num(info, "StationLng", 0, -180, 180)), 6),
        "latitude": round(float(_num(info, "StationLat", 0, -90, 90)), 6),
        "station_type": int(_num(info, "StationType", 255, 0, 255)),
        "station_status": int(_num(info, "StationStatus", 0, 0, 255)),
        "service_hours": _text(info, "BusineHours", 100),
        "equipment": equipment,
    })


def status_message(data: dict, when: datetime) -> ChargingMessage:
    info = data.get("ConnectorStatusInfo")
    if not isinstance(info, dict):
        raise ExchangeError(RET_BUSINESS, "ConnectorStatusInfo missing")
    status = int(_num(info, "Status", None, 0, 255) if info.get("Status") is not None else -1)
    if status not in (0, 1, 2, 3, 4, 255):
        raise ExchangeError(RET_BUSINESS, "Status must be 0, 1, 2, 3, 4 or 255")
    return ChargingMessage(Command.CHARGING_STATUS, when, {
        "connector_id": _ident(info, "ConnectorID", "connector_id"),
        "status": status,
        "park_status": int(_num(info, "ParkStatus", 0, 0, 255)),
        "lock_status": int(_num(info, "LockStatus", 0, 0, 255)),
    })


def charge_status_message(data: dict, when: datetime) -> ChargingMessage:
    start, end = _time(data, "StartTime"), _time(data, "EndTime")
    voltage = _num(data, "VoltageA", 0, 0, 6553)
    current = _num(data, "CurrentA", 0, 0, 6553)
    return ChargingMessage(Command.CHARGING_MEASUREMENT, end, {
        "connector_id": _ident(data, "ConnectorID", "connector_id"),
        "session_id": _ident(data, "StartChargeSeq", "session_id"),
        "voltage_v": voltage, "current_a": current,
        "power_kw": round(voltage * current / 1000.0, 1),
        "energy_kwh": _num(data, "TotalPower", 0, 0, 4e7),
        "soc_pct": int(_num(data, "Soc", 0, 0, 100)),
        "elapsed_s": max(0, int((end - start).total_seconds())),
    })


def order_message(data: dict, when: datetime) -> ChargingMessage:
    vin = data.get("Vin") or data.get("VIN") or ""
    if not isinstance(vin, str) or len(vin) > 17:
        raise ExchangeError(RET_BUSINESS, "Vin must be at most 17 characters")
    return ChargingMessage(Command.CHARGING_RECORD, when, {
        "connector_id": _ident(data, "ConnectorID", "connector_id"),
        "session_id": _ident(data, "StartChargeSeq", "session_id"),
        "started_at": _time(data, "StartTime"), "ended_at": _time(data, "EndTime"),
        "energy_kwh": _num(data, "TotalPower", 0, 0, 4e7),
        "meter_start_kwh": _num(data, "MeterValueStart", None, 0, 4e7),
        "meter_end_kwh": _num(data, "MeterValueEnd", None, 0, 4e7),
        "stop_reason": int(_num(data, "StopReason", 0, 0, 255)),
        "vin": vin,
    })


def alarm_messages(data: dict, when: datetime) -> list[ChargingMessage]:
    infos = data.get("AlarmInfos")
    if not isinstance(infos, list) or not infos:
        raise ExchangeError(RET_BUSINESS, "AlarmInfos missing")
    out = []
    for info in infos:
        target = info.get("ConnectorID") or info.get("EquipmentID")
        kind = "connector_id" if info.get("ConnectorID") else "equipment_id"
        _ident({"id": target}, "id", kind)
        raised = int(_num(info, "AlarmStatus", 1, 0, 1)) == 1
        at = _time(info, "AlarmTime")
        out.append(ChargingMessage(Command.CHARGING_ALARM, at, {
            "target_id": target, "code": str(info.get("AlarmCode", ""))[:32],
            "level": int(_num(info, "AlarmLevel", 3, 1, 3)), "state": 1 if raised else 2,
            "started_at": at, "ended_at": None if raised else at,
            "description": _text(info, "NoteString", 255),
        }))
    return out


#: interface name -> builder of charging messages from its decrypted Data
INTERFACES = {
    "notification_stationInfo": lambda d, t: [station_message(d, t)],
    "notification_stationStatus": lambda d, t: [status_message(d, t)],
    "notification_equip_charge_status": lambda d, t: [charge_status_message(d, t)],
    "notification_charge_order_info": lambda d, t: [order_message(d, t)],
    "notification_alarmInfo": alarm_messages,
}

#: the answer Data of each interface on success
ACK_KEYS = {
    "notification_stationInfo": {"Status": 0},
    "notification_stationStatus": {"Status": 0},
    "notification_equip_charge_status": {"Status": 0},
    "notification_charge_order_info": {"ConfirmResult": 0},
    "notification_alarmInfo": {"Status": 0},
}
