"""Platform accounts: hashed passwords, source allow-lists, lockout after failures.

Passwords are stored only as scrypt hashes (``cryptography``):
``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``. ``relay hash-password`` makes one.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .config import Account, Lockout

_N, _R, _P = 2 ** 14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = Scrypt(salt=salt, length=32, n=_N, r=_R, p=_P).derive(password.encode("utf-8"))
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def valid_hash(stored: str) -> bool:
    """A complete scrypt hash: scheme, cost parameters, a salt and a 32-byte digest."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    _, n, r, p, salt, digest = parts
    try:
        return (int(n) >= 2 ** 10 and int(r) >= 1 and int(p) >= 1 and len(bytes.fromhex(salt)) >= 8
                and len(bytes.fromhex(digest)) >= 32)
    except ValueError:
        return False


def verify_password(password: str, stored: str) -> bool:
    if not valid_hash(stored):
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        derived = Scrypt(salt=bytes.fromhex(salt), length=len(digest) // 2, n=int(n), r=int(r),
                         p=int(p)).derive(password.encode("utf-8"))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived.hex(), digest)


def address_allowed(address: str, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:  # an IPv4 peer on a dual-stack listener
        ip = ip.ipv4_mapped
    for entry in allowed:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


@dataclass
class _Failures:
    times: list[float]
    locked_until: float = 0.0


class LoginGuard:
    """Counts failed logins per account; locks an account after ``failures`` within ``window``."""

    def __init__(self, policy: Lockout) -> None:
        self.policy = policy
        self._state: dict[str, _Failures] = {}

    def locked(self, username: str, now: float) -> bool:
        st = self._state.get(username)
        return st is not None and st.locked_until > now

    def failed(self, username: str, now: float) -> bool:
        """Record a failure; True when this failure locks the account."""
        st = self._state.setdefault(username, _Failures([]))
        st.times = [t for t in st.times if now - t < self.policy.window] + [now]
        if len(st.times) >= self.policy.failures:
            st.locked_until = now + self.policy.duration
            st.times = []
            return True
        return False

    def succeeded(self, username: str) -> None:
        self._state.pop(username, None)


def find(accounts: tuple[Account, ...], username: str) -> Account | None:
    for acc in accounts:
        if acc.username == username:
            return acc
    return None
