"""The 36 rtm_con sample frames: header facts, byte-exact round trips, and values read by hand.

Expected values are worked out from the bytes with docs/protocol-tables.md (its §11 splits
every sample); the arithmetic is written next to each number.
"""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from codec import (Edition, Encryption, Frame, Response, decode_frame, encode_frame, frame_from_json,
                   frame_to_json)
from codec.bodies import Logout, PlatformLogin, TimeOnly, VehicleLogin
from codec.bodies_2025 import Activation, ActivationAnswer, VehicleLogin2025
from codec.realtime import RealtimeData, Signature
from tests.support.codec_frames import CST, T0, VIN, data_unit, load_vectors, vector

VECTORS_DIR = Path(__file__).parents[2].parent / "shared" / "vectors"
VECTORS = json.loads((VECTORS_DIR / "rtm_con_samples.json").read_text(encoding="utf-8"))
IDS = [v["name"].replace(" ", "_").replace("/", "_") for v in VECTORS]


def test_the_shared_sample_file_holds_36_frames():
    assert len(VECTORS) == 36
    assert VECTORS == load_vectors()


# --- every sample: header facts and round trips ---------------------------------------------

@pytest.mark.parametrize("sample", VECTORS, ids=IDS)
def test_sample_decodes_with_the_header_facts_stated_in_the_vector_file(sample):
    raw = bytes.fromhex(sample["hex"])
    frame = decode_frame(raw)
    assert frame.edition.value == sample["protocol"]
    assert frame.command == sample["command_id"]
    assert frame.response == sample["response_id"]
    assert frame.vin == sample["vin"]
    assert frame.encryption == sample["encryption_id"]
    assert len(raw) - 25 == sample["data_length"] == int.from_bytes(raw[22:24], "big")
    assert frame.raw == raw


@pytest.mark.parametrize("sample", VECTORS, ids=IDS)
def test_sample_json_names_the_frame_level_facts(sample):
    obj = frame_to_json(decode_frame(bytes.fromhex(sample["hex"])))
    assert obj["protocol"] == sample["protocol"]
    assert obj["command_id"] == sample["command_id"]
    assert obj["response"] == {0xFE: "command", 0x01: "success"}[sample["response_id"]]
    assert obj["vin"] == sample["vin"]
    assert obj["encryption"] == "none"
    assert "raw" not in obj
    assert frame_to_json(decode_frame(bytes.fromhex(sample["hex"])), raw=True)["raw"] == sample["hex"]


@pytest.mark.parametrize("sample", VECTORS, ids=IDS)
def test_sample_survives_decode_json_text_and_encode_byte_for_byte(sample):
    raw = bytes.fromhex(sample["hex"])
    text = json.dumps(frame_to_json(decode_frame(raw)))
    assert encode_frame(frame_from_json(json.loads(text))) == raw


@pytest.mark.parametrize("sample", VECTORS, ids=IDS)
def test_sample_reencodes_from_the_decoded_frame_byte_for_byte(sample):
    raw = bytes.fromhex(sample["hex"])
    assert encode_frame(decode_frame(raw)) == raw


# --- values worked by hand: the two real-vehicle frames -------------------------------------

def test_data_2016_real_vehicle_frame_reads_as_the_standard_says():
    """2016 frame from a real car: docs/protocol-tables.md §11.2 "data_2016"."""
    body = decode_frame(vector("data_2016")).body
    assert isinstance(body, RealtimeData)
    assert body.collected_at == datetime(2025, 10, 11, 19, 8, 18, tzinfo=CST)  # 19 0a 0b 13 08 12
    assert list(body.items) == ["vehicle", "motors", "position", "extremes", "alarm", "cell_voltages",
                                "probe_temperatures", "custom"]
    assert body.signature is None
    assert body.items["vehicle"] == {
        "state": "started",                 # 01
        "charging_state": "not_charging",   # 03
        "mode": "electric",                 # 01
        "speed_kmh": 12.2,                  # 0x007a = 122 x 0.1
        "odometer_km": 258.9,               # 0x00000a1d = 2589 x 0.1
        "total_voltage_v": 780.9,           # 0x1e81 = 7809 x 0.1
        "total_current_a": 5.1,             # 0x2743 = 10051 x 0.1 - 1000
        "soc_pct": 85,                      # 0x55
        "dcdc_state": "working",            # 01
        "gear": "D",                        # 0x1e: bits 0-3 = 14 (D), bit 4 braking
        "braking_force": True,
        "driving_force": False,
        "insulation_kohm": 6553,            # 0x1999
        "accelerator_pct": 0,               # 00
        "brake": 16,                        # 0x10
    }
    assert body.items["motors"] == [
        {"seq": 1, "state": "consuming",
         "controller_temp_c": 16,           # 0x38 = 56 - 40
         "speed_rpm": 857,                  # 0x5179 = 20857 - 20000
         "torque_nm": 2.0,                  # 0x4e34 = 20020 -> (20020 - 20000) x 0.1
         "temp_c": 21,                      # 0x3d = 61 - 40
         "controller_voltage_v": 775.5,     # 0x1e4b = 7755 x 0.1
         "controller_current_a": 2.0},      # 0x2724 = 10020 x 0.1 - 1000
        {"seq": 2, "state": "generating",
         "controller_temp_c": 15,           # 0x37 = 55 - 40
         "speed_rpm": 873,                  # 0x5189 = 20873 - 20000
         "torque_nm": -32.5,                # 0x4cdb = 19675 -> -325 x 0.1
         "temp_c": 24,                      # 0x40 = 64 - 40
         "controller_voltage_v": 775.5,
         "controller_current_a": -2.5},     # 0x26f7 = 9975 x 0.1 - 1000
    ]
    assert body.items["position"] == {"valid": True, "longitude": 0.0, "latitude": 0.0}  # status 00
    assert body.items["extremes"] == {
        "max_voltage_subsystem": 1, "max_voltage_cell": 2,
        "max_cell_voltage_v": 4.063,        # 0x0fdf = 4063 x 0.001
        "min_voltage_subsystem": 1, "min_voltage_cell": 20,  # 0x14
        "min_cell_voltage_v": 4.06,         # 0x0fdc = 4060 x 0.001
        "max_temp_subsystem": 1, "max_temp_probe": 1,
        "max_temp_c": 18,                   # 0x3a = 58 - 40
        "min_temp_subsystem": 1, "min_temp_probe": 10,       # 0x0a
        "min_temp_c": 16,                   # 0x38 = 56 - 40
    }
    assert body.items["alarm"] == {"max_level": 0, "flags": [], "battery_faults": [], "motor_faults": [],
                                   "engine_faults": [], "other_faults": []}
    [pack] = body.items["cell_voltages"]
    cells = pack.pop("cells_v")
    assert pack == {"subsystem": 1,
                    "voltage_v": 780.9,     # 0x1e81, same as the vehicle's total voltage
                    "current_a": 5.1,       # 0x2743 -> -1000 A offset (not rtm_con's -3000)
                    "cell_count": 192,      # 0x00c0
                    "first_cell": 1}        # 0x0001; 0xc0 = 192 cells in this frame
    assert len(cells) == 192
    assert cells[:4] == [4.061, 4.063, 4.062, 4.062]  # 0fdd 0fdf 0fde 0fde
    assert cells[-2:] == [4.063, 4.062]               # 0fdf 0fde
    raw_cells = data_unit(vector("data_2016"))[100:100 + 384]
    assert cells == [v / 1000 for v in struct.unpack(">192H", raw_cells)]
    [probes] = body.items["probe_temperatures"]
    assert probes["subsystem"] == 1
    assert probes["temps_c"][:6] == [18, 17, 18, 18, 17, 17]  # 3a 39 3a 3a 39 39 minus 40
    assert probes["temps_c"] == [b - 40 for b in bytes.fromhex(
        "3a393a3a393939393938393939393939393a3939393a3a3a3a393a3a39393939393939393839393939393939393a3a3a")]
    assert body.items["custom"] == [
        {"type": 0x83, "hex": "000007ff0107fd01047a0107fd01000100010001000101010001069a01"}]  # length 0x001d


def test_data_2025_real_vehicle_frame_reads_as_the_standard_says():
    """2025 frame from a real car: docs/protocol-tables.md §11.2 "data_2025"."""
    raw = vector("data_2025")
    body = decode_frame(raw).body
    assert body.collected_at == datetime(2025, 10, 28, 14, 45, 47, tzinfo=CST)  # 19 0a 1c 0e 2d 2f
    assert list(body.items) == ["vehicle", "motors", "position", "alarm", "cell_voltages",
                                "probe_temperatures", "custom"]
    assert "extremes" not in body.items
    assert body.items["vehicle"] == {
        "state": "started", "charging_state": "not_charging", "mode": "electric",
        "speed_kmh": 0.0,                   # 0x0000
        "odometer_km": 15591.0,             # 0x00026106 = 155910 x 0.1
        "total_voltage_v": 713.8,           # 0x1be2 = 7138 x 0.1
        "total_current_a": 2.2,             # 0x7546 = 30022 x 0.1 - 3000
        "soc_pct": 75,                      # 0x4b
        "dcdc_state": "working",
        "gear": "P",                        # 0x1f: gear 15, braking, bit 7 = 0 -> valid
        "braking_force": True, "driving_force": False, "gear_valid": True,
        "insulation_kohm": 6553,            # 0x1999
    }
    assert body.items["motors"] == [
        {"seq": 1, "state": "off",
         "controller_temp_c": 31,           # 0x47 = 71 - 40
         "speed_rpm": 0,                    # 0x7d00 = 32000 - 32000
         "torque_nm": 0.0,                  # 0x00030d40 = 200000 -> (200000 - 200000) x 0.1
         "temp_c": 34},                     # 0x4a = 74 - 40
        {"seq": 2, "state": "off",
         "controller_temp_c": 33,           # 0x49 = 73 - 40
         "speed_rpm": 0,
         "torque_nm": -0.5,                 # 0x00030d3b = 199995 -> -5 x 0.1
         "temp_c": 29},                     # 0x45 = 69 - 40
    ]
    # status 01 (fix not valid), coordinate system 02 (GCJ-02)
    assert body.items["position"] == {"valid": False, "datum": "gcj02", "longitude": 0.0, "latitude": 0.0}
    assert body.items["alarm"] == {
        "max_level": 0, "flags": [], "battery_faults": [], "motor_faults": [], "engine_faults": [],
        "other_faults": [0x00080002, 0x00090025, 0x00090026],  # count 03
        "flag_levels": [],                                       # N5 = 00
    }
    [pack] = body.items["cell_voltages"]
    cells = pack.pop("cells_v")
    assert pack == {"subsystem": 1,
                    "voltage_v": 713.8,     # 0x1be2
                    "current_a": 2.2,       # 0x7546 = 30022 -> -3000 A offset, as the vehicle block
                    "cell_count": 180}      # 0x00b4
    assert cells[:4] == [3.957, 3.96, 3.958, 3.961]  # 0f75 0f78 0f76 0f79
    assert cells[-1] == 3.965                        # 0f7d
    assert cells == [v / 1000 for v in struct.unpack(">180H", data_unit(raw)[90:90 + 360])]
    assert 712.0 < sum(cells) < 714.0  # 180 units in series make the 713.8 V pack
    [probes] = body.items["probe_temperatures"]
    assert probes["subsystem"] == 1
    assert probes["temps_c"][:5] == [30, 30, 30, 29, 30]  # 46 46 46 45 46 minus 40
    assert probes["temps_c"] == [b - 40 for b in bytes.fromhex(
        "464646454646464645444545464645444646464646464646464746464646464645444646444544434546454545454645")]
    assert body.items["custom"] == [
        {"type": 0x83, "hex": "000004190104230103dd0103f70100010001000100010101000105db0100ffffff0101"}]
    assert body.signature == Signature(2, data_unit(raw)[545:801], b"")  # ff 02 0100 r(256) 0000
    assert body.trailing == b""


# --- values worked by hand: single information types ----------------------------------------

def test_2016_motor_sample_reads_invalid_and_abnormal_markers_but_not_all_fe_words():
    """rtm_con fills the second motor with 0xFE bytes: the 1-byte fields are abnormal, but
    a WORD 0xFEFE is only an out-of-range value (protocol-tables §0)."""
    motors = decode_frame(vector("data2016 with only e-motor data")).body.items["motors"]
    assert motors == [
        {"seq": 255,  # 2016 motor numbers have no markers
         "state": None, "controller_temp_c": None, "speed_rpm": None, "torque_nm": None, "temp_c": None,
         "controller_voltage_v": None, "controller_current_a": None,
         "invalid": ["state", "controller_temp_c", "speed_rpm", "torque_nm", "temp_c",
                     "controller_voltage_v", "controller_current_a"]},
        {"seq": 254, "state": None, "controller_temp_c": None,
         "speed_rpm": 45278,                # 0xfefe = 65278 - 20000
         "torque_nm": 4527.8,               # (65278 - 20000) x 0.1
         "temp_c": None,
         "controller_voltage_v": 6527.8,    # 65278 x 0.1
         "controller_current_a": 5527.8,    # 65278 x 0.1 - 1000
         "abnormal": ["state", "controller_temp_c", "temp_c"]},
    ]


def test_2025_motor_sample_reads_marked_motor_numbers_and_a_dword_torque():
    motors = decode_frame(vector("data2025 with only e-motor data")).body.items["motors"]
    assert motors == [
        {"seq": None, "state": None, "controller_temp_c": None, "speed_rpm": None, "torque_nm": None,
         "temp_c": None, "invalid": ["seq", "state", "controller_temp_c", "speed_rpm", "torque_nm", "temp_c"]},
        {"seq": None, "state": None, "controller_temp_c": None,
         "speed_rpm": 33278,                # 0xfefe = 65278 - 32000
         "torque_nm": 427792428.6,          # 0xfefefefe = 4278124286 -> (x - 200000) x 0.1
         "temp_c": None, "abnormal": ["seq", "state", "controller_temp_c", "temp_c"]},
    ]


def test_2016_alarm_sample_reads_level_flags_and_other_fault_codes():
    alarm = decode_frame(vector("data2016 with only warnings data")).body.items["alarm"]
    assert alarm == {
        "max_level": 3,
        "flags": ["temperature_difference", "battery_high_temperature"],  # 0x00000003: bits 0 and 1
        "battery_faults": [], "motor_faults": [], "engine_faults": [],
        "other_faults": [0x00010003, 0x00080002, 0x00080003, 0x000C0004, 0x000D0001, 0x00060920, 0x000A000B],
    }


def test_2025_alarm_sample_reads_the_general_alarm_level_pairs():
    alarm = decode_frame(vector("data2025 with only warnings data")).body.items["alarm"]
    assert alarm == {
        "max_level": 3,
        "flags": ["temperature_difference", "battery_high_temperature"],
        "battery_faults": [], "motor_faults": [], "engine_faults": [],
        "other_faults": [0x00010003, 0x00080002, 0x00080003, 0x000C0004, 0x000D0001, 0x00060920, 0x000A000B],
        # N5 = 02, pairs (00, 03) (01, 03)
        "flag_levels": [{"flag": "temperature_difference", "level": 3},
                        {"flag": "battery_high_temperature", "level": 3}],
    }


def test_repeated_alarm_blocks_are_both_kept_in_frame_order():
    body = decode_frame(vector("weird message 2016 with duplicated warning blocks and umatched general "
                               "warning flags and codes")).body
    assert list(body.items) == ["alarm", "alarm#2"]
    assert body.items["alarm"] == body.items["alarm#2"]
    assert body.items["alarm"]["max_level"] == 3


def test_2025_repeated_alarm_keeps_a_level_pair_for_an_unset_flag_as_sent():
    """The second block's N5 list names bit 4 (SOC low) although only bits 0 and 1 are set."""
    body = decode_frame(vector("weird message 2025 with duplicated warning blocks and umatched general "
                               "warning flags and codes")).body
    assert list(body.items) == ["alarm", "alarm#2"]
    # ... 02 | 00 02 | 01 03  and  ... 02 | 04 02 | 01 03
    assert body.items["alarm"]["flag_levels"] == [{"flag": "temperature_difference", "level": 2},
                                                  {"flag": "battery_high_temperature", "level": 3}]
    assert body.items["alarm#2"]["flag_levels"] == [{"flag": "soc_low", "level": 2},
                                                    {"flag": "battery_high_temperature", "level": 3}]
    assert body.items["alarm#2"]["flags"] == ["temperature_difference", "battery_high_temperature"]


def test_2016_cell_voltage_sample_reads_invalid_cells():
    packs = decode_frame(vector("data2016 with only cell volts data")).body.items["cell_voltages"]
    assert [len(p["cells_v"]) for p in packs] == [4, 3]  # frame cell counts 04 and 03
    for pack in packs:
        assert pack["voltage_v"] is None and pack["current_a"] is None
        assert pack["cells_v"] == [None] * len(pack["cells_v"])
        assert pack["invalid"][:2] == ["voltage_v", "current_a"]
        assert set(pack["invalid"]) >= {f"cells_v[{i}]" for i in range(len(pack["cells_v"]))}


def test_2025_cell_voltage_sample_reads_invalid_pack_numbers_and_cells():
    packs = decode_frame(vector("data2025 with only cell volts data")).body.items["cell_voltages"]
    assert packs == [
        {"subsystem": None, "voltage_v": None, "current_a": None, "cell_count": 4, "cells_v": [None] * 4,
         "invalid": ["subsystem", "voltage_v", "current_a", "cells_v[0]", "cells_v[1]", "cells_v[2]",
                     "cells_v[3]"]},
        {"subsystem": None, "voltage_v": None, "current_a": None, "cell_count": 3, "cells_v": [None] * 3,
         "invalid": ["subsystem", "voltage_v", "current_a", "cells_v[0]", "cells_v[1]", "cells_v[2]"]},
    ]


def test_probe_temperature_samples_read_an_empty_probe_list_and_invalid_probes():
    p16 = decode_frame(vector("data2016 with only probe temps data")).body.items["probe_temperatures"]
    p25 = decode_frame(vector("data2025 with only probe temps data")).body.items["probe_temperatures"]
    five_invalid = {"subsystem": 5, "temps_c": [None] * 5, "invalid": [f"temps_c[{i}]" for i in range(5)]}
    assert p16 == [{"subsystem": 255, "temps_c": []}, five_invalid]  # 2016 numbers carry no markers
    assert p25 == [{"subsystem": None, "invalid": ["subsystem"], "temps_c": []}, five_invalid]


@pytest.mark.parametrize("name", ["data2016 with only gnss data", "data2025 with only gnss data"])
def test_gnss_sample_with_invalid_coordinates_keeps_the_south_and_west_bits(name):
    position = decode_frame(vector(name)).body.items["position"]
    assert position["valid"] is False  # status 07: bit 0 set
    assert position["longitude"] is None and position["latitude"] is None
    assert position["west"] is True and position["south"] is True  # bits 2 and 1
    assert {"longitude", "latitude"} <= set(position["invalid"])
    if name.startswith("data2025"):
        assert position["datum"] is None and "datum" in position["invalid"]  # coordinate system ff


@pytest.mark.parametrize("name", ["data2016 with only probe oem data", "data2025 with only probe oem data"])
def test_user_defined_sample_is_kept_as_type_and_hex(name):
    assert decode_frame(vector(name)).body.items == {"custom": [{"type": 0x80, "hex": "fe" * 16}]}


def test_2025_unknown_data_after_the_signature_is_kept_as_trailing_bytes():
    body = decode_frame(vector("weird message 2025 with addtional unknown data before checksum")).body
    assert body.signature.algorithm == 2 and len(body.signature.r) == 256 and body.signature.s == b""
    assert body.trailing.hex() == ("820023000004190104230103dd0103f70100010001000100010101000105db0100"
                                   "ffffff0101")


def test_2025_reserved_type_before_the_signature_is_kept_opaque_and_the_signature_still_found():
    body = decode_frame(vector("weird message 2025 with addtional unknown data before signature")).body
    assert body.items["custom"] == [{"type": 0x79, "opaque": True,
                                     "hex": "0023000004190104230103dd0103f70100010001000100010101000105db0100"}]
    assert body.signature.algorithm == 2 and len(body.signature.r) == 256


# --- logins, platform login, activation -----------------------------------------------------

CODES = ("0RJPEA00HAU0AAF131001955", "0RJPEA00HAU0AAF131001956", "0RJPEA00HAU0AAF131001957")


def test_2016_login_sample_reads_serial_iccid_and_three_pack_codes():
    frame = decode_frame(vector("login2016 with serveral HVBSNs"))
    # n = 03, m = 0x18 = 24
    assert frame.body == VehicleLogin(T0, 12, "89860924790023166606", CODES, 24)
    assert frame_to_json(frame)["body"] == {"collected_at": "2025-10-27T20:02:02+08:00", "serial": 12,
                                            "iccid": "89860924790023166606", "subsystem_codes": list(CODES)}


def test_2025_login_sample_groups_pack_codes_by_battery_system():
    frame = decode_frame(vector("login2025 with serveral HVBSNs"))
    # n = 02 systems holding 01 and 02 packs of 24-byte codes
    assert frame.body == VehicleLogin2025(T0, 12, "89860924790023166606", CODES, 24, (1, 2))
    one = decode_frame(vector("login2025 with one HVBSN")).body
    assert one == VehicleLogin2025(T0, 12, "89860924790023166606", CODES[:1], 24, (1,))


@pytest.mark.parametrize("name", ["plt_login2016", "plt_login2025"])
def test_platform_login_sample_reads_user_password_and_rule(name):
    frame = decode_frame(vector(name))
    # serial 0x0802, user 12 bytes, password 20 bytes, rule 01 (none)
    assert frame.body == PlatformLogin(T0, 2050, "HAUV4BGN6S50", "HAUV4BGN6S5002219HAU", 1)
    assert frame_to_json(frame)["body"] == {"collected_at": "2025-10-27T20:02:02+08:00", "serial": 2050,
                                            "username": "HAUV4BGN6S50", "password": "HAUV4BGN6S5002219HAU",
                                            "encryption_rule": 1}


@pytest.mark.parametrize("name", ["logout2016", "logout2025", "plt_logout2016", "plt_logout2025"])
def test_logout_samples_read_time_and_serial(name):
    assert decode_frame(vector(name)).body == Logout(T0, 2050)  # 0x0802


@pytest.mark.parametrize("name", ["ack2016", "ack2025"])
def test_answer_samples_carry_only_the_time(name):
    frame = decode_frame(vector(name))
    assert frame.response == Response.SUCCESS and frame.is_answer
    assert frame.body == TimeOnly(T0)


def test_activation_sample_reads_chip_key_vin_and_signature():
    raw = vector("activation2025")
    frame = decode_frame(raw)
    assert (frame.edition, frame.command, frame.vin) == (Edition.V2025, 0x09, "HGLH3ACF1PA714408")
    body = frame.body
    assert isinstance(body, Activation)
    assert body.collected_at == datetime(2025, 6, 23, 15, 6, 22, tzinfo=CST)  # 19 06 17 0f 06 16
    assert body.chip_id == "1234567812345678"
    unit = data_unit(raw)
    assert len(body.public_key) == 259                   # 0x0103
    assert body.public_key == unit[24:24 + 259]
    assert body.public_key[-3:] == b"\x01\x00\x01"      # modulus then exponent 65537
    assert body.vin == "HGLH3ACF1PA714408"
    assert body.algorithm == 2                           # RSA
    assert body.r == unit[24 + 259 + 17 + 3:24 + 259 + 17 + 3 + 256]  # r length 0x0100
    assert body.s == b""                                 # s length 0x0000


def test_activation_answer_sample_reads_failed_because_the_chip_is_already_activated():
    """Body 02 01 under the standard's table B.4 (rtm_con would read 'nok / ok')."""
    frame = decode_frame(vector("activation2025 ack"))
    assert (frame.command, frame.response) == (0x0A, Response.COMMAND)
    assert frame.body == ActivationAnswer(2, 1)
    assert frame_to_json(frame)["body"] == {"result": "failed", "detail": "chip_already_activated"}


def test_decoded_sample_frame_equals_the_frame_built_in_code():
    built = Frame(Edition.V2016, 0x04, Response.COMMAND, VIN, Encryption.NONE, Logout(T0, 2050))
    assert encode_frame(built) == vector("logout2016")
    assert decode_frame(vector("logout2016")) == replace(built, raw=vector("logout2016"))


# --- the JSON form promised by interfaces.md ------------------------------------------------

VEHICLE_KEYS = {"state", "charging_state", "mode", "speed_kmh", "odometer_km", "total_voltage_v", "total_current_a",
                "soc_pct", "dcdc_state", "gear", "insulation_kohm"}
MOTOR_KEYS = {"seq", "state", "controller_temp_c", "speed_rpm", "torque_nm", "temp_c"}


@pytest.mark.parametrize("name, protocol", [("data_2016", "2016"), ("data_2025", "2025")])
def test_realtime_json_carries_the_keys_interfaces_md_requires(name, protocol):
    """2025 drops the pedals and the motor controller voltage/current (protocol-tables §12)."""
    body = frame_to_json(decode_frame(vector(name)))["body"]
    assert body["collected_at"].endswith("+08:00")
    vehicle_keys = VEHICLE_KEYS | ({"accelerator_pct", "brake"} if protocol == "2016" else set())
    motor_keys = MOTOR_KEYS | ({"controller_voltage_v", "controller_current_a"} if protocol == "2016" else set())
    assert vehicle_keys <= set(body["vehicle"])
    assert all(motor_keys <= set(m) for m in body["motors"])
    assert {"valid", "longitude", "latitude"} <= set(body["position"])
    alarm_keys = {"max_level", "flags", "battery_faults", "motor_faults", "engine_faults", "other_faults"}
    assert alarm_keys <= set(body["alarm"])
    cell_keys = {"subsystem", "voltage_v", "current_a", "cell_count", "cells_v"} | (
        {"first_cell"} if protocol == "2016" else set())
    assert all(cell_keys <= set(p) for p in body["cell_voltages"])
    assert all({"subsystem", "temps_c"} <= set(p) for p in body["probe_temperatures"])
    assert all(set(c) == {"type", "hex"} for c in body["custom"])
    if protocol == "2016":
        assert {"max_cell_voltage_v", "min_cell_voltage_v", "max_temp_c", "min_temp_c", "max_voltage_subsystem",
                "max_voltage_cell", "min_voltage_subsystem", "min_voltage_cell", "max_temp_subsystem",
                "max_temp_probe", "min_temp_subsystem", "min_temp_probe"} <= set(body["extremes"])
        assert "signature" not in body
    else:
        assert "extremes" not in body
        assert body["signature"]["algorithm"] == "rsa" and len(body["signature"]["r"]) == 512
        assert body["signature"]["s"] == ""


def test_marked_fields_are_null_and_named_in_the_json():
    vehicle = frame_to_json(decode_frame(vector("data2025 with only whole_vehicle_data")))["body"]["vehicle"]
    assert vehicle["speed_kmh"] is None and "speed_kmh" in vehicle["invalid"]
    assert json.loads(json.dumps(vehicle)) == vehicle
