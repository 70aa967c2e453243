"""Attribute helpers: lookups, Vendor-Specific, splices, Proxy-State, value encoders.
Untouched attributes must come out as the same octets, in the same order.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius import (
    CLASS,
    FILTER_ID,
    PROXY_STATE,
    STATE,
    USER_NAME,
    VENDOR_SPECIFIC,
    append_proxy_state,
    constants,
    decode_integer,
    decode_ipv4,
    decode_ipv6_prefix,
    decode_string,
    encode_integer,
    encode_ipv4,
    encode_ipv6_prefix,
    encode_string,
    get_all,
    get_first,
    ipv4_text,
    iter_vsas,
    join_vsa,
    replace_attributes,
    split_value,
    split_vsa,
    strip_own_proxy_state,
    vsa,
    vsa_vendor,
    without,
)

CISCO = 9
# One Vendor-Specific carrying two Cisco-AVPair sub-attributes, as some BNGs send them.
MULTI_VSA = (
    VENDOR_SPECIFIC,
    b"\x00\x00\x00\x09" + b"\x01\x10ip:addr-pool=a" + b"\x01\x0cfoo=barbaz" + b"\x02\x03x",
)
UNKNOWN = (224, b"\x00\xffopaque")
ATTRS = (
    (USER_NAME, b"alice"),
    UNKNOWN,
    (FILTER_ID, b"OLD"),
    MULTI_VSA,
    (PROXY_STATE, b"nas"),
    (CLASS, b"class"),
    (FILTER_ID, b"OLD2"),
)


def test_lookups() -> None:
    assert get_first(ATTRS, FILTER_ID) == b"OLD"
    assert get_first(ATTRS, 99) is None
    assert get_all(ATTRS, FILTER_ID) == [b"OLD", b"OLD2"]
    assert without(ATTRS, FILTER_ID, CLASS) == (
        ATTRS[0],
        UNKNOWN,
        MULTI_VSA,
        (PROXY_STATE, b"nas"),
    )


def test_vsa_builds_the_rfc2865_layout() -> None:
    assert vsa(CISCO, 1, b"ip:inacl#1=deny tcp any any eq 25") == (
        26,
        b"\x00\x00\x00\x09\x01\x23ip:inacl#1=deny tcp any any eq 25",
    )
    with pytest.raises(ValueError, match="247"):
        vsa(CISCO, 1, b"x" * 248)
    with pytest.raises(ValueError, match="vendor id"):
        vsa(1 << 24, 1, b"x")


def test_iter_vsas_returns_every_sub_attribute() -> None:
    assert iter_vsas(MULTI_VSA) == [
        (CISCO, 1, b"ip:addr-pool=a"),
        (CISCO, 1, b"foo=barbaz"),
        (CISCO, 2, b"x"),
    ]
    assert iter_vsas(vsa(14988, 19, b"op25b")) == [(14988, 19, b"op25b")]


@pytest.mark.parametrize(
    "attribute",
    [
        (USER_NAME, b"\x00\x00\x00\x09\x01\x03x"),  # not a VSA at all
        (26, b""),
        (26, b"\x00\x00\x01"),  # shorter than a Vendor-Id
        (26, b"\x00\x00\x00\x09"),  # a Vendor-Id and nothing else
        (26, b"\x00\x00\x00\x09\x01\x00abc"),  # sub-attribute length 0 (pyrad #234)
        (26, b"\x00\x00\x00\x09\x01\x01abc"),  # sub-attribute length 1
        (26, b"\x00\x00\x00\x09\x01\x09abc"),  # sub-attribute overruns the VSA
        (26, b"\x00\x00\x00\x09\x01\x05abc\x07"),  # trailing lone octet
        (26, b"\x00\x00\x01\xad\x00\x00\x00\x01abc"),  # USR: 4-octet vendor types
    ],
)
def test_iter_vsas_yields_nothing_for_what_it_cannot_read(attribute: tuple[int, bytes]) -> None:
    assert iter_vsas(attribute) == []


def test_split_and_join_vsa_round_trip() -> None:
    parsed = split_vsa(MULTI_VSA[1])
    assert parsed is not None
    vendor, subs = parsed
    assert vendor == CISCO == vsa_vendor(MULTI_VSA[1])
    assert join_vsa(vendor, [raw for _, raw in subs]) == MULTI_VSA[1]
    assert vsa_vendor(b"\x00\x00") is None


def test_replace_keeps_everything_else_byte_for_byte_and_in_order() -> None:
    ours = [(FILTER_ID, b"OP25B-FULL"), vsa(CISCO, 1, b"ip:inacl#1=deny tcp any any eq 25")]
    result = replace_attributes(ATTRS, {FILTER_ID}, set(), ours)
    assert result == (
        (USER_NAME, b"alice"),
        UNKNOWN,
        MULTI_VSA,
        (PROXY_STATE, b"nas"),
        (CLASS, b"class"),
        *ours,
    )
    # Untouched attributes are the very same objects: nothing was copied or re-encoded.
    assert result[2] is MULTI_VSA and result[1] is UNKNOWN


def test_replace_removes_one_sub_attribute_of_a_multi_sub_attribute_vsa() -> None:
    result = replace_attributes(ATTRS, set(), {(CISCO, 2)}, [])
    assert result[3] == (
        26,
        b"\x00\x00\x00\x09" + b"\x01\x10ip:addr-pool=a" + b"\x01\x0cfoo=barbaz",
    )
    assert result[:3] == ATTRS[:3] and result[4:] == ATTRS[4:]


def test_replace_drops_a_vsa_left_empty_and_leaves_other_vendors() -> None:
    mikrotik = vsa(14988, 19, b"old-list")
    attrs = (*ATTRS, mikrotik)
    result = replace_attributes(attrs, set(), {(CISCO, 1), (CISCO, 2)}, [])
    assert MULTI_VSA not in result and mikrotik in result
    assert len(result) == len(attrs) - 1


def test_replace_leaves_an_unparseable_vsa_alone() -> None:
    opaque = (26, b"\x00\x00\x00\x09\x01\x00garbage")
    assert replace_attributes((opaque,), set(), {(CISCO, 1)}, []) == (opaque,)


@pytest.mark.parametrize("attr_type", [STATE, CLASS, PROXY_STATE])
def test_replace_refuses_to_remove_what_a_proxy_must_relay(attr_type: int) -> None:
    with pytest.raises(ValueError, match="refusing"):
        replace_attributes(ATTRS, {attr_type}, set(), [])


def test_proxy_state_goes_last_and_only_ours_is_stripped() -> None:
    attrs = append_proxy_state(ATTRS, b"op25b-1")
    assert attrs[-1] == (PROXY_STATE, b"op25b-1")
    # The upstream echoes every Proxy-State in order and may add attributes after them.
    reply = ((FILTER_ID, b"x"), (PROXY_STATE, b"nas"), (PROXY_STATE, b"op25b-1"), (CLASS, b"c"))
    stripped, found = strip_own_proxy_state(reply, b"op25b-1")
    assert found
    assert stripped == ((FILTER_ID, b"x"), (PROXY_STATE, b"nas"), (CLASS, b"c"))


def test_strip_leaves_a_last_proxy_state_that_is_not_ours() -> None:
    reply = ((PROXY_STATE, b"op25b-1"), (PROXY_STATE, b"someone-else"))
    assert strip_own_proxy_state(reply, b"op25b-1") == (reply, False)
    assert strip_own_proxy_state(((FILTER_ID, b"x"),), b"op25b-1") == (((FILTER_ID, b"x"),), False)


def test_proxy_state_length_is_checked() -> None:
    with pytest.raises(ValueError):
        append_proxy_state((), b"")
    with pytest.raises(ValueError):
        append_proxy_state((), b"x" * 254)


# --- values --------------------------------------------------------------------------------------


def test_value_encoders() -> None:
    assert encode_string("ユーザ") == "ユーザ".encode()
    assert decode_string(b"\xffok") == "\ufffdok"
    assert encode_integer(0xDEADBEEF) == b"\xde\xad\xbe\xef"
    assert decode_integer(b"\x00\x00\x00\x03") == 3
    assert encode_ipv4("192.0.2.10") == b"\xc0\x00\x02\x0a"
    assert decode_ipv4(b"\xc0\x00\x02\x0a") == ipaddress.IPv4Address("192.0.2.10")
    for bad in (-1, 1 << 32):
        with pytest.raises(ValueError):
            encode_integer(bad)
    with pytest.raises(ValueError):
        encode_ipv4("2001:db8::1")
    for decode in (decode_integer, decode_ipv4, ipv4_text):
        with pytest.raises(MalformedPacket):
            decode(b"\x00\x00\x00")


@given(st.binary(min_size=4, max_size=4))
def test_ipv4_text_is_the_address_as_ipaddress_writes_it(value: bytes) -> None:
    assert ipv4_text(value) == str(decode_ipv4(value))


@pytest.mark.parametrize(
    ("prefix", "wire"),
    [
        ("2001:db8:1::/48", "0030 20010db80001"),
        ("2001:db8::/32", "0020 20010db8"),
        ("2001:db8:0:1::/64", "0040 20010db800000001"),
        ("::/0", "0000"),
        ("2001:db8::1/128", "0080 20010db8000000000000000000000001"),
    ],
)
def test_ipv6_prefix_rfc3162(prefix: str, wire: str) -> None:
    raw = bytes.fromhex(wire.replace(" ", ""))
    assert encode_ipv6_prefix(prefix) == raw
    assert decode_ipv6_prefix(raw) == ipaddress.IPv6Network(prefix)


def test_ipv6_prefix_decoding_is_tolerant_of_full_width_and_strict_on_nonsense() -> None:
    full = bytes.fromhex("0040 20010db8000000010000000000000000".replace(" ", ""))
    assert decode_ipv6_prefix(full) == ipaddress.IPv6Network("2001:db8:0:1::/64")
    for bad in (b"\x00", b"\x00\x81" + bytes(16), b"\x00\x40\x20\x01"):
        with pytest.raises(MalformedPacket):
            decode_ipv6_prefix(bad)


def test_split_value() -> None:
    data = bytes(range(256)) * 3  # 768 octets
    pieces = split_value(data)
    assert [len(p) for p in pieces] == [253, 253, 253, 9]
    assert b"".join(pieces) == data
    assert split_value(b"short") == [b"short"]
    assert split_value(b"") == []
    assert [len(p) for p in split_value(b"x" * 500, limit=247)] == [247, 247, 6]


# --- constants against FreeRADIUS's dictionaries --------------------------------------------------

FREERADIUS = Path("/usr/share/freeradius")


@pytest.mark.freeradius
@pytest.mark.skipif(not FREERADIUS.is_dir(), reason="Debian's freeradius-common is not installed")
def test_numbers_match_freeradius_dictionaries() -> None:
    attributes: dict[str, int] = {}
    for path in sorted(FREERADIUS.glob("dictionary.rfc*")):
        for match in re.finditer(r"^ATTRIBUTE\s+(\S+)\s+(\d+)\s", path.read_text(), re.M):
            attributes.setdefault(match[1].upper().replace("-", "_"), int(match[2]))
    codes: dict[str, int] = {}
    for path in FREERADIUS.glob("dictionary*"):
        for match in re.finditer(r"^VALUE\s+Packet-Type\s+(\S+)\s+(\d+)", path.read_text(), re.M):
            codes[match[1]] = int(match[2])

    ours = {name: value for name, value in vars(constants).items() if name.isupper()}
    attribute_names = [name for name in ours if name in attributes]
    # Every attribute-type constant from USER_NAME to OPERATOR_NAME has a FreeRADIUS twin.
    names = list(ours)
    expected = names[names.index("USER_NAME") : names.index("OPERATOR_NAME") + 1]
    assert attribute_names == expected
    assert {n: ours[n] for n in expected} == {n: attributes[n] for n in expected}
    assert {name: codes[name] for name in constants.CODE_NAMES.values()} == {
        name: code for code, name in constants.CODE_NAMES.items()
    }

    microsoft = (FREERADIUS / "dictionary.microsoft").read_text()
    assert re.search(r"^VENDOR\s+Microsoft\s+311\b", microsoft, re.M)
    for name, number in [("MS-MPPE-Send-Key", 16), ("MS-MPPE-Recv-Key", 17)]:
        assert re.search(rf"^ATTRIBUTE\s+{name}\s+{number}\s+octets\s+encrypt=2", microsoft, re.M)
    assert re.search(r"^ATTRIBUTE\s+MS-CHAP-MPPE-Keys\s+12\s+\S+\s+encrypt=1", microsoft, re.M)
