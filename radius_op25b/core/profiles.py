"""NAS profiles: how a Decision becomes the attributes a vendor's BNG applies, and how a change
reaches a live session (CoA or Disconnect). Pure functions; attribute names are our dictionary's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from radius_op25b.core.decision import Decision, FilterClass, IPNetwork

Attributes = tuple[tuple[str, str], ...]

# RFC 4849 §2: rules are NUL-separated and may continue across attribute boundaries.
_RULE_SEPARATOR = "\x00"
_MAX_VALUE = 253  # RFC 2865 §5: an attribute's value holds at most 253 octets


@dataclass(frozen=True)
class FilterNames:
    """Names the NAS knows the filters by ([filters] in the config)."""

    full: str = "OP25B-FULL"
    mobile: str = "OP25B-MOBILE"
    nokia_full_id: int = 2501
    nokia_mobile_id: int = 2502


@dataclass(frozen=True)
class FilterContext:
    """What the profiles need besides the decision: names and the mobile carriers' MTA blocks."""

    names: FilterNames = FilterNames()
    mobile_mta_blocks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class LiveChange:
    """How a policy change reaches a live session on this profile."""

    method: str  # "coa" | "disconnect"
    nak_fallback: bool  # a CoA-NAK falls back to Disconnect-Request
    # Attributes a CoA carries to take the filter away (class -> none); None: only Disconnect can.
    remove: Attributes | None


@dataclass(frozen=True)
class CustomProfile:
    """A profile defined in the config: attribute templates per class."""

    name: str
    full: tuple[tuple[str, str], ...]
    mobile: tuple[tuple[str, str], ...]
    change: str = "disconnect"
    nak_fallback: bool = True
    remove: tuple[tuple[str, str], ...] | None = None


def named_filter(decision: Decision, names: FilterNames) -> str | None:
    """The filter name for the decision's class; a partner with MSA permits has its own variant."""
    if decision.filter_class is FilterClass.NONE:
        return None
    if decision.filter_class is FilterClass.MOBILE:
        return names.mobile
    if decision.msa_permits:
        if decision.partner_filter:
            return decision.partner_filter
        slug = re.sub(r"[^A-Z0-9]+", "-", (decision.realm or "PARTNER").upper()).strip("-")
        return f"{names.full}-{slug}"
    return names.full


def ipfilter_rules(decision: Decision, ctx: FilterContext) -> tuple[str, ...]:
    """IPFilterRule text (RFC 3588 §4.3): `in` is from the subscriber, protocol 6 is TCP.

    "If no rule matches, the packet is dropped if the last rule evaluated was a permit, and passed
    if the last rule was a deny" - so a list ending in a deny passes all other traffic.
    """
    if decision.filter_class is FilterClass.FULL:
        permits = tuple(f"permit in 6 from any to {net} 25" for net in decision.msa_permits)
        return permits + ("deny in 6 from any to any 25",)
    if decision.filter_class is FilterClass.MOBILE:
        return tuple(f"deny in 6 from any to {net} 25" for net in ctx.mobile_mta_blocks)
    return ()


def _split_rules(rules: tuple[str, ...], attribute: str = "NAS-Filter-Rule") -> Attributes:
    joined = _RULE_SEPARATOR.join(rules)
    raw = joined.encode()
    chunks = [raw[i : i + _MAX_VALUE] for i in range(0, len(raw), _MAX_VALUE)]
    return tuple((attribute, chunk.decode()) for chunk in chunks)


def _cisco_wildcard(net: IPNetwork) -> str:
    if net.prefixlen == net.max_prefixlen:
        return f"host {net.network_address}"
    return f"{net.network_address} {net.hostmask}"


def _v4(nets: Iterable[IPNetwork]) -> list[IPNetwork]:
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def cisco_aces(decision: Decision, ctx: FilterContext) -> tuple[str, ...]:
    """Per-user IOS ACEs; a Cisco ACL ends in an implicit deny, so the list ends in permit-any."""
    if decision.filter_class is FilterClass.FULL:
        aces = [f"permit tcp any {_cisco_wildcard(n)} eq 25" for n in _v4(decision.msa_permits)]
        aces.append("deny tcp any any eq 25")
    elif decision.filter_class is FilterClass.MOBILE:
        aces = [f"deny tcp any {_cisco_wildcard(n)} eq 25" for n in _v4(ctx.mobile_mta_blocks)]
    else:
        return ()
    return tuple(aces) + ("permit ip any any",)


# --- built-in profiles: one render function each ---------------------------------------------


def _generic(d: Decision, ctx: FilterContext) -> Attributes:
    name = named_filter(d, ctx.names)
    return (("Filter-Id", name),) if name else ()  # RFC 5080 §2.4: send one Filter-Id only


def _rfc4849(d: Decision, ctx: FilterContext) -> Attributes:
    return _split_rules(ipfilter_rules(d, ctx))


def _cisco_ios(d: Decision, ctx: FilterContext) -> Attributes:
    return tuple(("Cisco-AVPair", f"ip:inacl#{i}={ace}") for i, ace in enumerate(cisco_aces(d, ctx), 1))


def _cisco_xr(d: Decision, ctx: FilterContext) -> Attributes:
    name = named_filter(d, ctx.names)
    if not name:
        return ()
    return (("Cisco-AVPair", f"ipv4:inacl={name}"), ("Cisco-AVPair", f"ipv6:ipv6_inacl={name}-V6"))


def _juniper(d: Decision, ctx: FilterContext) -> Attributes:
    name = named_filter(d, ctx.names)
    if not name:
        return ()
    return (("ERX-Ingress-Policy-Name", name), ("ERX-IPv6-Ingress-Policy-Name", f"{name}-V6"))


def _nokia_sr(d: Decision, ctx: FilterContext) -> Attributes:
    if d.filter_class is FilterClass.NONE:
        return ()
    if d.filter_class is FilterClass.FULL and d.msa_permits:
        # A partner's permits have no pre-built filter id: insert them as host-specific entries.
        return _split_rules(ipfilter_rules(d, ctx))
    fid = ctx.names.nokia_full_id if d.filter_class is FilterClass.FULL else ctx.names.nokia_mobile_id
    return (("Alc-Subscriber-Filter", f"Ingr-v4:{fid},Ingr-v6:{fid}"),)


def _mikrotik(d: Decision, ctx: FilterContext) -> Attributes:
    name = named_filter(d, ctx.names)
    return (("Mikrotik-Address-List", name),) if name else ()


@dataclass(frozen=True)
class BuiltinProfile:
    render: Callable[[Decision, FilterContext], Attributes]
    change: LiveChange
    # What this profile owns in an Accept (`replace` mode removes the upstream's copies):
    # (attribute name, value prefix); "" owns every value of that attribute.
    managed: tuple[tuple[str, str], ...]


BUILTIN_PROFILES: Mapping[str, BuiltinProfile] = {
    "generic": BuiltinProfile(_generic, LiveChange("coa", True, None), (("Filter-Id", ""),)),
    "rfc4849": BuiltinProfile(_rfc4849, LiveChange("coa", True, None), (("NAS-Filter-Rule", ""),)),
    # Cisco-AVPair carries much else (QoS, services): only the inbound ACL pairs are ours.
    "cisco-ios": BuiltinProfile(_cisco_ios, LiveChange("disconnect", False, None), (("Cisco-AVPair", "ip:inacl#"),)),
    "cisco-xr": BuiltinProfile(
        _cisco_xr,
        LiveChange("coa", True, None),
        (("Cisco-AVPair", "ipv4:inacl="), ("Cisco-AVPair", "ipv6:ipv6_inacl=")),
    ),
    "juniper": BuiltinProfile(
        _juniper,
        LiveChange("coa", True, None),
        (("ERX-Ingress-Policy-Name", ""), ("ERX-IPv6-Ingress-Policy-Name", "")),
    ),
    "nokia-sr": BuiltinProfile(
        _nokia_sr,
        # SR OS: -2 restores the SLA profile's filter; " " removes inserted host entries.
        LiveChange(
            "coa",
            True,
            (("Alc-Subscriber-Filter", "Ingr-v4:-2,Ingr-v6:-2"), ("NAS-Filter-Rule", " ")),
        ),
        (("Alc-Subscriber-Filter", ""), ("NAS-Filter-Rule", "")),
    ),
    "huawei": BuiltinProfile(_generic, LiveChange("disconnect", False, None), (("Filter-Id", ""),)),
    "mikrotik": BuiltinProfile(_mikrotik, LiveChange("disconnect", False, None), (("Mikrotik-Address-List", ""),)),
    # accel-ppp's Filter-Id is its shaper rate: the filter travels as NAS-Filter-Rule to the
    # ip-up/ip-change hook in deploy/; a CoA without the rule makes the hook remove it.
    "accel-ppp": BuiltinProfile(_rfc4849, LiveChange("coa", True, ()), (("NAS-Filter-Rule", ""),)),
}


def _render_custom(profile: CustomProfile, d: Decision, ctx: FilterContext) -> Attributes:
    if d.filter_class is FilterClass.NONE:
        return ()
    templates = profile.full if d.filter_class is FilterClass.FULL else profile.mobile
    name = named_filter(d, ctx.names) or ""
    values = {"filter": name, "class": str(d.filter_class), "realm": d.realm or ""}
    return tuple((attr, template.format_map(values)) for attr, template in templates)


def attributes_for(
    profile: str, decision: Decision, ctx: FilterContext, custom: Mapping[str, CustomProfile] | None = None
) -> Attributes:
    """The attributes an Access-Accept (or CoA) carries for this decision on this profile."""
    if custom and profile in custom:
        return _render_custom(custom[profile], decision, ctx)
    try:
        return BUILTIN_PROFILES[profile].render(decision, ctx)
    except KeyError:
        raise KeyError(f"unknown NAS profile {profile!r}") from None


def live_change_for(profile: str, custom: Mapping[str, CustomProfile] | None = None) -> LiveChange:
    if custom and profile in custom:
        c = custom[profile]
        return LiveChange(c.change, c.nak_fallback, c.remove)
    return BUILTIN_PROFILES[profile].change


def managed_attributes(profile: str, custom: Mapping[str, CustomProfile] | None = None) -> tuple[tuple[str, str], ...]:
    """(name, value prefix) the profile owns: an upstream's copies are removed in `replace` mode."""
    if custom and profile in custom:
        c = custom[profile]
        return tuple(dict.fromkeys((a, "") for a, _ in c.full + c.mobile + (c.remove or ())))
    return BUILTIN_PROFILES[profile].managed


def coa_attributes_for(
    profile: str, decision: Decision, ctx: FilterContext, custom: Mapping[str, CustomProfile] | None = None
) -> Attributes | None:
    """What a CoA-Request carries to move a live session to `decision`; None: send Disconnect."""
    change = live_change_for(profile, custom)
    if change.method == "disconnect":
        return None
    if decision.filter_class is FilterClass.NONE:
        return change.remove
    return attributes_for(profile, decision, ctx, custom)
