"""The decision table of DESIGN §2, one row per case: no sockets, no database."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from radius_op25b.core.decision import (
    Decision,
    Exemption,
    FilterClass,
    MsaPermit,
    Realm,
    Request,
    Settings,
    Subscriber,
    decide,
    decide_without_database,
    realm_of,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FULL, MOBILE, NONE = FilterClass.FULL, FilterClass.MOBILE, FilterClass.NONE
POOLS = Settings(static_pools=(ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8:25::/48")))
EXEMPT = Exemption("runs own MTA", "alice", NOW - timedelta(days=1), NOW + timedelta(days=30))
EXPIRED = Exemption("old", "bob", NOW - timedelta(days=60), NOW - timedelta(days=30))
REVOKED = Exemption("oops", "bob", NOW - timedelta(days=2), None, revoked_at=NOW - timedelta(hours=1))
FOREVER = Exemption("partner NOC", "carol", NOW - timedelta(days=2), None)
PERMIT = MsaPermit(ipaddress.ip_network("198.51.100.0/24"), NOW + timedelta(days=90))
OLD_PERMIT = MsaPermit(ipaddress.ip_network("192.0.2.0/25"), NOW - timedelta(seconds=1))


def sub(**kw) -> Subscriber:  # type: ignore[no-untyped-def]
    return Subscriber(username=kw.pop("username", "u@isp.example"), **kw)


CASES = [
    # (id, request, subscriber, realm, settings, class, reason kind, reason contains)
    (
        "nas-off",
        Request("u@isp.example", nas_name="bng9", nas_enforces=False),
        sub(class_override=FULL),
        None,
        Settings(),
        NONE,
        "nas",
        "NAS bng9 has enforcement off",
    ),
    (
        "static-subscriber",
        Request("u@isp.example"),
        sub(ip_type="static", static_addresses=("192.0.2.9",)),
        None,
        Settings(),
        NONE,
        "static",
        "static subscriber (192.0.2.9)",
    ),
    (
        "static-beats-override",
        Request("u@isp.example"),
        sub(ip_type="static", class_override=FULL),
        None,
        Settings(),
        NONE,
        "static",
        "static",
    ),
    (
        "static-pool-v4",
        Request("u@isp.example", ipaddress.ip_address("203.0.113.25")),
        sub(),
        None,
        POOLS,
        NONE,
        "static-pool",
        "static pool 203.0.113.0/24",
    ),
    (
        "static-pool-v6",
        Request("u@isp.example", ipaddress.ip_address("2001:db8:25::7")),
        None,
        None,
        POOLS,
        NONE,
        "static-pool",
        "2001:db8:25::/48",
    ),
    (
        "outside-pool",
        Request("u@isp.example", ipaddress.ip_address("203.0.114.1")),
        sub(),
        None,
        POOLS,
        FULL,
        "default",
        "policy default full",
    ),
    (
        "exempt",
        Request("u@isp.example"),
        sub(exemptions=(EXEMPT,)),
        None,
        Settings(),
        NONE,
        "exempt",
        "exempt until 2026-12-31 12:00 UTC by alice: runs own MTA",
    ),
    (
        "exempt-forever",
        Request("u@isp.example"),
        sub(exemptions=(FOREVER,)),
        None,
        Settings(),
        NONE,
        "exempt",
        "with no expiry by carol",
    ),
    (
        "exempt-beats-override",
        Request("u@isp.example"),
        sub(exemptions=(EXEMPT,), class_override=MOBILE),
        None,
        Settings(),
        NONE,
        "exempt",
        "exempt",
    ),
    (
        "expired-exemption",
        Request("u@isp.example"),
        sub(exemptions=(EXPIRED,)),
        None,
        Settings(),
        FULL,
        "default",
        "policy default",
    ),
    (
        "revoked-exemption",
        Request("u@isp.example"),
        sub(exemptions=(REVOKED,)),
        None,
        Settings(),
        FULL,
        "default",
        "policy default",
    ),
    (
        "override-mobile",
        Request("u@isp.example"),
        sub(class_override=MOBILE),
        Realm("isp.example", NONE),
        Settings(),
        MOBILE,
        "override",
        "class override mobile",
    ),
    (
        "override-none",
        Request("u@isp.example"),
        sub(class_override=NONE),
        None,
        Settings(),
        NONE,
        "override",
        "class override none",
    ),
    (
        "realm-default",
        Request("u@isp.example"),
        sub(),
        Realm("isp.example", MOBILE),
        Settings(),
        MOBILE,
        "realm",
        "realm isp.example default mobile",
    ),
    (
        "realm-without-default",
        Request("u@isp.example"),
        sub(),
        Realm("isp.example"),
        Settings(default_class=MOBILE),
        MOBILE,
        "default",
        "policy default mobile",
    ),
    (
        "unknown-subscriber",
        Request("x@isp.example"),
        None,
        None,
        Settings(),
        FULL,
        "default",
        "not in the database; policy default full",
    ),
    (
        "unknown-in-realm",
        Request("x@isp-b.example"),
        None,
        Realm("isp-b.example", MOBILE),
        Settings(),
        MOBILE,
        "realm",
        "realm isp-b.example",
    ),
    (
        "policy-default-none",
        Request("x@isp.example"),
        None,
        None,
        Settings(default_class=NONE),
        NONE,
        "default",
        "policy default none",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_decision_table(case) -> None:  # type: ignore[no-untyped-def]
    _, request, subscriber, realm, settings, cls, kind, reason = case
    got = decide(request, subscriber, realm, settings, NOW)
    assert (got.filter_class, got.reason_kind) == (cls, kind)
    assert reason in got.reason


def test_exemption_ends_at_its_expiry() -> None:
    s = sub(exemptions=(EXEMPT,))
    assert decide(Request(s.username), s, None, Settings(), EXEMPT.expires_at - timedelta(seconds=1)).filter_class is NONE  # type: ignore[operator]
    assert decide(Request(s.username), s, None, Settings(), EXEMPT.expires_at).filter_class is FULL  # type: ignore[arg-type]


def test_partner_permits_turn_full_into_the_partner_variant() -> None:
    realm = Realm("isp-b.example", None, (PERMIT, OLD_PERMIT), filter_name="OP25B-FULL-B")
    got = decide(Request("d@isp-b.example"), None, realm, Settings(), NOW)
    assert got == Decision(
        FULL,
        "not in the database; policy default full; partner MSA(25) permits 198.51.100.0/24 until 2027-03-01",
        "default",
        "isp-b.example",
        (ipaddress.ip_network("198.51.100.0/24"),),
        "OP25B-FULL-B",
    )


def test_expired_permits_do_not_count() -> None:
    realm = Realm("isp-b.example", None, (OLD_PERMIT,))
    got = decide(Request("d@isp-b.example"), None, realm, Settings(), NOW)
    assert got.msa_permits == () and "permit" not in got.reason


def test_permits_do_not_touch_mobile_or_none() -> None:
    realm = Realm("isp-b.example", MOBILE, (PERMIT,))
    assert decide(Request("d@isp-b.example"), None, realm, Settings(), NOW).msa_permits == ()


def test_subscriber_realm_wins_over_the_username_suffix() -> None:
    s = sub(username="plainname", realm="isp-b.example")
    assert decide(Request("plainname"), s, Realm("isp-b.example", MOBILE), Settings(), NOW).realm == "isp-b.example"


@pytest.mark.parametrize(
    ("name", "realm"),
    [
        ("a@ISP.Example", "isp.example"),
        ("noatsign", None),
        ("a@", None),
        ("a@ ", None),
        ("a@b@c.example", "c.example"),
        ("bob@ isp.example ", "isp.example"),
    ],
)
def test_realm_of(name: str, realm: str | None) -> None:
    assert realm_of(name) == realm


@pytest.mark.parametrize(("setting", "cls"), [("default", FULL), ("none", NONE)])
def test_database_error_policy(setting: str, cls: FilterClass) -> None:
    got = decide_without_database(Request("u@isp.example"), Settings(on_database_error=setting))
    assert (got.filter_class, got.reason_kind) == (cls, "database-error")


def test_database_error_still_honours_static_pools() -> None:
    got = decide_without_database(Request("u@x", ipaddress.ip_address("203.0.113.9")), POOLS)
    assert got.filter_class is NONE and got.reason_kind == "static-pool"
