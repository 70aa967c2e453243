"""Authenticators and Message-Authenticator: what we sign, pyrad verifies, and the reverse.
Also: Message-Authenticator first, stale ones replaced, tampering caught, goldens byte-for-byte.
"""

from __future__ import annotations

import struct

import pytest
from pyrad.packet import AcctPacket, AuthPacket, CoAPacket

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_CHALLENGE,
    ACCESS_REJECT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCOUNTING_RESPONSE,
    ACCT_SESSION_ID,
    ACCT_STATUS_TYPE,
    COA_ACK,
    COA_NAK,
    COA_REQUEST,
    DISCONNECT_ACK,
    DISCONNECT_REQUEST,
    FILTER_ID,
    MESSAGE_AUTHENTICATOR,
    NAS_IP_ADDRESS,
    STATUS_SERVER,
    USER_NAME,
    USER_PASSWORD,
    ZERO_AUTHENTICATOR,
    Packet,
    encode_integer,
    encode_ipv4,
    encode_packet,
    encrypt_user_password,
    new_request_authenticator,
    parse_packet,
    sign_access_request,
    sign_accounting_request,
    sign_reply,
    verify_accounting_request,
    verify_message_authenticator,
    verify_reply,
)
from tests.support.wire import load_hex, wire_dictionary

DICTIONARY = wire_dictionary()
SECRET = b"testing123"
REQUEST_AUTH = bytes.fromhex("00112233445566778899aabbccddeeff")


def access_request(attributes: tuple[tuple[int, bytes], ...] = ()) -> Packet:
    password = encrypt_user_password(b"hunter2", SECRET, REQUEST_AUTH)
    base = (
        (USER_NAME, b"alice"),
        (USER_PASSWORD, password),
        (NAS_IP_ADDRESS, encode_ipv4("192.0.2.10")),
    )
    return Packet(ACCESS_REQUEST, 42, REQUEST_AUTH, base + attributes)


def pyrad_request(code: int = ACCESS_REQUEST, identifier: int = 42) -> AuthPacket:
    """pyrad's view of the request a reply answers: id, authenticator, secret."""
    return AuthPacket(code=code, id=identifier, secret=SECRET, authenticator=REQUEST_AUTH, dict=DICTIONARY)


def tamper(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes((data[offset] ^ 0x01,)) + data[offset + 1 :]


# --- Access-Request ------------------------------------------------------------------------


def test_access_request_gets_message_authenticator_first_and_pyrad_agrees() -> None:
    wire = sign_access_request(access_request(), SECRET)
    packet = parse_packet(wire)
    assert packet.attributes[0][0] == MESSAGE_AUTHENTICATOR
    assert packet.authenticator == REQUEST_AUTH
    assert verify_message_authenticator(wire, SECRET) is True
    theirs = AuthPacket(packet=wire, secret=SECRET, dict=DICTIONARY)
    assert theirs.verify_message_authenticator()
    assert theirs.PwDecrypt(theirs["User-Password"][0]) == "hunter2"


def test_a_stale_message_authenticator_is_replaced_not_duplicated() -> None:
    stale = access_request(((MESSAGE_AUTHENTICATOR, b"\xaa" * 16), (FILTER_ID, b"x")))
    wire = sign_access_request(stale, SECRET)
    types = [t for t, _ in parse_packet(wire).attributes]
    assert types.count(MESSAGE_AUTHENTICATOR) == 1 and types[0] == MESSAGE_AUTHENTICATOR
    assert types[1:] == [USER_NAME, USER_PASSWORD, NAS_IP_ADDRESS, FILTER_ID]
    assert verify_message_authenticator(wire, SECRET) is True


def test_status_server_is_signed_like_an_access_request() -> None:
    wire = sign_access_request(Packet(STATUS_SERVER, 1, new_request_authenticator()), SECRET)
    assert parse_packet(wire).attributes[0][0] == MESSAGE_AUTHENTICATOR
    assert AcctPacket(packet=wire, secret=SECRET, dict=DICTIONARY).VerifyAcctRequest()


def test_access_request_signer_refuses_other_codes() -> None:
    with pytest.raises(ValueError):
        sign_access_request(Packet(ACCOUNTING_REQUEST, 1, REQUEST_AUTH), SECRET)


def test_pyrad_access_request_verifies_with_ours() -> None:
    theirs = AuthPacket(id=9, secret=SECRET, dict=DICTIONARY, User_Name="bob")
    theirs["User-Password"] = theirs.PwCrypt("pw")
    theirs.add_message_authenticator()
    wire = theirs.RequestPacket()
    assert verify_message_authenticator(wire, SECRET) is True
    assert verify_message_authenticator(wire, b"wrong") is False
    assert verify_message_authenticator(tamper(wire, len(wire) - 1), SECRET) is False


def test_new_request_authenticators_differ() -> None:
    assert len({new_request_authenticator() for _ in range(100)}) == 100


# --- Accounting-, CoA-, Disconnect-Request -----------------------------------------------------


def accounting_request(code: int = ACCOUNTING_REQUEST) -> Packet:
    return Packet(
        code,
        17,
        b"\xee" * 16,  # ignored: the signer computes the Request Authenticator
        (
            (ACCT_STATUS_TYPE, encode_integer(1)),
            (ACCT_SESSION_ID, b"sess-1"),
            (USER_NAME, b"alice"),
        ),
    )


@pytest.mark.parametrize("with_ma", [False, True])
def test_accounting_request_agrees_with_pyrad(with_ma: bool) -> None:
    wire = sign_accounting_request(accounting_request(), SECRET, with_ma)
    assert verify_accounting_request(wire, SECRET)
    assert not verify_accounting_request(wire, b"wrong")
    assert not verify_accounting_request(tamper(wire, 25), SECRET)
    theirs = AcctPacket(packet=wire, secret=SECRET, dict=DICTIONARY)
    assert theirs.VerifyAcctRequest()
    if with_ma:
        assert parse_packet(wire).attributes[0][0] == MESSAGE_AUTHENTICATOR
        assert theirs.verify_message_authenticator()
        assert verify_message_authenticator(wire, SECRET) is True
    else:
        assert verify_message_authenticator(wire, SECRET) is None


@pytest.mark.parametrize("code", [COA_REQUEST, DISCONNECT_REQUEST])
def test_coa_and_disconnect_requests_agree_with_pyrad(code: int) -> None:
    wire = sign_accounting_request(accounting_request(code), SECRET, add_message_authenticator=True)
    theirs = CoAPacket(packet=wire, secret=SECRET, dict=DICTIONARY)
    assert theirs.VerifyCoARequest()
    assert theirs.verify_message_authenticator()
    assert verify_accounting_request(wire, SECRET)


def test_an_existing_message_authenticator_in_accounting_is_recomputed() -> None:
    relayed = Packet(ACCOUNTING_REQUEST, 1, bytes(16), ((USER_NAME, b"a"), (MESSAGE_AUTHENTICATOR, bytes(16))))
    wire = sign_accounting_request(relayed, SECRET)  # not asked to add one, but one was there
    assert verify_message_authenticator(wire, SECRET) is True
    assert parse_packet(wire).attributes[0][0] == MESSAGE_AUTHENTICATOR


def test_pyrad_accounting_request_verifies_with_ours() -> None:
    theirs = AcctPacket(id=3, secret=SECRET, dict=DICTIONARY, User_Name="bob", Acct_Status_Type=1)
    wire = theirs.RequestPacket()
    assert verify_accounting_request(wire, SECRET)
    assert verify_accounting_request(wire + b"\0\0padding", SECRET)


def test_all_zero_accounting_authenticator_is_refused() -> None:
    wire = encode_packet(accounting_request())  # framed, never signed
    zeroed = wire[:4] + ZERO_AUTHENTICATOR + wire[20:]
    assert not verify_accounting_request(zeroed, SECRET)


def test_accounting_signer_refuses_other_codes() -> None:
    with pytest.raises(ValueError):
        sign_accounting_request(Packet(ACCESS_REQUEST, 1, REQUEST_AUTH), SECRET)


# --- replies -------------------------------------------------------------------------------------


def reply(
    code: int = ACCESS_ACCEPT,
    attributes: tuple[tuple[int, bytes], ...] = ((FILTER_ID, b"OP25B-FULL"),),
) -> Packet:
    return Packet(code, 42, bytes(16), attributes)


@pytest.mark.parametrize("code", [ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE])
@pytest.mark.parametrize("with_ma", [False, True])
def test_access_replies_verify_in_pyrad(code: int, with_ma: bool) -> None:
    wire = sign_reply(reply(code), REQUEST_AUTH, SECRET, with_ma)
    assert verify_reply(wire, REQUEST_AUTH, SECRET)
    assert verify_message_authenticator(wire, SECRET, REQUEST_AUTH) is (True if with_ma else None)
    request = pyrad_request()
    theirs = request.CreateReply(packet=wire)
    assert request.VerifyReply(theirs, wire, enforce_ma=with_ma)
    if with_ma:
        assert parse_packet(wire).attributes[0][0] == MESSAGE_AUTHENTICATOR


def test_reply_message_authenticator_replaces_the_upstream_one_and_goes_first() -> None:
    upstream = reply(attributes=((FILTER_ID, b"x"), (MESSAGE_AUTHENTICATOR, b"\x55" * 16), (25, b"class")))
    wire = sign_reply(upstream, REQUEST_AUTH, SECRET, add_message_authenticator=True)
    types = [t for t, _ in parse_packet(wire).attributes]
    assert types == [MESSAGE_AUTHENTICATOR, FILTER_ID, 25]
    assert verify_reply(wire, REQUEST_AUTH, SECRET)


def test_reply_keeps_a_message_authenticator_fresh_even_when_not_asked_to_add_one() -> None:
    upstream = reply(attributes=((FILTER_ID, b"x"), (MESSAGE_AUTHENTICATOR, b"\x55" * 16)))
    wire = sign_reply(upstream, REQUEST_AUTH, SECRET, add_message_authenticator=False)
    assert verify_message_authenticator(wire, SECRET, REQUEST_AUTH) is True


def test_pyrad_reply_verifies_with_ours() -> None:
    request = pyrad_request()
    theirs = request.CreateReply(Filter_Id="x")  # pyrad signs replies with MA first
    wire = theirs.ReplyPacket()
    assert parse_packet(wire).attributes[0][0] == MESSAGE_AUTHENTICATOR
    assert verify_reply(wire, REQUEST_AUTH, SECRET)
    assert verify_message_authenticator(wire, SECRET, REQUEST_AUTH) is True
    assert not verify_reply(wire, REQUEST_AUTH, b"wrong")
    assert not verify_reply(wire, bytes(16), SECRET)


def test_a_forged_message_authenticator_fails_even_with_a_valid_response_authenticator() -> None:
    """BlastRADIUS forges the MD5 Response Authenticator; the HMAC must still catch it."""
    wire = bytearray(sign_reply(reply(), REQUEST_AUTH, SECRET, True))
    wire[22] ^= 0xFF  # corrupt the Message-Authenticator value (first attribute)
    body = bytes(wire[:4]) + REQUEST_AUTH + bytes(wire[20:])
    import hashlib

    wire[4:20] = hashlib.md5(body + SECRET).digest()  # "attacker" fixes the Response Authenticator
    assert verify_message_authenticator(bytes(wire), SECRET, REQUEST_AUTH) is False
    assert not verify_reply(bytes(wire), REQUEST_AUTH, SECRET)


def test_coa_ack_message_authenticator_uses_the_request_authenticator_like_pyrad() -> None:
    coa = sign_accounting_request(accounting_request(COA_REQUEST), SECRET, True)
    coa_auth = coa[4:20]
    wire = sign_reply(Packet(COA_ACK, 17, bytes(16)), coa_auth, SECRET, True)
    assert verify_reply(wire, coa_auth, SECRET)
    request = CoAPacket(packet=coa, secret=SECRET, dict=DICTIONARY)
    assert request.VerifyReply(request.CreateReply(packet=wire), wire)


@pytest.mark.parametrize("code", [ACCOUNTING_RESPONSE, COA_ACK, COA_NAK, DISCONNECT_ACK])
def test_freeradius_style_zero_vector_reply_message_authenticator_is_accepted(code: int) -> None:
    """FreeRADIUS 3.2 signs these replies' Message-Authenticator over sixteen zeros."""
    import hashlib
    import hmac

    body = bytes((80, 18)) + bytes(16) + bytes((18, 4)) + b"ok"
    header = struct.pack("!BBH", code, 5, 20 + len(body))
    mac = hmac.digest(SECRET, header + ZERO_AUTHENTICATOR + body, "md5")
    body = body[:2] + mac + body[18:]
    response = hashlib.md5(header + REQUEST_AUTH + body + SECRET).digest()
    wire = header + response + body
    assert verify_message_authenticator(wire, SECRET, REQUEST_AUTH) is True
    assert verify_reply(wire, REQUEST_AUTH, SECRET)


def test_accounting_response_message_authenticator_depends_on_the_request_code() -> None:
    plain = sign_reply(Packet(ACCOUNTING_RESPONSE, 1, bytes(16)), REQUEST_AUTH, SECRET, True)
    to_status = sign_reply(
        Packet(ACCOUNTING_RESPONSE, 1, bytes(16)),
        REQUEST_AUTH,
        SECRET,
        True,
        request_code=STATUS_SERVER,
    )
    assert plain != to_status
    for wire in (plain, to_status):
        assert verify_reply(wire, REQUEST_AUTH, SECRET)
    # pyrad: zeros for an Accounting-Response, the Request Authenticator after Status-Server.
    acct = AcctPacket(id=1, secret=SECRET, authenticator=REQUEST_AUTH, dict=DICTIONARY)
    assert acct.VerifyReply(acct.CreateReply(packet=plain), plain)
    status = AcctPacket(code=STATUS_SERVER, id=1, secret=SECRET, authenticator=REQUEST_AUTH, dict=DICTIONARY)
    assert status.VerifyReply(status.CreateReply(packet=to_status), to_status)


# --- verify_message_authenticator edge cases -----------------------------------------------------


def test_two_message_authenticators_fail() -> None:
    wire = sign_access_request(access_request(), SECRET)
    doubled_body = wire[20:] + bytes((80, 18)) + bytes(16)
    doubled = wire[:2] + struct.pack("!H", 20 + len(doubled_body)) + wire[4:20] + doubled_body
    assert verify_message_authenticator(doubled, SECRET) is False


def test_message_authenticator_of_wrong_length_fails() -> None:
    body = bytes((80, 6)) + b"abcd"
    wire = struct.pack("!BBH", ACCESS_REQUEST, 1, 20 + len(body)) + REQUEST_AUTH + body
    assert verify_message_authenticator(wire, SECRET) is False


def test_reply_verification_needs_the_request_authenticator() -> None:
    wire = sign_reply(reply(), REQUEST_AUTH, SECRET, True)
    with pytest.raises(ValueError, match="request"):
        verify_message_authenticator(wire, SECRET)


def test_verifiers_ignore_padding_and_reject_malformed_bytes() -> None:
    wire = sign_reply(reply(), REQUEST_AUTH, SECRET, True)
    assert verify_reply(wire + b"\x00" * 7, REQUEST_AUTH, SECRET)
    with pytest.raises(MalformedPacket):
        verify_reply(wire[:19], REQUEST_AUTH, SECRET)
    broken = wire[:2] + struct.pack("!H", len(wire) + 1) + wire[4:] + b"\x05"
    with pytest.raises(MalformedPacket):
        verify_message_authenticator(broken, SECRET, REQUEST_AUTH)


# --- golden packets ---------------------------------------------------------------------------


def golden_access_request() -> bytes:
    return sign_access_request(access_request(), SECRET)


def golden_access_accept() -> bytes:
    attributes = ((FILTER_ID, b"OP25B-FULL"), (27, encode_integer(3600)))
    return sign_reply(Packet(ACCESS_ACCEPT, 42, bytes(16), attributes), REQUEST_AUTH, SECRET, True)


def golden_coa_request() -> bytes:
    attributes = ((ACCT_SESSION_ID, b"sess-1"), (FILTER_ID, b"OP25B-MOBILE"))
    return sign_accounting_request(Packet(COA_REQUEST, 99, bytes(16), attributes), SECRET, True)


def golden_accounting_request() -> bytes:
    return sign_accounting_request(accounting_request(), SECRET)


GOLDENS = {
    "wire_access_request.hex": golden_access_request,
    "wire_access_accept.hex": golden_access_accept,
    "wire_coa_request.hex": golden_coa_request,
    "wire_accounting_request.hex": golden_accounting_request,
}


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_packets_byte_for_byte(name: str) -> None:
    assert GOLDENS[name]() == load_hex(name)


def test_golden_packets_verify_in_pyrad() -> None:
    request = AuthPacket(packet=load_hex("wire_access_request.hex"), secret=SECRET, dict=DICTIONARY)
    assert request.verify_message_authenticator()
    accept = load_hex("wire_access_accept.hex")
    assert request.VerifyReply(request.CreateReply(packet=accept), accept, enforce_ma=True)
    coa = CoAPacket(packet=load_hex("wire_coa_request.hex"), secret=SECRET, dict=DICTIONARY)
    assert coa.VerifyCoARequest() and coa.verify_message_authenticator()
    acct = AcctPacket(packet=load_hex("wire_accounting_request.hex"), secret=SECRET, dict=DICTIONARY)
    assert acct.VerifyAcctRequest()
