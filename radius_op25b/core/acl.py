"""The filters on the BNG that the NAS profiles name (issue 13): realms' MSA(25) permits and the
mobile carriers' MTA blocks in, one rendered filter per class, realm and family out, per vendor.

Pure: no I/O, the clock passed in. Names come from core/profiles.py (`named_filter`, the same
function the profiles call), so what the proxy sends and what the router has cannot drift.

Rules of every filter, as in JEAG's OP25B recommendation (DESIGN.md §1):
  full    permit TCP/25 to the realm's active MSA(25) permits, deny TCP/25, pass the rest
  mobile  deny TCP/25 to the mobile carriers' MTA blocks, pass the rest
Permits and blocks are aggregated into the fewest CIDRs (ipaddress.collapse_addresses); an
expired permit is left out (and said so in a comment). `rules` of a filter is the number of its
match lines as printed (ACEs, terms, entries, nft rules, RouterOS `add` lines), remarks excluded.

The vendors' syntax, with the pages it comes from (../shared/reference/radsec-and-bng-filters.md §3):
  nftables   nft(8) "CHAINS", "MAPS" (verdict maps), "flush chain"; checked by `nft -c -f` [tried here]
  cisco-ios  IOS named extended ACL (`ip access-list extended`, `ipv6 access-list`), §3 Cisco bullet;
             ACEs from profiles.cisco_aces, the ones the cisco-ios profile sends inline
  cisco-xr   IOS-XR "Implementing Access Lists and Prefix Lists" (cisco.com, XR 12000 R4.3):
             `ipv4 access-list NAME` / `ipv6 access-list NAME` with sequence numbers
  junos      Junos firewall filters for $junos-input-filter / $junos-input-ipv6-filter, §3 Juniper
             bullet: `from { protocol tcp; destination-port 25; destination-address ... } then accept`
  nokia-sr   7750 SR classic CLI "Configuring Filter Policies with CLI" (infocenter.nokia.com
             7750SR207R1A filters_config.html): `ip-filter ID create`, `scope template`,
             `default-action forward`, `entry N create`, `match protocol tcp`, `dst-port eq 25`,
             `action drop|forward`; ipv6-filter `match next-header tcp` (7750 SR OS Router
             Configuration Guide, ipv6-filter match)
  mikrotik   RouterOS `/ip firewall filter` on the profile's address list (§3 MikroTik bullet;
             help.mikrotik.com "PPP AAA": profile `address-list` holds the assigned address)
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from radius_op25b.core.decision import Decision, FilterClass, IPAddress, IPNetwork, Realm
from radius_op25b.core.profiles import FilterContext, FilterNames, cisco_aces, named_filter
from radius_op25b.errors import Conflict

VENDORS: tuple[str, ...] = ("nftables", "cisco-ios", "cisco-xr", "junos", "nokia-sr", "mikrotik")
# The IPv6 twin of a named filter: the juniper profile sends ERX-IPv6-Ingress-Policy-Name and the
# cisco-xr profile ipv6:ipv6_inacl as the IPv4 name plus this (core/profiles.py _juniper, _cisco_xr;
# tests/core/test_acl.py checks the two agree).
IPV6_SUFFIX = "-V6"
# Which rendering a NAS profile needs (acl report shows the vendors in use).
PROFILE_VENDORS = {
    "juniper": "junos",
    "cisco-xr": "cisco-xr",
    "cisco-ios": "cisco-ios",
    "nokia-sr": "nokia-sr",
    "mikrotik": "mikrotik",
    "accel-ppp": "nftables",
}
# Nokia RADIUS Attributes Reference R14 p.87/p.90 (../shared/reference/nas-filter-attributes.md §2):
# NAS-Filter-Rule host entries: "max. 10 attributes ... or max. 10 filter entries per message".
NOKIA_MAX_HOST_ENTRIES = 10
SMTP = 25


@dataclass(frozen=True, slots=True)
class MobileBlock:
    network: IPNetwork
    carrier: str


@dataclass(frozen=True, slots=True)
class Destination:
    """One CIDR of a filter after aggregation, with what it was made of."""

    network: IPNetwork
    until: datetime | None  # a permit holds (as this one block) until the earliest end of its parts
    note: str  # "isp-b.example MSA(25) until 2027-01-31, end of day UTC" or the carriers


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A filter independent of vendor and family: class, realm, the name the profiles send."""

    filter_class: FilterClass
    name: str
    realm: str | None
    destinations: tuple[Destination, ...]  # permits (full) or blocks to deny (mobile)
    left_out: tuple[Destination, ...] = ()  # expired permits, said in a comment

    def family(self, version: int) -> tuple[Destination, ...]:
        return tuple(d for d in self.destinations if d.network.version == version)

    def gone(self, version: int | None = None) -> tuple[str, ...]:
        """The expired permits (of one family), as a comment says them."""
        return tuple(d.note for d in self.left_out if version is None or d.network.version == version)


@dataclass(frozen=True, slots=True)
class RenderedFilter:
    name: str  # what the profile sends (ACL / filter / address-list name, or the Nokia filter id)
    filter_class: FilterClass
    realm: str | None
    family: str  # "ipv4" | "ipv6" | "inet" (nftables: one chain holds both)
    rules: tuple[str, ...]  # the match lines as printed
    destinations: tuple[Destination, ...]

    def json(self) -> dict[str, object]:
        permits = [_destination_json(d) for d in self.destinations] if self.filter_class is FilterClass.FULL else []
        blocks = [_destination_json(d) for d in self.destinations] if self.filter_class is FilterClass.MOBILE else []
        return {
            "name": self.name,
            "class": str(self.filter_class),
            "realm": self.realm,
            "family": self.family,
            "rules": len(self.rules),
            "permits": permits,
            "blocks": blocks,
        }


@dataclass(frozen=True, slots=True)
class Rendering:
    vendor: str
    text: str
    filters: tuple[RenderedFilter, ...]

    def json(self) -> dict[str, object]:
        return {"vendor": self.vendor, "filters": [f.json() for f in self.filters]}


def _destination_json(d: Destination) -> dict[str, object]:
    return {"cidr": str(d.network), "until": d.until.isoformat() if d.until else None, "note": d.note}


# --- names: the profiles' own ---------------------------------------------------------------


def full_name(names: FilterNames, realm: Realm | None = None, permits: Sequence[IPNetwork] = ()) -> str:
    """The full filter's name for subscribers of `realm` with these active permits: the partner's
    variant when it has any, as the profiles name it (profiles.named_filter)."""
    decision = Decision(
        FilterClass.FULL,
        "acl render",
        "default",
        realm.name if realm else None,
        tuple(permits),
        realm.filter_name if realm else None,
    )
    name = named_filter(decision, names)
    assert name is not None  # a filtered class always has a name
    return name


def mobile_name(names: FilterNames) -> str:
    name = named_filter(Decision(FilterClass.MOBILE, "acl render", "default"), names)
    assert name is not None
    return name


def family_name(name: str, version: int) -> str:
    return name if version == 4 else name + IPV6_SUFFIX


# --- the filters the profiles can name ------------------------------------------------------


def collapse(nets: Iterable[IPNetwork]) -> list[IPNetwork]:
    """ipaddress.collapse_addresses for a mix of families: IPv4 first, then IPv6."""
    nets = list(nets)
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def aggregate(permits: Iterable[tuple[IPNetwork, datetime | None, str]]) -> tuple[Destination, ...]:
    """Permits (network, until, label) into the fewest CIDRs, per family, lowest first. An
    aggregate says which parts it holds and holds as one block until the earliest part ends."""
    parts = list(permits)
    out: list[Destination] = []
    for version in (4, 6):
        nets = [p for p in parts if p[0].version == version]
        for block in collapse(n for n, _, _ in nets):
            inside = sorted((p for p in nets if _within(p[0], block)), key=lambda p: (_key(p[0]), p[2]))
            ends = [u for _, u, _ in inside if u is not None]
            until = min(ends) if ends else None
            labels = list(dict.fromkeys(label for _, _, label in inside))
            if len(inside) == 1 or len({u for _, u, _ in inside}) == 1:
                pieces = ", ".join(str(n) for n, _, _ in inside) if len(inside) > 1 else ""
                note = _join(labels, until) + (f" (from {pieces})" if pieces else "")
            else:
                note = ", ".join(labels) + " " + ", ".join(f"{n} {until_text(u)}" if u else str(n) for n, u, _ in inside)
            out.append(Destination(block, until, note))
    return tuple(out)


def _within(a: IPNetwork, b: IPNetwork) -> bool:
    """a lies inside b (same family; ipaddress' subnet_of is typed per family)."""
    return (
        a.version == b.version
        and int(a.network_address) >= int(b.network_address)
        and int(a.broadcast_address) <= int(b.broadcast_address)
    )


def until_text(until: datetime) -> str:
    """An end as a comment says it: the last day for an end-of-day end (how `realm permit-msa
    --until DATE` stores it, core/inputs.parse_time), the exact minute otherwise."""
    if (until.hour, until.minute, until.second, until.microsecond) == (0, 0, 0, 0):
        return f"until {until - timedelta(days=1):%Y-%m-%d}"
    return f"until {until:%Y-%m-%d %H:%M}Z"


def _join(labels: Sequence[str], until: datetime | None) -> str:
    text = ", ".join(labels)
    return f"{text} {until_text(until)}" if until is not None else text


def active_permits(realm: Realm, now: datetime) -> tuple[IPNetwork, ...]:
    """What the decision gives the realm's subscribers (decision._with_partner_permits): the
    unaggregated networks of the permits still holding at `now`."""
    return tuple(p.network for p in realm.msa_permits if p.active_at(now))


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_filter_name(name: str, where: str) -> str:
    """A filter name every vendor can write unquoted: letters, digits, - _ . (at most 63)."""
    if not _NAME.match(name):
        raise Conflict(
            f"{where}: filter name {name!r} cannot name a filter on a router (letters, digits, - _ . only; at most 63)"
        )
    return name


def filter_specs(
    names: FilterNames,
    realms: Iterable[Realm],
    mobile_blocks: Iterable[MobileBlock],
    now: datetime,
    *,
    filter_class: FilterClass | None = None,
    realm: str | None = None,
) -> tuple[FilterSpec, ...]:
    """Every filter the profiles can name: full, each realm's partner variant (a realm with
    active permits), mobile. `realm`: only the filters that realm's subscribers can be given."""
    realms = sorted(realms, key=lambda r: r.name)
    specs: list[FilterSpec] = []
    want_full = filter_class in (None, FilterClass.FULL)
    chosen = [r for r in realms if realm is None or r.name == realm]
    plain_needed = realm is None or not any(active_permits(r, now) for r in chosen)
    if want_full and plain_needed:
        specs.append(FilterSpec(FilterClass.FULL, check_filter_name(full_name(names), "[filters] full"), None, ()))
    if want_full:
        for r in chosen:
            active = [p for p in r.msa_permits if p.active_at(now)]
            if not active:
                continue
            gone = tuple(
                Destination(p.network, p.until, f"{p.network} (permit ended: it held {until_text(p.until)})")
                for p in r.msa_permits
                if not p.active_at(now)
            )
            dests = aggregate((p.network, p.until, f"{r.name} MSA(25)") for p in active)
            name = check_filter_name(full_name(names, r, [p.network for p in active]), f"realm {r.name}")
            specs.append(FilterSpec(FilterClass.FULL, name, r.name, dests, gone))
    if filter_class in (None, FilterClass.MOBILE):
        blocks = aggregate((b.network, None, b.carrier) for b in mobile_blocks)
        specs.append(FilterSpec(FilterClass.MOBILE, check_filter_name(mobile_name(names), "[filters] mobile"), None, blocks))
    return tuple(specs)


# --- rendering ------------------------------------------------------------------------------


@dataclass
class _Out:
    """Text lines, with the match lines of each filter kept apart for counting."""

    lines: list[str] = field(default_factory=list)
    filters: list[RenderedFilter] = field(default_factory=list)
    _rules: list[str] = field(default_factory=list)

    def text(self, *lines: str) -> None:
        self.lines.extend(lines)

    def rule(self, line: str) -> None:
        self.lines.append(line)
        self._rules.append(line.strip())

    def close(self, spec: FilterSpec, name: str, family: str, dests: tuple[Destination, ...]) -> None:
        self.filters.append(RenderedFilter(name, spec.filter_class, spec.realm, family, tuple(self._rules), dests))
        self._rules = []


def _purpose(spec: FilterSpec) -> str:
    if spec.filter_class is FilterClass.MOBILE:
        return "mobile: deny TCP/25 to the mobile carriers' MTA blocks, pass the rest"
    if spec.realm is None:
        return "full: deny TCP/25, pass the rest (no MSA(25) permits)"
    return f"full: permit TCP/25 to realm {spec.realm}'s MSA(25) permits, deny TCP/25, pass the rest"


def _header(out: _Out, mark: str, vendor: str, how: Sequence[str]) -> None:
    out.text(
        f"{mark} OP25B filters (JEAG Outbound Port 25 Blocking), written by `op25b acl render --vendor {vendor}`.",
        f"{mark} Do not edit: render again after `op25b realm permit-msa|revoke-msa` or `op25b mobile-mta add|remove`,",
        f"{mark} and compare with `op25b acl diff --vendor {vendor} --against FILE`.",
        *(f"{mark} {line}" for line in how),
    )


def _notes(out: _Out, mark: str, spec: FilterSpec, indent: str = "", version: int | None = None) -> None:
    out.text(f"{indent}{mark} {spec.name}: {_purpose(spec)}")
    for gone in spec.gone(version):
        out.text(f"{indent}{mark}   left out: {gone}")


def _quote(text: str, limit: int) -> str:
    """A comment as a double-quoted string: quotes and backslashes dropped, at most `limit` chars."""
    clean = text.replace('"', "'").replace("\\", "/")
    return '"' + (clean if len(clean) <= limit else clean[: limit - 3] + "...") + '"'


def _routeros_quote(text: str) -> str:
    """A RouterOS script string: `$` would start a variable, `\\` an escape."""
    return _quote(text, 200).replace("$", "\\$")


def _nftables(specs: Sequence[FilterSpec]) -> _Out:
    out = _Out()
    _header(
        out,
        "#",
        "nftables",
        (
            "Check with `nft -c -f FILE`, apply with `nft -f FILE`: chains are flushed and refilled in one",
            "transaction; the sessions map (which interface is under which filter) is kept. Put a session under",
            "a filter from the ip-up hook:  nft add element inet op25b sessions '{ \"ppp0\" : jump OP25B-FULL }'",
        ),
    )
    chains = [s.name for s in specs]
    out.text(
        "table inet op25b {",
        "\tmap sessions {",
        "\t\ttype ifname : verdict",
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        "\t}",
        *(f"\tchain {c} {{\n\t}}" for c in chains),
        "}",
        "flush chain inet op25b forward",
        *(f"flush chain inet op25b {c}" for c in chains),
        "table inet op25b {",
        "\tchain forward {",
        "\t\tiifname vmap @sessions",
        "\t}",
    )
    for spec in specs:
        _notes(out, "#", spec, "\t")
        out.text(f"\tchain {spec.name} {{")
        verdict = "accept" if spec.filter_class is FilterClass.FULL else "drop"
        for d in spec.destinations:
            match = "ip daddr" if d.network.version == 4 else "ip6 daddr"
            out.rule(f"\t\t{match} {d.network} tcp dport {SMTP} {verdict} comment {_quote(d.note, 128)}")
        if spec.filter_class is FilterClass.FULL:
            out.rule(f'\t\ttcp dport {SMTP} drop comment "OP25B: deny TCP/25"')
        out.text("\t}")
        out.close(spec, spec.name, "inet", spec.destinations)
    out.text("}")
    return out


def _ios_v6_target(net: IPNetwork) -> str:
    return f"host {net.network_address}" if net.prefixlen == net.max_prefixlen else str(net)


def _cisco_ios(specs: Sequence[FilterSpec]) -> _Out:
    out = _Out()
    _header(
        out,
        "!",
        "cisco-ios",
        (
            "Named extended ACLs for ISG / per-user policies that name them (Filter-Id or a service). The cisco-ios",
            "profile itself sends the same IPv4 ACEs inline (Cisco-AVPair ip:inacl#N). Each ACL is removed and",
            "written again: paste the whole file at once. A Cisco ACL ends in an implicit deny, hence permit-any.",
        ),
    )
    for spec in specs:
        for version in (4, 6):
            dests = spec.family(version)
            name = family_name(spec.name, version)
            out.text("!")
            _notes(out, "!", spec, version=version)
            if version == 4:
                nets = tuple(d.network for d in dests)
                decision = Decision(
                    spec.filter_class, "acl render", "default", spec.realm, nets if spec.filter_class is FilterClass.FULL else ()
                )
                ctx = FilterContext(mobile_mta_blocks=nets if spec.filter_class is FilterClass.MOBILE else ())
                out.text(f"no ip access-list extended {name}", f"ip access-list extended {name}")
                notes = [d.note for d in dests]
                for i, ace in enumerate(cisco_aces(decision, ctx)):
                    if i < len(notes):
                        out.text(f" remark {notes[i][:100]}")
                    out.rule(f" {ace}")
            else:
                out.text(f"no ipv6 access-list {name}", f"ipv6 access-list {name}")
                action = "permit" if spec.filter_class is FilterClass.FULL else "deny"
                for d in dests:
                    out.text(f" remark {d.note[:100]}")
                    out.rule(f" {action} tcp any {_ios_v6_target(d.network)} eq {SMTP}")
                if spec.filter_class is FilterClass.FULL:
                    out.rule(f" deny tcp any any eq {SMTP}")
                out.rule(" permit ipv6 any any")
            out.close(spec, name, f"ipv{version}", dests)
    out.text("end")
    return out


def _xr_target(net: IPNetwork) -> str:
    if net.prefixlen == net.max_prefixlen:
        return f"host {net.network_address}"
    return f"{net.network_address} {net.hostmask}" if net.version == 4 else str(net)


def _cisco_xr(specs: Sequence[FilterSpec]) -> _Out:
    out = _Out()
    _header(
        out,
        "!",
        "cisco-xr",
        (
            "The ACLs the cisco-xr profile names (Cisco-AVPair ipv4:inacl= / ipv6:ipv6_inacl=). Each ACL is removed",
            "and written again with sequence numbers: load the file and `commit` once, so the change is atomic.",
        ),
    )
    for spec in specs:
        for version in (4, 6):
            dests = spec.family(version)
            name = family_name(spec.name, version)
            keyword = "ipv4" if version == 4 else "ipv6"
            out.text("!")
            _notes(out, "!", spec, version=version)
            out.text(f"no {keyword} access-list {name}", f"{keyword} access-list {name}")
            seq = 0

            def entry(text: str, is_rule: bool = True) -> None:
                nonlocal seq
                seq += 10
                (out.rule if is_rule else out.text)(f" {seq} {text}")

            action = "permit" if spec.filter_class is FilterClass.FULL else "deny"
            for d in dests:
                entry(f"remark {d.note[:100]}", is_rule=False)
                entry(f"{action} tcp any {_xr_target(d.network)} eq {SMTP}")
            if spec.filter_class is FilterClass.FULL:
                entry(f"deny tcp any any eq {SMTP}")
            entry(f"permit {keyword} any any")
            out.close(spec, name, f"ipv{version}", dests)
    out.text("!", "commit")
    return out


def _junos(specs: Sequence[FilterSpec]) -> _Out:
    out = _Out()
    _header(
        out,
        "#",
        "junos",
        (
            "Filters for $junos-input-filter / $junos-input-ipv6-filter, named as the juniper profile sends them",
            "(ERX-Ingress-Policy-Name / ERX-IPv6-Ingress-Policy-Name). Load with `load replace FILE` (or",
            "`load replace terminal`): each filter is tagged replace:, so it is written whole. A Junos filter",
            "ends in an implicit discard, hence the accept-rest term.",
        ),
    )
    out.text("firewall {")
    for version, family in ((4, "inet"), (6, "inet6")):
        out.text(f"    family {family} {{")
        proto = "protocol tcp;" if version == 4 else "next-header tcp;"
        for spec in specs:
            dests = spec.family(version)
            name = family_name(spec.name, version)
            out.text(f"        /* {name}: {_purpose(spec)} */")
            for gone in spec.gone(version):
                out.text(f"        /* left out: {gone} */")
            out.text("        replace:", f"        filter {name} {{")
            full = spec.filter_class is FilterClass.FULL
            for i, d in enumerate(dests, 1):
                term = f"permit-msa-{i}" if full else f"deny-mobile-mta-{i}"
                out.text(f"            /* {d.note.replace('*/', '* /')} */")
                out.rule(f"            term {term} {{")
                out.text(
                    "                from {",
                    f"                    destination-address {d.network};",
                    f"                    {proto}",
                    f"                    destination-port {SMTP};",
                    "                }",
                    f"                then {'accept' if full else 'discard'};",
                    "            }",
                )
            if full:
                out.rule("            term deny-smtp {")
                out.text(
                    "                from {",
                    f"                    {proto}",
                    f"                    destination-port {SMTP};",
                    "                }",
                    "                then discard;",
                    "            }",
                )
            out.rule("            term accept-rest {")
            out.text("                then accept;", "            }", "        }")
            out.close(spec, name, f"ipv{version}", dests)
        out.text("    }")
    out.text("}")
    return out


def _nokia_sr(specs: Sequence[FilterSpec], names: FilterNames) -> _Out:
    out = _Out()
    _header(
        out,
        "#",
        "nokia-sr",
        (
            "SR OS classic CLI: paste under `configure`. The ids are those the nokia-sr profile sends",
            "(Alc-Subscriber-Filter Ingr-v4:<id>,Ingr-v6:<id>), scope template: one set of resources per line card.",
        ),
    )
    out.text("filter")
    for spec in specs:
        if spec.realm is not None:
            # The nokia-sr profile names no filter for a partner: it inserts the permits as host
            # entries (NAS-Filter-Rule, sub-insert-radius), at most NOKIA_MAX_HOST_ENTRIES.
            out.text(
                f"    # {spec.realm}: the nokia-sr profile sends this realm's permits inline as NAS-Filter-Rule host",
                "    # entries (Nokia RADIUS Attributes Reference R14 p.87, p.90): no ip-filter to configure here.",
            )
            continue
        fid = names.nokia_full_id if spec.filter_class is FilterClass.FULL else names.nokia_mobile_id
        for version, keyword in ((4, "ip-filter"), (6, "ipv6-filter")):
            dests = spec.family(version)
            match = "match protocol tcp" if version == 4 else "match next-header tcp"
            for line in (f"{spec.name}: {_purpose(spec)}", *(f"left out: {g}" for g in spec.gone(version))):
                out.text(f"    # {line}")
            out.text(
                f"    {keyword} {fid} create",
                f"        description {_quote(spec.name + (' IPv6' if version == 6 else ''), 80)}",
                "        scope template",
                "        default-action forward",
            )
            full = spec.filter_class is FilterClass.FULL
            entries: list[tuple[IPNetwork | None, str, str]] = [(d.network, "forward" if full else "drop", d.note) for d in dests]
            if full:
                entries.append((None, "drop", "OP25B: deny TCP/25"))
            for number, (dst, action, note) in enumerate(entries, 1):
                out.rule(f"        entry {number * 10} create")
                out.text(f"            description {_quote(note, 80)}", f"            {match}")
                if dst is not None:
                    out.text(f"                dst-ip {dst}")
                out.text(
                    f"                dst-port eq {SMTP}", "            exit", f"            action {action}", "        exit"
                )
            out.text("    exit")
            out.close(spec, str(fid), f"ipv{version}", dests)
    out.text("exit")
    return out


def _mikrotik(specs: Sequence[FilterSpec]) -> _Out:
    out = _Out()
    _header(
        out,
        "#",
        "mikrotik",
        (
            "RouterOS script: `/import file-name=FILE`. Mikrotik-Address-List (or the PPP profile's address-list)",
            "puts the session's address in the list named like the filter; the forward chain jumps to the filter's",
            "chain for that list. Rules this file wrote before (comment op25b:...) are removed first. Move the jump",
            "rules above your own accept rules. IPv6: whether RouterOS puts a PPP session's IPv6 prefix in an",
            "/ipv6 list of the same name is not verified; check `/ipv6 firewall address-list print` on a session.",
        ),
    )
    for version, menu in ((4, "/ip firewall filter"), (6, "/ipv6 firewall filter")):
        out.text(menu, 'remove [find where comment~"^op25b:"]')
        for spec in specs:
            dests = spec.family(version)
            _notes(out, "#", spec, version=version)
            chain = spec.name
            out.rule(
                f"add chain=forward src-address-list={spec.name} action=jump jump-target={chain}"
                f" comment={_routeros_quote('op25b: ' + spec.name)}"
            )
            full = spec.filter_class is FilterClass.FULL
            for d in dests:
                action = "return" if full else "drop"
                out.rule(
                    f"add chain={chain} protocol=tcp dst-port={SMTP} dst-address={d.network} action={action}"
                    f" comment={_routeros_quote('op25b: ' + d.note)}"
                )
            if full:
                out.rule(f'add chain={chain} protocol=tcp dst-port={SMTP} action=drop comment="op25b: deny TCP/25"')
            out.close(spec, spec.name, f"ipv{version}", dests)
    return out


def render(vendor: str, specs: Sequence[FilterSpec], names: FilterNames) -> Rendering:
    """The filters for one vendor: the text to load on the router and each filter's rules."""
    if vendor == "nftables":
        out = _nftables(specs)
    elif vendor == "cisco-ios":
        out = _cisco_ios(specs)
    elif vendor == "cisco-xr":
        out = _cisco_xr(specs)
    elif vendor == "junos":
        out = _junos(specs)
    elif vendor == "nokia-sr":
        out = _nokia_sr(specs, names)
    elif vendor == "mikrotik":
        out = _mikrotik(specs)
    else:
        raise ValueError(f"unknown vendor {vendor!r} (known: {', '.join(VENDORS)})")
    return Rendering(vendor, "\n".join(out.lines) + "\n", tuple(out.filters))


# --- the report: line counts and JEAG's formula ---------------------------------------------


def jeag_termination_lines(spec: FilterSpec, version: int) -> int:
    """JEAG 4.1: at the termination point one shared filter of (MSA blocks + 1) lines per variant
    (the permits and the deny); a mobile filter is its deny lines."""
    n = len(spec.family(version))
    return n + 1 if spec.filter_class is FilterClass.FULL else n


def jeag_core_lines(spec: FilterSpec, version: int, dynamic_blocks: int) -> int:
    """JEAG 4.1: at a core or edge router every line is per dynamic source block:
    lines = (dynamic blocks) x (MSA blocks + 1)."""
    return dynamic_blocks * jeag_termination_lines(spec, version)


def dynamic_blocks(pools: Iterable[IPNetwork], version: int) -> tuple[IPNetwork, ...]:
    """The dynamic pools of one family, aggregated as a core ACL would write them."""
    nets = [p for p in pools if p.version == version]
    return tuple(collapse(nets))


@dataclass(frozen=True, slots=True)
class ReportRow:
    spec: FilterSpec
    version: int
    termination: int
    core_edge: int
    rendered: dict[str, int]  # vendor -> rules as rendered


@dataclass(frozen=True, slots=True)
class Report:
    dynamic: dict[int, int]  # family -> aggregated dynamic blocks
    rows: tuple[ReportRow, ...]
    warnings: tuple[str, ...]


def report(
    names: FilterNames,
    realms: Sequence[Realm],
    mobile_blocks: Sequence[MobileBlock],
    dynamic_pools: Sequence[IPNetwork],
    now: datetime,
    *,
    vendors: Sequence[str] = VENDORS,
    profiles_in_use: Iterable[str] = (),
) -> Report:
    specs = filter_specs(names, realms, mobile_blocks, now)
    renderings = {v: render(v, specs, names) for v in vendors}
    dyn = {v: len(dynamic_blocks(dynamic_pools, v)) for v in (4, 6)}
    rows = []
    for spec in specs:
        for version in (4, 6):
            rendered = {}
            for vendor, r in renderings.items():
                rendered_here = _rendered_for(r, spec, version, names)
                if rendered_here is not None:
                    rendered[vendor] = rendered_here
            rows.append(
                ReportRow(
                    spec, version, jeag_termination_lines(spec, version), jeag_core_lines(spec, version, dyn[version]), rendered
                )
            )
    return Report(dyn, tuple(rows), tuple(_warnings(realms, now, set(profiles_in_use), dynamic_pools)))


def _rendered_for(r: Rendering, spec: FilterSpec, version: int, names: FilterNames) -> int | None:
    for f in r.filters:
        if f.filter_class is not spec.filter_class or f.realm != spec.realm:
            continue
        if f.family == "inet":  # nftables: one chain for both families; count it once, on IPv4
            return len(f.rules) if version == 4 else None
        if f.family == f"ipv{version}":
            return len(f.rules)
    return None


def _warnings(realms: Sequence[Realm], now: datetime, profiles: set[str], dynamic_pools: Sequence[IPNetwork]) -> Iterator[str]:
    for realm in sorted(realms, key=lambda r: r.name):
        active = active_permits(realm, now)
        if not active:
            if realm.msa_permits:
                yield f"realm {realm.name}: every MSA(25) permit has ended; its subscribers get the plain full filter"
            continue
        for version in (4, 6):
            nets = [n for n in active if n.version == version]
            collapsed = collapse(nets)
            if len(collapsed) < len(nets):
                merged = ", ".join(str(n) for n in collapsed)
                yield (
                    f"realm {realm.name}: {len(nets)} IPv{version} MSA(25) permits aggregate into {len(collapsed)} ({merged}); "
                    "the rendered filters use the aggregate, inline profiles (rfc4849, cisco-ios, nokia-sr) send each "
                    "permit: store the aggregate, or ask the partner to (JEAG)"
                )
        if "nokia-sr" in profiles and len(active) + 1 > NOKIA_MAX_HOST_ENTRIES:
            yield (
                f"realm {realm.name}: the nokia-sr profile would send {len(active) + 1} NAS-Filter-Rule entries; SR OS takes at most "
                f"{NOKIA_MAX_HOST_ENTRIES} per message (Nokia RADIUS Attributes Reference R14 p.87, p.90)"
            )
    if not dynamic_pools:
        yield "policy.dynamic_pools is empty: the core/edge figures count no dynamic blocks"


# --- diff -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Diff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    unified: tuple[str, ...]


def diff(against: str, rendered: str, *, against_name: str = "on the router", rendered_name: str = "rendered now") -> Diff:
    """What changed from the file on the router to the rendering now: lines added and removed."""
    old, new = against.splitlines(), rendered.splitlines()
    unified = tuple(difflib.unified_diff(old, new, against_name, rendered_name, n=1, lineterm=""))
    added = tuple(line[1:] for line in unified if line.startswith("+") and not line.startswith("+++"))
    removed = tuple(line[1:] for line in unified if line.startswith("-") and not line.startswith("---"))
    return Diff(added, removed, unified)


@dataclass(frozen=True, slots=True)
class Expiring:
    realm: str
    network: IPNetwork
    until: datetime


def expiring_permits(realms: Iterable[Realm], now: datetime, within: timedelta) -> tuple[Expiring, ...]:
    """Active permits that end within `within` of now, soonest first: the sunsets ahead."""
    found = [
        Expiring(r.name, p.network, p.until)
        for r in realms
        for p in r.msa_permits
        if p.active_at(now) and p.until - now <= within
    ]
    return tuple(sorted(found, key=lambda e: (e.until, e.realm, str(e.network))))


# --- published dynamic ranges (JEAG's note on Inbound Port 25 Blocking) ---------------------


@dataclass(frozen=True, slots=True)
class DynamicRange:
    network: IPNetwork
    pool: IPNetwork  # the policy.dynamic_pools entry it lies in
    excluded: int  # static networks carved out of that pool


def subtract(block: IPNetwork, holes: Sequence[IPNetwork]) -> list[IPNetwork]:
    """`block` without `holes`, as the fewest CIDRs, lowest first. Halves the block only where a
    hole lies, so a /10 less 100,000 static /32s costs about 100,000 x 22 steps, not their product."""
    inside = sorted((h for h in holes if h.version == block.version and h.overlaps(block)), key=_key)
    if not inside:
        return [block]
    if any(_within(block, h) for h in inside):
        return []
    out: list[IPNetwork] = []
    for half in block.subnets(prefixlen_diff=1):
        out += subtract(half, [h for h in inside if h.overlaps(half)])
    return out


def dynamic_ranges(dynamic_pools: Sequence[IPNetwork], static: Iterable[IPNetwork]) -> tuple[DynamicRange, ...]:
    """policy.dynamic_pools minus the static pools and static subscribers' addresses."""
    holes = list(static)
    out: list[DynamicRange] = []
    for version in (4, 6):
        for pool in dynamic_blocks(dynamic_pools, version):
            here = [h for h in holes if h.version == version and h.overlaps(pool)]
            out += [DynamicRange(n, pool, len(here)) for n in subtract(pool, here)]
    return tuple(out)


# --- PTR check: one regular expression for the dynamic reverse names ------------------------


@dataclass(frozen=True, slots=True)
class PtrRecord:
    line: int
    owner: str  # absolute, lower-case, with the final dot
    address: IPAddress
    target: str


@dataclass(frozen=True, slots=True)
class ZoneParse:
    records: tuple[PtrRecord, ...]
    skipped: tuple[str, ...]  # "line N: why"


_ARPA4 = ".in-addr.arpa."
_ARPA6 = ".ip6.arpa."


def reverse_address(owner: str) -> IPAddress | None:
    """The address a full reverse name stands for (RFC 1035 §3.5 in-addr.arpa, RFC 3596 §2.5
    ip6.arpa nibbles); None for a partial or classless (RFC 2317) name."""
    name = owner.lower()
    if name.endswith(_ARPA4):
        labels = name[: -len(_ARPA4)].split(".")
        if len(labels) != 4 or not all(x.isdigit() and len(x) <= 3 for x in labels):
            return None
        try:
            return ipaddress.IPv4Address(".".join(reversed(labels)))
        except ValueError:
            return None
    if name.endswith(_ARPA6):
        nibbles = name[: -len(_ARPA6)].split(".")
        if len(nibbles) != 32 or not all(len(x) == 1 and x in "0123456789abcdef" for x in nibbles):
            return None
        return ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16))
    return None


_CLASSES = {"in", "ch", "hs", "cs"}
_TTL = re.compile(r"^\d+[smhdw]?$", re.IGNORECASE)


def parse_zone(text: str, origin: str = ".") -> ZoneParse:
    """The PTR records of a master file (RFC 1035 §5.1), kept simple: one record per line (no
    parentheses except in SOA, whose lines are skipped), `;` comments, $ORIGIN and $TTL, a blank
    owner repeats the last one, `@` is the origin, relative names get the origin appended. Other
    record types are ignored; a PTR whose owner is not a full reverse name is listed as skipped."""
    origin = _absolute(origin, ".")
    records: list[PtrRecord] = []
    skipped: list[str] = []
    owner: str | None = None
    in_parens = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].rstrip()
        if in_parens:
            in_parens = ")" not in line
            continue
        if not line.strip():
            continue
        if "(" in line and ")" not in line:
            in_parens = True  # a multi-line record (SOA): not a PTR
        fields = line.split()
        if fields[0].upper() == "$ORIGIN" and len(fields) >= 2:
            origin = _absolute(fields[1], origin)
            continue
        if fields[0].startswith("$"):
            continue  # $TTL, $INCLUDE (not followed)
        if line[0].isspace():
            if owner is None:
                skipped.append(f"line {number}: no owner name before it")
                continue
            rest = fields
        else:
            owner = _absolute(fields[0], origin)
            rest = fields[1:]
        while rest and (_TTL.match(rest[0]) or rest[0].lower() in _CLASSES):
            rest = rest[1:]
        if not rest or rest[0].upper() != "PTR":
            continue
        if len(rest) < 2:
            skipped.append(f"line {number}: PTR without a target")
            continue
        address = reverse_address(owner)
        if address is None:
            skipped.append(f"line {number}: {owner} is not a full in-addr.arpa or ip6.arpa name")
            continue
        records.append(PtrRecord(number, owner, address, _absolute(rest[1], origin)))
    return ZoneParse(tuple(records), tuple(skipped))


def _absolute(name: str, origin: str) -> str:
    name = name.lower()
    if name == "@":
        return origin
    if name.endswith("."):
        return name
    return f"{name}.{origin}" if origin != "." else f"{name}."


def dynamic_test(
    dynamic_pools: Sequence[IPNetwork], static_pools: Sequence[IPNetwork], static_addresses: Iterable[IPAddress]
) -> Callable[[IPAddress], bool]:
    """Whether an address is dynamic: in policy.dynamic_pools, outside the static pools, and no
    static subscriber's (the same carve-out as dynamic_ranges, without listing the ranges)."""
    statics = frozenset(static_addresses)

    def is_dynamic(address: IPAddress) -> bool:
        if address in statics:
            return False
        if any(address.version == p.version and address in p for p in static_pools):
            return False
        return any(address.version == p.version and address in p for p in dynamic_pools)

    return is_dynamic


@dataclass(frozen=True, slots=True)
class PtrCheck:
    dynamic: tuple[PtrRecord, ...]  # PTRs of dynamic addresses
    unmatched: tuple[PtrRecord, ...]  # dynamic, but the pattern fails: receivers will not see them as dynamic
    static_matched: tuple[PtrRecord, ...]  # not dynamic, yet the pattern matches: receivers would see them as dynamic
    skipped: tuple[str, ...]


def ptr_check(pattern: re.Pattern[str], zone: ZoneParse, is_dynamic: Callable[[IPAddress], bool]) -> PtrCheck:
    """Which dynamic addresses' reverse names `pattern` fails to match (re.search on the name
    without its final dot), and which other addresses' names it matches."""
    dynamic, unmatched, static = [], [], []
    for rec in zone.records:
        hit = pattern.search(rec.target.rstrip(".")) is not None
        if is_dynamic(rec.address):
            dynamic.append(rec)
            if not hit:
                unmatched.append(rec)
        elif hit:
            static.append(rec)
    return PtrCheck(tuple(dynamic), tuple(unmatched), tuple(static), zone.skipped)
