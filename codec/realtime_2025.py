"""Realtime information types of GB/T 32960.3-2025 (clause 7.2.4, tables 10-27).

What changed from 2016 (docs/protocol-tables.md section 3 has the readings and sources):
the types are renumbered (0x06 alarm, 0x07 cell voltages, 0x08 probe temperatures), the
2016 extremes block is gone, 0x30-0x32 are new (fuel-cell stacks, super-capacitor and its
extremes), the vehicle block loses the pedals and its current offset becomes -3000 A,
motors get a 4-byte torque and lose the controller voltage/current, the engine block keeps
only the crankshaft speed, position gains a coordinate-system byte, the alarm block gains
a list of (general alarm, level) pairs, and counts may carry the 0xFE/0xFF markers (a marked
count is followed by nothing; such a list decodes to ``None`` for 0xFF, ``"abnormal"`` for 0xFE).
"""

from __future__ import annotations

from .blocks import GEAR_CODES, GEARS, Composite, ListOf, Subsystems
from .errors import EncodeError
from .fields import FixedBlock, ScaledArray, custom, enum, num
from .realtime_2016 import (ALARM_FLAGS, CHARGING_STATES, DCDC_STATES, MOTOR_STATES, RUN_MODES, VEHICLE_STATES, Alarm,
                            Position)


def _gear_decode(v: int, rec: dict, ab: list, inv: list) -> None:
    """2025 annex A table A.1: as 2016, plus bit 7 = 1 when the gear is invalid."""
    rec["gear"] = GEARS[v & 0x0F]
    rec["braking_force"] = bool(v & 0x10)
    rec["driving_force"] = bool(v & 0x20)
    rec["gear_valid"] = not v & 0x80
    if v & 0x40:
        rec["gear_reserved"] = 1


def _gear_encode(rec: dict) -> int:
    gear = rec.get("gear")
    code = GEAR_CODES.get(str(gear)) if gear is not None else None
    if code is None:
        raise EncodeError(f"vehicle.gear: unknown gear {gear!r} (N, 1-12, R, D, P)")
    return (code | (0x10 if rec.get("braking_force") else 0) | (0x20 if rec.get("driving_force") else 0)
            | (0 if rec.get("gear_valid", True) else 0x80) | (0x40 if rec.get("gear_reserved") else 0))


#: 0x01 whole vehicle, 18 bytes (table 10)
VEHICLE = FixedBlock("vehicle", [
    enum("state", "B", VEHICLE_STATES),
    enum("charging_state", "B", CHARGING_STATES),
    enum("mode", "B", RUN_MODES),
    num("speed_kmh", "H", 10, unit="km/h"),              # 0-5000 -> 0-500 km/h
    num("odometer_km", "I", 10, unit="km"),
    num("total_voltage_v", "H", 10, unit="V"),           # 0-60000 -> 0-6000 V
    num("total_current_a", "H", 10, -30000, unit="A"),   # 0-60000 -> -3000..+3000 A
    num("soc_pct", "B", unit="%"),
    enum("dcdc_state", "B", DCDC_STATES),
    custom("gear", "B", _gear_decode, _gear_encode),
    num("insulation_kohm", "H", unit="kOhm"),            # 0-60000, with markers in 2025
], clause="GB/T 32960.3-2025 7.2.4.1 table 10")

#: one drive motor, 10 bytes (table 16)
MOTOR = FixedBlock("motor", [
    num("seq", "B"),
    enum("state", "B", MOTOR_STATES),
    num("controller_temp_c", "B", 1, -40, unit="C"),
    num("speed_rpm", "H", 1, -32000, unit="r/min"),          # 0-65531 -> -32000..33531
    num("torque_nm", "I", 10, -200000, unit="N.m"),          # 0-400000 -> -20000..+20000 N.m
    num("temp_c", "B", 1, -40, unit="C"),
], clause="GB/T 32960.3-2025 7.2.4.4 table 16")

MOTORS = ListOf("motors", MOTOR, marked_count=True)

#: 0x03 fuel-cell engine and on-board hydrogen system, 12 bytes (table 17)
FUEL_CELL = FixedBlock("fuel_cell", [
    num("h2_max_temp_c", "H", 1, -40, unit="C"),
    num("h2_max_temp_probe", "B"),
    num("h2_max_concentration_pct", "H", 10000, unit="%vol"),   # 0-60000 -> 0-6 %
    num("h2_max_concentration_sensor", "B"),
    num("h2_max_pressure_mpa", "H", 10, unit="MPa"),
    num("h2_max_pressure_sensor", "B"),
    enum("dcdc_state", "B", DCDC_STATES),
    num("h2_remaining_pct", "B", unit="%"),
    num("dcdc_controller_temp_c", "B", 1, -40, unit="C"),
], clause="GB/T 32960.3-2025 7.2.4.5 table 17")

#: 0x04 engine, 2 bytes (table 20)
ENGINE = FixedBlock("engine", [num("crankshaft_rpm", "H", unit="r/min")],
                    clause="GB/T 32960.3-2025 7.2.4.7 table 20")

#: 0x05 position, 10 bytes (tables 21, 22)
POSITION = Position(with_datum=True)

#: general alarm flags (table 24): the 2016 bits plus 19-27
ALARM_FLAGS_2025 = {
    **ALARM_FLAGS,
    19: "motor_over_speed",
    20: "motor_over_current",
    21: "super_capacitor_over_temperature",
    22: "super_capacitor_over_voltage",
    23: "storage_thermal_event",
    24: "hydrogen_leak",
    25: "hydrogen_pressure_abnormal",
    26: "hydrogen_temperature_abnormal",
    27: "fuel_cell_stack_over_temperature",
}

#: 0x06 alarm (table 23): max level 0-4 (4 = thermal event), flags, four fault lists, and
#: the (flag, level) list
ALARM = Alarm(ALARM_FLAGS_2025, with_levels=True)

#: 0x07 minimum-parallel-unit ("cell") voltages per pack (tables 11, 12)
CELL_VOLTAGES = Subsystems(
    "cell_voltages",
    FixedBlock("cell_voltages", [
        num("subsystem", "B"),
        num("voltage_v", "H", 10, unit="V"),
        num("current_a", "H", 10, -30000, unit="A"),   # -3000..+3000 A
        num("cell_count", "H"),
    ]),
    "cell_count",
    ScaledArray("cells_v", "H", 1000),
    "cells_v",
    marked_count=True,
    keep_count=True,
)

#: 0x08 probe temperatures per pack (tables 13, 14)
PROBE_TEMPERATURES = Subsystems(
    "probe_temperatures",
    FixedBlock("probe_temperatures", [num("subsystem", "B"), num("_probe_count", "H")]),
    "_probe_count",
    ScaledArray("temps_c", "B", 1, -40),
    "temps_c",
    marked_count=True,
)

#: 0x30 fuel-cell stacks (tables 18, 19)
FUEL_CELL_STACK = Composite("fuel_cell_stack", [
    FixedBlock("fuel_cell_stack", [
        num("seq", "B"),
        num("voltage_v", "H", 10, unit="V"),
        num("current_a", "H", 10, unit="A"),
        num("h2_inlet_pressure_kpa", "H", 10, -1000, unit="kPa"),
        num("air_inlet_pressure_kpa", "H", 10, -1000, unit="kPa"),
        num("air_inlet_temp_c", "B", 1, -40, unit="C"),
        num("_probe_count", "H"),
    ]),
    (ScaledArray("coolant_outlet_temps_c", "B", 1, -40), "_probe_count"),
])


FUEL_CELL_STACKS = ListOf("fuel_cell_stacks", FUEL_CELL_STACK, marked_count=True)

#: 0x31 super-capacitor, one system, no count prefix (table 25)
SUPER_CAPACITORS = Composite("super_capacitors", [
    FixedBlock("super_capacitors", [
        num("system", "B"),
        num("voltage_v", "H", 10, unit="V"),
        num("current_a", "H", 10, -30000, unit="A"),
        num("_cell_count", "H"),
    ]),
    (ScaledArray("cells_v", "H", 1000), "_cell_count"),
    FixedBlock("super_capacitors", [num("_probe_count", "H")]),
    (ScaledArray("temps_c", "B", 1, -40), "_probe_count"),
])

#: 0x32 super-capacitor extremes, 18 bytes (table 26)
SUPER_CAPACITOR_EXTREMES = FixedBlock("super_capacitor_extremes", [
    num("max_voltage_system", "B"),
    num("max_voltage_cell", "H", markers=False),
    num("max_cell_voltage_v", "H", 1000, unit="V"),
    num("min_voltage_system", "B"),
    num("min_voltage_cell", "H", markers=False),
    num("min_cell_voltage_v", "H", 1000, unit="V"),
    num("max_temp_system", "B"),
    num("max_temp_probe", "H", markers=False),
    num("max_temp_c", "B", 1, -40, unit="C"),
    num("min_temp_system", "B"),
    num("min_temp_probe", "H", markers=False),
    num("min_temp_c", "B", 1, -40, unit="C"),
], clause="GB/T 32960.3-2025 7.2.4.11 table 26")

#: information type id -> (JSON key, block), GB/T 32960.3-2025 table 9
TYPES = {
    0x01: ("vehicle", VEHICLE),
    0x02: ("motors", MOTORS),
    0x03: ("fuel_cell", FUEL_CELL),
    0x04: ("engine", ENGINE),
    0x05: ("position", POSITION),
    0x06: ("alarm", ALARM),
    0x07: ("cell_voltages", CELL_VOLTAGES),
    0x08: ("probe_temperatures", PROBE_TEMPERATURES),
    0x30: ("fuel_cell_stacks", FUEL_CELL_STACKS),
    0x31: ("super_capacitors", SUPER_CAPACITORS),
    0x32: ("super_capacitor_extremes", SUPER_CAPACITOR_EXTREMES),
}
