"""A whole relay, NAS -> proxy -> upstream and back, with the public wire API only, as goldens.
Unknown attributes, multi-sub-attribute VSAs, Class and the NAS's Proxy-State survive byte-for-byte.
"""

from __future__ import annotations

import pytest
from pyrad.packet import AcctPacket, AuthPacket

from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCOUNTING_RESPONSE,
    ACCT_SESSION_ID,
    ACCT_STATUS_TYPE,
    CALLING_STATION_ID,
    CLASS,
    FILTER_ID,
    FRAMED_IP_ADDRESS,
    MESSAGE_AUTHENTICATOR,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    NAS_IP_ADDRESS,
    NAS_PORT,
    PROXY_STATE,
    TUNNEL_PASSWORD,
    USER_NAME,
    USER_PASSWORD,
    VENDOR_MICROSOFT,
    VENDOR_SPECIFIC,
    Packet,
    append_proxy_state,
    decrypt_salted,
    decrypt_tunnel_password,
    encode_integer,
    encode_ipv4,
    encrypt_salted,
    encrypt_tunnel_password,
    encrypt_user_password,
    get_all,
    iter_vsas,
    join_vsa,
    parse_packet,
    reencrypt_reply_attributes,
    reencrypt_request_attributes,
    replace_attributes,
    sign_access_request,
    sign_accounting_request,
    sign_reply,
    strip_own_proxy_state,
    verify_accounting_request,
    verify_message_authenticator,
    verify_reply,
)
from tests.support.wire import load_hex, wire_dictionary

DICTIONARY = wire_dictionary()

NAS_SECRET = b"testing123"
UPSTREAM_SECRET = b"upstream-secret"
NAS_AUTH = bytes.fromhex("00112233445566778899aabbccddeeff")
UPSTREAM_AUTH = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
OUR_STATE = b"op25b\x00\x01"
UPSTREAM_ID = 200

UNKNOWN = (224, b"\x00\xffopaque")
# Two Cisco-AVPairs in one Vendor-Specific: pyrad's decode/encode would split them in two.
CISCO_MULTI = (VENDOR_SPECIFIC, b"\x00\x00\x00\x09\x01\x10ip:addr-pool=a\x01\x0efoo=bar-baz")


# --- the packets the other parties send ------------------------------------------------------


def nas_access_request() -> bytes:
    """A BNG's Access-Request (behind one earlier proxy, whose Proxy-State it carries)."""
    attributes = (
        (USER_NAME, b"alice@isp-b.example"),
        (USER_PASSWORD, encrypt_user_password(b"hunter2", NAS_SECRET, NAS_AUTH)),
        (NAS_IP_ADDRESS, encode_ipv4("192.0.2.10")),
        (NAS_PORT, encode_integer(7)),
        UNKNOWN,
        CISCO_MULTI,
        (CALLING_STATION_ID, b"02-00-00-00-00-01"),
        (PROXY_STATE, b"hop-1"),
    )
    return sign_access_request(Packet(ACCESS_REQUEST, 7, NAS_AUTH, attributes), NAS_SECRET)


def upstream_access_accept() -> bytes:
    """The home server's Accept: MPPE keys in one VSA, a Tunnel-Password, both Proxy-States."""
    send = encrypt_salted(b"S" * 16, UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x80\x01")
    recv = encrypt_salted(b"R" * 16, UPSTREAM_SECRET, UPSTREAM_AUTH, b"\x80\x02")
    keys = join_vsa(
        VENDOR_MICROSOFT,
        [
            bytes((MS_MPPE_SEND_KEY, 2 + len(send))) + send,
            bytes((MS_MPPE_RECV_KEY, 2 + len(recv))) + recv,
        ],
    )
    attributes = (
        (FILTER_ID, b"UPSTREAM-DEFAULT"),
        (CLASS, b"\x01class-from-home"),
        (FRAMED_IP_ADDRESS, encode_ipv4("198.51.100.7")),
        (VENDOR_SPECIFIC, keys),
        (
            TUNNEL_PASSWORD,
            encrypt_tunnel_password(b"l2tp", UPSTREAM_SECRET, UPSTREAM_AUTH, 1, b"\x80\x03"),
        ),
        UNKNOWN,
        CISCO_MULTI,
        (PROXY_STATE, b"hop-1"),
        (PROXY_STATE, OUR_STATE),
    )
    return sign_reply(
        Packet(ACCESS_ACCEPT, UPSTREAM_ID, bytes(16), attributes),
        UPSTREAM_AUTH,
        UPSTREAM_SECRET,
        True,
    )


def nas_accounting_request() -> bytes:
    attributes = (
        (ACCT_STATUS_TYPE, encode_integer(1)),
        (ACCT_SESSION_ID, b"0000002a"),
        (USER_NAME, b"alice@isp-b.example"),
        (FRAMED_IP_ADDRESS, encode_ipv4("198.51.100.7")),
        CISCO_MULTI,
        UNKNOWN,
    )
    return sign_accounting_request(Packet(ACCOUNTING_REQUEST, 8, bytes(16), attributes), NAS_SECRET)


def upstream_accounting_response(upstream_request: bytes) -> bytes:
    request = parse_packet(upstream_request)
    echoed = tuple(a for a in request.attributes if a[0] == PROXY_STATE)
    return sign_reply(
        Packet(ACCOUNTING_RESPONSE, request.identifier, bytes(16), echoed),
        request.authenticator,
        UPSTREAM_SECRET,
        False,
    )


# --- what the proxy does: the public API in pipeline order --------------------------------------


def relay_access_request(nas_bytes: bytes) -> bytes:
    request = parse_packet(nas_bytes)
    assert verify_message_authenticator(nas_bytes, NAS_SECRET) is True
    attributes = reencrypt_request_attributes(
        request.attributes, NAS_SECRET, request.authenticator, UPSTREAM_SECRET, UPSTREAM_AUTH
    )
    attributes = append_proxy_state(attributes, OUR_STATE)
    return sign_access_request(Packet(ACCESS_REQUEST, UPSTREAM_ID, UPSTREAM_AUTH, attributes), UPSTREAM_SECRET)


def relay_access_accept(upstream_bytes: bytes, nas_bytes: bytes) -> bytes:
    assert verify_reply(upstream_bytes, UPSTREAM_AUTH, UPSTREAM_SECRET)
    nas_request = parse_packet(nas_bytes)
    reply = parse_packet(upstream_bytes)
    attributes, ours = strip_own_proxy_state(reply.attributes, OUR_STATE)
    assert ours
    attributes = reencrypt_reply_attributes(attributes, UPSTREAM_SECRET, UPSTREAM_AUTH, NAS_SECRET, nas_request.authenticator)
    attributes = replace_attributes(attributes, {FILTER_ID}, set(), [(FILTER_ID, b"OP25B-FULL")])
    return sign_reply(
        Packet(reply.code, nas_request.identifier, bytes(16), attributes),
        nas_request.authenticator,
        NAS_SECRET,
        add_message_authenticator=True,
    )


def relay_accounting_request(nas_bytes: bytes) -> bytes:
    assert verify_accounting_request(nas_bytes, NAS_SECRET)
    request = parse_packet(nas_bytes)
    attributes = append_proxy_state(request.attributes, OUR_STATE)
    return sign_accounting_request(Packet(ACCOUNTING_REQUEST, UPSTREAM_ID + 1, bytes(16), attributes), UPSTREAM_SECRET)


def relay_accounting_response(upstream_bytes: bytes, upstream_request: bytes, nas_bytes: bytes) -> bytes:
    assert verify_reply(upstream_bytes, upstream_request[4:20], UPSTREAM_SECRET)
    nas_request = parse_packet(nas_bytes)
    attributes, ours = strip_own_proxy_state(parse_packet(upstream_bytes).attributes, OUR_STATE)
    assert ours
    return sign_reply(
        Packet(ACCOUNTING_RESPONSE, nas_request.identifier, bytes(16), attributes),
        nas_request.authenticator,
        NAS_SECRET,
        add_message_authenticator=False,
    )


def _relay_chain() -> dict[str, bytes]:
    nas_request = nas_access_request()
    upstream_request = relay_access_request(nas_request)
    upstream_accept = upstream_access_accept()
    nas_accept = relay_access_accept(upstream_accept, nas_request)
    nas_acct = nas_accounting_request()
    upstream_acct = relay_accounting_request(nas_acct)
    upstream_acct_response = upstream_accounting_response(upstream_acct)
    nas_acct_response = relay_accounting_response(upstream_acct_response, upstream_acct, nas_acct)
    return {
        "wire_relay_1_nas_access_request.hex": nas_request,
        "wire_relay_2_upstream_access_request.hex": upstream_request,
        "wire_relay_3_upstream_access_accept.hex": upstream_accept,
        "wire_relay_4_nas_access_accept.hex": nas_accept,
        "wire_relay_5_nas_accounting_request.hex": nas_acct,
        "wire_relay_6_upstream_accounting_request.hex": upstream_acct,
        "wire_relay_7_upstream_accounting_response.hex": upstream_acct_response,
        "wire_relay_8_nas_accounting_response.hex": nas_acct_response,
    }


CHAIN = _relay_chain()


@pytest.mark.parametrize("name", sorted(CHAIN))
def test_relay_golden_byte_for_byte(name: str) -> None:
    assert CHAIN[name] == load_hex(name)


def _raw_attributes(wire: bytes) -> list[bytes]:
    return [bytes((t, len(v) + 2)) + v for t, v in parse_packet(wire).attributes]


def test_request_relay_keeps_what_it_does_not_own_in_order() -> None:
    nas = _raw_attributes(load_hex("wire_relay_1_nas_access_request.hex"))
    upstream = _raw_attributes(load_hex("wire_relay_2_upstream_access_request.hex"))
    assert upstream[0][0] == MESSAGE_AUTHENTICATOR  # recomputed, first
    assert upstream[-1] == bytes((PROXY_STATE, 2 + len(OUR_STATE))) + OUR_STATE  # ours, last
    kept = [raw for raw in nas[1:] if raw[0] != USER_PASSWORD]
    assert [raw for raw in upstream[1:-1] if raw[0] != USER_PASSWORD] == kept
    assert [raw[0] for raw in upstream[1:-1]] == [raw[0] for raw in nas[1:]]  # same order


def test_pyrad_as_the_upstream_reads_our_request() -> None:
    wire = load_hex("wire_relay_2_upstream_access_request.hex")
    theirs = AuthPacket(packet=wire, secret=UPSTREAM_SECRET, dict=DICTIONARY)
    assert theirs.verify_message_authenticator()
    assert theirs.PwDecrypt(theirs["User-Password"][0]) == "hunter2"
    assert theirs["Proxy-State"] == [b"hop-1", OUR_STATE]


def test_pyrad_as_our_client_accepts_the_upstream_reply() -> None:
    request = AuthPacket(
        packet=load_hex("wire_relay_2_upstream_access_request.hex"),
        secret=UPSTREAM_SECRET,
        dict=DICTIONARY,
    )
    accept = load_hex("wire_relay_3_upstream_access_accept.hex")
    assert request.VerifyReply(request.CreateReply(packet=accept), accept, enforce_ma=True)


def test_pyrad_as_the_nas_accepts_and_decrypts_our_reply() -> None:
    request = AuthPacket(packet=load_hex("wire_relay_1_nas_access_request.hex"), secret=NAS_SECRET, dict=DICTIONARY)
    wire = load_hex("wire_relay_4_nas_access_accept.hex")
    reply = request.CreateReply(packet=wire)
    assert request.VerifyReply(reply, wire, enforce_ma=True)
    reply.request_authenticator = NAS_AUTH
    assert reply["MS-MPPE-Send-Key"] == [b"S" * 16]
    assert reply["MS-MPPE-Recv-Key"] == [b"R" * 16]
    assert reply["Tunnel-Password:1"] == ["l2tp"]
    assert reply["Filter-Id"] == ["OP25B-FULL"]


def test_reply_relay_keeps_class_unknown_vsa_and_the_nas_proxy_state() -> None:
    upstream = parse_packet(load_hex("wire_relay_3_upstream_access_accept.hex"))
    nas = parse_packet(load_hex("wire_relay_4_nas_access_accept.hex"))
    assert nas.attributes[0][0] == MESSAGE_AUTHENTICATOR
    assert get_all(nas.attributes, PROXY_STATE) == [b"hop-1"]
    for attribute in [(CLASS, b"\x01class-from-home"), UNKNOWN, CISCO_MULTI]:
        assert attribute in nas.attributes

    # Same order for what we neither own nor re-encrypt.
    def relayed(attrs: tuple[tuple[int, bytes], ...]) -> list[tuple[int, bytes]]:
        return [a for a in attrs if a[0] not in (MESSAGE_AUTHENTICATOR, FILTER_ID, PROXY_STATE, VENDOR_SPECIFIC, TUNNEL_PASSWORD)]

    assert relayed(nas.attributes) == relayed(upstream.attributes)
    # The MPPE VSA keeps its two-sub-attribute shape; only the hidden octets changed.
    keys = [a for a in nas.attributes if iter_vsas(a) and iter_vsas(a)[0][0] == VENDOR_MICROSOFT]
    assert len(keys) == 1 and [t for _, t, _ in iter_vsas(keys[0])] == [
        MS_MPPE_SEND_KEY,
        MS_MPPE_RECV_KEY,
    ]
    for _, vendor_type, value in iter_vsas(keys[0]):
        assert decrypt_salted(value, NAS_SECRET, NAS_AUTH) == (b"S" if vendor_type == MS_MPPE_SEND_KEY else b"R") * 16
    tunnel = [v for t, v in nas.attributes if t == TUNNEL_PASSWORD]
    assert decrypt_tunnel_password(tunnel[0], NAS_SECRET, NAS_AUTH) == (1, b"l2tp")


def test_accounting_relay_verifies_everywhere() -> None:
    upstream_acct = load_hex("wire_relay_6_upstream_accounting_request.hex")
    assert AcctPacket(packet=upstream_acct, secret=UPSTREAM_SECRET, dict=DICTIONARY).VerifyAcctRequest()
    nas_acct = load_hex("wire_relay_5_nas_accounting_request.hex")
    assert _raw_attributes(upstream_acct)[:-1] == _raw_attributes(nas_acct)
    response = load_hex("wire_relay_8_nas_accounting_response.hex")
    request = AcctPacket(packet=nas_acct, secret=NAS_SECRET, dict=DICTIONARY)
    assert request.VerifyReply(request.CreateReply(packet=response), response)
    assert parse_packet(response).attributes == ()
