"""core/acl.py: the filters the profiles name, per vendor (pure, no I/O).

Golden outputs live in tests/data/acl/<vendor>.txt, written from the vendors' documented syntax
(the pages are cited in the module docstring of radius_op25b/core/acl.py and in
../shared/reference/radsec-and-bng-filters.md §3). After a deliberate change, rewrite them with
OP25B_REGEN_GOLDEN=1 and read the diff before committing it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from radius_op25b.core import acl, profiles
from radius_op25b.core.decision import Decision, FilterClass, MsaPermit, Realm, Request, Settings, decide
from radius_op25b.core.profiles import FilterContext, FilterNames
from radius_op25b.errors import Conflict

N = ipaddress.ip_network
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "acl"
NAMES = FilterNames()


def day_end(text: str) -> datetime:
    """How `realm permit-msa --until DATE` stores DATE: the first instant of the next day."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC) + timedelta(days=1)


PARTNER = Realm(
    "isp-b.example",
    msa_permits=(
        # two adjacent /25s (different ends) become one /24
        MsaPermit(N("198.51.100.0/25"), day_end("2027-01-31")),
        MsaPermit(N("198.51.100.128/25"), day_end("2027-03-31")),
        MsaPermit(N("2001:db8:b::/48"), day_end("2027-01-31")),
        MsaPermit(N("192.0.2.0/28"), day_end("2026-11-30")),  # expired: left out
    ),
)
NO_PERMITS = Realm("isp-c.example", default_class=FilterClass.MOBILE)
ALL_EXPIRED = Realm("isp-d.example", msa_permits=(MsaPermit(N("192.0.2.64/26"), day_end("2026-10-31")),))
REALMS = (PARTNER, NO_PERMITS, ALL_EXPIRED)
MOBILE = (
    acl.MobileBlock(N("192.0.2.128/25"), "carrier-a"),
    acl.MobileBlock(N("203.0.113.0/25"), "carrier-b"),
    acl.MobileBlock(N("2001:db8:ff::/48"), "carrier-b"),
)


def specs(**kw: object) -> tuple[acl.FilterSpec, ...]:
    return acl.filter_specs(NAMES, REALMS, MOBILE, NOW, **kw)  # type: ignore[arg-type]


# Rules counted from the printed text alone, independently of the renderer's bookkeeping.
RULE_LINE = {
    "nftables": re.compile(r"^\t\t(ip6? daddr \S+ )?tcp dport 25 (accept|drop)"),
    "cisco-ios": re.compile(r"^ (permit|deny) "),
    "cisco-xr": re.compile(r"^ \d+ (permit|deny) "),
    "junos": re.compile(r"^ +term \S+ \{$"),
    "nokia-sr": re.compile(r"^ +entry \d+ create$"),
    "mikrotik": re.compile(r"^add chain="),
}


@pytest.mark.parametrize("vendor", acl.VENDORS)
def test_golden_output(vendor: str) -> None:
    text = acl.render(vendor, specs(), NAMES).text
    path = GOLDEN / f"{vendor}.txt"
    if os.environ.get("OP25B_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize("vendor", acl.VENDORS)
def test_rule_counts_equal_the_rules_printed(vendor: str) -> None:
    rendering = acl.render(vendor, specs(), NAMES)
    printed = [line for line in rendering.text.splitlines() if RULE_LINE[vendor].match(line)]
    assert sum(len(f.rules) for f in rendering.filters) == len(printed)
    assert [r for f in rendering.filters for r in f.rules] == [line.strip() for line in printed]
    assert all(f.json()["rules"] == len(f.rules) for f in rendering.filters)


def test_adjacent_permits_aggregate_and_say_until_when() -> None:
    partner = next(s for s in specs() if s.realm == "isp-b.example")
    assert [d.network for d in partner.destinations] == [N("198.51.100.0/24"), N("2001:db8:b::/48")]
    merged = partner.destinations[0]
    assert merged.until == day_end("2027-01-31")  # holds as one block until its first part ends
    assert "198.51.100.0/25 until 2027-01-31" in merged.note and "198.51.100.128/25 until 2027-03-31" in merged.note
    for vendor in acl.VENDORS:
        text = acl.render(vendor, specs(), NAMES).text
        assert "198.51.100.128/25 until 2027-03-31" in text or vendor == "nokia-sr"


def test_expired_permit_is_left_out_but_said() -> None:
    partner = next(s for s in specs() if s.realm == "isp-b.example")
    assert N("192.0.2.0/28") not in [d.network for d in partner.destinations]
    for vendor in ("nftables", "cisco-ios", "cisco-xr", "junos", "mikrotik"):
        rendering = acl.render(vendor, specs(), NAMES)
        rules = " ".join(r for f in rendering.filters for r in f.rules)
        assert "192.0.2.0" not in rules.replace("192.0.2.0 0.0.0.127", "")  # only carrier-a's block
        assert "left out: 192.0.2.0/28 (permit ended: it held until 2026-11-30)" in rendering.text


def test_a_realm_without_active_permits_has_no_variant() -> None:
    names = {s.name for s in specs()}
    assert names == {"OP25B-FULL", "OP25B-FULL-ISP-B-EXAMPLE", "OP25B-MOBILE"}
    # its subscribers get the plain full filter (or mobile): render --realm says so
    only_c = acl.filter_specs(NAMES, REALMS, MOBILE, NOW, realm="isp-c.example")
    assert [s.name for s in only_c] == ["OP25B-FULL", "OP25B-MOBILE"]
    only_b = acl.filter_specs(NAMES, REALMS, MOBILE, NOW, realm="isp-b.example", filter_class=FilterClass.FULL)
    assert [s.name for s in only_b] == ["OP25B-FULL-ISP-B-EXAMPLE"]
    mobile = acl.filter_specs(NAMES, REALMS, MOBILE, NOW, filter_class=FilterClass.MOBILE)
    assert [s.name for s in mobile] == ["OP25B-MOBILE"]


def test_mobile_blocks_and_ipv6() -> None:
    rendering = acl.render("junos", specs(), NAMES)
    mobile = {f.family: f for f in rendering.filters if f.filter_class is FilterClass.MOBILE}
    assert [d.network for d in mobile["ipv4"].destinations] == [N("192.0.2.128/25"), N("203.0.113.0/25")]
    assert [d.network for d in mobile["ipv6"].destinations] == [N("2001:db8:ff::/48")]
    assert mobile["ipv6"].name == "OP25B-MOBILE-V6"
    assert len(mobile["ipv4"].rules) == 3  # two deny terms and accept-rest


# --- the names are the profiles' -------------------------------------------------------------


def _decision(realm: Realm | None, cls: FilterClass = FilterClass.FULL) -> Decision:
    settings = Settings(default_class=cls)
    return decide(Request("u@" + (realm.name if realm else "isp.example")), None, realm, settings, NOW)


def _attr(attrs: tuple[tuple[str, str], ...], name: str, prefix: str = "") -> str:
    return next(v.removeprefix(prefix) for n, v in attrs if n == name and v.startswith(prefix))


@pytest.mark.parametrize(("realm", "cls"), [(None, FilterClass.FULL), (PARTNER, FilterClass.FULL), (None, FilterClass.MOBILE)])
def test_rendered_names_are_what_the_profiles_send(realm: Realm | None, cls: FilterClass) -> None:
    decision = _decision(realm, cls)
    ctx = FilterContext(NAMES, tuple(b.network for b in MOBILE))
    want_realm = realm.name if realm is not None and cls is FilterClass.FULL else None

    def rendered(vendor: str) -> dict[str, str]:
        fs = [f for f in acl.render(vendor, specs(), NAMES).filters if f.filter_class is cls and f.realm == want_realm]
        return {f.family: f.name for f in fs}

    juniper = profiles.attributes_for("juniper", decision, ctx)
    assert rendered("junos") == {
        "ipv4": _attr(juniper, "ERX-Ingress-Policy-Name"),
        "ipv6": _attr(juniper, "ERX-IPv6-Ingress-Policy-Name"),
    }
    xr = profiles.attributes_for("cisco-xr", decision, ctx)
    assert rendered("cisco-xr") == {
        "ipv4": _attr(xr, "Cisco-AVPair", "ipv4:inacl="),
        "ipv6": _attr(xr, "Cisco-AVPair", "ipv6:ipv6_inacl="),
    }
    mikrotik = _attr(profiles.attributes_for("mikrotik", decision, ctx), "Mikrotik-Address-List")
    assert rendered("mikrotik") == {"ipv4": mikrotik, "ipv6": mikrotik}
    generic = _attr(profiles.attributes_for("generic", decision, ctx), "Filter-Id")
    assert rendered("nftables") == {"inet": generic}
    assert rendered("cisco-ios")["ipv4"] == generic
    nokia = profiles.attributes_for("nokia-sr", decision, ctx)
    if realm is None:
        ids = dict(part.split(":") for part in _attr(nokia, "Alc-Subscriber-Filter").split(","))
        assert rendered("nokia-sr") == {"ipv4": ids["Ingr-v4"], "ipv6": ids["Ingr-v6"]}
    else:  # the profile inlines a partner's permits: no filter id to render
        assert [n for n, _ in nokia] == ["NAS-Filter-Rule"] and rendered("nokia-sr") == {}


def test_partner_own_filter_name_and_ios_aces_match_the_inline_profile() -> None:
    named = Realm("isp-e.example", msa_permits=(MsaPermit(N("192.0.2.32/27"), day_end("2027-06-30")),), filter_name="E-FULL")
    spec = acl.filter_specs(NAMES, (named,), (), NOW, filter_class=FilterClass.FULL, realm="isp-e.example")
    assert [s.name for s in spec] == ["E-FULL"]
    ios = acl.render("cisco-ios", spec, NAMES).filters[0]
    inline = profiles.attributes_for("cisco-ios", _decision(named), FilterContext(NAMES))
    assert list(ios.rules) == [v.split("=", 1)[1] for _, v in inline]


def test_a_name_no_router_can_hold_is_refused() -> None:
    bad = Realm("isp-f.example", msa_permits=(MsaPermit(N("192.0.2.32/27"), day_end("2027-06-30")),), filter_name="has space")
    with pytest.raises(Conflict, match="realm isp-f.example: filter name 'has space'"):
        acl.filter_specs(NAMES, (bad,), (), NOW)


# --- JEAG 4.1 line counts --------------------------------------------------------------------


def test_jeag_formula_100_dynamic_blocks_10_msa_blocks() -> None:
    # ten /24s two apart (so they do not aggregate) for the partner; 100 dynamic /24s, also apart
    permits = tuple(MsaPermit(N(f"198.18.{2 * i}.0/24"), day_end("2027-12-31")) for i in range(10))
    dynamic = [N(f"10.{i // 100}.{2 * (i % 100)}.0/24") for i in range(100)]
    result = acl.report(NAMES, (Realm("isp-b.example", msa_permits=permits),), (), dynamic, NOW, vendors=("junos", "nftables"))
    row = next(r for r in result.rows if r.spec.realm == "isp-b.example" and r.version == 4)
    assert (row.termination, row.core_edge) == (11, 1_100)
    assert result.dynamic == {4: 100, 6: 0}
    assert row.rendered == {"junos": 12, "nftables": 11}  # junos adds its accept-rest term
    assert acl.jeag_core_lines(row.spec, 4, 100) == 100 * (10 + 1)


def test_report_warns_about_aggregation_and_the_nokia_limit() -> None:
    many = tuple(MsaPermit(N(f"198.18.{2 * i}.0/24"), day_end("2027-12-31")) for i in range(10))
    realms = (PARTNER, ALL_EXPIRED, Realm("isp-g.example", msa_permits=many))
    result = acl.report(NAMES, realms, MOBILE, [N("100.64.0.0/10")], NOW, profiles_in_use=("nokia-sr",))
    assert any("isp-b.example: 2 IPv4 MSA(25) permits aggregate into 1 (198.51.100.0/24)" in w for w in result.warnings)
    assert any(w.startswith("realm isp-d.example: every MSA(25) permit has ended") for w in result.warnings)
    assert any("isp-g.example: the nokia-sr profile would send 11 NAS-Filter-Rule entries" in w for w in result.warnings)


# --- nft -c ----------------------------------------------------------------------------------


def test_nftables_output_passes_nft_check(tmp_path: Path) -> None:
    nft = shutil.which("nft")
    if nft is None:
        pytest.skip("nft is not installed (Debian package nftables; tests/run.sh installs it)")
    path = tmp_path / "op25b.nft"
    path.write_text(acl.render("nftables", specs(), NAMES).text)
    done = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    if done.returncode and "Operation not permitted" in done.stderr:
        pytest.skip(f"nft -c needs CAP_NET_ADMIN here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr


# --- diff ------------------------------------------------------------------------------------


def test_diff_lists_lines_added_and_removed() -> None:
    before = acl.render("cisco-xr", specs(), NAMES).text
    later = NOW + timedelta(days=70)  # the first /25 ended: the /24 splits back
    after = acl.render("cisco-xr", acl.filter_specs(NAMES, REALMS, MOBILE, later), NAMES).text
    change = acl.diff(before, after)
    assert " 20 permit tcp any 198.51.100.0 0.0.0.255 eq 25" in change.removed
    assert " 20 permit tcp any 198.51.100.128 0.0.0.127 eq 25" in change.added
    assert acl.diff(before, before).unified == ()


def test_expiring_permits() -> None:
    soon = acl.expiring_permits(REALMS, NOW, timedelta(days=62))
    assert [(e.realm, str(e.network)) for e in soon] == [
        ("isp-b.example", "198.51.100.0/25"),
        ("isp-b.example", "2001:db8:b::/48"),
    ]


# --- dynamic ranges and PTR ------------------------------------------------------------------


def test_dynamic_ranges_less_static() -> None:
    ranges = acl.dynamic_ranges([N("100.64.0.0/24"), N("2001:db8:d::/48")], [N("100.64.0.128/25"), N("100.64.0.7/32")])
    got = [str(r.network) for r in ranges]
    assert got == ["100.64.0.0/30", "100.64.0.4/31", "100.64.0.6/32", "100.64.0.8/29", "100.64.0.16/28",
                   "100.64.0.32/27", "100.64.0.64/26", "2001:db8:d::/48"]  # fmt: skip
    assert ranges[0].excluded == 2 and ranges[-1].excluded == 0
    assert acl.subtract(N("10.0.0.0/8"), [N("10.0.0.0/8")]) == []


ZONE = """\
$TTL 3600
$ORIGIN 0.64.100.in-addr.arpa.
@   IN SOA ns1.isp.example. hostmaster.isp.example. (
        2026120101 ; serial
        3600 900 604800 300 )
    IN NS ns1.isp.example.
1       IN PTR dyn-100-64-0-1.isp.example.
2   300 IN PTR dyn-100-64-0-2.isp.example.
3          PTR mail.customer.example.      ; a dynamic address with a custom name
200        PTR dyn-100-64-0-200.isp.example.   ; static pool, but looks dynamic
7.0.64.100.in-addr.arpa. IN PTR static7.isp.example.
0/25       PTR classless.isp.example.
"""


def test_zone_parsing_and_ptr_check() -> None:
    zone = acl.parse_zone(ZONE)
    assert [(str(r.address), r.target) for r in zone.records][:2] == [
        ("100.64.0.1", "dyn-100-64-0-1.isp.example."),
        ("100.64.0.2", "dyn-100-64-0-2.isp.example."),
    ]
    assert zone.skipped == ("line 12: 0/25.0.64.100.in-addr.arpa. is not a full in-addr.arpa or ip6.arpa name",)
    is_dynamic = acl.dynamic_test([N("100.64.0.0/24")], [N("100.64.0.192/26")], [ipaddress.ip_address("100.64.0.7")])
    check = acl.ptr_check(re.compile(r"^dyn-\d+-\d+-\d+-\d+\.isp\.example$", re.I), zone, is_dynamic)
    assert [str(r.address) for r in check.dynamic] == ["100.64.0.1", "100.64.0.2", "100.64.0.3"]
    assert [str(r.address) for r in check.unmatched] == ["100.64.0.3"]
    assert [str(r.address) for r in check.static_matched] == ["100.64.0.200"]


def test_ip6_arpa_names() -> None:
    owner = ".".join(reversed("20010db8000d00000000000000000001")) + ".ip6.arpa."
    assert acl.reverse_address(owner) == ipaddress.ip_address("2001:db8:d::1")
    assert acl.reverse_address("d.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.") is None  # a zone apex, not an address
