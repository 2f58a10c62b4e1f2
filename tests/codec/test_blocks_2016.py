"""GB/T 32960.3-2016 realtime information types, parsed and built from one table.

Each row is (information type, block bytes, expected items) with the values worked out by
hand from docs/protocol-tables.md §3 (2016 columns). The data unit is the collection time
(2025-10-27 20:02:02, ``190a1b140202``), the type byte, then the block. Every row runs in
both directions: parse gives the items, and building the items gives the same bytes.
"""

from __future__ import annotations

import copy

import pytest

from codec import EncodeError, Edition
from codec.errors import BadBody
from codec.realtime import RealtimeData, decode_realtime, encode_realtime
from tests.support.codec_frames import T0, T0_BYTES

ED = Edition.V2016


def h(text: str) -> bytes:
    return bytes.fromhex(text)


ALL_FLAGS_2016 = [
    "temperature_difference", "battery_high_temperature", "storage_over_voltage", "storage_under_voltage",
    "soc_low", "cell_over_voltage", "cell_under_voltage", "soc_high", "soc_jump", "storage_mismatch",
    "cell_poor_consistency", "insulation", "dcdc_temperature", "brake_system", "dcdc_state",
    "motor_controller_temperature", "high_voltage_interlock", "motor_temperature", "storage_over_charge",
]

VEHICLE_FIELDS = ["state", "charging_state", "mode", "speed_kmh", "odometer_km", "total_voltage_v",
                  "total_current_a", "soc_pct", "dcdc_state", "accelerator_pct", "brake"]

# 0x01 whole vehicle, 20 bytes (T9 / TB.4):
# state charging mode | speed | odometer | voltage | current | soc dcdc gear | insulation | accel brake
VEHICLE = [
    pytest.param(0x01, h("01 03 01 007a 00000a1d 1e81 2743 55 01 1e 1999 00 10"), {"vehicle": {
        "state": "started", "charging_state": "not_charging", "mode": "electric",
        "speed_kmh": 12.2, "odometer_km": 258.9, "total_voltage_v": 780.9,
        "total_current_a": 5.1,  # 10051 x 0.1 - 1000
        "soc_pct": 85, "dcdc_state": "working", "gear": "D", "braking_force": True, "driving_force": False,
        "insulation_kohm": 6553, "accelerator_pct": 0, "brake": 16}}, id="vehicle_real_car"),
    pytest.param(0x01, h("03 04 03 0898 0098967f 2710 4e20 64 02 3f ea60 64 64"), {"vehicle": {
        "state": "other", "charging_state": "charge_complete", "mode": "fuel",
        "speed_kmh": 220.0,           # 2200 x 0.1
        "odometer_km": 999999.9,      # 9999999 x 0.1
        "total_voltage_v": 1000.0,    # 10000 x 0.1
        "total_current_a": 1000.0,    # 20000 x 0.1 - 1000
        "soc_pct": 100, "dcdc_state": "off",
        "gear": "P", "braking_force": True, "driving_force": True,  # 0x3f
        "insulation_kohm": 60000, "accelerator_pct": 100, "brake": 100}}, id="vehicle_range_maxima"),
    pytest.param(0x01, h("01 01 02 0000 00000000 0000 0000 00 01 00 0000 00 00"), {"vehicle": {
        "state": "started", "charging_state": "parked_charging", "mode": "hybrid",
        "speed_kmh": 0.0, "odometer_km": 0.0, "total_voltage_v": 0.0,
        "total_current_a": -1000.0,   # 0 x 0.1 - 1000
        "soc_pct": 0, "dcdc_state": "working", "gear": "N", "braking_force": False, "driving_force": False,
        "insulation_kohm": 0, "accelerator_pct": 0, "brake": 0}}, id="vehicle_range_minima"),
    pytest.param(0x01, h("02 02 01 0064 00000001 0fa0 2710 32 02 2d 0064 0a 65"), {"vehicle": {
        "state": "off", "charging_state": "driving_charging", "mode": "electric",
        "speed_kmh": 10.0, "odometer_km": 0.1, "total_voltage_v": 400.0,
        "total_current_a": 0.0,       # 10000 x 0.1 - 1000
        "soc_pct": 50, "dcdc_state": "off",
        "gear": "R", "braking_force": False, "driving_force": True,  # 0x2d: 13 = R, bit 5
        "insulation_kohm": 100, "accelerator_pct": 10,
        "brake": 101}}, id="vehicle_reverse_brake_on_without_travel_0x65"),
    pytest.param(0x01, h("fe fe fe fffe fffffffe fffe fffe fe fe 0c fffe fe fe"), {"vehicle": {
        **dict.fromkeys(VEHICLE_FIELDS), "gear": "12", "braking_force": False, "driving_force": False,
        "insulation_kohm": 65534,     # 2016 insulation has no markers: just a raw value
        "abnormal": VEHICLE_FIELDS}}, id="vehicle_abnormal_markers_gear_12"),
    pytest.param(0x01, h("ff ff ff ffff ffffffff ffff ffff ff ff 31 ffff ff ff"), {"vehicle": {
        **dict.fromkeys(VEHICLE_FIELDS), "gear": "1", "braking_force": True, "driving_force": True,
        "insulation_kohm": 65535, "invalid": VEHICLE_FIELDS}}, id="vehicle_invalid_markers_gear_1"),
]

MOTOR_FIELDS = ["state", "controller_temp_c", "speed_rpm", "torque_nm", "temp_c", "controller_voltage_v",
                "controller_current_a"]

# 0x02 drive motors (T10/T11): count, then 12 bytes per motor:
# seq state ctrl-temp | speed | torque | temp | ctrl voltage | ctrl current
MOTORS = [
    pytest.param(0x02, h("02 01 01 38 5179 4e34 3d 1e4b 2724  02 02 37 5189 4cdb 40 1e4b 26f7"), {"motors": [
        {"seq": 1, "state": "consuming", "controller_temp_c": 16, "speed_rpm": 857, "torque_nm": 2.0,
         "temp_c": 21, "controller_voltage_v": 775.5, "controller_current_a": 2.0},
        {"seq": 2, "state": "generating", "controller_temp_c": 15, "speed_rpm": 873,
         "torque_nm": -32.5,  # 19675 -> (19675 - 20000) x 0.1
         "temp_c": 24, "controller_voltage_v": 775.5, "controller_current_a": -2.5}]}, id="motors_real_car"),
    pytest.param(0x02, h("01 01 04 00 0000 0000 00 0000 0000"), {"motors": [
        {"seq": 1, "state": "ready", "controller_temp_c": -40, "speed_rpm": -20000,
         "torque_nm": -2000.0,  # raw offset 20000 x 0.1
         "temp_c": -40, "controller_voltage_v": 0.0, "controller_current_a": -1000.0}]}, id="motors_range_minima"),
    pytest.param(0x02, h("01 fd 03 fa fffb fffb fa ea60 4e20"), {"motors": [
        {"seq": 253, "state": "off", "controller_temp_c": 210,  # 250 - 40
         "speed_rpm": 45531,    # 65531 - 20000
         "torque_nm": 4553.1,   # (65531 - 20000) x 0.1
         "temp_c": 210, "controller_voltage_v": 6000.0, "controller_current_a": 1000.0}]}, id="motors_range_maxima"),
    pytest.param(0x02, h("01 ff ff ff ffff ffff ff ffff ffff"), {"motors": [
        {"seq": 255,  # 2016 motor numbers have no markers
         **dict.fromkeys(MOTOR_FIELDS), "invalid": MOTOR_FIELDS}]}, id="motors_invalid_markers"),
    pytest.param(0x02, h("01 01 fe fe fffe fffe fe fffe fffe"), {"motors": [
        {"seq": 1, **dict.fromkeys(MOTOR_FIELDS), "abnormal": MOTOR_FIELDS}]}, id="motors_abnormal_markers"),
    pytest.param(0x02, h("01 fe fe fe fefe fefe fe fefe fefe"), {"motors": [
        {"seq": 254, "state": None, "controller_temp_c": None,
         "speed_rpm": 45278, "torque_nm": 4527.8,  # a WORD of 0xFE bytes is not a marker
         "temp_c": None, "controller_voltage_v": 6527.8, "controller_current_a": 5527.8,
         "abnormal": ["state", "controller_temp_c", "temp_c"]}]}, id="motors_fefe_words_are_values"),
    pytest.param(0x02, h("00"), {"motors": []}, id="motors_none"),
]

# 0x03 fuel cell (T12): voltage current consumption | probe count N | N temps |
# H2 max temp, probe | max concentration, sensor | max pressure, sensor | DC/DC
FUEL_CELL = [
    pytest.param(0x03, h("0fa0 01f4 0064 0003 00 3c f0 0190 01 2710 02 03e8 03 01"), {"fuel_cell": {
        "voltage_v": 400.0, "current_a": 50.0,
        "consumption_kg_per_100km": 1.0,    # 100 x 0.01
        "probe_temps_c": [-40, 20, 200],    # 0, 60, 240 minus 40
        "h2_max_temp_c": 0.0,               # 400 x 0.1 - 40
        "h2_max_temp_probe": 1,
        "h2_max_concentration_ppm": 10000,  # raw mg/kg (open question §13.1)
        "h2_max_concentration_sensor": 2,
        "h2_max_pressure_mpa": 100.0,       # 1000 x 0.1
        "h2_max_pressure_sensor": 3, "dcdc_state": "working"}}, id="fuel_cell_three_probes"),
    pytest.param(0x03, h("4e20 4e20 ea60 0000 0960 fc ea60 fc 0000 01 02"), {"fuel_cell": {
        "voltage_v": 2000.0, "current_a": 2000.0, "consumption_kg_per_100km": 600.0, "probe_temps_c": [],
        "h2_max_temp_c": 200.0,             # 2400 x 0.1 - 40
        "h2_max_temp_probe": 252, "h2_max_concentration_ppm": 60000, "h2_max_concentration_sensor": 252,
        "h2_max_pressure_mpa": 0.0, "h2_max_pressure_sensor": 1, "dcdc_state": "off"}},
        id="fuel_cell_range_maxima_no_probes"),
    pytest.param(0x03, h("0000 0000 0000 0001 00 0000 01 0000 01 0000 01 01"), {"fuel_cell": {
        "voltage_v": 0.0, "current_a": 0.0, "consumption_kg_per_100km": 0.0, "probe_temps_c": [-40],
        "h2_max_temp_c": -40.0, "h2_max_temp_probe": 1, "h2_max_concentration_ppm": 0,
        "h2_max_concentration_sensor": 1, "h2_max_pressure_mpa": 0.0, "h2_max_pressure_sensor": 1,
        "dcdc_state": "working"}}, id="fuel_cell_range_minima"),
    pytest.param(0x03, h("fffe ffff fffe ffff ffff fe ffff ff ffff fe ff"), {"fuel_cell": {
        "voltage_v": None, "current_a": None, "consumption_kg_per_100km": None,
        "probe_temps_c": None,              # probe count ffff: no temperatures follow
        "h2_max_temp_c": None, "h2_max_temp_probe": None, "h2_max_concentration_ppm": None,
        "h2_max_concentration_sensor": None,
        "h2_max_pressure_mpa": 6553.5,      # no markers for the pressure: 65535 x 0.1
        "h2_max_pressure_sensor": None, "dcdc_state": None,
        "abnormal": ["voltage_v", "consumption_kg_per_100km", "h2_max_temp_probe", "h2_max_pressure_sensor"],
        # a marked count is reported under the name of the list it counts
        "invalid": ["current_a", "probe_temps_c", "h2_max_temp_c", "h2_max_concentration_ppm",
                    "h2_max_concentration_sensor", "dcdc_state"]}}, id="fuel_cell_markers_and_marked_probe_count"),
]

# 0x04 engine, 5 bytes (T13): state | crankshaft speed | fuel rate
ENGINE = [
    pytest.param(0x04, h("01 0bb8 01f4"), {"engine": {"state": "on", "crankshaft_rpm": 3000,
                                                      "fuel_rate_l_per_100km": 5.0}}, id="engine_running"),
    pytest.param(0x04, h("02 ea60 ea60"), {"engine": {"state": "off", "crankshaft_rpm": 60000,
                                                      "fuel_rate_l_per_100km": 600.0}}, id="engine_range_maxima"),
    pytest.param(0x04, h("01 0000 0000"), {"engine": {"state": "on", "crankshaft_rpm": 0,
                                                      "fuel_rate_l_per_100km": 0.0}}, id="engine_range_minima"),
    pytest.param(0x04, h("fe fffe fffe"), {"engine": {
        "state": None, "crankshaft_rpm": None, "fuel_rate_l_per_100km": None,
        "abnormal": ["state", "crankshaft_rpm", "fuel_rate_l_per_100km"]}}, id="engine_abnormal"),
    pytest.param(0x04, h("ff ffff ffff"), {"engine": {
        "state": None, "crankshaft_rpm": None, "fuel_rate_l_per_100km": None,
        "invalid": ["state", "crankshaft_rpm", "fuel_rate_l_per_100km"]}}, id="engine_invalid"),
]

# 0x05 position, 9 bytes (T14/T15): status bits | longitude x 1e6 | latitude x 1e6
POSITION = [
    pytest.param(0x05, h("00 06f01448 0260f8e4"), {"position": {
        "valid": True, "longitude": 116.397128, "latitude": 39.909604}}, id="position_north_east"),
    pytest.param(0x05, h("06 042dffc0 01ff2b60"), {"position": {
        "valid": True, "longitude": -70.123456, "latitude": -33.5}}, id="position_south_west"),
    pytest.param(0x05, h("02 06f01448 01ff2b60"), {"position": {
        "valid": True, "longitude": 116.397128, "latitude": -33.5}}, id="position_south_east"),
    pytest.param(0x05, h("05 0aba9500 055d4a80"), {"position": {
        "valid": False, "longitude": -180.0, "latitude": 90.0}}, id="position_invalid_fix_west_180_north_90"),
    pytest.param(0x05, h("00 00000000 00000000"), {"position": {
        "valid": True, "longitude": 0.0, "latitude": 0.0}}, id="position_zero"),
    pytest.param(0x05, h("07 ffffffff ffffffff"), {"position": {
        "valid": False, "longitude": None, "latitude": None, "invalid": ["longitude", "latitude"],
        "west": True, "south": True}}, id="position_invalid_coordinates_keep_sign_bits"),
    pytest.param(0x05, h("00 fffffffe fffffffe"), {"position": {
        "valid": True, "longitude": None, "latitude": None, "abnormal": ["longitude", "latitude"]}},
        id="position_abnormal_coordinates"),
]

# 0x06 extremes, 14 bytes (T16)
EXTREMES = [
    pytest.param(0x06, h("01 02 0fdf 01 14 0fdc 01 01 3a 01 0a 38"), {"extremes": {
        "max_voltage_subsystem": 1, "max_voltage_cell": 2, "max_cell_voltage_v": 4.063,
        "min_voltage_subsystem": 1, "min_voltage_cell": 20, "min_cell_voltage_v": 4.06,
        "max_temp_subsystem": 1, "max_temp_probe": 1, "max_temp_c": 18,
        "min_temp_subsystem": 1, "min_temp_probe": 10, "min_temp_c": 16}}, id="extremes_real_car"),
    pytest.param(0x06, h("fa fa 3a98 01 01 0000 fa fa fa 01 01 00"), {"extremes": {
        "max_voltage_subsystem": 250, "max_voltage_cell": 250,
        "max_cell_voltage_v": 15.0,         # 15000 x 0.001
        "min_voltage_subsystem": 1, "min_voltage_cell": 1, "min_cell_voltage_v": 0.0,
        "max_temp_subsystem": 250, "max_temp_probe": 250, "max_temp_c": 210,
        "min_temp_subsystem": 1, "min_temp_probe": 1, "min_temp_c": -40}}, id="extremes_range_limits"),
    pytest.param(0x06, h("01 01 fffe 01 02 ffff 01 03 fe 01 04 ff"), {"extremes": {
        "max_voltage_subsystem": 1, "max_voltage_cell": 1, "max_cell_voltage_v": None,
        "min_voltage_subsystem": 1, "min_voltage_cell": 2, "min_cell_voltage_v": None,
        "max_temp_subsystem": 1, "max_temp_probe": 3, "max_temp_c": None,
        "min_temp_subsystem": 1, "min_temp_probe": 4, "min_temp_c": None,
        "abnormal": ["max_cell_voltage_v", "max_temp_c"],
        "invalid": ["min_cell_voltage_v", "min_temp_c"]}}, id="extremes_marked_values"),
]

SAMPLE_CODES = [0x00010003, 0x00080002, 0x00080003, 0x000C0004, 0x000D0001, 0x00060920, 0x000A000B]

# 0x07 alarm (T17): level | flags DWORD | N1 codes | N2 codes | N3 codes | N4 codes
ALARM = [
    pytest.param(0x07, h("03 00000003 00 00 00 07 00010003 00080002 00080003 000c0004 000d0001 00060920"
                         " 000a000b"), {"alarm": {
        "max_level": 3, "flags": ["temperature_difference", "battery_high_temperature"],
        "battery_faults": [], "motor_faults": [], "engine_faults": [], "other_faults": SAMPLE_CODES}},
        id="alarm_sample_level_3_other_faults"),
    pytest.param(0x07, h("00 00000000 00 00 00 00"), {"alarm": {
        "max_level": 0, "flags": [], "battery_faults": [], "motor_faults": [], "engine_faults": [],
        "other_faults": []}}, id="alarm_none"),
    pytest.param(0x07, h("02 0007ffff 01 00000001 01 00000002 01 00000003 01 ffffffff"), {"alarm": {
        "max_level": 2, "flags": ALL_FLAGS_2016,  # bits 0-18
        "battery_faults": [1], "motor_faults": [2], "engine_faults": [3],
        "other_faults": [0xFFFFFFFF]}},  # a fault code is OEM-defined: all-ones is just a code
        id="alarm_every_2016_flag_one_code_per_list"),
    pytest.param(0x07, h("01 80080000 00 00 00 00"), {"alarm": {
        "max_level": 1, "flags": ["bit_19", "bit_31"],  # reserved bits keep their number
        "battery_faults": [], "motor_faults": [], "engine_faults": [], "other_faults": []}},
        id="alarm_reserved_flag_bits"),
    pytest.param(0x07, h("fe 00000000 ff fe 00 01 0000abcd"), {"alarm": {
        "max_level": None, "flags": [], "battery_faults": None, "motor_faults": None, "engine_faults": [],
        "other_faults": [0xABCD], "abnormal": ["max_level", "motor_faults"], "invalid": ["battery_faults"]}},
        id="alarm_marked_level_and_marked_counts_without_codes"),
    pytest.param(0x07, h("ff 00000000 00 00 00 00"), {"alarm": {
        "max_level": None, "flags": [], "battery_faults": [], "motor_faults": [], "engine_faults": [],
        "other_faults": [], "invalid": ["max_level"]}}, id="alarm_invalid_level"),
    pytest.param(0x07, h("01 00000000 fc" + "".join(f"{i:08x}" for i in range(252)) + "00 00 00"), {"alarm": {
        "max_level": 1, "flags": [], "battery_faults": list(range(252)), "motor_faults": [],
        "engine_faults": [], "other_faults": []}}, id="alarm_252_codes_most_allowed"),
]

# 0x08 storage voltages (TB.5/TB.6): count, then per subsystem:
# no. | voltage | current | total cells | first cell | m | m x cell voltage
CELL_VOLTAGES = [
    pytest.param(0x08, h("01 01 1e81 2743 00c0 0001 03 0fdd 0fdf 0fde"), {"cell_voltages": [
        {"subsystem": 1, "voltage_v": 780.9,
         "current_a": 5.1,                  # 10051 x 0.1 - 1000 (not -3000)
         "cell_count": 192, "first_cell": 1, "cells_v": [4.061, 4.063, 4.062]}]}, id="cell_voltages_first_of_192"),
    pytest.param(0x08, h("01 01 1e81 2743 00c9 00c9 01 0fa0"), {"cell_voltages": [
        {"subsystem": 1, "voltage_v": 780.9, "current_a": 5.1, "cell_count": 201, "first_cell": 201,
         "cells_v": [4.0]}]}, id="cell_voltages_continuation_frame"),
    pytest.param(0x08, h("02 01 2710 0000 0002 0001 02 0000 ea60  fa 0000 4e20 0001 0001 01 0001"), {"cell_voltages": [
        {"subsystem": 1, "voltage_v": 1000.0, "current_a": -1000.0, "cell_count": 2, "first_cell": 1,
         "cells_v": [0.0, 60.0]},           # 60000 x 0.001
        {"subsystem": 250, "voltage_v": 0.0, "current_a": 1000.0, "cell_count": 1, "first_cell": 1,
         "cells_v": [0.001]}]}, id="cell_voltages_range_limits"),
    pytest.param(0x08, h("01 01 ffff fffe 0003 0001 03 fffe 0fa0 ffff"), {"cell_voltages": [
        {"subsystem": 1, "voltage_v": None, "current_a": None, "cell_count": 3, "first_cell": 1,
         "cells_v": [None, 4.0, None],
         "abnormal": ["current_a", "cells_v[0]"], "invalid": ["voltage_v", "cells_v[2]"]}]},
        id="cell_voltages_marked_values"),
    pytest.param(0x08, h("00"), {"cell_voltages": []}, id="cell_voltages_no_subsystem"),
]

# 0x09 storage temperatures (TB.7/TB.8): count, then per subsystem: no. | probe count N | N temps
PROBE_TEMPERATURES = [
    pytest.param(0x09, h("01 01 0003 00 3a fa"), {"probe_temperatures": [
        {"subsystem": 1, "temps_c": [-40, 18, 210]}]}, id="probe_temperatures_range_limits"),
    pytest.param(0x09, h("02 ff 0000 05 0005 ff ff ff ff ff"), {"probe_temperatures": [
        {"subsystem": 255, "temps_c": []},  # 2016 subsystem numbers carry no markers
        {"subsystem": 5, "temps_c": [None] * 5, "invalid": [f"temps_c[{i}]" for i in range(5)]}]},
        id="probe_temperatures_sample_no_probes_and_invalid_probes"),
    pytest.param(0x09, h("01 02 0002 fe 41"), {"probe_temperatures": [
        {"subsystem": 2, "temps_c": [None, 25], "abnormal": ["temps_c[0]"]}]},
        id="probe_temperatures_abnormal_probe"),
    pytest.param(0x09, h("00"), {"probe_temperatures": []}, id="probe_temperatures_no_subsystem"),
]

# 0x80-0xFE user-defined: WORD length + bytes (T19); other undefined types are kept opaque to the end
CUSTOM = [
    pytest.param(0x80, h("0010" + "fe" * 16), {"custom": [{"type": 0x80, "hex": "fe" * 16}]},
                 id="custom_0x80_sixteen_bytes"),
    pytest.param(0xFE, h("0000"), {"custom": [{"type": 0xFE, "hex": ""}]}, id="custom_0xfe_empty"),
    pytest.param(0x80, h("0001 aa 81 0002 bbcc"), {"custom": [{"type": 0x80, "hex": "aa"},
                                                              {"type": 0x81, "hex": "bbcc"}]},
                 id="custom_two_adjacent_items_one_list"),
    pytest.param(0x0A, h("010203"), {"custom": [{"type": 0x0A, "hex": "010203", "opaque": True}]},
                 id="custom_platform_exchange_type_opaque"),
    pytest.param(0x7F, h(""), {"custom": [{"type": 0x7F, "hex": "", "opaque": True}]},
                 id="custom_reserved_type_opaque_empty"),
    pytest.param(0x30, h("01 01 03 01 007a"), {"custom": [{"type": 0x30, "hex": "010103 01007a", "opaque": True}]},
                 id="custom_reserved_type_swallows_the_rest"),
    pytest.param(0xFF, h("02 0001 11 0000"), {"custom": [{"type": 0xFF, "hex": "0200011 10000", "opaque": True}]},
                 id="custom_0xff_has_no_meaning_in_2016"),
    pytest.param(0x80, h("00ff 0102"), {"custom": [{"type": 0x80, "hex": "00ff0102", "opaque": True}]},
                 id="custom_length_past_the_end_kept_opaque"),
]

TABLE = VEHICLE + MOTORS + FUEL_CELL + ENGINE + POSITION + EXTREMES + ALARM + CELL_VOLTAGES \
    + PROBE_TEMPERATURES + CUSTOM


def _normal(items: dict) -> dict:
    """Hex strings written with spaces for reading, compared without."""
    for value in items.values():
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "hex" in item:
                    item["hex"] = item["hex"].replace(" ", "")
    return items


@pytest.mark.parametrize("type_id, block, expected", TABLE)
def test_2016_block_parses_to_the_values_of_the_standard(type_id, block, expected):
    data = decode_realtime(ED, T0_BYTES + bytes((type_id,)) + block)
    assert data.collected_at == T0
    assert data.items == _normal(copy.deepcopy(expected))
    assert data.signature is None and data.trailing == b""


@pytest.mark.parametrize("type_id, block, expected", TABLE)
def test_2016_block_builds_to_the_bytes_of_the_standard(type_id, block, expected):
    data = RealtimeData(T0, _normal(copy.deepcopy(expected)))
    assert encode_realtime(ED, data) == T0_BYTES + bytes((type_id,)) + block


def test_2016_blocks_keep_frame_order_and_number_repeated_custom_runs():
    unit = T0_BYTES + h("80 0001 aa") + h("04 01 0bb8 01f4") + h("81 0000") + h("04 02 0000 0000")
    data = decode_realtime(ED, unit)
    assert list(data.items) == ["custom", "engine", "custom#2", "engine#2"]
    assert data.items["custom"] == [{"type": 0x80, "hex": "aa"}]
    assert data.items["custom#2"] == [{"type": 0x81, "hex": ""}]
    assert data.items["engine#2"] == {"state": "off", "crankshaft_rpm": 0, "fuel_rate_l_per_100km": 0.0}
    assert encode_realtime(ED, data) == unit
    assert data.has_custom()
    stripped = data.without_custom()
    assert list(stripped.items) == ["engine", "engine#2"]
    assert encode_realtime(ED, stripped) == T0_BYTES + h("04 01 0bb8 01f4") + h("04 02 0000 0000")
    # items built by hand need not start with "custom": a numbered run is found as well
    assert RealtimeData(T0, {"engine": data.items["engine"], "custom#2": [{"type": 0x81, "hex": ""}]}).has_custom()
    assert not stripped.has_custom()


@pytest.mark.parametrize("unit_tail", [
    pytest.param(h("01 01 03 01 007a"), id="vehicle_cut_after_5_bytes"),
    pytest.param(h("02 02 01 01 38 5179 4e34 3d 1e4b 2724"), id="second_motor_missing"),
    pytest.param(h("07 03 00000003 00 00 00 07 00010003"), id="fault_codes_cut_short"),
    pytest.param(h("08 01 01 1e81 2743 00c0 0001 03 0fdd"), id="cells_cut_short"),
    pytest.param(h("09 01 01 0005 3a 3a"), id="probes_cut_short"),
])
def test_2016_block_cut_short_is_refused_as_bad_body(unit_tail):
    with pytest.raises(BadBody) as info:
        decode_realtime(ED, T0_BYTES + unit_tail)
    assert info.value.reason == "bad_body"


def test_2016_data_unit_without_a_full_time_is_refused():
    with pytest.raises(BadBody):
        decode_realtime(ED, h("190a1b1402"))


def test_2016_data_unit_with_only_a_time_has_no_items():
    data = decode_realtime(ED, T0_BYTES)
    assert data.items == {} and encode_realtime(ED, data) == T0_BYTES


def test_2016_build_refuses_2025_only_information_types():
    with pytest.raises(EncodeError):
        encode_realtime(ED, RealtimeData(T0, {"super_capacitors": {}}))


# --- regressions: the codec once departed from docs/protocol-tables.md here ---------------------

def test_2016_extremes_marked_subsystem_and_cell_numbers_read_as_markers():
    items = decode_realtime(ED, T0_BYTES + h("06 fe ff 0fdf 01 14 0fdc 01 01 3a 01 0a 38")).items
    ext = items["extremes"]
    assert ext["max_voltage_subsystem"] is None and ext["max_voltage_cell"] is None
    assert "max_voltage_subsystem" in ext["abnormal"] and "max_voltage_cell" in ext["invalid"]


def test_2016_marked_total_cell_count_reads_as_invalid():
    items = decode_realtime(ED, T0_BYTES + h("08 01 01 1e81 2743 ffff 0001 01 0fa0")).items
    pack = items["cell_voltages"][0]
    assert pack["cell_count"] is None and "cell_count" in pack["invalid"]
    assert pack["cells_v"] == [4.0]


def test_2016_marked_probe_count_is_followed_by_no_temperatures():
    items = decode_realtime(ED, T0_BYTES + h("09 01 01 ffff") + h("04 01 0bb8 01f4")).items
    assert items["probe_temperatures"][0]["temps_c"] is None
    assert items["engine"]["crankshaft_rpm"] == 3000


@pytest.mark.parametrize("type_id, key", [(0x08, "cell_voltages"), (0x09, "probe_temperatures")])
def test_2016_marked_subsystem_count_reads_as_no_list(type_id, key):
    items = decode_realtime(ED, T0_BYTES + bytes((type_id, 0xFF)) + h("04 01 0bb8 01f4")).items
    assert items[key] is None
    assert items["engine"]["crankshaft_rpm"] == 3000


def test_2016_fuel_cell_probe_temperature_0xff_is_a_value_not_a_marker():
    block = h("03 0fa0 01f4 0064 0001 ff 0190 01 2710 02 03e8 03 01")
    fuel = decode_realtime(ED, T0_BYTES + block).items["fuel_cell"]
    assert fuel["probe_temps_c"] == [215]


def test_2016_build_refuses_a_speed_that_would_encode_as_the_abnormal_marker():
    vehicle = dict(VEHICLE[0].values[2]["vehicle"], speed_kmh=6553.4)
    with pytest.raises(EncodeError):
        encode_realtime(ED, RealtimeData(T0, {"vehicle": vehicle}))
