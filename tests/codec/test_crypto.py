"""Encrypted data units: AES-128 (CBC and ECB), SM4, RSA and SM2 round trips, and frames
whose data unit cannot be decrypted (kept as ``codec.Undecoded``, never an exception).

Each round trip is also checked against an independent decryption of the data unit with
``cryptography``/``gmssl`` directly, so the mode and padding are the ones the module says.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl import sm2

from codec import (Command, Edition, EncodeError, Encryption, Frame, FrameReader, Keys, Response, Undecoded,
                   decode_frame, encode_frame, frame_from_json, frame_to_json)
from codec.bodies import Logout
from tests.support.codec_frames import T0, VIN, data_unit, vector, xor

AES_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AES_IV = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")  # the GB/T 32907 example key
SM4_IV = bytes(range(16))

#: a fixed SM2 test key pair made for these tests (the public key is derived in ``sm2_keys``)
SM2_PRIVATE = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def sm2_keys() -> Keys:
    public = sm2.CryptSM2(private_key=SM2_PRIVATE, public_key="")._kg(int(SM2_PRIVATE, 16),
                                                                         sm2.default_ecc_table["g"])
    assert len(public) == 128 and not public.startswith("04")  # gmssl strips a leading "04"
    return Keys(sm2_private=SM2_PRIVATE, sm2_public=public)


def plain_frame(name: str, encryption: int) -> Frame:
    """The decoded sample ``name`` with its encryption flag changed."""
    f = decode_frame(vector(name))
    return Frame(f.edition, f.command, f.response, f.vin, encryption, f.body)


def plain_unit(name: str) -> bytes:
    return data_unit(vector(name))


def block_decrypt(algorithm, key: bytes, iv: bytes | None, data: bytes) -> bytes:
    dec = Cipher(algorithm(key), modes.CBC(iv) if iv else modes.ECB()).decryptor()
    unpadder = sym_padding.PKCS7(128).unpadder()
    return unpadder.update(dec.update(data) + dec.finalize()) + unpadder.finalize()


def assert_frame_is_well_formed(raw: bytes) -> None:
    assert int.from_bytes(raw[22:24], "big") == len(raw) - 25
    assert xor(raw[2:-1]) == raw[-1]  # BCC over the data unit as sent (encrypted)


# --- symmetric ciphers --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["data_2016", "login2016 with serveral HVBSNs", "plt_login2016"])
@pytest.mark.parametrize("iv", [AES_IV, None], ids=["cbc", "ecb"])
def test_aes128_data_unit_round_trips_and_is_pkcs7_padded(name, iv):
    keys = Keys(aes128=AES_KEY, aes_iv=iv)
    raw = encode_frame(plain_frame(name, Encryption.AES128), keys)
    assert raw[21] == 0x03
    assert_frame_is_well_formed(raw)
    unit = data_unit(raw)
    assert len(unit) % 16 == 0 and unit != plain_unit(name)
    assert block_decrypt(algorithms.AES, AES_KEY, iv, unit) == plain_unit(name)
    decoded = decode_frame(raw, keys)
    assert decoded.body == decode_frame(vector(name)).body
    assert encode_frame(decoded, keys) == raw  # a fixed IV (or ECB) makes it deterministic


@pytest.mark.parametrize("iv", [SM4_IV, None], ids=["cbc", "ecb"])
def test_sm4_data_unit_round_trips_in_a_2025_frame(iv):
    keys = Keys(sm4=SM4_KEY, sm4_iv=iv)
    raw = encode_frame(plain_frame("data_2025", Encryption.SM4), keys)
    assert raw[:2] == b"$$" and raw[21] == 0x05
    assert_frame_is_well_formed(raw)
    assert block_decrypt(algorithms.SM4, SM4_KEY, iv, data_unit(raw)) == plain_unit("data_2025")
    decoded = decode_frame(raw, keys)
    assert decoded.body == decode_frame(vector("data_2025")).body
    assert encode_frame(decoded, keys) == raw


def test_reader_with_keys_yields_decrypted_frames():
    keys = Keys(aes128=AES_KEY, aes_iv=AES_IV)
    raw = encode_frame(plain_frame("data_2016", Encryption.AES128), keys)
    [f] = FrameReader(keys=keys).feed(raw)
    assert isinstance(f, Frame) and f.body == decode_frame(vector("data_2016")).body and f.raw == raw


# --- asymmetric ciphers -------------------------------------------------------------------------

def test_rsa_data_unit_round_trips_in_key_size_blocks(rsa_key):
    keys = Keys(rsa_private=rsa_key, rsa_public=rsa_key.public_key())
    raw = encode_frame(plain_frame("data_2016", Encryption.RSA), keys)
    assert_frame_is_well_formed(raw)
    unit = data_unit(raw)
    # 569 plain bytes in chunks of 256 - 11 = 245 -> 3 blocks of 256
    assert len(unit) == 3 * 256
    assert b"".join(rsa_key.decrypt(unit[i:i + 256], rsa_padding.PKCS1v15())
                    for i in range(0, len(unit), 256)) == plain_unit("data_2016")
    decoded = decode_frame(raw, keys)
    assert decoded.encryption == Encryption.RSA
    assert decoded.body == decode_frame(vector("data_2016")).body
    again = encode_frame(decoded, keys)  # random padding: other bytes, same content
    assert decode_frame(again, keys).body == decoded.body


def test_sm2_data_unit_round_trips_in_a_2025_frame(sm2_keys):
    raw = encode_frame(plain_frame("data_2025", Encryption.SM2), sm2_keys)
    assert raw[21] == 0x04
    assert_frame_is_well_formed(raw)
    unit = data_unit(raw)
    assert len(unit) == 64 + 32 + len(plain_unit("data_2025"))  # C1 (x, y) + C3 + C2
    assert sm2.CryptSM2(private_key=SM2_PRIVATE, public_key=sm2_keys.sm2_public, mode=1).decrypt(unit) \
        == plain_unit("data_2025")
    decoded = decode_frame(raw, sm2_keys)
    assert decoded.body == decode_frame(vector("data_2025")).body
    assert decode_frame(encode_frame(decoded, sm2_keys), sm2_keys).body == decoded.body


# --- no key, wrong key --------------------------------------------------------------------------

def _aes_logout() -> tuple[bytes, Keys]:
    keys = Keys(aes128=b"0123456789abcdef", aes_iv=bytes(16))
    raw = encode_frame(Frame(Edition.V2016, Command.VEHICLE_LOGOUT, Response.COMMAND, VIN, Encryption.AES128,
                             Logout(T0, 5)), keys)
    return raw, keys


@pytest.mark.parametrize("encryption, protocol", [(Encryption.RSA, "2016"), (Encryption.AES128, "2016"),
                                                  (Encryption.SM2, "2025"), (Encryption.SM4, "2025")])
def test_encrypted_frame_without_a_key_arrives_undecoded_with_its_bytes(encryption, protocol):
    sample = "data_2016" if protocol == "2016" else "data_2025"
    unit = bytes(range(64))  # ciphertext-like: any bytes will do without a key
    f = decode_frame(vector(sample))
    raw = encode_frame(Frame(f.edition, f.command, f.response, f.vin, encryption, Undecoded(unit, "")))
    decoded = decode_frame(raw)
    assert isinstance(decoded.body, Undecoded)
    assert decoded.body.data == unit and "key" in decoded.body.reason
    assert decoded.collected_at is None
    obj = frame_to_json(decoded)
    assert obj["body"] == {"hex": unit.hex(), "undecoded": decoded.body.reason}
    assert encode_frame(frame_from_json(json.loads(json.dumps(obj)))) == raw  # passed on untouched


def test_aes_frame_with_the_wrong_key_arrives_undecoded():
    raw, _ = _aes_logout()
    wrong = Keys(aes128=bytes(16), aes_iv=bytes(16))
    decoded = decode_frame(raw, wrong)
    assert isinstance(decoded.body, Undecoded) and decoded.body.data == data_unit(raw)


def test_aes_frame_with_a_key_of_the_wrong_size_arrives_undecoded():
    raw, _ = _aes_logout()
    decoded = decode_frame(raw, Keys(aes128=b"short", aes_iv=bytes(16)))
    assert isinstance(decoded.body, Undecoded) and "16 bytes" in decoded.body.reason


def test_ciphertext_not_a_multiple_of_the_block_arrives_undecoded():
    f = Frame(Edition.V2016, Command.VEHICLE_LOGOUT, Response.COMMAND, VIN, Encryption.AES128,
              Undecoded(bytes(15), ""))
    decoded = decode_frame(encode_frame(f), Keys(aes128=AES_KEY, aes_iv=AES_IV))
    assert isinstance(decoded.body, Undecoded) and "multiple of 16" in decoded.body.reason


def test_encrypted_frame_with_an_empty_data_unit_needs_no_key():
    raw = encode_frame(Frame(Edition.V2016, Command.HEARTBEAT, Response.COMMAND, VIN, Encryption.AES128, None))
    assert raw[22:24] == b"\x00\x00"
    assert decode_frame(raw).body is None


@pytest.mark.parametrize("encryption, protocol", [(Encryption.AES128, Edition.V2016), (Encryption.RSA, Edition.V2016),
                                                  (Encryption.SM2, Edition.V2025), (Encryption.SM4, Edition.V2025)])
def test_encrypting_without_a_key_is_refused(encryption, protocol):
    with pytest.raises(EncodeError):
        encode_frame(Frame(protocol, Command.VEHICLE_LOGOUT, Response.COMMAND, VIN, encryption, Logout(T0, 1)))


# --- regressions: the codec once departed from its contract here -----------------------------------

def test_aes_frame_with_a_wrong_key_that_passes_the_padding_check_arrives_undecoded():
    raw, _ = _aes_logout()
    wrong = Keys(aes128=(264).to_bytes(16, "big"), aes_iv=bytes(16))  # found by search: padding passes
    assert isinstance(decode_frame(raw, wrong).body, Undecoded)


def test_rsa_frame_with_the_wrong_private_key_arrives_undecoded(rsa_key):
    raw = encode_frame(Frame(Edition.V2016, Command.VEHICLE_LOGOUT, Response.COMMAND, VIN, Encryption.RSA,
                             Logout(T0, 5)), Keys(rsa_public=rsa_key.public_key()))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert isinstance(decode_frame(raw, Keys(rsa_private=other)).body, Undecoded)


def test_sm2_frame_with_the_wrong_private_key_arrives_undecoded(sm2_keys):
    raw = encode_frame(Frame(Edition.V2025, Command.VEHICLE_LOGOUT, Response.COMMAND, VIN, Encryption.SM2,
                             Logout(T0, 5)), sm2_keys)
    wrong = Keys(sm2_private="1" * 64, sm2_public=sm2_keys.sm2_public)
    assert isinstance(decode_frame(raw, wrong).body, Undecoded)
