"""Named attributes to wire attributes: ("Cisco-AVPair", "ip:inacl#1=...") -> (26, raw VSA).

Profiles speak our dictionary's names; the relay speaks raw (type, bytes). Resolution happens
once per name, so the per-packet cost is a dict lookup and an encode.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from radius_op25b.radius import VENDOR_SPECIFIC, Attributes, encode_integer, join_vsa, split_vsa, vsa
from radius_op25b.radius.dictionary import load_dictionary

# A name resolves to (type, vendor id or None, data type).
_Resolved = tuple[int, int | None, str]


@cache
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


# (vendor id or 0, type) -> the value prefixes owned; b"" owns every value.
OwnedRules = dict[tuple[int, int], tuple[bytes, ...]]


def owned_rules(managed: tuple[tuple[str, str], ...]) -> OwnedRules:
    rules: dict[tuple[int, int], tuple[bytes, ...]] = {}
    for name, prefix in managed:
        code, vendor, _ = resolve(name)
        key = (vendor or 0, code)
        rules[key] = rules.get(key, ()) + (prefix.encode(),)
    return rules


def _owned(rules: OwnedRules, key: tuple[int, int], value: bytes) -> bool:
    prefixes = rules.get(key)
    return prefixes is not None and any(value.startswith(p) for p in prefixes)


def strip_owned(attributes: Attributes, rules: OwnedRules) -> tuple[Attributes, bool]:
    """The attributes without those the rules own (sub-attributes of a multi-VSA one by one);
    everything else stays the same bytes in the same order. Also says whether any went."""
    kept: list[tuple[int, bytes]] = []
    removed = False
    for attr_type, value in attributes:
        if attr_type != VENDOR_SPECIFIC:
            if _owned(rules, (0, attr_type), value):
                removed = True
                continue
            kept.append((attr_type, value))
            continue
        parsed = split_vsa(value)
        if parsed is None:
            kept.append((attr_type, value))  # opaque vendor format: not ours to judge
            continue
        vendor, subs = parsed
        remaining = [raw for vtype, raw in subs if not _owned(rules, (vendor, vtype), raw[2:])]
        if len(remaining) == len(subs):
            kept.append((attr_type, value))
        else:
            removed = True
            if remaining:
                kept.append((attr_type, join_vsa(vendor, remaining)))
    return tuple(kept), removed
