"""Views of the rows for the pure decision (core/decision.py), and the held set of `serve`."""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, literal, select
from sqlalchemy.orm import Session

from radius_op25b.core import decision as d

# subscribers.py uses exemption_view from here: import the modules, not their names
from radius_op25b.store import realms, subscribers
from radius_op25b.store.models import (
    Exemption,
    Realm,
    Subscriber,
    UTCDateTime,
)


def exemption_view(ex: Exemption) -> d.Exemption:
    return d.Exemption(ex.reason, ex.actor, ex.created_at, ex.expires_at, ex.revoked_at)


def subscriber_view(sub: Subscriber) -> d.Subscriber:
    return d.Subscriber(
        username=sub.username,
        realm=sub.realm,
        ip_type=sub.ip_type,
        static_addresses=tuple(sub.static_addresses or ()),
        class_override=d.FilterClass(sub.class_override) if sub.class_override else None,
        exemptions=tuple(exemption_view(ex) for ex in sub.exemptions),
    )


def realm_view(realm: Realm) -> d.Realm:
    return d.Realm(
        name=realm.name,
        default_class=d.FilterClass(realm.default_class) if realm.default_class else None,
        msa_permits=tuple(d.MsaPermit(ipaddress.ip_network(p.cidr), p.permit_until) for p in realm.msa_permits),
        filter_name=realm.filter_name,
    )


def policy_inputs(session: Session, username: str) -> tuple[d.Subscriber | None, d.Realm | None]:
    """The subscriber and realm the decision needs, as plain values."""
    sub = subscribers.find_subscriber(session, username)
    view = subscriber_view(sub) if sub else None
    realm_name = d.realm_name(view, username)
    realm = realms.find_realm(session, realm_name) if realm_name else None
    return view, (realm_view(realm) if realm else None)


def mobile_mta_networks(session: Session) -> tuple[d.IPNetwork, ...]:
    return tuple(ipaddress.ip_network(b.cidr) for b in realms.list_mobile_mta_blocks(session))


# Each subscriber with its live exemptions (not revoked, not expired): one row per exemption, or
# one row of NULLs. Built once: building a statement costs more than running it.
_VIEW_ROWS = select(
    Subscriber.username,
    Subscriber.username_key,
    Subscriber.realm,
    Subscriber.ip_type,
    Subscriber.static_addresses,
    Subscriber.class_override,
    Exemption.reason,
    Exemption.actor,
    Exemption.created_at,
    Exemption.expires_at,
).outerjoin(
    Exemption,
    (Exemption.subscriber_id == Subscriber.id)
    & Exemption.revoked_at.is_(None)
    & (Exemption.expires_at.is_(None) | (Exemption.expires_at > bindparam("now", type_=UTCDateTime()))),
)
_SUBSCRIBERS_BY_KEY = _VIEW_ROWS.where(Subscriber.username_key.in_(bindparam("keys", expanding=True)))
# A superset of the subscribers whose decision differs from that of an unknown subscriber of the
# same name (d.decides_as_unknown is exact): static, a class override, a live exemption, or a
# realm other than the one in the name. The realm test is a plain suffix comparison, so that
# wildcard characters in a realm name cannot hide a subscriber.
_SPECIAL_SUBSCRIBERS = _VIEW_ROWS.where(
    (Subscriber.ip_type != "dynamic")
    | Subscriber.class_override.is_not(None)
    | Exemption.id.is_not(None)
    | (
        Subscriber.realm.is_not(None)
        & (
            Subscriber.realm.contains("@", autoescape=True)
            | (
                func.substr(Subscriber.username_key, func.length(Subscriber.username_key) - func.length(Subscriber.realm))
                != literal("@") + Subscriber.realm
            )
        )
    )
)


def _views(rows: Iterable[Any]) -> dict[str, d.Subscriber]:
    """Views from (subscriber, live exemption or NULLs) rows, in one pass that keeps no row."""
    views: dict[str, d.Subscriber] = {}
    for r in rows:
        view = views.get(r.username_key)
        if view is None:
            # Realm names and IP types repeat across many rows: one string object each.
            view = d.Subscriber(
                username=r.username,
                realm=sys.intern(r.realm) if r.realm else None,
                ip_type=sys.intern(r.ip_type),
                static_addresses=tuple(r.static_addresses or ()),
                class_override=d.FilterClass(r.class_override) if r.class_override else None,
            )
        if r.created_at is not None:
            exemption = d.Exemption(r.reason, r.actor, r.created_at, r.expires_at)
            view = dataclasses.replace(view, exemptions=(*view.exemptions, exemption))
        views[r.username_key] = view
    return views


def special_subscriber_views(session: Session, now: datetime, keys: Sequence[str] | None = None) -> dict[str, d.Subscriber]:
    """Decision views (no ORM objects; only exemptions that still matter at `now`) of every
    subscriber that is not decided like an unknown one - or of those among `keys`: what the
    proxy holds in memory so that no Access-Accept waits for the database."""
    if keys is None:
        rows = session.execute(_SPECIAL_SUBSCRIBERS, {"now": now})
    else:
        rows = session.execute(_SUBSCRIBERS_BY_KEY, {"keys": list(keys), "now": now})
    return {key: view for key, view in _views(rows).items() if not d.decides_as_unknown(view, key)}


def realm_views(session: Session) -> dict[str, d.Realm]:
    """Every realm with its permits: few enough for the proxy to hold them all in memory."""
    return {r.name: realm_view(r) for r in realms.list_realms(session)}
