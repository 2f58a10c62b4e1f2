"""GB/T 32960.3-2025 realtime information types, parsed and built from one table.

Each row is (information type, block bytes, expected items) with the values worked out by
hand from docs/protocol-tables.md §3 (2025 columns): new offsets (current -3000 A, motor
speed -32000 rpm, DWORD torque -20000 N.m), marked counts, the new types 0x30-0x32 and the
signature block. Every row runs in both directions.
"""

from __future__ import annotations

import copy

import pytest

from codec import EncodeError, Edition
from codec.errors import BadBody
from codec.realtime import RealtimeData, Signature, decode_realtime, encode_realtime
from tests.support.codec_frames import T0, T0_BYTES

ED = Edition.V2025


def h(text: str) -> bytes:
    return bytes.fromhex(text)


ALL_FLAGS_2025 = [
    "temperature_difference", "battery_high_temperature", "storage_over_voltage", "storage_under_voltage",
    "soc_low", "cell_over_voltage", "cell_under_voltage", "soc_high", "soc_jump", "storage_mismatch",
    "cell_poor_consistency", "insulation", "dcdc_temperature", "brake_system", "dcdc_state",
    "motor_controller_temperature", "high_voltage_interlock", "motor_temperature", "storage_over_charge",
    "motor_over_speed", "motor_over_current", "super_capacitor_over_temperature", "super_capacitor_over_voltage",
    "storage_thermal_event", "hydrogen_leak", "hydrogen_pressure_abnormal", "hydrogen_temperature_abnormal",
    "fuel_cell_stack_over_temperature",
]

VEHICLE_FIELDS = ["state", "charging_state", "mode", "speed_kmh", "odometer_km", "total_voltage_v",
                  "total_current_a", "soc_pct", "dcdc_state", "insulation_kohm"]

# 0x01 whole vehicle, 18 bytes (T10): state charging mode | speed | odometer | voltage | current |
# soc dcdc gear | insulation   (no pedals; gear bit 7 = invalid)
VEHICLE = [
    pytest.param(0x01, h("01 03 01 0000 00026106 1be2 7546 4b 01 1f 1999"), {"vehicle": {
        "state": "started", "charging_state": "not_charging", "mode": "electric", "speed_kmh": 0.0,
        "odometer_km": 15591.0, "total_voltage_v": 713.8,
        "total_current_a": 2.2,             # 30022 x 0.1 - 3000
        "soc_pct": 75, "dcdc_state": "working",
        "gear": "P", "braking_force": True, "driving_force": False, "gear_valid": True,
        "insulation_kohm": 6553}}, id="vehicle_real_car"),
    pytest.param(0x01, h("03 04 03 1388 0098967f ea60 ea60 64 02 3f ea60"), {"vehicle": {
        "state": "other", "charging_state": "charge_complete", "mode": "fuel",
        "speed_kmh": 500.0,                 # 5000 x 0.1
        "odometer_km": 999999.9,
        "total_voltage_v": 6000.0,          # 60000 x 0.1
        "total_current_a": 3000.0,          # 60000 x 0.1 - 3000
        "soc_pct": 100, "dcdc_state": "off",
        "gear": "P", "braking_force": True, "driving_force": True, "gear_valid": True,
        "insulation_kohm": 60000}}, id="vehicle_range_maxima"),
    pytest.param(0x01, h("01 01 02 0000 00000000 0000 0000 00 01 00 0000"), {"vehicle": {
        "state": "started", "charging_state": "parked_charging", "mode": "hybrid", "speed_kmh": 0.0,
        "odometer_km": 0.0, "total_voltage_v": 0.0,
        "total_current_a": -3000.0,         # 0 x 0.1 - 3000
        "soc_pct": 0, "dcdc_state": "working",
        "gear": "N", "braking_force": False, "driving_force": False, "gear_valid": True,
        "insulation_kohm": 0}}, id="vehicle_range_minima"),
    pytest.param(0x01, h("01 03 01 01f4 00000064 1be2 7530 32 01 2e 0064"), {"vehicle": {
        "state": "started", "charging_state": "not_charging", "mode": "electric", "speed_kmh": 50.0,
        "odometer_km": 10.0, "total_voltage_v": 713.8,
        "total_current_a": 0.0,             # 30000 x 0.1 - 3000
        "soc_pct": 50, "dcdc_state": "working",
        "gear": "D", "braking_force": False, "driving_force": True, "gear_valid": True,  # 0x2e
        "insulation_kohm": 100}}, id="vehicle_drive_with_driving_force"),
    pytest.param(0x01, h("ff ff ff ffff ffffffff ffff ffff ff ff bf ffff"), {"vehicle": {
        **dict.fromkeys(VEHICLE_FIELDS),
        "gear": "P", "braking_force": True, "driving_force": True,
        "gear_valid": False,                # 0xbf: bit 7 set
        "invalid": VEHICLE_FIELDS}},        # 2025 insulation has markers
        id="vehicle_sample_all_invalid_gear_invalid"),
    pytest.param(0x01, h("fe fe fe fffe fffffffe fffe fffe fe fe 8d fffe"), {"vehicle": {
        **dict.fromkeys(VEHICLE_FIELDS),
        "gear": "R", "braking_force": False, "driving_force": False, "gear_valid": False,  # 0x8d
        "abnormal": VEHICLE_FIELDS}}, id="vehicle_abnormal_markers"),
]

MOTOR_FIELDS = ["seq", "state", "controller_temp_c", "speed_rpm", "torque_nm", "temp_c"]

# 0x02 drive motors (T15/T16): count, then 10 bytes per motor: seq state ctrl-temp | speed | torque DWORD | temp
MOTORS = [
    pytest.param(0x02, h("02 01 03 47 7d00 00030d40 4a  02 03 49 7d00 00030d3b 45"), {"motors": [
        {"seq": 1, "state": "off", "controller_temp_c": 31, "speed_rpm": 0, "torque_nm": 0.0, "temp_c": 34},
        {"seq": 2, "state": "off", "controller_temp_c": 33, "speed_rpm": 0,
         "torque_nm": -0.5,                 # 199995 -> (199995 - 200000) x 0.1
         "temp_c": 29}]}, id="motors_real_car"),
    pytest.param(0x02, h("01 01 02 50 7b0c 00030c14 50"), {"motors": [
        {"seq": 1, "state": "generating", "controller_temp_c": 40,
         "speed_rpm": -500,                 # 31500 - 32000
         "torque_nm": -30.0,                # 199700 -> -300 x 0.1
         "temp_c": 40}]}, id="motors_generating_negative_torque"),
    pytest.param(0x02, h("01 01 04 00 0000 00000000 00"), {"motors": [
        {"seq": 1, "state": "ready", "controller_temp_c": -40, "speed_rpm": -32000,
         "torque_nm": -20000.0, "temp_c": -40}]}, id="motors_range_minima"),
    pytest.param(0x02, h("01 fd 01 fa fffb 00061a80 fa"), {"motors": [
        {"seq": 253, "state": "consuming", "controller_temp_c": 210,
         "speed_rpm": 33531,                # 65531 - 32000
         "torque_nm": 20000.0,              # 400000 -> 200000 x 0.1
         "temp_c": 210}]}, id="motors_range_maxima"),
    pytest.param(0x02, h("01 ff ff ff ffff ffffffff ff"), {"motors": [
        {**dict.fromkeys(MOTOR_FIELDS), "invalid": MOTOR_FIELDS}]}, id="motors_invalid_markers"),
    pytest.param(0x02, h("01 fe fe fe fffe fffffffe fe"), {"motors": [
        {**dict.fromkeys(MOTOR_FIELDS), "abnormal": MOTOR_FIELDS}]}, id="motors_abnormal_markers"),
    pytest.param(0x02, h("01 fe fe fe fefe fefefefe fe"), {"motors": [
        {"seq": None, "state": None, "controller_temp_c": None, "speed_rpm": 33278,
         "torque_nm": 427792428.6, "temp_c": None,
         "abnormal": ["seq", "state", "controller_temp_c", "temp_c"]}]}, id="motors_fe_filled_words_are_values"),
    pytest.param(0x02, h("ff"), {"motors": None}, id="motors_invalid_count_no_motors_follow"),
    pytest.param(0x02, h("fe"), {"motors": "abnormal"}, id="motors_abnormal_count_no_motors_follow"),
    pytest.param(0x02, h("00"), {"motors": []}, id="motors_none"),
]

# 0x03 fuel-cell engine and hydrogen system, 12 bytes (T17):
# H2 max temp | probe | max concentration | sensor | max pressure | sensor | DC/DC | remaining | DC/DC temp
FUEL_CELL = [
    pytest.param(0x03, h("0050 01 2710 02 0064 03 01 32 46"), {"fuel_cell": {
        "h2_max_temp_c": 40,                # 80 x 1 - 40
        "h2_max_temp_probe": 1,
        "h2_max_concentration_pct": 1.0,    # 10000 x 0.0001 %
        "h2_max_concentration_sensor": 2,
        "h2_max_pressure_mpa": 10.0,        # 100 x 0.1
        "h2_max_pressure_sensor": 3, "dcdc_state": "working", "h2_remaining_pct": 50,
        "dcdc_controller_temp_c": 30}}, id="fuel_cell_typical"),
    pytest.param(0x03, h("00fa fd ea60 fd 03e8 fd 02 64 fa"), {"fuel_cell": {
        "h2_max_temp_c": 210, "h2_max_temp_probe": 253, "h2_max_concentration_pct": 6.0,
        "h2_max_concentration_sensor": 253, "h2_max_pressure_mpa": 100.0, "h2_max_pressure_sensor": 253,
        "dcdc_state": "off", "h2_remaining_pct": 100, "dcdc_controller_temp_c": 210}}, id="fuel_cell_range_maxima"),
    pytest.param(0x03, h("0000 01 0000 01 0000 01 01 00 00"), {"fuel_cell": {
        "h2_max_temp_c": -40, "h2_max_temp_probe": 1, "h2_max_concentration_pct": 0.0,
        "h2_max_concentration_sensor": 1, "h2_max_pressure_mpa": 0.0, "h2_max_pressure_sensor": 1,
        "dcdc_state": "working", "h2_remaining_pct": 0, "dcdc_controller_temp_c": -40}}, id="fuel_cell_range_minima"),
    pytest.param(0x03, h("fffe fe ffff ff fffe fe ff fe ff"), {"fuel_cell": {
        "h2_max_temp_c": None, "h2_max_temp_probe": None, "h2_max_concentration_pct": None,
        "h2_max_concentration_sensor": None, "h2_max_pressure_mpa": None, "h2_max_pressure_sensor": None,
        "dcdc_state": None, "h2_remaining_pct": None, "dcdc_controller_temp_c": None,
        "abnormal": ["h2_max_temp_c", "h2_max_temp_probe", "h2_max_pressure_mpa", "h2_max_pressure_sensor",
                     "h2_remaining_pct"],
        "invalid": ["h2_max_concentration_pct", "h2_max_concentration_sensor", "dcdc_state",
                    "dcdc_controller_temp_c"]}}, id="fuel_cell_markers"),
]

# 0x04 engine, 2 bytes (T20): crankshaft speed only
ENGINE = [
    pytest.param(0x04, h("0bb8"), {"engine": {"crankshaft_rpm": 3000}}, id="engine_running"),
    pytest.param(0x04, h("0000"), {"engine": {"crankshaft_rpm": 0}}, id="engine_range_minimum"),
    pytest.param(0x04, h("ea60"), {"engine": {"crankshaft_rpm": 60000}}, id="engine_range_maximum"),
    pytest.param(0x04, h("fffe"), {"engine": {"crankshaft_rpm": None, "abnormal": ["crankshaft_rpm"]}},
                 id="engine_abnormal"),
    pytest.param(0x04, h("ffff"), {"engine": {"crankshaft_rpm": None, "invalid": ["crankshaft_rpm"]}},
                 id="engine_invalid"),
]

# 0x05 position, 10 bytes (T21/T22): status | coordinate system | longitude | latitude
POSITION = [
    pytest.param(0x05, h("00 01 06f01448 0260f8e4"), {"position": {
        "valid": True, "datum": "wgs84", "longitude": 116.397128, "latitude": 39.909604}},
        id="position_north_east_wgs84"),
    pytest.param(0x05, h("06 02 042dffc0 01ff2b60"), {"position": {
        "valid": True, "datum": "gcj02", "longitude": -70.123456, "latitude": -33.5}},
        id="position_south_west_gcj02"),
    pytest.param(0x05, h("01 03 0aba9500 055d4a80"), {"position": {
        "valid": False, "datum": "other", "longitude": 180.0, "latitude": 90.0}},
        id="position_invalid_fix_range_maxima"),
    pytest.param(0x05, h("01 02 00000000 00000000"), {"position": {
        "valid": False, "datum": "gcj02", "longitude": 0.0, "latitude": 0.0}}, id="position_real_car"),
    pytest.param(0x05, h("07 ff ffffffff ffffffff"), {"position": {
        "valid": False, "datum": None, "longitude": None, "latitude": None,
        "invalid": ["datum", "longitude", "latitude"], "west": True, "south": True}},
        id="position_sample_invalid_keeps_sign_bits"),
    pytest.param(0x05, h("04 fe fffffffe 00000000"), {"position": {
        "valid": True, "datum": None, "longitude": None, "latitude": 0.0,
        "abnormal": ["datum", "longitude"], "west": True}}, id="position_abnormal_west_longitude"),
]

SAMPLE_CODES = [0x00010003, 0x00080002, 0x00080003, 0x000C0004, 0x000D0001, 0x00060920, 0x000A000B]
NO_FAULTS = {"battery_faults": [], "motor_faults": [], "engine_faults": [], "other_faults": []}

# 0x06 alarm (T23): level 0-4 | flags | N1..N4 code lists | N5 + (flag bit, level) pairs
ALARM = [
    pytest.param(0x06, h("03 00000003 00 00 00 07 00010003 00080002 00080003 000c0004 000d0001 00060920"
                         " 000a000b 02 00 03 01 03"), {"alarm": {
        "max_level": 3, "flags": ["temperature_difference", "battery_high_temperature"],
        "battery_faults": [], "motor_faults": [], "engine_faults": [], "other_faults": SAMPLE_CODES,
        "flag_levels": [{"flag": "temperature_difference", "level": 3},
                        {"flag": "battery_high_temperature", "level": 3}]}}, id="alarm_sample"),
    pytest.param(0x06, h("04 00800000 00 00 00 00 01 17 04"), {"alarm": {
        "max_level": 4,                     # thermal event, the 2025 top level
        "flags": ["storage_thermal_event"],  # bit 23
        **NO_FAULTS, "flag_levels": [{"flag": "storage_thermal_event", "level": 4}]}},
        id="alarm_level_4_thermal_event"),
    pytest.param(0x06, h("02 0fffffff 00 00 00 00 00"), {"alarm": {
        "max_level": 2, "flags": ALL_FLAGS_2025, **NO_FAULTS, "flag_levels": []}}, id="alarm_every_2025_flag"),
    pytest.param(0x06, h("01 f0000000 00 00 00 00 01 1f 01"), {"alarm": {
        "max_level": 1, "flags": ["bit_28", "bit_29", "bit_30", "bit_31"], **NO_FAULTS,
        "flag_levels": [{"flag": "bit_31", "level": 1}]}}, id="alarm_reserved_bits_keep_their_number"),
    pytest.param(0x06, h("fe 00000000 ff fe 00 01 0000abcd 00"), {"alarm": {
        "max_level": None, "flags": [], "battery_faults": None, "motor_faults": None, "engine_faults": [],
        "other_faults": [0xABCD], "flag_levels": [],
        "abnormal": ["max_level", "motor_faults"], "invalid": ["battery_faults"]}},
        id="alarm_marked_level_and_counts_without_codes"),
    pytest.param(0x06, h("00 00000000 00 00 00 00 00"), {"alarm": {
        "max_level": 0, "flags": [], **NO_FAULTS, "flag_levels": []}}, id="alarm_none"),
]

# 0x07 min-parallel-unit voltages (T11/T12): count | no. | voltage | current | N WORD | N x voltage
CELL_VOLTAGES = [
    pytest.param(0x07, h("01 01 1be2 7546 0003 0f75 0f78 0f76"), {"cell_voltages": [
        {"subsystem": 1, "voltage_v": 713.8, "current_a": 2.2, "cell_count": 3,
         "cells_v": [3.957, 3.96, 3.958]}]}, id="cell_voltages_real_car_first_three"),
    pytest.param(0x07, h("02 01 ea60 0000 0001 0000  32 0000 ea60 0001 ea60"), {"cell_voltages": [
        {"subsystem": 1, "voltage_v": 6000.0, "current_a": -3000.0, "cell_count": 1, "cells_v": [0.0]},
        {"subsystem": 50, "voltage_v": 0.0, "current_a": 3000.0, "cell_count": 1, "cells_v": [60.0]}]},
        id="cell_voltages_range_limits"),
    pytest.param(0x07, h("02 ff ffff ffff 0004 ffffffffffffffff  ff ffff ffff 0003 ffffffffffff"), {"cell_voltages": [
        {"subsystem": None, "voltage_v": None, "current_a": None, "cell_count": 4, "cells_v": [None] * 4,
         "invalid": ["subsystem", "voltage_v", "current_a", "cells_v[0]", "cells_v[1]", "cells_v[2]",
                     "cells_v[3]"]},
        {"subsystem": None, "voltage_v": None, "current_a": None, "cell_count": 3, "cells_v": [None] * 3,
         "invalid": ["subsystem", "voltage_v", "current_a", "cells_v[0]", "cells_v[1]", "cells_v[2]"]}]},
        id="cell_voltages_sample_all_invalid"),
    pytest.param(0x07, h("01 fe fffe ffff 0002 fffe ffff"), {"cell_voltages": [
        {"subsystem": None, "voltage_v": None, "current_a": None, "cell_count": 2, "cells_v": [None, None],
         "abnormal": ["subsystem", "voltage_v", "cells_v[0]"], "invalid": ["current_a", "cells_v[1]"]}]},
        id="cell_voltages_abnormal_and_invalid_mixed"),
    pytest.param(0x07, h("01 01 1be2 7546 ffff"), {"cell_voltages": [
        {"subsystem": 1, "voltage_v": 713.8, "current_a": 2.2, "cell_count": None, "cells_v": None,
         "invalid": ["cell_count"]}]}, id="cell_voltages_invalid_unit_count_no_voltages_follow"),
    pytest.param(0x07, h("01 01 1be2 7546 fffe"), {"cell_voltages": [
        {"subsystem": 1, "voltage_v": 713.8, "current_a": 2.2, "cell_count": None, "cells_v": None,
         "abnormal": ["cell_count"]}]}, id="cell_voltages_abnormal_unit_count"),
    pytest.param(0x07, h("ff"), {"cell_voltages": None}, id="cell_voltages_invalid_pack_count"),
    pytest.param(0x07, h("fe"), {"cell_voltages": "abnormal"}, id="cell_voltages_abnormal_pack_count"),
    pytest.param(0x07, h("00"), {"cell_voltages": []}, id="cell_voltages_no_pack"),
]

# 0x08 probe temperatures (T13/T14): count | no. | N WORD | N temps
PROBE_TEMPERATURES = [
    pytest.param(0x08, h("01 01 0003 00 46 fa"), {"probe_temperatures": [
        {"subsystem": 1, "temps_c": [-40, 30, 210]}]}, id="probe_temperatures_range_limits"),
    pytest.param(0x08, h("02 ff 0000 05 0005 ffffffffff"), {"probe_temperatures": [
        {"subsystem": None, "invalid": ["subsystem"], "temps_c": []},
        {"subsystem": 5, "temps_c": [None] * 5, "invalid": [f"temps_c[{i}]" for i in range(5)]}]},
        id="probe_temperatures_sample"),
    pytest.param(0x08, h("01 32 0002 fe 00"), {"probe_temperatures": [
        {"subsystem": 50, "temps_c": [None, -40], "abnormal": ["temps_c[0]"]}]},
        id="probe_temperatures_pack_50_abnormal_probe"),
    pytest.param(0x08, h("ff"), {"probe_temperatures": None}, id="probe_temperatures_invalid_pack_count"),
    pytest.param(0x08, h("fe"), {"probe_temperatures": "abnormal"}, id="probe_temperatures_abnormal_pack_count"),
    pytest.param(0x08, h("00"), {"probe_temperatures": []}, id="probe_temperatures_no_pack"),
]

# 0x30 fuel-cell stacks (T18/T19): count | no. | voltage | current | H2 inlet kPa | air inlet kPa |
# air temp | coolant probe count N | N temps
FUEL_CELL_STACKS = [
    pytest.param(0x30, h("01 01 0fa0 01f4 0410 03e8 46 0002 50 5a"), {"fuel_cell_stacks": [
        {"seq": 1, "voltage_v": 400.0, "current_a": 50.0,
         "h2_inlet_pressure_kpa": 4.0,      # 1040 x 0.1 - 100
         "air_inlet_pressure_kpa": 0.0,     # 1000 x 0.1 - 100
         "air_inlet_temp_c": 30, "coolant_outlet_temps_c": [40, 50]}]}, id="stacks_one_stack"),
    pytest.param(0x30, h("02 01 4e20 4e20 0000 1388 00 0000  fd 0000 0000 1388 0000 fa 0001 fa"), {"fuel_cell_stacks": [
        {"seq": 1, "voltage_v": 2000.0, "current_a": 2000.0, "h2_inlet_pressure_kpa": -100.0,
         "air_inlet_pressure_kpa": 400.0, "air_inlet_temp_c": -40, "coolant_outlet_temps_c": []},
        {"seq": 253, "voltage_v": 0.0, "current_a": 0.0, "h2_inlet_pressure_kpa": 400.0,
         "air_inlet_pressure_kpa": -100.0, "air_inlet_temp_c": 210, "coolant_outlet_temps_c": [210]}]},
        id="stacks_range_limits"),
    pytest.param(0x30, h("01 fe ffff fffe ffff fffe ff 0001 fe"), {"fuel_cell_stacks": [
        {"seq": None, "voltage_v": None, "current_a": None, "h2_inlet_pressure_kpa": None,
         "air_inlet_pressure_kpa": None, "air_inlet_temp_c": None, "coolant_outlet_temps_c": [None],
         "abnormal": ["seq", "current_a", "air_inlet_pressure_kpa", "coolant_outlet_temps_c[0]"],
         "invalid": ["voltage_v", "h2_inlet_pressure_kpa", "air_inlet_temp_c"]}]}, id="stacks_markers"),
    pytest.param(0x30, h("ff"), {"fuel_cell_stacks": None}, id="stacks_invalid_count"),
    pytest.param(0x30, h("fe"), {"fuel_cell_stacks": "abnormal"}, id="stacks_abnormal_count"),
]

# 0x31 super-capacitor (T25), one system: no. | voltage | current | M | M cells | N | N temps
SUPER_CAPACITORS = [
    pytest.param(0x31, h("01 0fa0 7594 0002 0a28 0a32 0002 46 50"), {"super_capacitors": {
        "system": 1, "voltage_v": 400.0,
        "current_a": 10.0,                  # 30100 x 0.1 - 3000
        "cells_v": [2.6, 2.61], "temps_c": [30, 40]}}, id="super_capacitor_typical"),
    pytest.param(0x31, h("fd 2710 0000 0001 ea60 0001 fa"), {"super_capacitors": {
        "system": 253, "voltage_v": 1000.0, "current_a": -3000.0, "cells_v": [60.0], "temps_c": [210]}},
        id="super_capacitor_range_maxima_and_minimum_current"),
    pytest.param(0x31, h("01 0000 ea60 0001 0000 0001 00"), {"super_capacitors": {
        "system": 1, "voltage_v": 0.0, "current_a": 3000.0, "cells_v": [0.0], "temps_c": [-40]}},
        id="super_capacitor_range_minima_and_maximum_current"),
    pytest.param(0x31, h("ff fffe ffff 0002 fffe 0bb8 0001 ff"), {"super_capacitors": {
        "system": None, "voltage_v": None, "current_a": None, "cells_v": [None, 3.0], "temps_c": [None],
        "abnormal": ["voltage_v", "cells_v[0]"], "invalid": ["system", "current_a", "temps_c[0]"]}},
        id="super_capacitor_markers"),
    pytest.param(0x31, h("01 0fa0 7530 0000 0000"), {"super_capacitors": {
        "system": 1, "voltage_v": 400.0, "current_a": 0.0, "cells_v": [], "temps_c": []}},
        id="super_capacitor_no_cells_no_probes"),
]

# 0x32 super-capacitor extremes, 18 bytes (T26): cell and probe numbers are WORDs without markers
SUPER_CAPACITOR_EXTREMES = [
    pytest.param(0x32, h("01 0005 0a32 01 0007 0a28 01 0002 50 01 0003 46"), {"super_capacitor_extremes": {
        "max_voltage_system": 1, "max_voltage_cell": 5, "max_cell_voltage_v": 2.61,
        "min_voltage_system": 1, "min_voltage_cell": 7, "min_cell_voltage_v": 2.6,
        "max_temp_system": 1, "max_temp_probe": 2, "max_temp_c": 40,
        "min_temp_system": 1, "min_temp_probe": 3, "min_temp_c": 30}}, id="super_capacitor_extremes_typical"),
    pytest.param(0x32, h("fd fffb ea60 01 0001 0000 fd fffb fa 01 0001 00"), {"super_capacitor_extremes": {
        "max_voltage_system": 253, "max_voltage_cell": 65531, "max_cell_voltage_v": 60.0,
        "min_voltage_system": 1, "min_voltage_cell": 1, "min_cell_voltage_v": 0.0,
        "max_temp_system": 253, "max_temp_probe": 65531, "max_temp_c": 210,
        "min_temp_system": 1, "min_temp_probe": 1, "min_temp_c": -40}}, id="super_capacitor_extremes_range_limits"),
    pytest.param(0x32, h("fe ffff fffe ff ffff ffff fe ffff fe ff ffff ff"), {"super_capacitor_extremes": {
        "max_voltage_system": None, "max_voltage_cell": 65535, "max_cell_voltage_v": None,
        "min_voltage_system": None, "min_voltage_cell": 65535, "min_cell_voltage_v": None,
        "max_temp_system": None, "max_temp_probe": 65535, "max_temp_c": None,
        "min_temp_system": None, "min_temp_probe": 65535, "min_temp_c": None,
        "abnormal": ["max_voltage_system", "max_cell_voltage_v", "max_temp_system", "max_temp_c"],
        "invalid": ["min_voltage_system", "min_cell_voltage_v", "min_temp_system", "min_temp_c"]}},
        id="super_capacitor_extremes_markers_numbers_have_none"),
]

# 0x80-0xFE user-defined (T27) and undelimitable reserved types
CUSTOM = [
    pytest.param(0x80, h("0010" + "fe" * 16), {"custom": [{"type": 0x80, "hex": "fe" * 16}]},
                 id="custom_0x80_sixteen_bytes"),
    pytest.param(0xFE, h("0000"), {"custom": [{"type": 0xFE, "hex": ""}]}, id="custom_0xfe_empty"),
    pytest.param(0x83, h("0002 0102 80 0000"), {"custom": [{"type": 0x83, "hex": "0102"},
                                                           {"type": 0x80, "hex": ""}]},
                 id="custom_two_adjacent_items_one_list"),
    pytest.param(0x09, h("010203"), {"custom": [{"type": 0x09, "hex": "010203", "opaque": True}]},
                 id="custom_2016_storage_temperature_type_is_platform_exchange_in_2025"),
    pytest.param(0x33, h("aa"), {"custom": [{"type": 0x33, "hex": "aa", "opaque": True}]},
                 id="custom_first_reserved_type_after_0x32"),
    pytest.param(0x80, h("0005 0102"), {"custom": [{"type": 0x80, "hex": "00050102", "opaque": True}]},
                 id="custom_length_past_the_end_kept_opaque"),
]

TABLE = VEHICLE + MOTORS + FUEL_CELL + ENGINE + POSITION + ALARM + CELL_VOLTAGES + PROBE_TEMPERATURES \
    + FUEL_CELL_STACKS + SUPER_CAPACITORS + SUPER_CAPACITOR_EXTREMES + CUSTOM


@pytest.mark.parametrize("type_id, block, expected", TABLE)
def test_2025_block_parses_to_the_values_of_the_standard(type_id, block, expected):
    data = decode_realtime(ED, T0_BYTES + bytes((type_id,)) + block)
    assert data.collected_at == T0
    assert data.items == expected
    assert data.signature is None and data.trailing == b""


@pytest.mark.parametrize("type_id, block, expected", TABLE)
def test_2025_block_builds_to_the_bytes_of_the_standard(type_id, block, expected):
    data = RealtimeData(T0, copy.deepcopy(expected))
    assert encode_realtime(ED, data) == T0_BYTES + bytes((type_id,)) + block


# --- counts whose marker name is internal: assert the observable part ---------------------------

@pytest.mark.parametrize("unit_tail, key, path", [
    pytest.param(h("08 01 01 ffff"), "probe_temperatures", lambda v: v[0]["temps_c"], id="pack_probe_count"),
    pytest.param(h("30 01 01 0fa0 01f4 0410 03e8 46 fffe"), "fuel_cell_stacks",
                 lambda v: v[0]["coolant_outlet_temps_c"], id="stack_coolant_probe_count"),
    pytest.param(h("31 01 0fa0 7530 ffff ffff"), "super_capacitors", lambda v: v["cells_v"],
                 id="super_capacitor_cell_count"),
])
def test_2025_marked_word_count_is_followed_by_no_values_and_round_trips(unit_tail, key, path):
    unit = T0_BYTES + unit_tail + h("04 0bb8")  # an engine block after it still parses
    data = decode_realtime(ED, unit)
    assert path(data.items[key]) is None
    assert data.items["engine"] == {"crankshaft_rpm": 3000}
    assert encode_realtime(ED, data) == unit


# --- signature block --------------------------------------------------------------------------

def test_2025_signature_block_is_read_after_the_0xff_marker():
    unit = T0_BYTES + h("04 0bb8") + h("ff 01 0002 aabb 0003 ccddee")
    data = decode_realtime(ED, unit)
    assert data.items == {"engine": {"crankshaft_rpm": 3000}}
    assert data.signature == Signature(1, h("aabb"), h("ccddee"))  # algorithm 1 = SM2
    assert data.signature.to_json() == {"algorithm": "sm2", "r": "aabb", "s": "ccddee"}
    assert encode_realtime(ED, data) == unit


def test_2025_bytes_after_the_signature_are_kept_as_trailing():
    unit = T0_BYTES + h("ff 02 0001 11 0000") + h("9988")
    data = decode_realtime(ED, unit)
    assert data.signature == Signature(2, h("11"), b"")
    assert data.trailing == h("9988")
    assert encode_realtime(ED, data) == unit


def test_2025_reserved_type_runs_up_to_the_signature_that_ends_the_unit():
    unit = T0_BYTES + h("79 aabbcc ff00") + h("ff 02 0001 11 0000")
    data = decode_realtime(ED, unit)
    assert data.items == {"custom": [{"type": 0x79, "hex": "aabbccff00", "opaque": True}]}
    assert data.signature == Signature(2, h("11"), b"")
    assert encode_realtime(ED, data) == unit


def test_2025_truncated_signature_is_refused_as_bad_body():
    with pytest.raises(BadBody):
        decode_realtime(ED, T0_BYTES + h("ff 02 0100 1122"))


def test_signature_cannot_be_built_into_a_2016_unit():
    with pytest.raises(EncodeError):
        encode_realtime(Edition.V2016, RealtimeData(T0, {}, Signature(2, b"\x01", b"")))


def test_2025_build_refuses_the_2016_extremes_block():
    with pytest.raises(EncodeError):
        encode_realtime(ED, RealtimeData(T0, {"extremes": {}}))


@pytest.mark.parametrize("unit_tail", [
    pytest.param(h("01 01 03 01 0000"), id="vehicle_cut_short"),
    pytest.param(h("02 02 01 03 47 7d00 00030d40 4a"), id="second_motor_missing"),
    pytest.param(h("06 00 00000000 00 00 00 00 02 00 03"), id="level_pairs_cut_short"),
    pytest.param(h("07 01 01 1be2 7546 0003 0f75"), id="unit_voltages_cut_short"),
    pytest.param(h("32 01 0005 0a32"), id="super_capacitor_extremes_cut_short"),
])
def test_2025_block_cut_short_is_refused_as_bad_body(unit_tail):
    with pytest.raises(BadBody):
        decode_realtime(ED, T0_BYTES + unit_tail)


def test_2025_alarm_with_253_fault_codes_parses():
    """2025 raised the per-list maximum from 252 to 253 (§3.8)."""
    block = h("01 00000000 fd" + "".join(f"{i:08x}" for i in range(253)) + "00 00 00 00")
    alarm = decode_realtime(ED, T0_BYTES + h("06") + block).items["alarm"]
    assert alarm["battery_faults"] == list(range(253))


# --- regressions: the codec once departed from docs/protocol-tables.md here ---------------------

def test_2025_alarm_with_253_fault_codes_builds_back_to_the_same_bytes():
    block = h("01 00000000 fd" + "".join(f"{i:08x}" for i in range(253)) + "00 00 00 00")
    unit = T0_BYTES + h("06") + block
    assert encode_realtime(ED, decode_realtime(ED, unit)) == unit


def test_2025_alarm_marked_level_pair_count_is_followed_by_no_pairs():
    unit = T0_BYTES + h("06 00 00000000 00 00 00 00 ff") + h("04 0bb8")
    data = decode_realtime(ED, unit)
    assert data.items["alarm"]["flag_levels"] is None
    assert data.items["engine"] == {"crankshaft_rpm": 3000}


def test_2025_build_refuses_254_motors_whose_count_would_be_the_abnormal_marker():
    motor = {"seq": 1, "state": "off", "controller_temp_c": 0, "speed_rpm": 0, "torque_nm": 0.0, "temp_c": 0}
    with pytest.raises(EncodeError):
        encode_realtime(ED, RealtimeData(T0, {"motors": [motor] * 254}))
