"""RADIUS over a stream (RFC 6613 / RFC 6614) and RADIUS/1.1 (RFC 9765), sans I/O: where one
packet ends in the byte stream, which protocol version ALPN chose, and the 1.1 packet form.

A RADIUS/1.1 packet has the RADIUS/1.0 layout with other meanings (RFC 9765, packet format):

    Code (1) | Reserved-1 (1) | Length (2) | Token (4) | Reserved-2 (12) | Attributes

so `parse_packet` reads it as it is; here a 1.1 packet is a `Packet` whose identifier is 0 and
whose authenticator is the Token followed by twelve zero octets. Nothing in it is signed or
hidden with the shared secret: TLS protects it.
"""

from __future__ import annotations

from collections.abc import Sequence

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius.attributes import Attribute, Attributes, iter_vsas
from radius_op25b.radius.constants import (
    HEADER_LENGTH,
    MESSAGE_AUTHENTICATOR,
    TUNNEL_PASSWORD,
    USER_PASSWORD,
)
from radius_op25b.radius.crypto import (
    HIDDEN_VSAS,
    SALTED_VSAS,
    decrypt_user_password,
    encrypt_user_password,
    ensure_chap_challenge,
)
from radius_op25b.radius.packet import Packet, frame, length_field

STREAM_HEADER = 4  # Code, Identifier, Length: enough to know where the packet ends
ALPN_V10 = "radius/1.0"
ALPN_V11 = "radius/1.1"
V10, V11 = "1.0", "1.1"
V11_MODES = ("allow", "require", "off")
TOKEN_LENGTH = 4
_RESERVED_2 = bytes(12)


def stream_packet_length(header: bytes) -> int:
    """The whole packet's length from its first four octets, or MalformedPacket.

    RFC 6613 §2.6.4: a packet whose Length is below 20 or above 4096 cannot be framed, so
    "the connection MUST be closed" - the caller closes it; nothing after it can be trusted.
    """
    return length_field(header, STREAM_HEADER)


class StreamFramer:
    """Bytes in, whole packets out: `feed(data)` returns the packets completed by `data`.

    After a MalformedPacket every later call raises too: the stream has lost its framing.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._broken: MalformedPacket | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        packets: list[bytes] = []
        while len(self._buffer) >= STREAM_HEADER:
            try:
                length = stream_packet_length(bytes(self._buffer[:STREAM_HEADER]))
            except MalformedPacket as exc:
                self._broken = exc
                raise
            if len(self._buffer) < length:
                break
            packets.append(bytes(self._buffer[:length]))
            del self._buffer[:length]
        return packets

    @property
    def pending(self) -> int:
        """Octets of a packet not yet complete."""
        return len(self._buffer)


# --- ALPN: which version a connection speaks ---------------------------------------------------


def alpn_offer(mode: str) -> list[str]:
    """The ALPN protocol names to offer (client) or accept (server) for `tls.radius_v11`.

    RFC 9765 (ALPN configuration): with "off" no ALPN is sent and the connection is RADIUS/1.0 as before.
    """
    if mode == "off":
        return []
    if mode == "require":
        return [ALPN_V11]
    return [ALPN_V11, ALPN_V10]


class VersionRefused(Exception):
    """The peer did not agree on a version we may speak: close the connection."""


def negotiated_version(selected: str | None, mode: str) -> str:
    """The version of a connection from the ALPN protocol TLS selected (None: no ALPN).

    RFC 9765 (ALPN configuration): no ALPN agreed means RADIUS/1.0, unless RADIUS/1.1 is required, in which
    case the connection is closed.
    """
    if selected == ALPN_V11 and mode != "off":
        return V11
    if mode == "require":
        raise VersionRefused(f"the peer does not speak {ALPN_V11} (ALPN: {selected or 'none'})")
    if selected not in (None, ALPN_V10):
        raise VersionRefused(f"unknown ALPN protocol {selected!r}")
    return V10


# --- RADIUS/1.1 packets ------------------------------------------------------------------------


def token_of(packet: Packet | bytes) -> bytes:
    """The Token of a 1.1 packet (RFC 9765, the Token field), from a Packet or raw bytes."""
    if isinstance(packet, Packet):
        return packet.authenticator[:TOKEN_LENGTH]
    return bytes(packet[4 : 4 + TOKEN_LENGTH])


def v11_authenticator(token: bytes) -> bytes:
    """The 16 octets where 1.0 has its authenticator: the Token, then Reserved-2 as zeros."""
    if len(token) != TOKEN_LENGTH:
        raise ValueError(f"a Token is 4 octets, not {len(token)}")
    return token + _RESERVED_2


def encode_v11(code: int, token: bytes, attributes: Sequence[Attribute]) -> bytes:
    """Wire bytes of a RADIUS/1.1 packet; a Message-Authenticator is never sent.

    RFC 9765 (packet format): Reserved-1 and Reserved-2 are sent as zero; and Message-Authenticator is
    not sent over RADIUS/1.1.
    """
    attrs = [a for a in attributes if a[0] != MESSAGE_AUTHENTICATOR]
    return bytes(frame(code, 0, v11_authenticator(token), attrs))


def _refuse_salted(attributes: Sequence[Attribute]) -> None:
    # Tunnel-Password and the salted MS-MPPE keys change form in RADIUS/1.1 (RFC 9765, obfuscated attributes);
    # we do not translate them yet, and relaying them unchanged would hand a peer garbage.
    for attr in attributes:
        if attr[0] == TUNNEL_PASSWORD:
            raise MalformedPacket("Tunnel-Password is not relayed between RADIUS/1.0 and 1.1")
        for vendor, vendor_type, _ in iter_vsas(attr):
            if (vendor, vendor_type) in SALTED_VSAS or (vendor, vendor_type) in HIDDEN_VSAS:
                raise MalformedPacket(f"vendor {vendor} attribute {vendor_type} is not relayed between RADIUS/1.0 and 1.1")


def reveal_request_attributes(attributes: Sequence[Attribute], secret: bytes, authenticator: bytes) -> Attributes:
    """A 1.0 request's attributes as RADIUS/1.1 carries them: User-Password in the clear, the
    CHAP challenge made explicit, no Message-Authenticator.

    RFC 9765 (obfuscated attributes): User-Password is sent as a plain string; with no Request Authenticator
    to stand in, CHAP-Challenge has to be present.
    """
    _refuse_salted(attributes)
    out: list[Attribute] = []
    for attr_type, value in ensure_chap_challenge(attributes, authenticator):
        if attr_type == MESSAGE_AUTHENTICATOR:
            continue
        if attr_type == USER_PASSWORD:
            value = decrypt_user_password(value, secret, authenticator)
            if not value:
                raise MalformedPacket("User-Password is empty")
        out.append((attr_type, value))
    return tuple(out)


def hide_request_attributes(attributes: Sequence[Attribute], secret: bytes, authenticator: bytes) -> Attributes:
    """A 1.1 request's attributes for a RADIUS/1.0 hop: User-Password hidden (RFC 2865 §5.2)
    under that hop's secret and Request Authenticator."""
    _refuse_salted(attributes)
    out: list[Attribute] = []
    for attr_type, value in attributes:
        if attr_type == MESSAGE_AUTHENTICATOR:
            continue  # not used over RADIUS/1.1 (RFC 9765): one received is discarded
        if attr_type == USER_PASSWORD:
            if not value:
                raise MalformedPacket("User-Password is empty")
            value = encrypt_user_password(value, secret, authenticator)
        out.append((attr_type, value))
    return tuple(out)


def plain_reply_attributes(attributes: Sequence[Attribute]) -> Attributes:
    """A reply's attributes for the other version: no Message-Authenticator, nothing salted.

    Used both ways (1.0 -> 1.1 and 1.1 -> 1.0); the 1.0 side's signing adds its own MA.
    """
    _refuse_salted(attributes)
    return tuple(a for a in attributes if a[0] != MESSAGE_AUTHENTICATOR)


__all__ = [
    "ALPN_V10",
    "ALPN_V11",
    "HEADER_LENGTH",
    "STREAM_HEADER",
    "TOKEN_LENGTH",
    "V10",
    "V11",
    "V11_MODES",
    "StreamFramer",
    "VersionRefused",
    "alpn_offer",
    "encode_v11",
    "hide_request_attributes",
    "negotiated_version",
    "plain_reply_attributes",
    "reveal_request_attributes",
    "stream_packet_length",
    "token_of",
    "v11_authenticator",
]
