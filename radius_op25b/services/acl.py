"""What `op25b acl` and `op25b export` read: realms with their permits, the mobile MTA blocks and
static subscribers' addresses from the database, names and pools from the config; core/acl.py
does the rest. One read-only session per call; no files here (the CLI reads and writes them)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from radius_op25b import store
from radius_op25b.core import acl
from radius_op25b.core.config import Config
from radius_op25b.core.decision import FilterClass, IPAddress, Realm
from radius_op25b.core.inputs import check_realm_name
from radius_op25b.errors import NotFound
from radius_op25b.store import db
from radius_op25b.store.models import StaticAddress


@dataclass(frozen=True)
class Policy:
    """The database's side of the filters, as plain values."""

    realms: tuple[Realm, ...]
    mobile_blocks: tuple[acl.MobileBlock, ...]


def read_policy(engine: Engine) -> Policy:
    with db.reading(engine) as session:
        realms = tuple(store.realm_views(session).values())
        blocks = tuple(acl.MobileBlock(ipaddress.ip_network(b.cidr), b.carrier) for b in store.list_mobile_mta_blocks(session))
    return Policy(realms, blocks)


def static_addresses(engine: Engine) -> tuple[IPAddress, ...]:
    """Every static subscriber's address (one owner each, store/models.py StaticAddress)."""
    with db.reading(engine) as session:
        return tuple(ipaddress.ip_address(a) for a in session.scalars(select(StaticAddress.address)))


def render(
    config: Config,
    engine: Engine,
    vendor: str,
    now: datetime,
    *,
    filter_class: FilterClass | None = None,
    realm: str | None = None,
) -> acl.Rendering:
    policy = read_policy(engine)
    key = _known_realm(policy, realm)
    specs = acl.filter_specs(config.filters, policy.realms, policy.mobile_blocks, now, filter_class=filter_class, realm=key)
    return acl.render(vendor, specs, config.filters)


def report(config: Config, engine: Engine, now: datetime) -> tuple[acl.Report, tuple[str, ...]]:
    """The report, for the vendors the configured clients' profiles need (all when none maps)."""
    policy = read_policy(engine)
    profiles = [c.profile for c in config.clients]
    vendors = tuple(dict.fromkeys(acl.PROFILE_VENDORS[p] for p in profiles if p in acl.PROFILE_VENDORS)) or acl.VENDORS
    result = acl.report(
        config.filters,
        policy.realms,
        policy.mobile_blocks,
        config.dynamic_pools,
        now,
        vendors=vendors,
        profiles_in_use=profiles,
    )
    return result, vendors


def expiring(engine: Engine, now: datetime, within: timedelta) -> tuple[acl.Expiring, ...]:
    return acl.expiring_permits(read_policy(engine).realms, now, within)


def dynamic_ranges(config: Config, engine: Engine) -> tuple[acl.DynamicRange, ...]:
    statics = [ipaddress.ip_network(a) for a in static_addresses(engine)]
    return acl.dynamic_ranges(config.dynamic_pools, [*config.policy.static_pools, *statics])


def ptr_check(config: Config, engine: Engine, pattern: re.Pattern[str], zone_text: str) -> acl.PtrCheck:
    zone = acl.parse_zone(zone_text)
    is_dynamic = acl.dynamic_test(config.dynamic_pools, config.policy.static_pools, static_addresses(engine))
    return acl.ptr_check(pattern, zone, is_dynamic)


def _known_realm(policy: Policy, realm: str | None) -> str | None:
    if realm is None:
        return None
    key = check_realm_name(realm)
    if not any(r.name == key for r in policy.realms):
        known = ", ".join(r.name for r in policy.realms) or "none"
        raise NotFound(f"no realm {key!r} (realms: {known})")
    return key
