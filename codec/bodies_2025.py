"""Data units that exist only in, or changed in, GB/T 32960.3-2025.

* vehicle login 0x01 (2025 clause 7.1 table 6): after the ICCID, the number n of
  rechargeable energy storage systems, n bytes giving each system's pack count, then
  every pack's 24-character code.
* activation 0x09 (2025 annex B table B.3): time, security-chip id (16 ASCII), public key
  (2-byte length + key), VIN (17), and a signature (algorithm, r, s; no 0xFF lead byte).
* activation answer 0x0A (annex B table B.4): result (1 activated, 2 failed) and detail
  (0 ok, 1 chip already activated, 2 VIN duplicate; one public decoder reads 1/2/3, the
  standard's table and the other readings say 0/1/2).
* payload key sync 0x0B (2025 clause 7.6 table 31): encryption flag, key (2-byte length
  + key), validity start and end times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import construct as c

from .bodies import Time, VehicleLogin, build, parse_exact
from .commands import Command
from .errors import EncodeError
from .timefield import format_iso, parse_iso

PACK_CODE_LENGTH = 24

LOGIN = c.Struct(
    "collected_at" / Time,
    "serial" / c.Int16ub,
    "iccid" / c.PaddedString(20, "ascii"),
    "systems" / c.Int8ub,
    "packs" / c.Array(c.this.systems, c.Int8ub),
    "codes" / c.Array(c.this.systems, c.Array(lambda this: this.packs[this._index], c.PaddedString(24, "ascii"))),
)

SIGNATURE = c.Struct(
    "algorithm" / c.Int8ub,
    "r" / c.Prefixed(c.Int16ub, c.GreedyBytes),
    "s" / c.Prefixed(c.Int16ub, c.GreedyBytes),
)

ACTIVATION = c.Struct(
    "collected_at" / Time,
    "chip_id" / c.PaddedString(16, "ascii"),
    "public_key" / c.Prefixed(c.Int16ub, c.GreedyBytes),
    "vin" / c.PaddedString(17, "ascii"),
    "signature" / SIGNATURE,
)

ACTIVATION_ANSWER = c.Struct("result" / c.Int8ub, "detail" / c.Int8ub)

KEY_SYNC = c.Struct(
    "encryption" / c.Int8ub,
    "key" / c.Prefixed(c.Int16ub, c.GreedyBytes),
    "valid_from" / Time,
    "valid_until" / Time,
)

ACTIVATION_RESULTS = {1: "activated", 2: "failed"}
ACTIVATION_DETAILS = {0: "ok", 1: "chip_already_activated", 2: "vin_duplicate"}


@dataclass(frozen=True, slots=True)
class VehicleLogin2025(VehicleLogin):
    """2025 login: ``subsystem_codes`` is every pack code in order, ``packs_per_system``
    how many of them belong to each energy storage system."""

    packs_per_system: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Activation:
    collected_at: datetime
    chip_id: str
    public_key: bytes
    vin: str
    algorithm: int
    r: bytes
    s: bytes


@dataclass(frozen=True, slots=True)
class ActivationAnswer:
    result: int
    detail: int


@dataclass(frozen=True, slots=True)
class KeySync:
    encryption: int
    key: bytes
    valid_from: datetime
    valid_until: datetime


def decode_vehicle_login_2025(data: bytes) -> VehicleLogin2025:
    obj = parse_exact(LOGIN, data, "vehicle_login")
    codes = tuple(code for system in obj.codes for code in system)
    return VehicleLogin2025(obj.collected_at, obj.serial, obj.iccid, codes, PACK_CODE_LENGTH, tuple(obj.packs))


def encode_vehicle_login_2025(body: VehicleLogin) -> bytes:
    codes = list(body.subsystem_codes)
    packs = list(getattr(body, "packs_per_system", ()) or ([len(codes)] if codes else []))
    if sum(packs) != len(codes):
        raise EncodeError(f"vehicle_login: packs_per_system {packs} does not add up to {len(codes)} codes")
    grouped, i = [], 0
    for n in packs:
        grouped.append(codes[i:i + n])
        i += n
    return build(LOGIN, dict(collected_at=body.collected_at, serial=body.serial, iccid=body.iccid,
                             systems=len(packs), packs=packs, codes=grouped), "vehicle_login")


def login_from_json(obj: dict, when: datetime) -> VehicleLogin2025:
    codes = tuple(obj.get("subsystem_codes", ()))
    packs = tuple(obj.get("packs_per_system") or ((len(codes),) if codes else ()))
    return VehicleLogin2025(when, int(obj["serial"]), obj["iccid"], codes, PACK_CODE_LENGTH, packs)


def decode_activation(data: bytes) -> Activation:
    obj = parse_exact(ACTIVATION, data, "activation")
    sig = obj.signature
    return Activation(obj.collected_at, obj.chip_id, obj.public_key, obj.vin, sig.algorithm, sig.r, sig.s)


def encode_activation(body: Activation) -> bytes:
    return build(ACTIVATION, dict(collected_at=body.collected_at, chip_id=body.chip_id, public_key=body.public_key,
                                  vin=body.vin, signature=dict(algorithm=body.algorithm, r=body.r, s=body.s)),
                 "activation")


def decode_activation_answer(data: bytes) -> ActivationAnswer:
    obj = parse_exact(ACTIVATION_ANSWER, data, "activation_answer")
    return ActivationAnswer(obj.result, obj.detail)


def encode_activation_answer(body: ActivationAnswer) -> bytes:
    return build(ACTIVATION_ANSWER, dict(result=body.result, detail=body.detail), "activation_answer")


def decode_key_sync(data: bytes) -> KeySync:
    obj = parse_exact(KEY_SYNC, data, "key_sync")
    return KeySync(obj.encryption, obj.key, obj.valid_from, obj.valid_until)


def encode_key_sync(body: KeySync) -> bytes:
    return build(KEY_SYNC, dict(encryption=body.encryption, key=body.key, valid_from=body.valid_from,
                                valid_until=body.valid_until), "key_sync")


def to_json(body) -> dict:
    if isinstance(body, Activation):
        return {"collected_at": format_iso(body.collected_at), "chip_id": body.chip_id,
                "public_key": body.public_key.hex(), "vin": body.vin,
                "signature": {"algorithm": body.algorithm, "r": body.r.hex(), "s": body.s.hex()}}
    if isinstance(body, ActivationAnswer):
        return {"result": ACTIVATION_RESULTS.get(body.result, body.result),
                "detail": ACTIVATION_DETAILS.get(body.detail, body.detail)}
    if isinstance(body, KeySync):
        return {"encryption": body.encryption, "key": body.key.hex(), "valid_from": format_iso(body.valid_from),
                "valid_until": format_iso(body.valid_until)}
    raise TypeError(type(body).__name__)


def _code(names: dict, value) -> int:
    if isinstance(value, str):
        for k, v in names.items():
            if v == value:
                return k
        raise EncodeError(f"unknown value {value!r}")
    return int(value)


def from_json(command: int, obj: dict):
    if command == Command.ACTIVATION:
        sig = obj["signature"]
        return Activation(parse_iso(obj["collected_at"]), obj["chip_id"], bytes.fromhex(obj["public_key"]), obj["vin"],
                          int(sig["algorithm"]), bytes.fromhex(sig["r"]), bytes.fromhex(sig["s"]))
    if command == Command.ACTIVATION_ANSWER:
        return ActivationAnswer(_code(ACTIVATION_RESULTS, obj["result"]), _code(ACTIVATION_DETAILS, obj["detail"]))
    return KeySync(int(obj["encryption"]), bytes.fromhex(obj["key"]), parse_iso(obj["valid_from"]),
                   parse_iso(obj["valid_until"]))
