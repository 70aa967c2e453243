"""FreeRADIUS's radclient as the NAS against a tiny responder built on the wire layer.
A second, independent implementation checks our authenticators, Message-Authenticator and hiding.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCOUNTING_RESPONSE,
    COA_ACK,
    COA_REQUEST,
    FILTER_ID,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    PROXY_STATE,
    STATUS_SERVER,
    TUNNEL_PASSWORD,
    USER_PASSWORD,
    VENDOR_MICROSOFT,
    Packet,
    decrypt_user_password,
    encrypt_salted,
    encrypt_tunnel_password,
    get_all,
    get_first,
    join_vsa,
    parse_packet,
    sign_reply,
    verify_accounting_request,
    verify_message_authenticator,
)
from tests.support.udp import Address, UdpResponder

pytestmark = [
    pytest.mark.freeradius,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="radclient is not installed"),
]

SECRET = b"testing123"
SEND_KEY = bytes(range(16))
RECV_KEY = bytes(range(16, 48))


def answer(datagram: bytes) -> bytes | None:
    """What a home server built on the wire layer replies; None drops the request."""
    request = parse_packet(datagram)
    echoed = tuple((PROXY_STATE, v) for v in get_all(request.attributes, PROXY_STATE))
    if request.code in (ACCESS_REQUEST, STATUS_SERVER):
        if verify_message_authenticator(datagram, SECRET) is not True:
            return None
        attributes: tuple[tuple[int, bytes], ...] = ((FILTER_ID, b"OP25B-FULL"),)
        hidden = get_first(request.attributes, USER_PASSWORD)
        if hidden is not None:
            if decrypt_user_password(hidden, SECRET, request.authenticator) != b"hunter2":
                return None
            send = encrypt_salted(SEND_KEY, SECRET, request.authenticator, b"\x80\x01")
            recv = encrypt_salted(RECV_KEY, SECRET, request.authenticator, b"\x80\x02")
            keys = join_vsa(
                VENDOR_MICROSOFT,
                [
                    bytes((MS_MPPE_SEND_KEY, 2 + len(send))) + send,
                    bytes((MS_MPPE_RECV_KEY, 2 + len(recv))) + recv,
                ],
            )
            tunnel = encrypt_tunnel_password(b"l2tp-pw", SECRET, request.authenticator, 1)
            attributes += ((26, keys), (TUNNEL_PASSWORD, tunnel))
        reply = Packet(ACCESS_ACCEPT, request.identifier, bytes(16), attributes + echoed)
        return sign_reply(reply, request.authenticator, SECRET, add_message_authenticator=True)
    if request.code in (ACCOUNTING_REQUEST, COA_REQUEST):
        if not verify_accounting_request(datagram, SECRET):
            return None
        code = ACCOUNTING_RESPONSE if request.code == ACCOUNTING_REQUEST else COA_ACK
        reply = Packet(code, request.identifier, bytes(16), echoed)
        return sign_reply(reply, request.authenticator, SECRET, request.code == COA_REQUEST)
    return None


def forge_message_authenticator(datagram: bytes, reply: bytes) -> bytes:
    """Corrupt the (first) Message-Authenticator, then fix the MD5 Response Authenticator."""
    wire = bytearray(reply)
    wire[22] ^= 0x01
    wire[4:20] = hashlib.md5(bytes(wire[:4]) + datagram[4:20] + bytes(wire[20:]) + SECRET).digest()
    return bytes(wire)


FORGE = threading.Event()


@pytest.fixture
def responder() -> Iterator[int]:
    def reply(datagram: bytes, peer: Address) -> bytes | None:
        wire = answer(datagram)
        if wire is not None and FORGE.is_set():
            return forge_message_authenticator(datagram, wire)
        return wire

    with UdpResponder(reply) as server:
        yield server.port
    FORGE.clear()


RadClient = Callable[[str, str], subprocess.CompletedProcess[str]]


@pytest.fixture
def radclient(responder: int) -> RadClient:
    def run(kind: str, attributes: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["radclient", "-x", "-r", "1", "-t", "2", f"127.0.0.1:{responder}", kind, "testing123"],
            input=attributes,
            capture_output=True,
            text=True,
            timeout=20,
        )

    return run


def test_radclient_accepts_our_access_accept_and_decrypts_our_keys(radclient: RadClient) -> None:
    result = radclient(
        "auth",
        'User-Name = "alice", User-Password = "hunter2", Message-Authenticator = 0x00, Proxy-State = 0x6f703235\n',
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Received Access-Accept" in out
    assert 'Filter-Id = "OP25B-FULL"' in out
    assert f"MS-MPPE-Send-Key = 0x{SEND_KEY.hex()}" in out
    assert f"MS-MPPE-Recv-Key = 0x{RECV_KEY.hex()}" in out
    assert 'Tunnel-Password:1 = "l2tp-pw"' in out


def test_radclient_accepts_our_accounting_response(radclient: RadClient) -> None:
    result = radclient("acct", 'Acct-Status-Type = Start, Acct-Session-Id = "s-1"\n')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Accounting-Response" in result.stdout


def test_radclient_accepts_our_coa_ack_with_message_authenticator(radclient: RadClient) -> None:
    result = radclient("coa", 'Acct-Session-Id = "s-1", Filter-Id = "OP25B-NONE", Message-Authenticator = 0x00\n')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received CoA-ACK" in result.stdout


def test_radclient_accepts_our_status_server_reply(radclient: RadClient) -> None:
    result = radclient("status", "Message-Authenticator = 0x00\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Access-Accept" in result.stdout


def test_radclient_checks_what_we_sign_a_forged_message_authenticator_fails(
    radclient: RadClient,
) -> None:
    """The control: the tests above mean something only if radclient does check the MA."""
    FORGE.set()
    result = radclient("auth", 'User-Name = "alice", User-Password = "hunter2", Message-Authenticator = 0x00\n')
    assert result.returncode != 0
    assert "invalid Message-Authenticator" in result.stdout + result.stderr
