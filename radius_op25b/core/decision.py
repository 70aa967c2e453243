"""The OP25B decision: which filter class a session gets, and why, as one pure function.

Everything that decides a filter lives in this module (README: "How a decision is made", first match wins). No I/O: the
caller hands in the subscriber and realm as plain values and the clock as `now`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FilterClass(StrEnum):
    FULL = "full"
    MOBILE = "mobile"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Exemption:
    reason: str
    actor: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None

    def active_at(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class Subscriber:
    username: str
    realm: str | None = None
    ip_type: str = "dynamic"  # "dynamic" | "static"
    static_addresses: tuple[str, ...] = ()
    class_override: FilterClass | None = None
    exemptions: tuple[Exemption, ...] = ()


@dataclass(frozen=True, slots=True)
class MsaPermit:
    network: IPNetwork
    until: datetime

    def active_at(self, now: datetime) -> bool:
        return now < self.until


@dataclass(frozen=True, slots=True)
class Realm:
    name: str
    default_class: FilterClass | None = None
    msa_permits: tuple[MsaPermit, ...] = ()
    filter_name: str | None = None  # the partner's own named variant of the full filter


@dataclass(frozen=True, slots=True)
class Request:
    """What the Access-Accept (or an operator) tells us about the session."""

    username: str
    framed_ip: IPAddress | None = None
    nas_name: str | None = None
    nas_enforces: bool = True


@dataclass(frozen=True, slots=True)
class Settings:
    default_class: FilterClass = FilterClass.FULL
    static_pools: tuple[IPNetwork, ...] = ()
    on_database_error: str = "default"  # "default" | "none"


@dataclass(frozen=True, slots=True)
class Decision:
    filter_class: FilterClass
    reason: str
    reason_kind: str  # nas | static | static-pool | exempt | override | realm | default | database-error
    realm: str | None = None
    msa_permits: tuple[IPNetwork, ...] = field(default=())
    partner_filter: str | None = None


def username_key(username: str) -> str:
    """The name as subscribers are stored and held: stripped, lower-cased."""
    return username.strip().lower()


def realm_of(username: str) -> str | None:
    """The realm part of `user@realm`, stripped and lower-cased (as realms are stored); None
    when the name carries no realm."""
    _, at, realm = username.rpartition("@")
    realm = realm.strip()
    return realm.lower() if at and realm else None


def realm_name(subscriber: Subscriber | None, username: str) -> str | None:
    """The realm a session is decided under: the subscriber's own, else the one in its name."""
    return (subscriber.realm if subscriber is not None else None) or realm_of(username)


def decides_as_unknown(subscriber: Subscriber, key: str) -> bool:
    """True when `subscriber` (whose lower-cased name is `key`) gets the decision of a
    subscriber not in the database: dynamic, no class override, no exemption that is still
    live, and no realm other than its name's. The proxy keeps only the others in memory."""
    return (
        subscriber.ip_type == "dynamic"
        and subscriber.class_override is None
        and not subscriber.exemptions
        and (subscriber.realm is None or subscriber.realm == realm_of(key))
    )


def _static_pool_of(ip: IPAddress | None, pools: tuple[IPNetwork, ...]) -> IPNetwork | None:
    if ip is None:
        return None
    for pool in pools:
        if ip.version == pool.version and ip in pool:
            return pool
    return None


def _exemption_text(ex: Exemption) -> str:
    until = f"until {ex.expires_at:%Y-%m-%d %H:%M} UTC" if ex.expires_at else "with no expiry"
    return f"exempt {until} by {ex.actor}: {ex.reason}"


def decide(
    request: Request,
    subscriber: Subscriber | None,
    realm: Realm | None,
    settings: Settings,
    now: datetime,
) -> Decision:
    """The filter class for one session (README: "How a decision is made", first match wins)."""
    name = realm_name(subscriber, request.username)

    def plain(cls: FilterClass, reason: str, kind: str) -> Decision:
        return Decision(cls, reason, kind, name)

    # 1. The NAS has enforcement off.
    if not request.nas_enforces:
        return plain(FilterClass.NONE, f"NAS {request.nas_name or '?'} has enforcement off", "nas")
    # 2. Static subscriber, or an address from a static pool.
    if subscriber is not None and subscriber.ip_type == "static":
        addresses = ", ".join(subscriber.static_addresses) or "no address recorded"
        return plain(FilterClass.NONE, f"static subscriber ({addresses})", "static")
    pool = _static_pool_of(request.framed_ip, settings.static_pools)
    if pool is not None:
        return plain(FilterClass.NONE, f"static pool {pool}", "static-pool")
    # 3. An active exemption (the latest-expiring one explains best).
    if subscriber is not None:
        active = [ex for ex in subscriber.exemptions if ex.active_at(now)]
        if active:
            best = max(active, key=lambda ex: ex.expires_at or datetime.max.replace(tzinfo=now.tzinfo))
            return plain(FilterClass.NONE, _exemption_text(best), "exempt")
    # 4-6. Override, realm default, policy default.
    if subscriber is not None and subscriber.class_override is not None:
        cls, reason, kind = subscriber.class_override, f"class override {subscriber.class_override}", "override"
    elif realm is not None and realm.default_class is not None:
        cls, reason, kind = realm.default_class, f"realm {realm.name} default {realm.default_class}", "realm"
    else:
        who = "" if subscriber is not None else "not in the database; "
        cls, reason, kind = settings.default_class, f"{who}policy default {settings.default_class}", "default"
    return _with_partner_permits(Decision(cls, reason, kind, name), realm, now)


def decide_without_database(request: Request, settings: Settings) -> Decision:
    """The decision when the subscriber database cannot be reached and nothing is cached."""
    if not request.nas_enforces:
        return Decision(FilterClass.NONE, f"NAS {request.nas_name or '?'} has enforcement off", "nas")
    pool = _static_pool_of(request.framed_ip, settings.static_pools)
    if pool is not None:
        return Decision(FilterClass.NONE, f"static pool {pool}", "static-pool", realm_of(request.username))
    cls = FilterClass.NONE if settings.on_database_error == "none" else settings.default_class
    return Decision(
        cls,
        f"database unavailable; policy.on_database_error={settings.on_database_error} gives {cls}",
        "database-error",
        realm_of(request.username),
    )


def _with_partner_permits(decision: Decision, realm: Realm | None, now: datetime) -> Decision:
    """A realm with active MSA(25) permits turns `full` into that partner's variant."""
    if decision.filter_class is not FilterClass.FULL or realm is None:
        return decision
    active = [p for p in realm.msa_permits if p.active_at(now)]
    if not active:
        return decision
    nets = tuple(p.network for p in active)
    listed = ", ".join(f"{p.network} until {p.until:%Y-%m-%d}" for p in active)
    return Decision(
        decision.filter_class,
        f"{decision.reason}; partner MSA(25) permits {listed}",
        decision.reason_kind,
        decision.realm,
        nets,
        realm.filter_name,
    )
