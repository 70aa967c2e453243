"""MS-CHAPv2 (RFC 2759) and MPPE keys (RFC 3079), with our own MD4 and DES because
OpenSSL 3 has MD4/DES only in its legacy provider (hashlib.new("md4") fails here).
radclient computes MS-CHAP v1 only; the tests compute v2 requests with this."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
from collections.abc import Iterable


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320)."""
    def rol(x: int, n: int) -> int:
        x &= 0xFFFFFFFF
        return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF

    msg = bytearray(data)
    bit_len = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    msg.append(0x80)
    while len(msg) % 64 != 56:
        msg.append(0)
    msg += struct.pack("<Q", bit_len)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off:off + 64])
        aa, bb, cc, dd = a, b, c, d
        f = lambda x_, y, z: (x_ & y) | (~x_ & z)  # noqa: E731
        g = lambda x_, y, z: (x_ & y) | (x_ & z) | (y & z)  # noqa: E731
        h = lambda x_, y, z: x_ ^ y ^ z  # noqa: E731
        for i in (0, 4, 8, 12):
            a = rol(a + f(b, c, d) + x[i], 3)
            d = rol(d + f(a, b, c) + x[i + 1], 7)
            c = rol(c + f(d, a, b) + x[i + 2], 11)
            b = rol(b + f(c, d, a) + x[i + 3], 19)
        for i in (0, 1, 2, 3):
            a = rol(a + g(b, c, d) + x[i] + 0x5A827999, 3)
            d = rol(d + g(a, b, c) + x[i + 4] + 0x5A827999, 5)
            c = rol(c + g(d, a, b) + x[i + 8] + 0x5A827999, 9)
            b = rol(b + g(c, d, a) + x[i + 12] + 0x5A827999, 13)
        for i in (0, 2, 1, 3):
            a = rol(a + h(b, c, d) + x[i] + 0x6ED9EBA1, 3)
            d = rol(d + h(a, b, c) + x[i + 8] + 0x6ED9EBA1, 9)
            c = rol(c + h(d, a, b) + x[i + 4] + 0x6ED9EBA1, 11)
            b = rol(b + h(c, d, a) + x[i + 12] + 0x6ED9EBA1, 15)
        a, b, c, d = [(v + w) & 0xFFFFFFFF for v, w in ((a, aa), (b, bb), (c, cc), (d, dd))]
    return struct.pack("<4I", a, b, c, d)


# DES tables (FIPS 46-3), bit numbers counted from 1 = most significant bit.
_IP = (58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
       62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
       57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
       61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7)
_FP = (40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31,
       38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29,
       36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
       34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25)
_E = (32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
      16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1)
_P = (16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
      2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25)
_PC1 = (57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
        10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
        63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
        14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4)
_PC2 = (14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
        41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32)
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_SBOX = (
    (14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, 0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
     4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, 15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13),
    (15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, 3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
     0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, 13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9),
    (10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, 13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
     13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, 1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12),
    (7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, 13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
     10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, 3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14),
    (2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, 14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
     4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, 11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3),
    (12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, 10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
     9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, 4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13),
    (4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, 13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
     1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, 6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12),
    (13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, 1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
     7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, 2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11),
)


def _permute(value: int, table: Iterable[int], in_bits: int) -> int:
    out = 0
    for pos in table:
        out = (out << 1) | ((value >> (in_bits - pos)) & 1)
    return out


def des_encrypt_block(key8: bytes, block8: bytes) -> bytes:
    """Single-block DES-ECB encryption (parity bits of the key are ignored, as in DES)."""
    k = _permute(int.from_bytes(key8, "big"), _PC1, 64)
    c, d = k >> 28, k & 0xFFFFFFF
    subkeys = []
    for s in _SHIFTS:
        c = ((c << s) | (c >> (28 - s))) & 0xFFFFFFF
        d = ((d << s) | (d >> (28 - s))) & 0xFFFFFFF
        subkeys.append(_permute((c << 28) | d, _PC2, 56))
    b = _permute(int.from_bytes(block8, "big"), _IP, 64)
    left, right = b >> 32, b & 0xFFFFFFFF
    for sk in subkeys:
        x = _permute(right, _E, 32) ^ sk
        f = 0
        for i in range(8):
            six = (x >> (42 - 6 * i)) & 0x3F
            row = ((six & 0x20) >> 4) | (six & 1)
            f = (f << 4) | _SBOX[i][row * 16 + ((six >> 1) & 0xF)]
        left, right = right, left ^ _permute(f, _P, 32)
    return _permute((right << 32) | left, _FP, 64).to_bytes(8, "big")


def _des_key_from_7(key7: bytes) -> bytes:
    """Spread 56 key bits over 8 bytes (low bit of each byte = unused parity)."""
    n = int.from_bytes(key7, "big")
    return bytes((((n >> (49 - 7 * i)) & 0x7F) << 1) for i in range(8))


def nt_password_hash(password: str) -> bytes:
    return md4(password.encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: str) -> bytes:
    return hashlib.sha1(peer_challenge + authenticator_challenge + username.encode()).digest()[:8]


def challenge_response(challenge8: bytes, password_hash16: bytes) -> bytes:
    z = password_hash16 + bytes(5)
    return b"".join(des_encrypt_block(_des_key_from_7(z[i:i + 7]), challenge8) for i in (0, 7, 14))


_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = b"On the client side, this is the send key; on the server side, it is the receive key."
_MPPE_MAGIC3 = b"On the client side, this is the receive key; on the server side, it is the send key."


@dataclasses.dataclass
class MsChapV2:
    """One computed MS-CHAPv2 exchange: request attributes and what the server must answer."""
    username: str
    password: str
    authenticator_challenge: bytes
    peer_challenge: bytes
    ident: int = 0

    @property
    def password_hash(self) -> bytes:
        return nt_password_hash(self.password)

    @property
    def nt_response(self) -> bytes:
        ch = challenge_hash(self.peer_challenge, self.authenticator_challenge, self.username)
        return challenge_response(ch, self.password_hash)

    @property
    def response_attr(self) -> bytes:
        """MS-CHAP2-Response: Ident, Flags, Peer-Challenge, 8 reserved, NT-Response (50 bytes)."""
        return bytes([self.ident, 0]) + self.peer_challenge + bytes(8) + self.nt_response

    def authenticator_response(self) -> str:
        """The ``S=<40 hex>`` the server must put into MS-CHAP2-Success."""
        hh = md4(self.password_hash)
        digest = hashlib.sha1(hh + self.nt_response + _MAGIC1).digest()
        ch = challenge_hash(self.peer_challenge, self.authenticator_challenge, self.username)
        return "S=" + hashlib.sha1(digest + ch + _MAGIC2).hexdigest().upper()

    def master_key(self) -> bytes:
        return hashlib.sha1(md4(self.password_hash) + self.nt_response + _MPPE_MAGIC1).digest()[:16]

    def _start_key(self, magic: bytes) -> bytes:
        return hashlib.sha1(self.master_key() + bytes(40) + magic + b"\xf2" * 40).digest()[:16]

    def server_send_key(self) -> bytes:
        """MS-MPPE-Send-Key as the server sends it (RFC 3079, IsServer, IsSend)."""
        return self._start_key(_MPPE_MAGIC3)

    def server_recv_key(self) -> bytes:
        """MS-MPPE-Recv-Key as the server sends it."""
        return self._start_key(_MPPE_MAGIC2)

    def radclient_lines(self) -> str:
        """Attribute lines for radclient (User-Name plus the two MS-CHAP attributes)."""
        return (
            f'User-Name = "{self.username}"\n'
            f"MS-CHAP-Challenge = 0x{self.authenticator_challenge.hex()}\n"
            f"MS-CHAP2-Response = 0x{self.response_attr.hex()}\n"
        )


def mschapv2_request(username: str, password: str, *, ident: int | None = None) -> MsChapV2:
    """A fresh MS-CHAPv2 exchange with random challenges; ``.radclient_lines()`` is the request.

    The challenge hash uses ``username`` exactly as sent in User-Name (our mschap module does
    not strip ``@realm``; it only strips ``DOMAIN\\``)."""
    return MsChapV2(username, password, os.urandom(16), os.urandom(16),
                    os.urandom(1)[0] if ident is None else ident)


