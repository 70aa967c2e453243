"""Subscribers and their exemptions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from radius_op25b.core.decision import username_key
from radius_op25b.errors import Conflict, InvalidInput, NotFound
from radius_op25b.store.audit import audit
from radius_op25b.store.checks import check_address, check_class, check_username, realm_for
from radius_op25b.store.jobs import queue_pushes
from radius_op25b.store.models import (
    Exemption,
    Subscriber,
)
from radius_op25b.store.views import exemption_view


def subscriber_state(sub: Subscriber) -> dict[str, Any]:
    """The audited fields of a subscriber, as JSON-ready values."""
    return {
        "username": sub.username,
        "realm": sub.realm,
        "ip_type": sub.ip_type,
        "static_addresses": list(sub.static_addresses or []),
        "class_override": sub.class_override,
        "note": sub.note,
    }


def find_subscriber(session: Session, username: str) -> Subscriber | None:
    query = (
        select(Subscriber).where(Subscriber.username_key == username_key(username)).options(selectinload(Subscriber.exemptions))
    )
    return session.scalars(query).one_or_none()


def get_subscriber(session: Session, username: str) -> Subscriber:
    sub = find_subscriber(session, username)
    if sub is None:
        raise NotFound(f"no subscriber {username!r}")
    return sub


def add_subscriber(
    session: Session,
    username: str,
    *,
    actor: str,
    now: datetime,
    realm: str | None = None,
    static_addresses: Sequence[str] = (),
    class_override: str | None = None,
    note: str | None = None,
) -> Subscriber:
    name = check_username(username)
    if find_subscriber(session, name) is not None:
        raise Conflict(f"subscriber {name!r} already exists")
    statics = [check_address(a) for a in static_addresses]
    sub = Subscriber(
        username=name,
        username_key=username_key(name),
        realm=realm_for(name, realm),
        ip_type="static" if statics else "dynamic",
        static_addresses=statics,
        class_override=check_class(class_override) if class_override else None,
        note=note,
        created_at=now,
        updated_at=now,
    )
    session.add(sub)
    session.flush()
    audit(session, actor=actor, action="subscriber.add", target=sub.username_key, now=now, after=subscriber_state(sub))
    queue_pushes(session, cause="subscriber.add", now=now, username=sub.username_key)
    return sub


def _change(session: Session, sub: Subscriber, action: str, actor: str, now: datetime, **fields: Any) -> Subscriber:
    before = subscriber_state(sub)
    for key, value in fields.items():
        setattr(sub, key, value)
    sub.updated_at = now
    session.flush()
    audit(session, actor=actor, action=action, target=sub.username_key, now=now, before=before, after=subscriber_state(sub))
    queue_pushes(session, cause=action, now=now, username=sub.username_key)
    return sub


def set_static(session: Session, username: str, addresses: Sequence[str], *, actor: str, now: datetime) -> Subscriber:
    if not addresses:
        raise InvalidInput("set-static needs at least one IP address")
    statics = [check_address(a) for a in addresses]
    sub = get_subscriber(session, username)
    return _change(session, sub, "subscriber.set-static", actor, now, ip_type="static", static_addresses=statics)


def set_dynamic(session: Session, username: str, *, actor: str, now: datetime) -> Subscriber:
    sub = get_subscriber(session, username)
    return _change(session, sub, "subscriber.set-dynamic", actor, now, ip_type="dynamic", static_addresses=[])


def set_class(session: Session, username: str, cls: str | None, *, actor: str, now: datetime) -> Subscriber:
    value = check_class(cls) if cls is not None else None
    sub = get_subscriber(session, username)
    return _change(session, sub, "subscriber.set-class", actor, now, class_override=value)


def exemption_state(ex: Exemption) -> dict[str, Any]:
    return {
        "reason": ex.reason,
        "actor": ex.actor,
        "created_at": ex.created_at.isoformat(),
        "expires_at": ex.expires_at.isoformat() if ex.expires_at else None,
        "revoked_at": ex.revoked_at.isoformat() if ex.revoked_at else None,
        "revoked_by": ex.revoked_by,
        "revoke_reason": ex.revoke_reason,
    }


def exempt(session: Session, username: str, *, reason: str, until: datetime | None, actor: str, now: datetime) -> Exemption:
    if not reason.strip():
        raise InvalidInput("an exemption needs a --reason")
    if until is not None and until <= now:
        raise InvalidInput(f"expiry {until.isoformat()} is not in the future")
    sub = get_subscriber(session, username)
    ex = Exemption(subscriber=sub, reason=reason.strip(), actor=actor, created_at=now, expires_at=until)
    session.add(ex)
    sub.updated_at = now
    session.flush()
    audit(session, actor=actor, action="subscriber.exempt", target=sub.username_key, now=now, after=exemption_state(ex))
    queue_pushes(session, cause="subscriber.exempt", now=now, username=sub.username_key)
    return ex


def unexempt(session: Session, username: str, *, reason: str, actor: str, now: datetime) -> list[Exemption]:
    if not reason.strip():
        raise InvalidInput("unexempt needs a --reason")
    sub = get_subscriber(session, username)
    active = [ex for ex in sub.exemptions if exemption_view(ex).active_at(now)]
    if not active:
        raise NotFound(f"subscriber {sub.username!r} has no active exemption")
    for ex in active:
        before = exemption_state(ex)
        ex.revoked_at, ex.revoked_by, ex.revoke_reason = now, actor, reason.strip()
        audit(
            session,
            actor=actor,
            action="subscriber.unexempt",
            target=sub.username_key,
            now=now,
            before=before,
            after=exemption_state(ex),
        )
    sub.updated_at = now
    session.flush()
    queue_pushes(session, cause="subscriber.unexempt", now=now, username=sub.username_key)
    return active


def list_subscribers(session: Session, *, realm: str | None = None, limit: int = 1000) -> Sequence[Subscriber]:
    query = select(Subscriber).order_by(Subscriber.username_key).limit(limit).options(selectinload(Subscriber.exemptions))
    if realm is not None:
        query = query.where(Subscriber.realm == realm.lower())
    return session.scalars(query).all()


def count_subscribers(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Subscriber)) or 0)
