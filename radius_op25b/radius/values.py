"""Attribute value encodings of RFC 2865 §5 (text, address, integer) and RFC 3162 (IPv6 prefix).
Decoders raise MalformedPacket: the value came off the wire; encoders raise ValueError: it is ours.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius.constants import MAX_VALUE_LENGTH

_INTEGER = struct.Struct("!I")


def encode_string(text: str) -> bytes:
    """RFC 2865 §5 'text': UTF-8."""
    return text.encode("utf-8")


def decode_string(value: bytes) -> str:
    """UTF-8 text; invalid sequences become U+FFFD rather than failing the packet."""
    return value.decode("utf-8", errors="replace")


def encode_integer(number: int) -> bytes:
    """RFC 2865 §5 'integer': 32-bit unsigned, network byte order."""
    if not 0 <= number <= 0xFFFFFFFF:
        raise ValueError(f"{number} does not fit a 32-bit unsigned integer")
    return _INTEGER.pack(number)


def decode_integer(value: bytes) -> int:
    """A 32-bit unsigned integer value."""
    if len(value) != 4:
        raise MalformedPacket(f"integer value is {len(value)} octets, not 4")
    number: int = _INTEGER.unpack(value)[0]
    return number


def encode_ipv4(address: str | ipaddress.IPv4Address) -> bytes:
    """RFC 2865 §5 'address': 4 octets."""
    return ipaddress.IPv4Address(address).packed


def decode_ipv4(value: bytes) -> ipaddress.IPv4Address:
    """A 4-octet address value."""
    if len(value) != 4:
        raise MalformedPacket(f"address value is {len(value)} octets, not 4")
    return ipaddress.IPv4Address(value)


def ipv4_text(value: bytes) -> str:
    """A 4-octet address value as dotted text, as str(decode_ipv4(value)) gives it, for a tenth
    of the cost (the accounting hot path reads two per record)."""
    if len(value) != 4:
        raise MalformedPacket(f"address value is {len(value)} octets, not 4")
    return socket.inet_ntop(socket.AF_INET, value)


def encode_ipv6_prefix(network: str | ipaddress.IPv6Network) -> bytes:
    """RFC 3162 §2.3 Framed-IPv6-Prefix: Reserved, Prefix-Length, then the prefix octets needed."""
    net = ipaddress.IPv6Network(network)
    octets = (net.prefixlen + 7) // 8
    return bytes((0, net.prefixlen)) + net.network_address.packed[:octets]


def decode_ipv6_prefix(value: bytes) -> ipaddress.IPv6Network:
    """An RFC 3162 prefix value; host bits set by a sloppy NAS are cleared, not refused."""
    if not 2 <= len(value) <= 18:
        raise MalformedPacket(f"IPv6 prefix value is {len(value)} octets, not 2 to 18")
    prefix_length = value[1]
    # RFC 3162 §2.3: "The length of the prefix, in bits.  At least 0 and no larger than 128."
    if prefix_length > 128 or (prefix_length + 7) // 8 > len(value) - 2:
        raise MalformedPacket(f"IPv6 prefix length {prefix_length} does not fit the value")
    address = value[2:].ljust(16, b"\0")
    return ipaddress.IPv6Network((address, prefix_length), strict=False)


def split_value(data: bytes, limit: int = MAX_VALUE_LENGTH) -> list[bytes]:
    """Cut a long value into pieces of at most `limit` octets (253 by default; 247 for a VSA)."""
    if limit < 1:
        raise ValueError("limit must be positive")
    # RFC 2865 §5: "Text of length zero (0) MUST NOT be sent; omit the entire attribute instead."
    if not data:
        return []
    if len(data) <= limit:
        return [data]
    return [data[start : start + limit] for start in range(0, len(data), limit)]
