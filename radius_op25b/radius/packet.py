"""RADIUS packet framing: raw datagram bytes to a Packet of (type, value) pairs and back.
Values stay the exact octets received, so parse then encode gives the same bytes (minus padding).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius.attributes import Attribute
from radius_op25b.radius.constants import (
    AUTHENTICATOR_LENGTH,
    HEADER_LENGTH,
    MAX_PACKET_LENGTH,
    MAX_VALUE_LENGTH,
    MIN_PACKET_LENGTH,
)

_HEADER = struct.Struct("!BBH")
_LENGTH = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class Packet:
    """One RADIUS packet; `attributes` keeps wire order and raw value octets."""

    code: int
    identifier: int
    authenticator: bytes
    attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 255:
            raise ValueError(f"code {self.code} does not fit one octet")
        if not 0 <= self.identifier <= 255:
            raise ValueError(f"identifier {self.identifier} does not fit one octet")
        if len(self.authenticator) != AUTHENTICATOR_LENGTH:
            raise ValueError(f"authenticator is {len(self.authenticator)} octets, not 16")
        if not isinstance(self.attributes, tuple):
            # A list would make the frozen packet unhashable and mutable behind our back.
            object.__setattr__(self, "attributes", tuple(self.attributes))


def length_field(data: bytes, header: int = HEADER_LENGTH) -> int:
    """The Length field, checked against RFC 2865 §3: "The minimum length is 20 and maximum
    length is 4096." `header`: the octets `data` must have at least (a stream reader needs 4)."""
    if len(data) < header:
        raise MalformedPacket(f"short header: {len(data)} octets")
    length: int = _LENGTH.unpack_from(data, 2)[0]
    if length < MIN_PACKET_LENGTH:
        raise MalformedPacket(f"length field {length} below minimum 20")
    if length > MAX_PACKET_LENGTH:
        raise MalformedPacket(f"length field {length} above maximum 4096")
    return length


def packet_length(data: bytes) -> int:
    """The Length field of a datagram, after the header checks every reader needs."""
    length = length_field(data)
    # RFC 2865 §3: "If the packet is shorter than the Length field indicates, it MUST be
    # silently discarded."
    if length > len(data):
        raise MalformedPacket(f"length field {length} exceeds datagram {len(data)}")
    return length


def parse_packet(data: bytes) -> Packet:
    """Split a datagram into header and attributes, or raise MalformedPacket with a short reason."""
    if not isinstance(data, bytes):
        data = bytes(data)  # slices of a bytearray or memoryview would not be bytes
    length = packet_length(data)
    # RFC 2865 §3: "Octets outside the range of the Length field MUST be treated as padding
    # and ignored on reception."  So everything below reads up to `length` only.
    attributes: list[Attribute] = []
    offset = HEADER_LENGTH
    while offset < length:
        if offset + 2 > length:
            raise MalformedPacket("attribute overruns packet")
        attr_type = data[offset]
        attr_length = data[offset + 1]
        # RFC 2865 §5: "The Length field is one octet, and indicates the length of this
        # Attribute including the Type, Length and Value fields."  So it is never below 2.
        if attr_length < 2:
            raise MalformedPacket(f"attribute {attr_type} length {attr_length}")
        end = offset + attr_length
        if end > length:
            raise MalformedPacket("attribute overruns packet")
        attributes.append((attr_type, data[offset + 2 : end]))
        offset = end
    return Packet(data[0], data[1], data[4:HEADER_LENGTH], tuple(attributes))


def encode_packet(packet: Packet) -> bytes:
    """Frame a packet as it is: no authenticator or Message-Authenticator is computed."""
    return bytes(frame(packet.code, packet.identifier, packet.authenticator, packet.attributes))


def frame(code: int, identifier: int, authenticator: bytes, attributes: Iterable[Attribute]) -> bytearray:
    """Lay out a packet in a mutable buffer, so signing can patch authenticators in place."""
    body = encode_attributes(attributes)
    length = HEADER_LENGTH + len(body)
    if length > MAX_PACKET_LENGTH:
        # Reachable from input: an upstream reply near the limit plus our own attributes.
        raise MalformedPacket(f"packet length {length} above maximum 4096")
    buffer = bytearray(_HEADER.pack(code, identifier, length))
    buffer += authenticator
    buffer += body
    return buffer


def encode_attributes(attributes: Iterable[Attribute]) -> bytes:
    """Concatenate Type, Length, Value triplets; a value over 253 octets is a caller's bug."""
    parts: list[bytes] = []
    for attr_type, value in attributes:
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(f"attribute {attr_type} value is {len(value)} octets; at most 253 fit (split it with split_value)")
        parts.append(bytes((attr_type, len(value) + 2)))
        parts.append(value)
    return b"".join(parts)
