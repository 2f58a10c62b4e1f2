"""Data units of the commands other than realtime: logins, logouts, heartbeat, time sync,
parameters, terminal control, 2025 activation and key sync, the answers built by
``codec.answer`` and the project's charging messages 0xC1-0xC5.

Layouts and values come from docs/protocol-tables.md §1-§8; answer frames are written out
byte for byte with their check code worked by hand (the VIN's 17 bytes XOR to 0x2D).
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from codec import (BadBody, BadHeader, BadTime, Command, Edition, EncodeError, Encryption, Frame, Response,
                   UnknownCommand, answer, decode_frame, encode_frame, frame_from_json, frame_to_json)
from codec.bodies import Logout, Opaque, PlatformLogin, TimeOnly, VehicleLogin
from codec.bodies_2025 import Activation, ActivationAnswer, KeySync, VehicleLogin2025
from codec.charging import ChargingMessage
from codec.params import ParamList, ParamQuery, TerminalControl
from tests.support.codec_frames import CST, T0, T0_HEX, VIN, frame, vector

V16, V25 = Edition.V2016, Edition.V2025
ICCID = "89860924790023166606"
ICCID_HEX = ICCID.encode().hex()
VIN_HEX = VIN.encode().hex()  # 484155563442474e365335303032323139


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def both_ways(raw: bytes, expected: Frame) -> None:
    """``raw`` decodes to ``expected`` (plus its raw bytes) and ``expected`` encodes to ``raw``,
    also through the JSON text form."""
    decoded = decode_frame(raw)
    assert (decoded.edition, decoded.command, decoded.response, decoded.vin, decoded.encryption) == \
        (expected.edition, expected.command, expected.response, expected.vin, expected.encryption)
    assert decoded.body == expected.body
    assert encode_frame(expected) == raw
    assert encode_frame(frame_from_json(json.loads(json.dumps(frame_to_json(decoded))))) == raw


# --- vehicle login / logout, platform login / logout ------------------------------------------

CODES = ("0RJPEA00HAU0AAF131001955", "0RJPEA00HAU0AAF131001956", "0RJPEA00HAU0AAF131001957")


@pytest.mark.parametrize("raw, body, protocol", [
    pytest.param(vector("login2016 with serveral HVBSNs"), VehicleLogin(T0, 12, ICCID, CODES, 24), "2016",
                 id="2016_three_codes_of_24"),
    pytest.param(frame("2016", 0x01, 0xFE, h(T0_HEX + "0001" + ICCID_HEX + "00 00")),
                 VehicleLogin(T0, 1, ICCID, (), 0), "2016", id="2016_codes_not_sent"),
    pytest.param(frame("2016", 0x01, 0xFE, h(T0_HEX + "ffdb" + ICCID_HEX + "02 03" + b"AB1AB2".hex())),
                 VehicleLogin(T0, 65499, ICCID, ("AB1", "AB2"), 3), "2016", id="2016_two_codes_of_3"),
    pytest.param(vector("login2025 with serveral HVBSNs"), VehicleLogin2025(T0, 12, ICCID, CODES, 24, (1, 2)),
                 "2025", id="2025_two_systems_one_and_two_packs"),
    pytest.param(vector("login2025 with one HVBSN"), VehicleLogin2025(T0, 12, ICCID, CODES[:1], 24, (1,)),
                 "2025", id="2025_one_pack"),
    pytest.param(frame("2025", 0x01, 0xFE, h(T0_HEX + "0001" + ICCID_HEX + "00")),
                 VehicleLogin2025(T0, 1, ICCID, (), 24, ()), "2025", id="2025_no_system"),
])
def test_vehicle_login_reads_serial_iccid_and_codes(raw, body, protocol):
    both_ways(raw, Frame(Edition(protocol), Command.VEHICLE_LOGIN, Response.COMMAND, VIN, Encryption.NONE, body))


def test_2025_login_codes_must_add_up_to_the_pack_counts():
    body = VehicleLogin2025(T0, 1, ICCID, CODES, 24, (1, 1))
    with pytest.raises(EncodeError):
        encode_frame(Frame(V25, Command.VEHICLE_LOGIN, Response.COMMAND, VIN, Encryption.NONE, body))


@pytest.mark.parametrize("protocol", ["2016", "2025"])
@pytest.mark.parametrize("command", [Command.VEHICLE_LOGOUT, Command.PLATFORM_LOGOUT])
def test_logout_carries_time_and_login_serial(protocol, command):
    raw = frame(protocol, command, 0xFE, h(T0_HEX + "0802"))  # serial 0x0802 = 2050
    both_ways(raw, Frame(Edition(protocol), command, Response.COMMAND, VIN, Encryption.NONE, Logout(T0, 2050)))


@pytest.mark.parametrize("raw, body, protocol", [
    pytest.param(vector("plt_login2016"), PlatformLogin(T0, 2050, "HAUV4BGN6S50", "HAUV4BGN6S5002219HAU", 1),
                 "2016", id="2016_sample"),
    pytest.param(frame("2025", 0x05, 0xFE, h(T0_HEX + "0001" + b"user".hex() + "00" * 8 + b"secret".hex()
                                             + "00" * 14 + "05")),
                 PlatformLogin(T0, 1, "user", "secret", 5), "2025", id="2025_short_names_sm4_rule"),
    pytest.param(frame("2016", 0x05, 0xFE, h(T0_HEX + "fffb" + (b"A" * 12).hex() + (b"B" * 20).hex() + "03")),
                 PlatformLogin(T0, 65531, "A" * 12, "B" * 20, 3), "2016", id="2016_full_width_aes_rule"),
])
def test_platform_login_reads_user_password_and_encryption_rule(raw, body, protocol):
    both_ways(raw, Frame(Edition(protocol), Command.PLATFORM_LOGIN, Response.COMMAND, VIN, Encryption.NONE, body))


def test_platform_id_shorter_than_17_characters_is_nul_padded():
    raw = frame("2016", 0x05, 0xFE, h(T0_HEX + "0001" + b"user".hex() + "00" * 8 + b"pw".hex() + "00" * 18 + "01"),
                vin=b"PLATFORM01" + bytes(7))
    decoded = decode_frame(raw)
    assert decoded.vin == "PLATFORM01"
    assert encode_frame(decoded) == raw


# --- heartbeat and time sync ------------------------------------------------------------------

@pytest.mark.parametrize("raw, command, protocol", [
    # 07 ^ fe ^ 2d (VIN) ^ 01 ^ 00 00 = d5
    pytest.param(h("2323 07 fe" + VIN_HEX + "01 0000 d5"), Command.HEARTBEAT, "2016", id="heartbeat_2016"),
    pytest.param(h("2424 07 fe" + VIN_HEX + "01 0000 d5"), Command.HEARTBEAT, "2025", id="heartbeat_2025"),
    # 08 ^ fe ^ 2d ^ 01 = da
    pytest.param(h("2323 08 fe" + VIN_HEX + "01 0000 da"), Command.TIME_SYNC, "2016", id="time_sync_2016"),
])
def test_heartbeat_and_time_sync_requests_have_an_empty_data_unit(raw, command, protocol):
    both_ways(raw, Frame(Edition(protocol), command, Response.COMMAND, VIN, Encryption.NONE, None))
    assert frame_to_json(decode_frame(raw))["body"] is None


# --- answers built by codec.answer -------------------------------------------------------------

NOW = datetime(2025, 10, 27, 20, 5, 0, tzinfo=CST)


@pytest.mark.parametrize("request_raw, response, expected_hex", [
    # 01 ^ 01 ^ 2d ^ 01 ^ 00 ^ 06 ^ (19^0a^1b^14^02^02 = 1c) = 36: the rtm_con "ack2016" sample
    pytest.param(vector("login2016 with serveral HVBSNs"), Response.SUCCESS,
                 "2323 01 01" + VIN_HEX + "01 0006" + T0_HEX + "36", id="login_2016_success_echoes_time"),
    pytest.param(vector("login2025 with one HVBSN"), Response.SUCCESS,
                 "2424 01 01" + VIN_HEX + "01 0006" + T0_HEX + "36", id="login_2025_success"),
    # 01 ^ 03 ^ 2d ^ 01 ^ 06 ^ 1c = 34
    pytest.param(vector("login2016 with serveral HVBSNs"), Response.VIN_DUPLICATE,
                 "2323 01 03" + VIN_HEX + "01 0006" + T0_HEX + "34", id="login_vin_duplicate"),
    # 02 ^ 02 ^ 2d ^ 01 ^ 06 ^ (19^0a^1c^0e^2d^2f = 03) = 29
    pytest.param(vector("data_2025"), Response.ERROR,
                 "2424 02 02" + VIN_HEX + "01 0006 190a1c0e2d2f 29", id="realtime_2025_error_echoes_its_time"),
    # 07 ^ 01 ^ 2d ^ 01 = 2a, no data unit
    pytest.param(h("2323 07 fe" + VIN_HEX + "01 0000 d5"), Response.SUCCESS,
                 "2323 07 01" + VIN_HEX + "01 0000 2a", id="heartbeat_answer_is_empty"),
    # 08 ^ 01 ^ 2d ^ 01 ^ 06 ^ (19^0a^1b^14^05^00 = 19) = 3a
    pytest.param(h("2323 08 fe" + VIN_HEX + "01 0000 da"), Response.SUCCESS,
                 "2323 08 01" + VIN_HEX + "01 0006 190a1b140500 3a", id="time_sync_answer_carries_now"),
])
def test_answer_frame_is_byte_exact(request_raw, response, expected_hex):
    reply = answer(decode_frame(request_raw), response, NOW)
    assert encode_frame(reply) == h(expected_hex)
    decoded = decode_frame(h(expected_hex))
    assert decoded.is_answer and decoded.response == response
    assert decoded.body == reply.body


def test_answer_to_the_ack_sample_request_is_the_ack_sample():
    reply = answer(decode_frame(vector("login2016 with serveral HVBSNs")), Response.SUCCESS, NOW)
    assert encode_frame(reply) == vector("ack2016")


def test_answer_to_a_body_without_time_carries_the_answering_sides_time():
    request = Frame(V25, Command.KEY_SYNC, Response.COMMAND, VIN, Encryption.NONE,
                    KeySync(3, bytes(16), T0, T0))
    assert answer(request, Response.SUCCESS, NOW).body == TimeOnly(NOW)


def test_answer_to_an_encrypted_frame_is_sent_in_clear():
    request = Frame(V16, Command.VEHICLE_LOGOUT, Response.COMMAND, VIN, Encryption.AES128, Logout(T0, 1))
    reply = answer(request, Response.SUCCESS, NOW)
    assert reply.encryption == Encryption.NONE and reply.body == TimeOnly(T0)


def test_answer_body_with_no_known_layout_is_kept_opaque():
    raw = frame("2016", 0x04, 0x01, h("0102030405"))  # neither a time nor a logout body
    decoded = decode_frame(raw)
    assert decoded.body == Opaque(h("0102030405"))
    assert frame_to_json(decoded)["body"] == {"hex": "0102030405"}
    assert encode_frame(decoded) == raw


def test_answer_that_keeps_the_request_body_is_read_with_the_request_layout():
    """EMQX and STD16 Annex B answer with time + the rest of the request (§1.3)."""
    raw = frame("2016", 0x04, 0x01, h(T0_HEX + "0802"))
    decoded = decode_frame(raw)
    assert decoded.body == Logout(T0, 2050)
    assert encode_frame(decoded) == raw


# --- parameter query, answer and set ------------------------------------------------------------

@pytest.mark.parametrize("protocol, names", [
    ("2016", ["local_storage_period_ms", "report_interval_s", "alarm_report_interval_ms"]),
    ("2025", ["local_storage_period_ms", "report_interval_s", "alarm_report_interval_s"]),
])
def test_parameter_query_lists_the_ids_asked_for(protocol, names):
    raw = frame(protocol, 0x80, 0xFE, h(T0_HEX + "03 01 02 03"))
    both_ways(raw, Frame(Edition(protocol), Command.QUERY_PARAMS, Response.COMMAND, VIN, Encryption.NONE,
                         ParamQuery(T0, (1, 2, 3))))
    assert frame_to_json(decode_frame(raw))["body"]["names"] == names


def test_parameter_query_for_every_id_and_for_none():
    raw = frame("2016", 0x80, 0xFE, h(T0_HEX + "10" + "".join(f"{i:02x}" for i in range(1, 17))))
    assert decode_frame(raw).body == ParamQuery(T0, tuple(range(1, 17)))
    raw = frame("2016", 0x80, 0xFE, h(T0_HEX + "00"))
    assert decode_frame(raw).body == ParamQuery(T0, ())


# (protocol, id + value bytes, expected (id, value) pairs): 2016 TB.12, 2025 TB.8
PARAMETERS = [
    pytest.param("2016", "01 ea60", ((0x01, 60000),), id="2016_0x01_storage_period_60000ms"),
    pytest.param("2016", "02 0258", ((0x02, 600),), id="2016_0x02_report_period_is_a_word_600s"),
    pytest.param("2016", "03 ea60", ((0x03, 60000),), id="2016_0x03_alarm_period_is_a_word_60000ms"),
    pytest.param("2016", "04 0f 05" + b"gbt32960.org.cn".hex(),
                 ((0x04, 15), (0x05, "gbt32960.org.cn")), id="2016_0x04_0x05_platform_domain"),
    pytest.param("2016", "06 fffb", ((0x06, 65531),), id="2016_0x06_platform_port_max"),
    pytest.param("2016", "07" + b"HW1.0".hex(), ((0x07, "HW1.0"),), id="2016_0x07_hardware_version"),
    pytest.param("2016", "08" + b"FW2.1".hex(), ((0x08, "FW2.1"),), id="2016_0x08_firmware_version"),
    pytest.param("2016", "09 f0", ((0x09, 240),), id="2016_0x09_heartbeat_240s"),
    pytest.param("2016", "0a 0258", ((0x0A, 600),), id="2016_0x0a_terminal_timeout_600s"),
    pytest.param("2016", "0b 0001", ((0x0B, 1),), id="2016_0x0b_platform_timeout_1s"),
    pytest.param("2016", "0c f0", ((0x0C, 240),), id="2016_0x0c_login_retry_240min"),
    pytest.param("2016", "0d 0b 0e" + b"example.com".hex(), ((0x0D, 11), (0x0E, "example.com")),
                 id="2016_0x0d_0x0e_public_domain"),
    pytest.param("2016", "0f 0000", ((0x0F, 0),), id="2016_0x0f_public_port_0"),
    pytest.param("2016", "10 02", ((0x10, 2),), id="2016_0x10_not_sampling"),
    pytest.param("2016", "11 aabb", ((0x11, h("aabb")),), id="2016_reserved_id_keeps_the_rest_as_bytes"),
    pytest.param("2025", "01 0000", ((0x01, 0),), id="2025_0x01_storage_period_0"),
    pytest.param("2025", "02 1e", ((0x02, 30),), id="2025_0x02_report_period_is_a_byte_30s"),
    pytest.param("2025", "03 01", ((0x03, 1),), id="2025_0x03_alarm_period_is_a_byte_1s"),
    pytest.param("2025", "02 01 03 00 09 01", ((0x02, 1), (0x03, 0), (0x09, 1)), id="2025_byte_periods_then_more"),
    pytest.param("2025", "04 03 05" + b"a.b".hex() + " 06 0050", ((0x04, 3), (0x05, "a.b"), (0x06, 80)),
                 id="2025_domain_and_port"),
]


@pytest.mark.parametrize("protocol, items_hex, pairs", PARAMETERS)
@pytest.mark.parametrize("command, response", [(0x81, 0xFE), (0x80, 0x01)], ids=["set", "query_answer"])
def test_parameter_list_reads_each_id_with_its_edition_type(protocol, items_hex, pairs, command, response):
    raw = frame(protocol, command, response, h(T0_HEX + f"{len(pairs):02x}" + items_hex))
    both_ways(raw, Frame(Edition(protocol), command, response, VIN, Encryption.NONE, ParamList(T0, pairs)))


def test_parameter_set_with_all_sixteen_ids_round_trips():
    items = ("01 03e8 02 000a 03 03e8 04 03 05 616263 06 2328 07 4857312e30 08 4657322e31 09 0a 0a 003c"
             " 0b 003c 0c 01 0d 01 0e 64 0f 2329 10 01")
    raw = frame("2016", 0x81, 0xFE, h(T0_HEX + "10" + items))
    body = decode_frame(raw).body
    assert dict(body.params) == {1: 1000, 2: 10, 3: 1000, 4: 3, 5: "abc", 6: 9000, 7: "HW1.0", 8: "FW2.1",
                                 9: 10, 10: 60, 11: 60, 12: 1, 13: 1, 14: "d", 15: 9001, 16: 1}
    assert body.as_dict()["platform_port"] == 9000
    assert encode_frame(decode_frame(raw)) == raw


def test_2016_parameter_json_names_the_values():
    raw = frame("2016", 0x81, 0xFE, h(T0_HEX + "02 02 0258 09 f0"))
    assert frame_to_json(decode_frame(raw))["body"] == {
        "collected_at": "2025-10-27T20:02:02+08:00",
        "params": [{"id": 2, "name": "report_interval_s", "value": 600},
                   {"id": 9, "name": "heartbeat_interval_s", "value": 240}]}


@pytest.mark.parametrize("unit_hex", [
    pytest.param(T0_HEX + "01 05 616263", id="domain_before_its_length"),
    pytest.param(T0_HEX + "02 01 ea60", id="count_larger_than_the_list"),
    pytest.param(T0_HEX + "01 01 ea60 00", id="bytes_after_the_last_parameter"),
    pytest.param(T0_HEX + "01 01 ea", id="word_cut_short"),
    pytest.param(T0_HEX + "01 07 4857", id="version_cut_short"),
])
def test_malformed_parameter_set_is_refused_as_bad_body(unit_hex):
    with pytest.raises(BadBody):
        decode_frame(frame("2016", 0x81, 0xFE, h(unit_hex)))


def test_parameter_values_out_of_their_type_are_refused_on_build():
    for pairs in (((0x02, 600),), ((0x07, "TOO-LONG"),)):
        with pytest.raises(EncodeError):
            encode_frame(Frame(V25, Command.SET_PARAMS, Response.COMMAND, VIN, Encryption.NONE,
                               ParamList(T0, pairs)))


# --- terminal control ---------------------------------------------------------------------------

# TB.16 fields in table order: APN; user; password; address (IPv4 192.168.0.1 in 6 bytes); port 8080;
# maker; hardware; firmware; URL; time limit 60 min. The binary fields may contain 0x3b (';').
UPGRADE = (b"CMNET;user;pass;".hex() + "0000c0a80001" + "3b" + "1f90" + "3b"
           + b"ABCD;HW1.0;FW2.2;ftp://h/f;".hex() + "003c")


@pytest.mark.parametrize("protocol, command_id, params_hex, name", [
    pytest.param("2016", 1, UPGRADE, "upgrade", id="upgrade_with_binary_fields"),
    pytest.param("2016", 2, "", "power_off", id="power_off"),
    pytest.param("2016", 3, "", "reset", id="reset"),
    pytest.param("2016", 4, "", "factory_reset", id="factory_reset"),
    pytest.param("2016", 5, "", "disconnect", id="disconnect"),
    pytest.param("2016", 6, "03", "alarm", id="alarm_level_3"),
    pytest.param("2025", 6, "04" + b"thermal".hex(), "alarm", id="2025_alarm_level_4_with_message"),
    pytest.param("2016", 7, "", "sampling_monitoring", id="open_sampling_link"),
    pytest.param("2025", 0x80, "aa", "0x80", id="user_defined"),
])
def test_terminal_control_reads_the_command_and_its_parameters(protocol, command_id, params_hex, name):
    raw = frame(protocol, 0x82, 0xFE, h(T0_HEX + f"{command_id:02x}" + params_hex))
    both_ways(raw, Frame(Edition(protocol), Command.TERMINAL_CONTROL, Response.COMMAND, VIN, Encryption.NONE,
                         TerminalControl(T0, command_id, h(params_hex))))
    body = frame_to_json(decode_frame(raw))["body"]
    assert (body["command_id"], body["command"], body["params_hex"]) == (command_id, name, params_hex.replace(" ", ""))


def test_terminal_control_without_a_command_id_is_refused():
    with pytest.raises(BadBody):
        decode_frame(frame("2016", 0x82, 0xFE, h(T0_HEX)))


# --- 2025 activation, activation answer, key sync ------------------------------------------------

def test_activation_reads_chip_key_vin_and_signature_without_a_0xff_lead():
    unit = h(T0_HEX + b"ABCDEFGH12345678".hex() + "0003 010001" + VIN_HEX + "01 0002 aabb 0002 ccdd")
    raw = frame("2025", 0x09, 0xFE, unit)
    both_ways(raw, Frame(V25, Command.ACTIVATION, Response.COMMAND, VIN, Encryption.NONE,
                         Activation(T0, "ABCDEFGH12345678", h("010001"), VIN, 1, h("aabb"), h("ccdd"))))


@pytest.mark.parametrize("unit_hex, body, json_body", [
    pytest.param("01 00", ActivationAnswer(1, 0), {"result": "activated", "detail": "ok"}, id="activated"),
    pytest.param("02 01", ActivationAnswer(2, 1), {"result": "failed", "detail": "chip_already_activated"},
                 id="failed_chip_already_activated"),
    pytest.param("02 02", ActivationAnswer(2, 2), {"result": "failed", "detail": "vin_duplicate"},
                 id="failed_vin_duplicate"),
])
def test_activation_answer_is_command_0x0a_with_result_and_detail(unit_hex, body, json_body):
    raw = frame("2025", 0x0A, 0xFE, h(unit_hex))
    both_ways(raw, Frame(V25, Command.ACTIVATION_ANSWER, Response.COMMAND, VIN, Encryption.NONE, body))
    assert frame_to_json(decode_frame(raw))["body"] == json_body


def test_activation_answer_sample_is_byte_exact():
    # 0a ^ fe ^ (VIN HGLH3ACF1PA714408) ^ 01 ^ 00 ^ 02 ^ 02 ^ 01 -> a6, as in the sample
    built = Frame(V25, Command.ACTIVATION_ANSWER, Response.COMMAND, "HGLH3ACF1PA714408", Encryption.NONE,
                  ActivationAnswer(2, 1))
    assert encode_frame(built) == vector("activation2025 ack")


def test_key_sync_reads_key_type_key_and_validity_without_a_leading_time():
    until = datetime(2026, 10, 27, 20, 2, 2, tzinfo=CST)
    key = bytes(range(16))
    raw = frame("2025", 0x0B, 0xFE, h("03 0010" + key.hex() + T0_HEX + "1a0a1b140202"))
    both_ways(raw, Frame(V25, Command.KEY_SYNC, Response.COMMAND, VIN, Encryption.NONE, KeySync(3, key, T0, until)))
    assert frame_to_json(decode_frame(raw))["body"] == {
        "encryption": 3, "key": key.hex(), "valid_from": "2025-10-27T20:02:02+08:00",
        "valid_until": "2026-10-27T20:02:02+08:00"}


@pytest.mark.parametrize("command", [0x09, 0x0A, 0x0B])
def test_2025_only_commands_are_unknown_in_a_2016_frame(command):
    with pytest.raises(UnknownCommand) as info:
        decode_frame(frame("2016", command, 0xFE, h("01 00")))
    assert info.value.reason == "unknown_command" and info.value.offset == 2
    with pytest.raises(EncodeError):
        encode_frame(Frame(V16, command, Response.COMMAND, VIN, Encryption.NONE, ActivationAnswer(1, 0)))


# --- header flags by edition ---------------------------------------------------------------------

@pytest.mark.parametrize("flag", [0x04, 0x05, 0x06, 0x07])
def test_2025_answer_flags_are_accepted_in_2025_and_refused_in_2016(flag):
    assert decode_frame(frame("2025", 0x02, flag, h(T0_HEX))).response == flag
    with pytest.raises(BadHeader) as info:
        decode_frame(frame("2016", 0x02, flag, h(T0_HEX)))
    assert info.value.reason == "bad_header"


@pytest.mark.parametrize("encryption", [0x04, 0x05])
def test_sm2_and_sm4_flags_are_refused_in_2016(encryption):
    with pytest.raises(BadHeader):
        decode_frame(frame("2016", 0x04, 0xFE, h(T0_HEX + "0001"), encryption=encryption))


@pytest.mark.parametrize("encryption, name", [(0xFE, "abnormal"), (0xFF, "invalid")])
def test_marked_encryption_flag_means_a_plain_data_unit(encryption, name):
    raw = frame("2016", 0x04, 0xFE, h(T0_HEX + "0001"), encryption=encryption)
    decoded = decode_frame(raw)
    assert decoded.body == Logout(T0, 1)
    assert frame_to_json(decoded)["encryption"] == name
    assert encode_frame(frame_from_json(frame_to_json(decoded))) == raw


def test_impossible_time_in_a_logout_is_refused_as_bad_time_at_the_data_unit():
    with pytest.raises(BadTime) as info:
        decode_frame(frame("2016", 0x04, 0xFE, h("190d1b140202 0001")))  # month 13
    assert info.value.reason == "bad_time" and info.value.offset == 24


# --- charging messages 0xC1-0xC5 (codec/charging.py) ---------------------------------------------

OPERATOR = "MA59NQR2X"
T1 = datetime(2025, 10, 27, 21, 0, 0, tzinfo=CST)

CHARGING = [
    pytest.param(0xC1, {
        "station_id": "ST0001", "station_name": "Station One", "region_code": "310000", "address": "1 Road",
        "longitude": 121.473701, "latitude": -31.230416, "station_type": 1, "station_status": 50,
        "service_hours": "24h",
        "equipment": [{"equipment_id": "EQ01", "equipment_type": 1, "rated_power_kw": 120.0,
                       "manufacturer": "ACME", "model": "X1", "production_date": "2024-01-01",
                       "connectors": [{"connector_id": "EQ01-1", "connector_type": 4, "voltage_upper_v": 750,
                                       "voltage_lower_v": 200, "current_a": 250, "power_kw": 120.0,
                                       "national_standard": 2}]}]}, id="static_station"),
    pytest.param(0xC2, {"connector_id": "EQ01-1", "status": 3, "park_status": 1, "lock_status": 0},
                 id="connector_status"),
    pytest.param(0xC3, {"connector_id": "EQ01-1", "session_id": "S20251027001", "voltage_v": 380.5,
                        "current_a": None, "power_kw": 10.0, "energy_kwh": 1.23, "soc_pct": 50, "elapsed_s": 60},
                 id="measurement_with_an_invalid_current"),
    pytest.param(0xC4, {"connector_id": "EQ01-1", "session_id": "S20251027001", "started_at": T0, "ended_at": T1,
                        "energy_kwh": 12.34, "meter_start_kwh": 1000.0, "meter_end_kwh": 1012.34,
                        "stop_reason": 1, "vin": VIN}, id="charging_record"),
    pytest.param(0xC5, {"target_id": "EQ01", "code": "E042", "level": 2, "state": 1, "started_at": T0,
                        "ended_at": None, "description": "over temperature"}, id="open_alarm"),
]


@pytest.mark.parametrize("protocol", ["2016", "2025"])
@pytest.mark.parametrize("kind, data", CHARGING)
def test_charging_message_round_trips_through_bytes_and_json(protocol, kind, data):
    built = Frame(Edition(protocol), kind, Response.COMMAND, OPERATOR, Encryption.NONE,
                  ChargingMessage(kind, T0, data))
    raw = encode_frame(built)
    decoded = decode_frame(raw)
    assert decoded.body == built.body
    assert decoded.body.subject_id == data.get("connector_id", data.get("station_id", data.get("target_id")))
    assert encode_frame(frame_from_json(json.loads(json.dumps(frame_to_json(decoded))))) == raw


@pytest.mark.parametrize("hex_frame, kind, when, data", [
    pytest.param("2323c2fe4d41303153494d303100000000000000000100171805140e0f020d4e4a4a4e30303031503031303103320a1c",
                 0xC2, datetime(2024, 5, 20, 14, 15, 2, tzinfo=CST),  # 18 05 14 0e 0f 02
                 {"connector_id": "NJJN0001P0101",  # 0d + 13 characters
                  "status": 3, "park_status": 50, "lock_status": 10},  # 03 32 0a
                 id="connector_status_charging"),
    pytest.param("2323c3fe4d41303153494d3031000000000000000001003f1805140e1e000d4e4a4a4e3030303150303130311b4d4130"
                 "3153494d30313230323430353230313431353030303030310f1905f3024d000004d22f000003848f",
                 0xC3, datetime(2024, 5, 20, 14, 30, 0, tzinfo=CST),
                 {"connector_id": "NJJN0001P0101", "session_id": "MA01SIM01202405201415000001",  # 1b = 27
                  "voltage_v": 386.5,       # 0x0f19 = 3865 x 0.1
                  "current_a": 152.3,       # 0x05f3 = 1523 x 0.1
                  "power_kw": 58.9,         # 0x024d = 589 x 0.1
                  "energy_kwh": 12.34,      # 0x000004d2 = 1234 x 0.01
                  "soc_pct": 47,            # 0x2f
                  "elapsed_s": 900},        # 0x00000384
                 id="measurement_while_charging"),
])
def test_charging_example_frames_of_docs_charging_wire_read_by_hand(hex_frame, kind, when, data):
    raw = h(hex_frame)
    decoded = decode_frame(raw)
    assert (decoded.command, decoded.vin) == (kind, "MA01SIM01")
    assert decoded.body == ChargingMessage(kind, when, data)
    assert encode_frame(decoded) == raw


def test_charging_identifier_breaking_the_rules_is_refused():
    raw = frame("2016", 0xC2, 0xFE, h(T0_HEX + "06" + b"EQ 1-1".hex() + "03 01 00"), vin=OPERATOR)
    with pytest.raises(BadBody):
        decode_frame(raw)


# --- regressions: the codec once departed from docs/protocol-tables.md here ---------------------

def test_charging_measurement_with_an_abnormal_soc_reencodes_byte_for_byte():
    unit = h(T0_HEX + "06" + b"EQ01-1".hex() + "02" + b"S1".hex() + "0edd ffff 0064 0000007b fe 0000003c")
    raw = frame("2016", 0xC3, 0xFE, unit, vin=OPERATOR)
    assert encode_frame(decode_frame(raw)) == raw


@pytest.mark.parametrize("command", [0x07, 0x08])
def test_heartbeat_or_time_sync_request_carrying_a_time_decodes(command):
    raw = frame("2016", command, 0xFE, h(T0_HEX))
    assert decode_frame(raw).collected_at == T0
    assert encode_frame(decode_frame(raw)) == raw


def test_heartbeat_with_a_data_unit_is_refused_at_the_data_unit_offset():
    with pytest.raises(BadBody) as info:
        decode_frame(frame("2016", 0x07, 0xFE, h("aabbcc")))
    assert info.value.offset == 24


def test_parameter_query_error_answer_with_only_a_time_decodes():
    raw = frame("2016", 0x80, 0x02, h(T0_HEX))
    assert decode_frame(raw).body == TimeOnly(T0)


def test_key_sync_with_an_impossible_end_time_points_at_that_time():
    unit = h("03 0002 abcd" + T0_HEX + "1a0d1b140202")  # valid-until month 13
    with pytest.raises(BadTime) as info:
        decode_frame(frame("2025", 0x0B, 0xFE, unit))
    assert info.value.offset == 24 + 1 + 2 + 2 + 6


@pytest.mark.parametrize("year", [100, 255])
def test_time_with_a_year_byte_above_99_is_refused_as_bad_time(year):
    with pytest.raises(BadTime):
        decode_frame(frame("2016", 0x04, 0xFE, bytes((year, 1, 1, 0, 0, 0)) + h("0001")))
