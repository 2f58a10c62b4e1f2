"""Data-unit encryption (2016/2025 clause 6.2 table 2, encryption flag).

The standard names the algorithms but leaves modes and key exchange to the parties;
this module follows the common reading and lets the caller choose where it varies:

* RSA (0x02): PKCS#1 v1.5, the data unit split into blocks of (key bytes - 11) on
  encryption and key-size blocks on decryption. The receiver decrypts with its private key.
* AES-128 (0x03) and SM4 (0x05, 2025): PKCS#7 padding, CBC when an IV is given, else ECB.
* SM2 (0x04, 2025): C1C3C2 ciphertext via the ``gmssl`` package (``cryptography`` has no SM2).

Keys come from the caller (:class:`Keys`); nothing here reads files or config.
A missing key, a wrong key or bad padding raises :class:`Undecryptable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import EncodeError, Undecryptable


@dataclass(frozen=True)
class Keys:
    aes128: bytes | None = None
    aes_iv: bytes | None = None
    sm4: bytes | None = None
    sm4_iv: bytes | None = None
    #: ``cryptography`` RSA key objects
    rsa_private: Any = None
    rsa_public: Any = None
    #: SM2 keys as hex strings (gmssl's convention)
    sm2_private: str | None = None
    sm2_public: str | None = None


def _block_cipher(algorithm, key: bytes | None, iv: bytes | None, name: str):
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    if not key:
        raise Undecryptable(f"no {name} key configured")
    if len(key) != 16:
        raise Undecryptable(f"{name} key must be 16 bytes, got {len(key)}")
    mode = modes.CBC(iv) if iv else modes.ECB()  # noqa: S305 - ECB only when the peer uses it
    return Cipher(algorithm(key), mode)


def _pad(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding

    p = padding.PKCS7(128).padder()
    return p.update(data) + p.finalize()


def _unpad(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding

    u = padding.PKCS7(128).unpadder()
    return u.update(data) + u.finalize()


def _sym(flag: int, keys: Keys):
    from cryptography.hazmat.primitives.ciphers import algorithms

    if flag == 0x03:
        return _block_cipher(algorithms.AES, keys.aes128, keys.aes_iv, "AES-128")
    return _block_cipher(algorithms.SM4, keys.sm4, keys.sm4_iv, "SM4")


def decrypt(flag: int, data: bytes, keys: Keys | None) -> bytes:
    """Decrypt a data unit; raise :class:`Undecryptable` with the reason."""
    keys = keys or Keys()
    try:
        if flag in (0x03, 0x05):
            if len(data) % 16:
                raise Undecryptable(f"ciphertext of {len(data)} bytes is not a multiple of 16")
            dec = _sym(flag, keys).decryptor()
            return _unpad(dec.update(bytes(data)) + dec.finalize())
        if flag == 0x02:
            from cryptography.hazmat.primitives.asymmetric import padding

            if keys.rsa_private is None:
                raise Undecryptable("no RSA private key configured")
            size = keys.rsa_private.key_size // 8
            if len(data) % size:
                raise Undecryptable(f"ciphertext of {len(data)} bytes is not a multiple of the key size {size}")
            return b"".join(keys.rsa_private.decrypt(bytes(data[i:i + size]), padding.PKCS1v15())
                            for i in range(0, len(data), size))
        if flag == 0x04:
            if not keys.sm2_private:
                raise Undecryptable("no SM2 private key configured")
            from gmssl import sm2

            out = sm2.CryptSM2(private_key=keys.sm2_private, public_key=keys.sm2_public or "", mode=1).decrypt(
                bytes(data))
            if not out:
                raise Undecryptable("SM2 decryption failed")
            return bytes(out)
    except Undecryptable:
        raise
    except Exception as exc:  # noqa: BLE001 - any library failure means "cannot decrypt"
        raise Undecryptable(f"decryption failed: {type(exc).__name__}: {exc}") from None
    raise Undecryptable(f"encryption flag 0x{flag:02X} has no algorithm")


def encrypt(flag: int, data: bytes, keys: Keys | None) -> bytes:
    keys = keys or Keys()
    try:
        if flag in (0x03, 0x05):
            enc = _sym(flag, keys).encryptor()
            return enc.update(_pad(bytes(data))) + enc.finalize()
        if flag == 0x02:
            from cryptography.hazmat.primitives.asymmetric import padding

            if keys.rsa_public is None:
                raise EncodeError("no RSA public key configured")
            chunk = keys.rsa_public.key_size // 8 - 11
            return b"".join(keys.rsa_public.encrypt(bytes(data[i:i + chunk]), padding.PKCS1v15())
                            for i in range(0, len(data), chunk))
        if flag == 0x04:
            if not keys.sm2_public:
                raise EncodeError("no SM2 public key configured")
            from gmssl import sm2

            return bytes(sm2.CryptSM2(private_key=keys.sm2_private or "", public_key=keys.sm2_public,
                                      mode=1).encrypt(bytes(data)))
    except Undecryptable as exc:
        raise EncodeError(str(exc)) from None
    raise EncodeError(f"encryption flag 0x{flag:02X} has no algorithm")


def signed_bytes(data_unit: bytes, signature_length: int, trailing: int = 0) -> bytes:
    """The bytes a 2025 realtime signature covers: the data unit from the collection time up
    to, not including, the 0xFF that starts the signature block (docs/protocol-tables.md 9)."""
    return bytes(data_unit[:len(data_unit) - trailing - signature_length])


def verify_signature(algorithm: int, r: bytes, s: bytes, message: bytes, public_key) -> bool:
    """Check a 2025 signature block (table 8: 1 SM2, 2 RSA, 3 ECC).

    RSA: ``r`` is the PKCS#1 v1.5 signature over SHA-256 (``s`` empty), as the public
    samples verify. ECC: ECDSA with SHA-256, r and s as big-endian integers. SM2: r and s
    with SM3 and the default user id, via ``gmssl`` (``public_key`` as hex). Returns False on
    any mismatch; never raises for a bad signature."""
    try:
        if algorithm == 2:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            public_key.verify(bytes(r), message, padding.PKCS1v15(), hashes.SHA256())
            return True
        if algorithm == 3:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

            der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
            return True
        if algorithm == 1:
            from gmssl import sm2

            signer = sm2.CryptSM2(private_key="", public_key=public_key)
            return bool(signer.verify_with_sm3(r.hex().rjust(64, "0") + s.hex().rjust(64, "0"), bytes(message)))
    except Exception:  # noqa: BLE001 - a bad signature or key is "not verified"
        return False
    return False
