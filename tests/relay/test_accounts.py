"""Platform accounts (relay/accounts.py): scrypt hashes, source allow-lists, lockout."""

from __future__ import annotations

import pytest

from relay.accounts import LoginGuard, address_allowed, find, hash_password, verify_password
from relay.config import Account, Lockout

#: made once by ``relay hash-password`` for "ent01-demo" with the salt 00112233...eeff
#: (tests/support/nodes.py keeps it for the demo nodes)
ENT01_SALT = bytes.fromhex("00112233445566778899aabbccddeeff")
ENT01_HASH = ("scrypt$16384$8$1$00112233445566778899aabbccddeeff$"
              "d399d4c1d347d4d782420ed697cdc0331189063da5b6ea2654aad604df7e9aab")


@pytest.fixture(scope="module")
def stored():
    return hash_password("correct horse")


def test_a_hash_has_the_documented_layout_and_verifies_its_password(stored):
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert verify_password("correct horse", stored)


def test_the_same_password_and_salt_give_the_known_hash():
    assert hash_password("ent01-demo", ENT01_SALT) == ENT01_HASH
    assert verify_password("ent01-demo", ENT01_HASH)


def test_two_hashes_of_one_password_differ_by_their_salt(stored):
    assert hash_password("correct horse") != stored


@pytest.mark.parametrize("password", [
    pytest.param("correct horsE", id="one_letter_changed"),
    pytest.param("correct horse ", id="trailing_space"),
    pytest.param("", id="empty"),
    pytest.param("正确的马", id="non_ascii"),
])
def test_a_wrong_password_does_not_verify(stored, password):
    assert not verify_password(password, stored)


def _tamper(stored: str, field: int, value: str) -> str:
    parts = stored.split("$")
    parts[field] = value
    return "$".join(parts)


@pytest.mark.parametrize("change", [
    pytest.param(lambda h: h[:-1] + ("0" if h[-1] != "0" else "1"), id="last_digest_digit"),
    pytest.param(lambda h: _tamper(h, 4, "ff" + h.split("$")[4][2:]), id="salt_changed"),
    pytest.param(lambda h: _tamper(h, 1, "8192"), id="cost_lowered"),
    pytest.param(lambda h: _tamper(h, 1, "1000"), id="cost_not_a_power_of_two"),
    pytest.param(lambda h: _tamper(h, 2, "0"), id="block_size_zero"),
    pytest.param(lambda h: _tamper(h, 0, "bcrypt"), id="other_scheme"),
    pytest.param(lambda h: _tamper(h, 4, "zz"), id="salt_not_hex"),
    pytest.param(lambda h: h + "$00", id="extra_field"),
    pytest.param(lambda h: h.rsplit("$", 1)[0], id="digest_field_missing"),
    pytest.param(lambda h: "", id="empty"),
    pytest.param(lambda h: "correct horse", id="plain_text"),
])
def test_a_tampered_hash_verifies_nothing(stored, change):
    assert not verify_password("correct horse", change(stored))


def test_a_hash_whose_digest_was_cut_off_lets_no_password_in(stored):
    cut = stored.rsplit("$", 1)[0] + "$"  # e.g. a line wrap lost the digest when pasting into the YAML
    assert not verify_password("anything at all", cut)


# --- source addresses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("address, allowed, expected", [
    pytest.param("203.0.113.9", (), True, id="empty_list_allows_any"),
    pytest.param("10.1.0.0", ("10.1.0.0/16",), True, id="network_address"),
    pytest.param("10.1.255.255", ("10.1.0.0/16",), True, id="broadcast_address"),
    pytest.param("10.2.0.0", ("10.1.0.0/16",), False, id="next_network"),
    pytest.param("10.0.255.255", ("10.1.0.0/16",), False, id="previous_network"),
    pytest.param("192.168.7.7", ("192.168.7.7",), True, id="single_address"),
    pytest.param("192.168.7.8", ("192.168.7.7",), False, id="neighbour_of_a_single_address"),
    pytest.param("10.1.2.3", ("10.1.2.3/16",), True, id="host_bits_in_the_network_are_ignored"),
    pytest.param("10.9.9.9", ("not-a-network", "10.9.0.0/16"), True, id="a_bad_entry_is_skipped"),
    pytest.param("2001:db8::5", ("2001:db8::/32",), True, id="ipv6_network"),
    pytest.param("2001:db9::5", ("2001:db8::/32",), False, id="ipv6_outside"),
    pytest.param("10.1.2.3", ("2001:db8::/32",), False, id="ipv4_against_ipv6_network"),
    pytest.param("None", ("10.1.0.0/16",), False, id="no_address"),
    pytest.param("/run/relay.sock", ("10.1.0.0/16",), False, id="unix_socket_path"),
])
def test_address_allow_lists_take_addresses_and_cidr_networks(address, allowed, expected):
    assert address_allowed(address, allowed) is expected


def test_an_ipv4_peer_seen_through_a_dual_stack_listener_matches_its_ipv4_network():
    assert address_allowed("::ffff:10.1.2.3", ("10.1.0.0/16",))


# --- lockout ---------------------------------------------------------------------------------------------

def test_the_nth_failure_within_the_window_locks_for_duration():
    guard = LoginGuard(Lockout(failures=3, window=300, duration=900))
    assert [guard.failed("ent01", t) for t in (0, 100, 299)] == [False, False, True]
    assert guard.locked("ent01", 299) and guard.locked("ent01", 1198)
    assert not guard.locked("ent01", 1199)  # 299 + 900
    assert not guard.locked("ent02", 299)  # per account


def test_failures_older_than_the_window_do_not_count():
    guard = LoginGuard(Lockout(failures=3, window=300, duration=900))
    # at 300 the failure at 0 is 300 s old and no longer counts; at 350 the ones at 100, 300, 350 do
    assert [guard.failed("ent01", t) for t in (0, 100, 300, 350)] == [False, False, False, True]


def test_a_success_clears_the_failures():
    guard = LoginGuard(Lockout(failures=3, window=300, duration=900))
    guard.failed("ent01", 0)
    guard.failed("ent01", 1)
    guard.succeeded("ent01")
    assert [guard.failed("ent01", t) for t in (2, 3)] == [False, False]


def test_after_a_lockout_the_count_starts_again():
    guard = LoginGuard(Lockout(failures=2, window=300, duration=60))
    assert [guard.failed("ent01", t) for t in (0, 1)] == [False, True]
    assert [guard.failed("ent01", t) for t in (100, 101)] == [False, True]


def test_find_returns_the_account_by_exact_username():
    accounts = (Account("ent01", ENT01_HASH), Account("ent02", ENT01_HASH))
    assert find(accounts, "ent02") is accounts[1]
    assert find(accounts, "ENT01") is None
    assert find((), "ent01") is None
