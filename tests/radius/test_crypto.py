"""Per-hop hiding: User-Password, Tunnel-Password, MS-MPPE keys, CHAP challenge.
Round trips across two secrets and authenticators, cross-checked with pyrad's PwCrypt/SaltCrypt.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from pyrad.packet import AuthPacket
from pyrad.packet import Packet as PyradPacket

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius import (
    CHAP_CHALLENGE,
    CHAP_PASSWORD,
    FILTER_ID,
    MS_CHAP_MPPE_KEYS,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    TUNNEL_PASSWORD,
    USER_NAME,
    USER_PASSWORD,
    VENDOR_MICROSOFT,
    VENDOR_SPECIFIC,
    Packet,
    decrypt_salted,
    decrypt_tunnel_password,
    decrypt_user_password,
    encrypt_salted,
    encrypt_tunnel_password,
    encrypt_user_password,
    ensure_chap_challenge,
    get_first,
    iter_vsas,
    join_vsa,
    new_salt,
    parse_packet,
    reencrypt_mppe_key,
    reencrypt_reply_attributes,
    reencrypt_request_attributes,
    reencrypt_salted,
    reencrypt_tunnel_password,
    reencrypt_user_password,
    sign_access_request,
    sign_reply,
    vsa,
)
from tests.support.wire import load_hex, wire_dictionary

DICTIONARY = wire_dictionary()

NAS_SECRET = b"testing123"
UPSTREAM_SECRET = b"a much longer upstream secret, past one MD5 block of 64 octets....."
NAS_AUTH = bytes.fromhex("00112233445566778899aabbccddeeff")
UPSTREAM_AUTH = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")


def pyrad_auth(secret: bytes, authenticator: bytes) -> AuthPacket:
    return AuthPacket(secret=secret, authenticator=authenticator, dict=DICTIONARY)


def pyrad_reply(secret: bytes, request_authenticator: bytes) -> PyradPacket:
    reply = PyradPacket(code=2, secret=secret, authenticator=request_authenticator)
    reply.request_authenticator = request_authenticator
    return reply


# --- User-Password (RFC 2865 §5.2) ----------------------------------------------------------


def test_rfc2865_example_password() -> None:
    request = parse_packet(load_hex("wire_rfc2865_access_request.hex"))
    hidden = get_first(request.attributes, USER_PASSWORD)
    assert hidden is not None
    assert decrypt_user_password(hidden, b"xyzzy5461", request.authenticator) == b"arctangent"
    assert encrypt_user_password(b"arctangent", b"xyzzy5461", request.authenticator) == hidden


@pytest.mark.parametrize("length", [1, 15, 16, 17, 31, 32, 33, 127, 128])
def test_user_password_reencrypts_across_hops(length: int) -> None:
    password = bytes((0x21 + i % 90) for i in range(length))
    at_nas = encrypt_user_password(password, NAS_SECRET, NAS_AUTH)
    upstream = reencrypt_user_password(at_nas, NAS_SECRET, NAS_AUTH, UPSTREAM_SECRET, UPSTREAM_AUTH)
    assert len(upstream) == len(at_nas) == max(16, -(-length // 16) * 16)
    assert upstream != at_nas
    assert decrypt_user_password(upstream, UPSTREAM_SECRET, UPSTREAM_AUTH) == password
    # Wrong key, wrong answer: the new hop's value is not readable with the old hop's secret.
    assert decrypt_user_password(upstream, NAS_SECRET, NAS_AUTH) != password


@pytest.mark.parametrize("length", [0, 1, 16, 17, 128])
def test_user_password_agrees_with_pyrad(length: int) -> None:
    password = os.urandom(length).replace(b"\0", b"x")
    password = bytes(b % 94 + 33 for b in password)  # printable: pyrad returns str
    theirs = pyrad_auth(NAS_SECRET, NAS_AUTH)
    ours = encrypt_user_password(password, NAS_SECRET, NAS_AUTH)
    assert theirs.PwCrypt(password) == ours
    assert theirs.PwDecrypt(ours) == password.decode()
    assert decrypt_user_password(theirs.PwCrypt(password), NAS_SECRET, NAS_AUTH) == password


@pytest.mark.parametrize("length", [0, 15, 17, 33])
def test_user_password_of_impossible_length_is_malformed(length: int) -> None:
    with pytest.raises(MalformedPacket, match="User-Password length"):
        decrypt_user_password(bytes(length), NAS_SECRET, NAS_AUTH)
    with pytest.raises(MalformedPacket):
        reencrypt_user_password(bytes(length), NAS_SECRET, NAS_AUTH, UPSTREAM_SECRET, UPSTREAM_AUTH)


def test_user_password_over_128_octets_is_refused_when_we_build_it() -> None:
    with pytest.raises(ValueError, match="128"):
        encrypt_user_password(b"x" * 129, NAS_SECRET, NAS_AUTH)


# --- salted values (RFC 2868 §3.5, RFC 2548 §2.4.2) -------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 14, 15, 16, 32, 200])
def test_salted_values_agree_with_pyrad(length: int) -> None:
    key = os.urandom(length)
    ours = encrypt_salted(key, UPSTREAM_SECRET, UPSTREAM_AUTH)
    assert ours[0] & 0x80 and (len(ours) - 2) % 16 == 0
    assert pyrad_reply(UPSTREAM_SECRET, UPSTREAM_AUTH).SaltDecrypt(ours) == key
    theirs = pyrad_reply(UPSTREAM_SECRET, UPSTREAM_AUTH).SaltCrypt(key)
    assert decrypt_salted(theirs, UPSTREAM_SECRET, UPSTREAM_AUTH) == key


def test_mppe_key_reencrypts_across_hops_keeping_its_salt() -> None:
    key = bytes(range(32))  # an MPPE key is 16 or 32 octets
    upstream = encrypt_salted(key, UPSTREAM_SECRET, UPSTREAM_AUTH, salt=b"\x81\x02")
    to_nas = reencrypt_mppe_key(upstream, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)
    assert to_nas[:2] == b"\x81\x02" and len(to_nas) == len(upstream) == 2 + 48
    assert decrypt_salted(to_nas, NAS_SECRET, NAS_AUTH) == key
    assert pyrad_reply(NAS_SECRET, NAS_AUTH).SaltDecrypt(to_nas) == key


def test_reencrypt_salted_can_take_a_new_salt() -> None:
    upstream = encrypt_salted(b"k" * 16, UPSTREAM_SECRET, UPSTREAM_AUTH, salt=b"\x81\x02")
    salt = new_salt({b"\x81\x02"})
    assert salt[0] & 0x80 and salt != b"\x81\x02"
    moved = reencrypt_salted(upstream, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH, salt)
    assert moved[:2] == salt
    assert decrypt_salted(moved, NAS_SECRET, NAS_AUTH) == b"k" * 16


@pytest.mark.parametrize("value", [b"", b"\x80\x01", b"\x80\x01" + bytes(15), b"\x80\x01" + bytes(17)])
def test_salted_value_of_impossible_length_is_malformed(value: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decrypt_salted(value, NAS_SECRET, NAS_AUTH)
    with pytest.raises(MalformedPacket):
        reencrypt_mppe_key(value, NAS_SECRET, NAS_AUTH, UPSTREAM_SECRET, UPSTREAM_AUTH)


def test_salted_value_whose_length_octet_lies_is_malformed() -> None:
    value = bytearray(encrypt_salted(b"", NAS_SECRET, NAS_AUTH, b"\x80\x01"))
    # The first block is plaintext XOR MD5(S + R + Salt): flipping ciphertext bits flips the
    # same plaintext bits, so the length octet now claims 200 octets in a 16-octet string.
    value[2] ^= 200
    with pytest.raises(MalformedPacket, match="length octet 200"):
        decrypt_salted(bytes(value), NAS_SECRET, NAS_AUTH)


def test_encrypt_salted_refuses_a_bad_salt() -> None:
    for salt in (b"\x00\x01", b"\x80", b"\x80\x01\x02"):
        with pytest.raises(ValueError, match="salt"):
            encrypt_salted(b"k", NAS_SECRET, NAS_AUTH, salt)


def test_tunnel_password_round_trip_and_pyrad() -> None:
    value = encrypt_tunnel_password(b"l2tp-secret", UPSTREAM_SECRET, UPSTREAM_AUTH, tag=3)
    assert value[0] == 3 and value[1] & 0x80
    assert decrypt_tunnel_password(value, UPSTREAM_SECRET, UPSTREAM_AUTH) == (3, b"l2tp-secret")
    moved = reencrypt_tunnel_password(value, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)
    assert moved[:3] == value[:3]  # tag and salt kept
    assert decrypt_tunnel_password(moved, NAS_SECRET, NAS_AUTH) == (3, b"l2tp-secret")
    assert pyrad_reply(NAS_SECRET, NAS_AUTH).SaltDecrypt(moved[1:]) == b"l2tp-secret"
    with pytest.raises(ValueError, match="tag"):
        encrypt_tunnel_password(b"x", NAS_SECRET, NAS_AUTH, tag=0x20)


def test_untagged_tunnel_password_from_old_pyrad_is_relayed_untagged() -> None:
    value = pyrad_reply(UPSTREAM_SECRET, UPSTREAM_AUTH).SaltCrypt(b"old-style")  # no tag octet
    moved = reencrypt_tunnel_password(value, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)
    assert len(moved) == len(value)
    assert decrypt_tunnel_password(moved, NAS_SECRET, NAS_AUTH) == (0, b"old-style")


@pytest.mark.parametrize("length", [0, 1, 2, 3, 17, 20])
def test_tunnel_password_of_impossible_length_is_malformed(length: int) -> None:
    with pytest.raises(MalformedPacket):
        reencrypt_tunnel_password(bytes(length), NAS_SECRET, NAS_AUTH, UPSTREAM_SECRET, UPSTREAM_AUTH)


# --- whole attribute lists --------------------------------------------------------------------


def _upstream_reply_attributes() -> tuple[tuple[int, bytes], ...]:
    send = encrypt_salted(b"S" * 16, UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x80\x01")
    recv = encrypt_salted(b"R" * 16, UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x80\x02")
    # Send and Recv keys in one Vendor-Specific, the way Windows NPS sends them.
    both = join_vsa(
        VENDOR_MICROSOFT,
        [
            bytes((MS_MPPE_SEND_KEY, len(send) + 2)) + send,
            bytes((MS_MPPE_RECV_KEY, len(recv) + 2)) + recv,
        ],
    )
    tunnel = encrypt_tunnel_password(b"tunnel", UPSTREAM_SECRET, UPSTREAM_AUTH, 1, b"\x80\x03")
    return (
        (USER_NAME, b"alice"),
        (VENDOR_SPECIFIC, both),
        (224, b"unknown"),
        (TUNNEL_PASSWORD, tunnel),
        vsa(9, 1, b"ip:addr-pool=a"),
        (FILTER_ID, b"x"),
    )


def test_reply_attributes_are_reencrypted_and_the_rest_kept() -> None:
    attrs = _upstream_reply_attributes()
    moved = reencrypt_reply_attributes(attrs, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)
    assert [t for t, _ in moved] == [t for t, _ in attrs]
    for index in (0, 2, 4, 5):
        assert moved[index] is attrs[index]
    keys = {vtype: value for _, vtype, value in iter_vsas(moved[1])}
    assert keys[MS_MPPE_SEND_KEY][:2] == b"\x80\x01"  # old salts kept: deterministic relays
    assert decrypt_salted(keys[MS_MPPE_SEND_KEY], NAS_SECRET, NAS_AUTH) == b"S" * 16
    assert decrypt_salted(keys[MS_MPPE_RECV_KEY], NAS_SECRET, NAS_AUTH) == b"R" * 16
    assert decrypt_tunnel_password(moved[3][1], NAS_SECRET, NAS_AUTH) == (1, b"tunnel")


def test_reply_attributes_agree_with_pyrad_decoding_a_signed_reply() -> None:
    moved = reencrypt_reply_attributes(_upstream_reply_attributes(), UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)
    wire = sign_reply(Packet(2, 7, bytes(16), moved), NAS_AUTH, NAS_SECRET, True)
    reply = AuthPacket(packet=wire, secret=NAS_SECRET, dict=DICTIONARY)
    reply.request_authenticator = NAS_AUTH
    assert reply["MS-MPPE-Send-Key"] == [b"S" * 16]
    assert reply["MS-MPPE-Recv-Key"] == [b"R" * 16]
    assert reply["Tunnel-Password:1"] == ["tunnel"]


def _hide_by_hand(key: bytes, secret: bytes, authenticator: bytes, salt: bytes) -> bytes:
    """RFC 2868 §3.5 for one block, written out: b(1) = MD5(S + R + A), c(1) = p(1) xor b(1)."""
    plain = (bytes((len(key),)) + key).ljust(16, b"\0")
    pad = hashlib.md5(secret + authenticator + salt).digest()
    return salt + bytes(p ^ k for p, k in zip(plain, pad, strict=True))


def test_hand_written_salt_hiding_matches() -> None:
    by_hand = _hide_by_hand(b"K" * 8, UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x80\x01")
    assert by_hand == encrypt_salted(b"K" * 8, UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x80\x01")


def test_duplicate_or_invalid_salts_are_replaced() -> None:
    first = _hide_by_hand(b"K" * 8, UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x80\x01")
    attrs = (
        vsa(VENDOR_MICROSOFT, MS_MPPE_SEND_KEY, first),
        vsa(VENDOR_MICROSOFT, MS_MPPE_RECV_KEY, first),  # the same salt again: must change
        # RFC 2868 §3.5 wants the salt's high bit set; this upstream forgot it.
        vsa(
            VENDOR_MICROSOFT,
            MS_MPPE_RECV_KEY,
            _hide_by_hand(b"K" * 8, UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x00\x05"),
        ),
        (TUNNEL_PASSWORD, b"\x01" + first),  # salts are unique across all salted attributes
    )
    moved = reencrypt_reply_attributes(attrs, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)
    hidden = [iter_vsas(a)[0][2] for a in moved[:3]] + [moved[3][1][1:]]
    salts = [value[:2] for value in hidden]
    assert salts[0] == b"\x80\x01"
    assert len(set(salts)) == 4 and all(salt[0] & 0x80 for salt in salts)
    for value in hidden:
        assert decrypt_salted(value, NAS_SECRET, NAS_AUTH) == b"K" * 8


def test_ms_chap_mppe_keys_are_reencrypted_like_a_password() -> None:
    keys = bytes(range(24))
    hidden = encrypt_user_password(keys, UPSTREAM_SECRET, UPSTREAM_AUTH)
    attrs = (vsa(VENDOR_MICROSOFT, MS_CHAP_MPPE_KEYS, hidden),)
    moved = reencrypt_reply_attributes(attrs, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)
    value = iter_vsas(moved[0])[0][2]
    assert decrypt_user_password(value, NAS_SECRET, NAS_AUTH) == keys


def test_extra_salted_vendor_attributes_can_be_named() -> None:
    erx_li_action = (4874, 58)
    hidden = encrypt_salted(b"\x00\x00\x00\x01", UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x80\x09")
    attrs = (vsa(*erx_li_action, hidden),)
    untouched = reencrypt_reply_attributes(attrs, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)
    assert untouched[0] is attrs[0]
    moved = reencrypt_reply_attributes(attrs, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH, salted_vsas={erx_li_action})
    assert decrypt_salted(iter_vsas(moved[0])[0][2], NAS_SECRET, NAS_AUTH) == b"\x00\x00\x00\x01"


def test_an_unparseable_microsoft_vsa_is_malformed_not_relayed_stale() -> None:
    attrs = ((26, b"\x00\x00\x01\x37\x10\x00garbage"),)
    with pytest.raises(MalformedPacket, match="vendor 311"):
        reencrypt_reply_attributes(attrs, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, NAS_AUTH)


def test_same_secret_and_authenticator_means_nothing_to_do() -> None:
    attrs = _upstream_reply_attributes()
    same = reencrypt_reply_attributes(attrs, UPSTREAM_SECRET, UPSTREAM_AUTH, UPSTREAM_SECRET, UPSTREAM_AUTH)
    assert same == attrs


def test_request_attributes_move_password_and_pin_the_chap_challenge() -> None:
    hidden = encrypt_user_password(b"hunter2", NAS_SECRET, NAS_AUTH)
    attrs = ((USER_NAME, b"alice"), (USER_PASSWORD, hidden), (224, b"?"))
    moved = reencrypt_request_attributes(attrs, NAS_SECRET, NAS_AUTH, UPSTREAM_SECRET, UPSTREAM_AUTH)
    assert moved[0] is attrs[0] and moved[2] is attrs[2] and len(moved) == 3
    value = get_first(moved, USER_PASSWORD)
    assert value is not None
    assert decrypt_user_password(value, UPSTREAM_SECRET, UPSTREAM_AUTH) == b"hunter2"
    assert pyrad_auth(UPSTREAM_SECRET, UPSTREAM_AUTH).PwDecrypt(value) == "hunter2"

    chap = ((USER_NAME, b"bob"), (CHAP_PASSWORD, b"\x01" + bytes(16)))
    moved = reencrypt_request_attributes(chap, NAS_SECRET, NAS_AUTH, UPSTREAM_SECRET, UPSTREAM_AUTH)
    assert moved == (*chap, (CHAP_CHALLENGE, NAS_AUTH))


def test_ensure_chap_challenge() -> None:
    chap = ((CHAP_PASSWORD, b"\x01" + bytes(16)),)
    assert ensure_chap_challenge(chap, NAS_AUTH) == (*chap, (CHAP_CHALLENGE, NAS_AUTH))
    with_challenge = (*chap, (CHAP_CHALLENGE, b"c" * 16))
    assert ensure_chap_challenge(with_challenge, NAS_AUTH) == with_challenge
    assert ensure_chap_challenge(((USER_NAME, b"pap"),), NAS_AUTH) == ((USER_NAME, b"pap"),)


def test_chap_verifies_upstream_with_the_pinned_challenge() -> None:
    """pyrad, as the upstream, checks CHAP against CHAP-Challenge, not the new authenticator."""
    chap_id = b"\x07"
    response = hashlib.md5(chap_id + b"hunter2" + NAS_AUTH).digest()
    attrs = ((USER_NAME, b"bob"), (CHAP_PASSWORD, chap_id + response))
    moved = reencrypt_request_attributes(attrs, NAS_SECRET, NAS_AUTH, UPSTREAM_SECRET, UPSTREAM_AUTH)
    wire = sign_access_request(Packet(1, 3, UPSTREAM_AUTH, moved), UPSTREAM_SECRET)
    upstream_view = AuthPacket(packet=wire, secret=UPSTREAM_SECRET, dict=DICTIONARY)
    assert upstream_view.VerifyChapPasswd("hunter2")
    assert not upstream_view.VerifyChapPasswd("wrong")
