"""Status-Server (RFC 5997) and a PAP Access-Request, built and checked in Python.

No subprocess and no package code: FreeRADIUS' start-up probe polls with these, and the tests
use them to look at a reply's attributes in wire order."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import socket
import struct
import time

MESSAGE_AUTHENTICATOR = 80


def _signed(code: int, ident: int, req_auth: bytes, attrs: bytes, key: bytes) -> bytes:
    """A request whose attributes end in a zeroed Message-Authenticator, that one filled in."""
    pkt = struct.pack("!BBH", code, ident, 20 + len(attrs)) + req_auth + attrs
    return pkt[:-16] + hmac.new(key, pkt, hashlib.md5).digest()


def _exchange(host: str, port: int, pkt: bytes, key: bytes, timeout: float) -> bytes | None:
    """Send ``pkt``; the first reply to it with a right Response Authenticator, None on timeout."""
    ident, req_auth = pkt[1], pkt[4:20]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(pkt, (host, port))
            deadline = time.monotonic() + timeout
            while True:
                s.settimeout(max(0.001, deadline - time.monotonic()))
                data, _ = s.recvfrom(4096)
                if len(data) < 20 or data[1] != ident:
                    continue
                data = data[: struct.unpack("!H", data[2:4])[0]]
                if hmac.compare_digest(hashlib.md5(data[:4] + req_auth + data[20:] + key).digest(), data[4:20]):
                    return data
        except (TimeoutError, OSError):  # OSError: ConnectionRefused (ICMP port unreachable)
            return None


def status_server(host: str, port: int, secret: str, timeout: float = 1.0) -> int | None:
    """Send one Status-Server; return the reply code (2 on auth ports, 5 on acct ports) if a
    reply with a valid Response Authenticator for ``secret`` came back, else ``None``."""
    key = secret.encode()
    attrs = bytes([MESSAGE_AUTHENTICATOR, 18]) + bytes(16)
    data = _exchange(host, port, _signed(12, os.urandom(1)[0], os.urandom(16), attrs, key), key, timeout)
    return None if data is None else data[0]


@dataclasses.dataclass
class RawReply:
    code: int
    attrs: list[tuple[int, bytes]]  # (type, value) in wire order
    message_authenticator_ok: bool | None  # None: the reply had no Message-Authenticator


def pap_request(host: str, port: int, secret: str, user: str, password: str, timeout: float = 1.0) -> RawReply | None:
    """One Access-Request (User-Name, User-Password, Message-Authenticator) built and checked
    in Python: returns the reply if its Response Authenticator is right for ``secret``
    (``None`` on timeout), with the reply's Message-Authenticator verified separately."""
    key = secret.encode()
    req_auth = os.urandom(16)
    pw = password.encode()
    pw = pw.ljust(max(16, (len(pw) + 15) // 16 * 16), b"\0")  # RFC 2865 5.2 padding
    hidden, prev = b"", req_auth
    for i in range(0, len(pw), 16):
        block = bytes(a ^ b for a, b in zip(pw[i : i + 16], hashlib.md5(key + prev).digest(), strict=True))
        hidden, prev = hidden + block, block
    attrs = (
        bytes([1, 2 + len(user.encode())])
        + user.encode()
        + bytes([2, 2 + len(hidden)])
        + hidden
        + bytes([MESSAGE_AUTHENTICATOR, 18])
        + bytes(16)
    )
    data = _exchange(host, port, _signed(1, os.urandom(1)[0], req_auth, attrs, key), key, timeout)
    if data is None:
        return None
    out: list[tuple[int, bytes]] = []
    ma_ok: bool | None = None
    off = 20
    while off + 2 <= len(data):
        t, ln = data[off], data[off + 1]
        if ln < 2:
            break
        out.append((t, data[off + 2 : off + ln]))
        if t == MESSAGE_AUTHENTICATOR and ln == 18:
            zeroed = data[:4] + req_auth + data[20 : off + 2] + bytes(16) + data[off + 18 :]
            ma_ok = hmac.compare_digest(hmac.new(key, zeroed, hashlib.md5).digest(), data[off + 2 : off + 18])
        off += ln
    return RawReply(data[0], out, ma_ok)
