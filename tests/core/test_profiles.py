"""Every built-in profile turns each decision into exactly these attributes (pure, no I/O)."""

from __future__ import annotations

import ipaddress

import pytest

from radius_op25b.core import profiles
from radius_op25b.core.decision import Decision, FilterClass
from radius_op25b.core.profiles import CustomProfile, FilterContext, FilterNames
from radius_op25b.radius.dictionary import load_dictionary

NET = ipaddress.ip_network
FULL = Decision(FilterClass.FULL, "policy default full", "default", "isp.example")
MOBILE = Decision(FilterClass.MOBILE, "realm default mobile", "realm", "isp.example")
NONE = Decision(FilterClass.NONE, "static", "static", "isp.example")
PARTNER = Decision(FilterClass.FULL, "x", "default", "isp-b.example", (NET("198.51.100.0/24"), NET("192.0.2.10/32")))
PARTNER_NAMED = Decision(FilterClass.FULL, "x", "default", "isp-b.example", (NET("198.51.100.0/24"),), "B-FULL")
CTX = FilterContext(FilterNames(), (NET("203.0.113.128/25"), NET("2001:db8:ff::/48")))

EXPECTED: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "generic": {
        "full": (("Filter-Id", "OP25B-FULL"),),
        "mobile": (("Filter-Id", "OP25B-MOBILE"),),
        "partner": (("Filter-Id", "OP25B-FULL-ISP-B-EXAMPLE"),),
        "partner_named": (("Filter-Id", "B-FULL"),),
    },
    "huawei": {
        "full": (("Filter-Id", "OP25B-FULL"),),
        "mobile": (("Filter-Id", "OP25B-MOBILE"),),
        "partner": (("Filter-Id", "OP25B-FULL-ISP-B-EXAMPLE"),),
        "partner_named": (("Filter-Id", "B-FULL"),),
    },
    "rfc4849": {
        "full": (("NAS-Filter-Rule", "deny in 6 from any to any 25"),),
        "mobile": (
            ("NAS-Filter-Rule", "deny in 6 from any to 203.0.113.128/25 25\x00deny in 6 from any to 2001:db8:ff::/48 25"),
        ),
        "partner": (
            (
                "NAS-Filter-Rule",
                "permit in 6 from any to 198.51.100.0/24 25\x00permit in 6 from any to 192.0.2.10/32 25\x00deny in 6 from any to any 25",
            ),
        ),
        "partner_named": (("NAS-Filter-Rule", "permit in 6 from any to 198.51.100.0/24 25\x00deny in 6 from any to any 25"),),
    },
    "cisco-ios": {
        "full": (("Cisco-AVPair", "ip:inacl#1=deny tcp any any eq 25"), ("Cisco-AVPair", "ip:inacl#2=permit ip any any")),
        "mobile": (
            ("Cisco-AVPair", "ip:inacl#1=deny tcp any 203.0.113.128 0.0.0.127 eq 25"),
            ("Cisco-AVPair", "ip:inacl#2=permit ip any any"),
        ),
        "partner": (
            ("Cisco-AVPair", "ip:inacl#1=permit tcp any 198.51.100.0 0.0.0.255 eq 25"),
            ("Cisco-AVPair", "ip:inacl#2=permit tcp any host 192.0.2.10 eq 25"),
            ("Cisco-AVPair", "ip:inacl#3=deny tcp any any eq 25"),
            ("Cisco-AVPair", "ip:inacl#4=permit ip any any"),
        ),
        "partner_named": (
            ("Cisco-AVPair", "ip:inacl#1=permit tcp any 198.51.100.0 0.0.0.255 eq 25"),
            ("Cisco-AVPair", "ip:inacl#2=deny tcp any any eq 25"),
            ("Cisco-AVPair", "ip:inacl#3=permit ip any any"),
        ),
    },
    "cisco-xr": {
        "full": (("Cisco-AVPair", "ipv4:inacl=OP25B-FULL"), ("Cisco-AVPair", "ipv6:ipv6_inacl=OP25B-FULL-V6")),
        "mobile": (("Cisco-AVPair", "ipv4:inacl=OP25B-MOBILE"), ("Cisco-AVPair", "ipv6:ipv6_inacl=OP25B-MOBILE-V6")),
        "partner": (
            ("Cisco-AVPair", "ipv4:inacl=OP25B-FULL-ISP-B-EXAMPLE"),
            ("Cisco-AVPair", "ipv6:ipv6_inacl=OP25B-FULL-ISP-B-EXAMPLE-V6"),
        ),
        "partner_named": (("Cisco-AVPair", "ipv4:inacl=B-FULL"), ("Cisco-AVPair", "ipv6:ipv6_inacl=B-FULL-V6")),
    },
    "juniper": {
        "full": (("ERX-Ingress-Policy-Name", "OP25B-FULL"), ("ERX-IPv6-Ingress-Policy-Name", "OP25B-FULL-V6")),
        "mobile": (("ERX-Ingress-Policy-Name", "OP25B-MOBILE"), ("ERX-IPv6-Ingress-Policy-Name", "OP25B-MOBILE-V6")),
        "partner": (
            ("ERX-Ingress-Policy-Name", "OP25B-FULL-ISP-B-EXAMPLE"),
            ("ERX-IPv6-Ingress-Policy-Name", "OP25B-FULL-ISP-B-EXAMPLE-V6"),
        ),
        "partner_named": (("ERX-Ingress-Policy-Name", "B-FULL"), ("ERX-IPv6-Ingress-Policy-Name", "B-FULL-V6")),
    },
    "nokia-sr": {
        "full": (("Alc-Subscriber-Filter", "Ingr-v4:2501,Ingr-v6:2501"),),
        "mobile": (("Alc-Subscriber-Filter", "Ingr-v4:2502,Ingr-v6:2502"),),
        "partner": (
            (
                "NAS-Filter-Rule",
                "permit in 6 from any to 198.51.100.0/24 25\x00permit in 6 from any to 192.0.2.10/32 25\x00deny in 6 from any to any 25",
            ),
        ),
        "partner_named": (("NAS-Filter-Rule", "permit in 6 from any to 198.51.100.0/24 25\x00deny in 6 from any to any 25"),),
    },
    "mikrotik": {
        "full": (("Mikrotik-Address-List", "OP25B-FULL"),),
        "mobile": (("Mikrotik-Address-List", "OP25B-MOBILE"),),
        "partner": (("Mikrotik-Address-List", "OP25B-FULL-ISP-B-EXAMPLE"),),
        "partner_named": (("Mikrotik-Address-List", "B-FULL"),),
    },
    "accel-ppp": {
        "full": (("NAS-Filter-Rule", "deny in 6 from any to any 25"),),
        "mobile": (
            ("NAS-Filter-Rule", "deny in 6 from any to 203.0.113.128/25 25\x00deny in 6 from any to 2001:db8:ff::/48 25"),
        ),
        "partner": (
            (
                "NAS-Filter-Rule",
                "permit in 6 from any to 198.51.100.0/24 25\x00permit in 6 from any to 192.0.2.10/32 25\x00deny in 6 from any to any 25",
            ),
        ),
        "partner_named": (("NAS-Filter-Rule", "permit in 6 from any to 198.51.100.0/24 25\x00deny in 6 from any to any 25"),),
    },
}
DECISIONS = {"full": FULL, "mobile": MOBILE, "partner": PARTNER, "partner_named": PARTNER_NAMED}


def test_every_builtin_profile_is_covered() -> None:
    assert set(EXPECTED) == set(profiles.BUILTIN_PROFILES)


@pytest.mark.parametrize("profile", sorted(EXPECTED))
@pytest.mark.parametrize("case", sorted(DECISIONS))
def test_attributes(profile: str, case: str) -> None:
    assert profiles.attributes_for(profile, DECISIONS[case], CTX) == EXPECTED[profile][case]


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_class_none_carries_nothing(profile: str) -> None:
    assert profiles.attributes_for(profile, NONE, CTX) == ()


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_attribute_names_are_in_our_dictionary(profile: str) -> None:
    dictionary = load_dictionary()
    change = profiles.live_change_for(profile)
    names = {n for case in EXPECTED[profile].values() for n, _ in case} | {n for n, _ in change.remove or ()}
    names |= {name for name, _ in profiles.managed_attributes(profile)}
    assert names <= set(dictionary.attributes)


LIVE = {
    # profile: (method, nak_fallback, attributes a CoA carries to remove the filter; None = Disconnect)
    "generic": ("coa", True, None),
    "rfc4849": ("coa", True, None),
    "cisco-ios": ("disconnect", False, None),
    "cisco-xr": ("coa", True, None),
    "juniper": ("coa", True, None),
    "nokia-sr": ("coa", True, (("Alc-Subscriber-Filter", "Ingr-v4:-2,Ingr-v6:-2"), ("NAS-Filter-Rule", " "))),
    "huawei": ("disconnect", False, None),
    "mikrotik": ("disconnect", False, None),
    "accel-ppp": ("coa", True, ()),
}


@pytest.mark.parametrize("profile", sorted(LIVE))
def test_live_change(profile: str) -> None:
    method, fallback, remove = LIVE[profile]
    change = profiles.live_change_for(profile)
    assert (change.method, change.nak_fallback, change.remove) == (method, fallback, remove)
    coa_full = profiles.coa_attributes_for(profile, FULL, CTX)
    coa_none = profiles.coa_attributes_for(profile, NONE, CTX)
    if method == "disconnect":
        assert coa_full is None and coa_none is None
    else:
        assert coa_full == EXPECTED[profile]["full"]
        assert coa_none == remove


def test_long_rule_lists_are_split_at_253_octets() -> None:
    many = Decision(FilterClass.FULL, "x", "default", "p", tuple(NET(f"10.{i}.0.0/16") for i in range(20)))
    attrs = profiles.attributes_for("rfc4849", many, CTX)
    assert len(attrs) > 1 and all(len(v.encode()) <= 253 for _, v in attrs)
    joined = "".join(v for _, v in attrs).split("\x00")
    assert joined[0] == "permit in 6 from any to 10.0.0.0/16 25" and joined[-1] == "deny in 6 from any to any 25"
    assert len(joined) == 21


def test_custom_profile_templates() -> None:
    custom = {
        "acme": CustomProfile(
            "acme",
            full=(("Filter-Id", "{filter}.in"), ("Reply-Message", "class {class} in {realm}")),
            mobile=(("Filter-Id", "{filter}.in"),),
            change="coa",
            remove=(("Filter-Id", "PERMIT-ALL.in"),),
        )
    }
    assert profiles.attributes_for("acme", FULL, CTX, custom) == (
        ("Filter-Id", "OP25B-FULL.in"),
        ("Reply-Message", "class full in isp.example"),
    )
    assert profiles.attributes_for("acme", PARTNER_NAMED, CTX, custom)[0] == ("Filter-Id", "B-FULL.in")
    assert profiles.attributes_for("acme", NONE, CTX, custom) == ()
    assert profiles.coa_attributes_for("acme", NONE, CTX, custom) == (("Filter-Id", "PERMIT-ALL.in"),)
    assert profiles.managed_attributes("acme", custom) == (("Filter-Id", ""), ("Reply-Message", ""))


def test_unknown_profile_is_named() -> None:
    with pytest.raises(KeyError, match="unknown NAS profile 'cisco-ios-xe'"):
        profiles.attributes_for("cisco-ios-xe", FULL, CTX)


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_profiles_own_what_they_send(profile: str) -> None:
    owned = profiles.managed_attributes(profile)
    for case in EXPECTED[profile].values():
        for name, value in case:
            assert any(name == n and value.startswith(prefix) for n, prefix in owned), (name, value)
