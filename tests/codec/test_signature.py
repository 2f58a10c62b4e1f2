"""2025 signature blocks: what they cover and how each algorithm is checked."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from codec import CST, Edition
from codec.crypto import signed_bytes, verify_signature
from codec.realtime import RealtimeData, Signature, decode_realtime, encode_realtime

DATA = RealtimeData(datetime(2026, 1, 1, 8, 0, 0, tzinfo=CST), {"engine": {"crankshaft_rpm": 900}})
UNSIGNED = encode_realtime(Edition.V2025, DATA)


def _signed_unit(sig: Signature) -> bytes:
    return encode_realtime(Edition.V2025, replace(DATA, signature=sig))


def test_the_signature_covers_the_data_unit_up_to_the_0xff_marker():
    sig = Signature(2, b"\x01" * 256, b"")
    unit = _signed_unit(sig)
    # time (6) + engine block (1 + 2) = 9 bytes signed; then FF, algorithm, r length, r, s length
    assert len(UNSIGNED) == 9
    assert unit[9] == 0xFF
    assert signed_bytes(unit, len(sig.encode())) == UNSIGNED
    assert decode_realtime(Edition.V2025, unit).signature == sig


def test_rsa_signature_verifies_and_a_changed_byte_does_not():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = key.sign(UNSIGNED, padding.PKCS1v15(), hashes.SHA256())
    assert verify_signature(2, r, b"", UNSIGNED, key.public_key())
    assert not verify_signature(2, r, b"", UNSIGNED[:-1] + b"\x00", key.public_key())


def test_ecc_signature_verifies_with_r_and_s_as_integers():
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(key.sign(UNSIGNED, ec.ECDSA(hashes.SHA256())))
    assert verify_signature(3, r.to_bytes(32, "big"), s.to_bytes(32, "big"), UNSIGNED, key.public_key())
    assert not verify_signature(3, s.to_bytes(32, "big"), r.to_bytes(32, "big"), UNSIGNED, key.public_key())


def test_sm2_signature_verifies_with_sm3_and_the_default_user_id():
    from gmssl import func, sm2

    private = "00B9AB0B828FF68872F21A837FC303668428DEA11DCD1B24429D0C99E24EED83D5"
    public = ("B9C9A6E04E9C91F7BA880429273747D7EF5DDEB0BB2FF6317EB00BEF331A83081A6994B8993F3F5D6EADDDB81872266C"
              "87C018FB4162F5AF347B483E24620207")
    signer = sm2.CryptSM2(public_key=public, private_key=private)
    sig = signer.sign_with_sm3(UNSIGNED, func.random_hex(signer.para_len))
    r, s = bytes.fromhex(sig[:64]), bytes.fromhex(sig[64:])
    assert verify_signature(1, r, s, UNSIGNED, public)
    assert not verify_signature(1, r, s, UNSIGNED + b"\x00", public)


@pytest.mark.parametrize("algorithm", [0, 4, 255])
def test_an_unknown_algorithm_never_verifies(algorithm):
    assert not verify_signature(algorithm, b"\x00", b"\x00", UNSIGNED, None)
