"""Realtime information types of GB/T 32960.3-2016 (clause 7.2.3, tables 8-19).

Each block is declared as a field table; units follow the JSON names
(``_v``, ``_a``, ``_c``, ``_kmh`` ...). Offsets are given in raw counts:
a current of 0.1 A resolution with a -1000 A offset is ``divisor=10, raw_offset=-10000``.
"""

from __future__ import annotations

import math
import struct

from .blocks import GEAR_CODES, GEARS, Composite, FaultCodes, ListOf, Subsystems, flag_bits, flag_names, u8
from .errors import BadBody, EncodeError
from .fields import FastConstruct, FixedBlock, ScaledArray, custom, enum, num, raw

VEHICLE_STATES = {1: "started", 2: "off", 3: "other"}
CHARGING_STATES = {1: "parked_charging", 2: "driving_charging", 3: "not_charging", 4: "charge_complete"}
RUN_MODES = {1: "electric", 2: "hybrid", 3: "fuel"}
DCDC_STATES = {1: "working", 2: "off"}
MOTOR_STATES = {1: "consuming", 2: "generating", 3: "off", 4: "ready"}
ENGINE_STATES = {1: "on", 2: "off"}


def _gear_decode(v: int, rec: dict, ab: list, inv: list) -> None:
    """Gear byte (annex A table A.1): bits 0-3 gear, bit 4 braking force, bit 5 driving
    force; bits 6-7 reserved (kept as ``gear_reserved`` when set, so nothing is lost)."""
    rec["gear"] = GEARS[v & 0x0F]
    rec["braking_force"] = bool(v & 0x10)
    rec["driving_force"] = bool(v & 0x20)
    if v & 0xC0:
        rec["gear_reserved"] = v >> 6


def _gear_encode(rec: dict) -> int:
    gear = rec.get("gear")
    code = GEAR_CODES.get(str(gear)) if gear is not None else None
    if code is None:
        raise EncodeError(f"vehicle.gear: unknown gear {gear!r} (N, 1-12, R, D, P)")
    return (code | (0x10 if rec.get("braking_force") else 0) | (0x20 if rec.get("driving_force") else 0)
            | ((int(rec.get("gear_reserved") or 0) & 3) << 6))


#: 0x01 whole vehicle, 20 bytes (table 9)
VEHICLE = FixedBlock("vehicle", [
    enum("state", "B", VEHICLE_STATES),
    enum("charging_state", "B", CHARGING_STATES),
    enum("mode", "B", RUN_MODES),
    num("speed_kmh", "H", 10, unit="km/h"),              # 0-2200 -> 0-220 km/h
    num("odometer_km", "I", 10, unit="km"),              # 0-9999999 -> 0-999999.9 km
    num("total_voltage_v", "H", 10, unit="V"),           # 0-10000 -> 0-1000 V
    num("total_current_a", "H", 10, -10000, unit="A"),   # 0-20000 -> -1000..+1000 A
    num("soc_pct", "B", unit="%"),                       # 0-100
    enum("dcdc_state", "B", DCDC_STATES),
    custom("gear", "B", _gear_decode, _gear_encode),
    num("insulation_kohm", "H", unit="kOhm", markers=False),  # 0-60000; no markers in 2016
    num("accelerator_pct", "B", unit="%"),               # 0-100
    # 0-100 %, 0x65 (101) = brake active without a travel reading
    num("brake", "B", unit="%"),
], clause="GB/T 32960.3-2016 7.2.3.1 table 9")

#: one drive motor, 12 bytes (table 11)
MOTOR = FixedBlock("motor", [
    raw("seq", "B"),
    enum("state", "B", MOTOR_STATES),
    num("controller_temp_c", "B", 1, -40, unit="C"),
    num("speed_rpm", "H", 1, -20000, unit="r/min"),       # 0-65531 -> -20000..45531
    num("torque_nm", "H", 10, -20000, unit="N.m"),        # 0-65531 -> -2000..4553.1
    num("temp_c", "B", 1, -40, unit="C"),
    num("controller_voltage_v", "H", 10, unit="V"),       # 0-60000 -> 0-6000 V
    num("controller_current_a", "H", 10, -10000, unit="A"),  # 0-20000 -> -1000..+1000 A
], clause="GB/T 32960.3-2016 7.2.3.2 table 11")

#: 0x02 drive motors: count + motors (table 10)
MOTORS = ListOf("motors", MOTOR)


#: 0x03 fuel cell (table 12): fixed head, N probe temperatures, fixed tail; 18 + N bytes
FUEL_CELL = Composite("fuel_cell", [
    FixedBlock("fuel_cell", [
        num("voltage_v", "H", 10, unit="V"),
        num("current_a", "H", 10, unit="A"),
        num("consumption_kg_per_100km", "H", 100, unit="kg/100km"),
        num("probe_count", "H"),
    ]),
    (ScaledArray("probe_temps_c", "B", 1, -40, markers=False), "probe_count"),  # table 12 lists no markers
    FixedBlock("fuel_cell", [
        num("h2_max_temp_c", "H", 10, -400, unit="C"),
        num("h2_max_temp_probe", "B"),
        num("h2_max_concentration_ppm", "H", unit="mg/kg"),   # raw mg/kg, no offset (open question)
        num("h2_max_concentration_sensor", "B"),
        num("h2_max_pressure_mpa", "H", 10, unit="MPa", markers=False),
        num("h2_max_pressure_sensor", "B"),
        enum("dcdc_state", "B", DCDC_STATES),
    ]),
])

#: 0x04 engine, 5 bytes (table 13)
ENGINE = FixedBlock("engine", [
    enum("state", "B", ENGINE_STATES),
    num("crankshaft_rpm", "H", unit="r/min"),
    num("fuel_rate_l_per_100km", "H", 100, unit="L/100km"),
], clause="GB/T 32960.3-2016 7.2.3.4 table 13")


def _pos_status_decode(v: int, rec: dict, ab: list, inv: list) -> None:
    rec["valid"] = not v & 1
    rec["_south"] = bool(v & 2)
    rec["_west"] = bool(v & 4)
    if v & 0xF8:
        rec["status_reserved"] = v >> 3


def _pos_status_encode(rec: dict) -> int:
    return ((0 if rec.get("valid", True) else 1) | (2 if rec["_south"] else 0) | (4 if rec["_west"] else 0)
            | ((int(rec.get("status_reserved") or 0) & 0x1F) << 3))


class Position(FastConstruct):
    """0x05 position (tables 14, 15): status bits, then longitude and latitude in 1e-6
    degree magnitudes; the south/west bits give the sign. Shared by 2016 and 2025 (the
    2025 edition inserts a coordinate-system byte, see ``codec.realtime_2025``)."""

    name = "position"

    def __init__(self, with_datum: bool = False) -> None:
        super().__init__()
        fields = [custom("status", "B", _pos_status_decode, _pos_status_encode)]
        if with_datum:
            fields.append(enum("datum", "B", {1: "wgs84", 2: "gcj02", 3: "other"}))
        fields += [num("longitude", "I", 1_000_000, unit="deg"), num("latitude", "I", 1_000_000, unit="deg")]
        self.block = FixedBlock("position", fields)

    def decode(self, buf, off):
        rec, off = self.block.decode(buf, off)
        west, south = rec.pop("_west"), rec.pop("_south")
        # the sign lives in the status bits; a marked coordinate keeps its bit explicitly
        if west:
            if rec["longitude"] is None:
                rec["west"] = True
            else:
                rec["longitude"] = -rec["longitude"]
        if south:
            if rec["latitude"] is None:
                rec["south"] = True
            else:
                rec["latitude"] = -rec["latitude"]
        return rec, off

    def encode(self, rec):
        lon, lat = rec.get("longitude"), rec.get("latitude")
        out = dict(rec)
        out["_west"] = bool(rec.get("west")) if lon is None else math.copysign(1.0, lon) < 0
        out["_south"] = bool(rec.get("south")) if lat is None else math.copysign(1.0, lat) < 0
        out["longitude"] = abs(lon) if lon is not None else None
        out["latitude"] = abs(lat) if lat is not None else None
        return self.block.encode(out)


POSITION = Position()

#: 0x06 extremes, 14 bytes (table 16)
EXTREMES = FixedBlock("extremes", [
    num("max_voltage_subsystem", "B"),
    num("max_voltage_cell", "B"),
    num("max_cell_voltage_v", "H", 1000, unit="V"),
    num("min_voltage_subsystem", "B"),
    num("min_voltage_cell", "B"),
    num("min_cell_voltage_v", "H", 1000, unit="V"),
    num("max_temp_subsystem", "B"),
    num("max_temp_probe", "B"),
    num("max_temp_c", "B", 1, -40, unit="C"),
    num("min_temp_subsystem", "B"),
    num("min_temp_probe", "B"),
    num("min_temp_c", "B", 1, -40, unit="C"),
], clause="GB/T 32960.3-2016 7.2.3.6 table 16")

#: general alarm flags, bit -> name (table 18)
ALARM_FLAGS = {
    0: "temperature_difference",
    1: "battery_high_temperature",
    2: "storage_over_voltage",
    3: "storage_under_voltage",
    4: "soc_low",
    5: "cell_over_voltage",
    6: "cell_under_voltage",
    7: "soc_high",
    8: "soc_jump",
    9: "storage_mismatch",
    10: "cell_poor_consistency",
    11: "insulation",
    12: "dcdc_temperature",
    13: "brake_system",
    14: "dcdc_state",
    15: "motor_controller_temperature",
    16: "high_voltage_interlock",
    17: "motor_temperature",
    18: "storage_over_charge",
}

FAULT_LISTS = ("battery_faults", "motor_faults", "engine_faults", "other_faults")


class Alarm(FastConstruct):
    """0x07 alarm (table 17): max level, 32 general flag bits, four fault-code lists.
    The 2025 edition appends a list of (general alarm, level) pairs (``with_levels``)."""

    name = "alarm"
    _HEAD = struct.Struct(">BI")

    def __init__(self, flags: dict[int, str], with_levels: bool = False) -> None:
        super().__init__()
        self.flags = flags
        self.codes = {n: b for b, n in flags.items()}
        self.with_levels = with_levels

    def decode(self, buf, off):
        if off + 5 > len(buf):
            raise BadBody("alarm: truncated head", off)
        level, bits = self._HEAD.unpack_from(buf, off)
        off += 5
        rec: dict = {}
        if level >= 0xFE:
            rec["max_level"] = None
            rec["abnormal" if level == 0xFE else "invalid"] = ["max_level"]
        else:
            rec["max_level"] = level
        rec["flags"] = flag_names(bits, self.flags) if bits else []
        if buf[off:off + 4] == b"\x00\x00\x00\x00":  # no fault codes: the usual frame
            for key in FAULT_LISTS:
                rec[key] = []
            off += 4
        else:
            off = self._fault_lists(buf, off, rec)
        if self.with_levels:
            n = u8(buf, off, "alarm.flag_levels")
            off += 1
            if n >= 0xFE:  # a marked count: no pairs follow
                rec["flag_levels"] = None
                rec.setdefault("abnormal" if n == 0xFE else "invalid", []).append("flag_levels")
                return rec, off
            if off + 2 * n > len(buf):
                raise BadBody("alarm.flag_levels: truncated", off)
            rec["flag_levels"] = [
                {"flag": self.flags.get(buf[off + 2 * i], f"bit_{buf[off + 2 * i]}"), "level": buf[off + 2 * i + 1]}
                for i in range(n)
            ]
            off += 2 * n
        return rec, off

    @staticmethod
    def _fault_lists(buf, off: int, rec: dict) -> int:
        for key in FAULT_LISTS:
            if off < len(buf) and buf[off] >= 0xFE:  # a marked count: no codes follow
                rec[key] = None
                rec.setdefault("abnormal" if buf[off] == 0xFE else "invalid", []).append(key)
                off += 1
                continue
            rec[key], off = FaultCodes.decode(buf, off, key)
        return off

    def encode(self, rec):
        level = rec.get("max_level")
        if level is None:
            level = 0xFE if "max_level" in (rec.get("abnormal") or ()) else 0xFF
        if not 0 <= int(level) <= 0xFF:
            raise EncodeError("alarm.max_level out of range")
        parts = [self._HEAD.pack(int(level), flag_bits(rec.get("flags") or [], self.codes, "alarm.flags"))]
        for key in FAULT_LISTS:
            codes = rec.get(key, [])
            if codes is None:
                parts.append(b"\xfe" if key in (rec.get("abnormal") or ()) else b"\xff")
            else:
                parts.append(FaultCodes.encode(list(codes), f"alarm.{key}"))
        if self.with_levels:
            pairs = rec.get("flag_levels", [])
            if pairs is None:
                parts.append(b"\xfe" if "flag_levels" in (rec.get("abnormal") or ()) else b"\xff")
                return b"".join(parts)
            if len(pairs) > 253:
                raise EncodeError("alarm.flag_levels: at most 253 pairs")
            out = bytearray((len(pairs),))
            for p in pairs:
                name = p["flag"]
                bit = self.codes.get(name)
                if bit is None:
                    if not (isinstance(name, str) and name.startswith("bit_")):
                        raise EncodeError(f"alarm.flag_levels: unknown flag {name!r}")
                    bit = int(name[4:])
                out += bytes((bit, int(p["level"])))
            parts.append(bytes(out))
        return b"".join(parts)


ALARM = Alarm(ALARM_FLAGS)

#: 0x08 rechargeable energy storage voltages (annex tables B.5, B.6): subsystem count 1-250
#: (FE/FF: no subsystems follow); per subsystem its total cell count (FFFE/FFFF markers), the
#: first cell of this frame and the cells in this frame (a pack over 200 cells spans frames)
CELL_VOLTAGES = Subsystems(
    "cell_voltages",
    FixedBlock("cell_voltages", [
        raw("subsystem", "B"),
        num("voltage_v", "H", 10, unit="V"),
        num("current_a", "H", 10, -10000, unit="A"),   # 0-20000 -> -1000..+1000 A (2016)
        num("cell_count", "H"),
        raw("first_cell", "H"),
        raw("_frame_cells", "B"),
    ]),
    "_frame_cells",
    ScaledArray("cells_v", "H", 1000),
    "cells_v",
    marked_count=True,
)

#: 0x09 rechargeable energy storage temperatures (annex tables B.7, B.8): a probe count of
#: FFFE/FFFF is followed by no temperatures
PROBE_TEMPERATURES = Subsystems(
    "probe_temperatures",
    FixedBlock("probe_temperatures", [raw("subsystem", "B"), num("_probe_count", "H")]),
    "_probe_count",
    ScaledArray("temps_c", "B", 1, -40),
    "temps_c",
    marked_count=True,
)

#: information type id -> (JSON key, block), GB/T 32960.3-2016 table 8
TYPES = {
    0x01: ("vehicle", VEHICLE),
    0x02: ("motors", MOTORS),
    0x03: ("fuel_cell", FUEL_CELL),
    0x04: ("engine", ENGINE),
    0x05: ("position", POSITION),
    0x06: ("extremes", EXTREMES),
    0x07: ("alarm", ALARM),
    0x08: ("cell_voltages", CELL_VOLTAGES),
    0x09: ("probe_temperatures", PROBE_TEMPERATURES),
}

__all__ = ["TYPES", "BadBody"]
