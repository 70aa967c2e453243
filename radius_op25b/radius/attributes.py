"""Helpers on attribute tuples `(type, raw value)`: lookups, Vendor-Specific, Proxy-State, splices.
Every helper returns a new tuple and keeps the attributes it does not touch byte-for-byte, in order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence, Set
from typing import TypeAlias

from radius_op25b.radius.constants import (
    CLASS,
    MAX_VALUE_LENGTH,
    MAX_VSA_PAYLOAD,
    PROXY_STATE,
    STATE,
    VENDOR_SPECIFIC,
)

Attribute: TypeAlias = tuple[int, bytes]
Attributes: TypeAlias = tuple[Attribute, ...]
VendorAttribute: TypeAlias = tuple[int, int, bytes]  # (vendor id, vendor type, value)

_VENDOR_ID = struct.Struct("!I")

# Attributes a proxy must pass through untouched; a profile asking to remove them is a bug.
_NEVER_REMOVED = frozenset({STATE, CLASS, PROXY_STATE})


def get_first(attributes: Sequence[Attribute], attr_type: int) -> bytes | None:
    """The value of the first attribute of `attr_type`, or None."""
    for current_type, value in attributes:
        if current_type == attr_type:
            return value
    return None


def get_all(attributes: Sequence[Attribute], attr_type: int) -> list[bytes]:
    """The values of every attribute of `attr_type`, in packet order."""
    return [value for current_type, value in attributes if current_type == attr_type]


def without(attributes: Sequence[Attribute], *attr_types: int) -> Attributes:
    """The attributes minus every one whose type is in `attr_types`."""
    return tuple(attr for attr in attributes if attr[0] not in attr_types)


def vsa(vendor_id: int, vendor_type: int, value: bytes) -> Attribute:
    """One Vendor-Specific attribute carrying one sub-attribute in the RFC 2865 §5.26 layout."""
    # RFC 2865 §5.26: "The high-order octet is 0 and the low-order 3 octets are the SMI
    # Network Management Private Enterprise Code of the Vendor in network byte order".
    if not 0 <= vendor_id < 1 << 24:
        raise ValueError(f"vendor id {vendor_id} does not fit three octets")
    if len(value) > MAX_VSA_PAYLOAD:
        raise ValueError(f"vendor attribute value is {len(value)} octets; at most 247 fit")
    return (
        VENDOR_SPECIFIC,
        _VENDOR_ID.pack(vendor_id) + bytes((vendor_type, len(value) + 2)) + value,
    )


def vsa_vendor(value: bytes) -> int | None:
    """The Vendor-Id of a Vendor-Specific value, or None when it is too short to have one."""
    if len(value) < 4:
        return None
    vendor_id: int = _VENDOR_ID.unpack_from(value)[0]
    return vendor_id


def split_vsa(value: bytes) -> tuple[int, list[tuple[int, bytes]]] | None:
    """(vendor id, [(vendor type, raw sub-attribute incl. its 2-octet header)]), or None.

    None means the value does not follow the suggested layout exactly (other vendor formats
    such as USR's 4-octet types, or garbage); such a VSA can only be relayed as opaque octets.
    """
    # RFC 2865 §5.26: "It SHOULD be encoded as a sequence of vendor type / vendor length /
    # value fields" -- SHOULD, so a value that does not parse is not malformed, only opaque.
    vendor_id = vsa_vendor(value)
    if vendor_id is None or len(value) < 6:
        return None
    subs: list[tuple[int, bytes]] = []
    offset = 4
    end = len(value)
    # RFC 2865 §5.26: "Multiple subattributes MAY be encoded within a single Vendor-Specific
    # attribute, although they do not have to be."
    while offset < end:
        if offset + 2 > end:
            return None
        sub_length = value[offset + 1]
        # A sub-attribute length of 0 or 1 never advances: pyrad < 2.6.0 looped forever on it.
        if sub_length < 2 or offset + sub_length > end:
            return None
        subs.append((value[offset], value[offset : offset + sub_length]))
        offset += sub_length
    return vendor_id, subs


def iter_vsas(attribute: Attribute) -> list[VendorAttribute]:
    """Every (vendor id, vendor type, value) in one attribute; [] if it is no parseable VSA."""
    attr_type, value = attribute
    if attr_type != VENDOR_SPECIFIC:
        return []
    parsed = split_vsa(value)
    if parsed is None:
        return []
    vendor_id, subs = parsed
    return [(vendor_id, vendor_type, raw[2:]) for vendor_type, raw in subs]


def join_vsa(vendor_id: int, raw_sub_attributes: Iterable[bytes]) -> bytes:
    """Rebuild a Vendor-Specific value from raw sub-attributes (as `split_vsa` returns them)."""
    value = _VENDOR_ID.pack(vendor_id) + b"".join(raw_sub_attributes)
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"Vendor-Specific value is {len(value)} octets; at most 253 fit")
    return value


def replace_attributes(
    attributes: Sequence[Attribute],
    remove_types: Set[int],
    remove_vsas: Set[tuple[int, int]],
    add: Iterable[Attribute],
) -> Attributes:
    """Drop `remove_types` and the `(vendor, type)` sub-attributes in `remove_vsas`; append `add`.

    A VSA holding several sub-attributes loses only the removed ones; one left empty goes.
    Everything else is kept as the same bytes in the same order.
    """
    # RFC 2865 §5.33: Proxy-State "MUST be returned unmodified in the Access-Accept,
    # Access-Reject or Access-Challenge"; Class and State are the server's, never ours.
    protected = remove_types & _NEVER_REMOVED
    if protected:
        raise ValueError(f"refusing to remove attribute(s) {sorted(protected)}: proxies relay them")
    vendors = {vendor_id for vendor_id, _ in remove_vsas}
    kept: list[Attribute] = []
    for attribute in attributes:
        attr_type, value = attribute
        if attr_type in remove_types:
            continue
        if attr_type == VENDOR_SPECIFIC and vendors and vsa_vendor(value) in vendors:
            trimmed = _remove_sub_attributes(value, remove_vsas)
            if trimmed is None:
                continue
            if trimmed is not value:
                attribute = (attr_type, trimmed)
        kept.append(attribute)
    kept.extend(add)
    return tuple(kept)


def _remove_sub_attributes(value: bytes, remove_vsas: Set[tuple[int, int]]) -> bytes | None:
    """`value` itself if nothing matched, a rebuilt value, or None if nothing is left."""
    parsed = split_vsa(value)
    if parsed is None:
        return value  # opaque: we cannot know what is inside, so we do not touch it
    vendor_id, subs = parsed
    remaining = [raw for vendor_type, raw in subs if (vendor_id, vendor_type) not in remove_vsas]
    if len(remaining) == len(subs):
        return value
    if not remaining:
        return None
    return join_vsa(vendor_id, remaining)


def append_proxy_state(attributes: Sequence[Attribute], state: bytes) -> Attributes:
    """The attributes with our Proxy-State added after all others (and after the NAS's)."""
    if not 1 <= len(state) <= MAX_VALUE_LENGTH:
        raise ValueError(f"Proxy-State must be 1 to 253 octets, not {len(state)}")
    return (*attributes, (PROXY_STATE, state))


def strip_own_proxy_state(attributes: Sequence[Attribute], state: bytes) -> tuple[Attributes, bool]:
    """Remove the last Proxy-State if it is `state`; report whether it was there.

    Earlier Proxy-States (the NAS's, or other proxies') stay, unmodified and in order.
    """
    # RFC 2865 §5.33: "When the proxy server receives the response to its request, it MUST
    # remove its own Proxy-State (the last Proxy-State in the packet) before forwarding the
    # response to the NAS."
    for index in range(len(attributes) - 1, -1, -1):
        attr_type, value = attributes[index]
        if attr_type == PROXY_STATE:
            if value != state:
                return tuple(attributes), False
            return (*attributes[:index], *attributes[index + 1 :]), True
    return tuple(attributes), False
