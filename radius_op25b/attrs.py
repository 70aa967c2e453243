"""Named attributes to wire attributes: ("Cisco-AVPair", "ip:inacl#1=...") -> (26, raw VSA).

Profiles speak our dictionary's names; the relay speaks raw (type, bytes). Resolution happens
once per name, so the per-packet cost is a dict lookup and an encode.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from radius_op25b.dictionary import load_dictionary
from radius_op25b.radius import Attributes, encode_integer, vsa

# A name resolves to (type, vendor id or None, data type).
_Resolved = tuple[int, int | None, str]


@lru_cache(maxsize=None)
def resolve(name: str) -> _Resolved:
    dictionary = load_dictionary()
    try:
        attribute = dictionary.attributes[name]
    except KeyError:
        raise KeyError(f"attribute {name!r} is not in our dictionary") from None
    vendor = dictionary.vendors.GetForward(attribute.vendor) if attribute.vendor else None
    return attribute.code, vendor, attribute.type


def encode_value(name: str, data_type: str, text: str) -> bytes:
    if data_type in ("string", "octets"):
        return text.encode()
    if data_type == "integer":
        values = load_dictionary().attributes[name].values
        return encode_integer(int(values.GetForward(text)) if values.HasForward(text) else int(text))
    if data_type == "ipaddr":
        return ipaddress.IPv4Address(text).packed
    raise ValueError(f"attribute {name!r} has type {data_type}, which profiles cannot set")


def encode(pairs: tuple[tuple[str, str], ...]) -> Attributes:
    """Wire attributes for (name, text) pairs, in order; one VSA per vendor attribute."""
    out = []
    for name, text in pairs:
        code, vendor, data_type = resolve(name)
        value = encode_value(name, data_type, text)
        out.append(vsa(vendor, code, value) if vendor is not None else (code, value))
    return tuple(out)


def managed_sets(names: tuple[str, ...]) -> tuple[frozenset[int], frozenset[tuple[int, int]]]:
    """The plain types and (vendor, type) pairs of `names`, as replace_attributes wants them."""
    plain, vendor_specific = set(), set()
    for name in names:
        code, vendor, _ = resolve(name)
        if vendor is None:
            plain.add(code)
        else:
            vendor_specific.add((vendor, code))
    return frozenset(plain), frozenset(vendor_specific)
