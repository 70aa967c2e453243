"""Subscribers, their static addresses and their exemptions.

Changes to one subscriber start with `lock_subscriber`: two agents changing the same subscriber
at once are serialised on its row (PostgreSQL row lock; SQLite's write lock), so the second sees
what the first did (one active exemption, one revocation)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from radius_op25b.core.decision import username_key
from radius_op25b.core.inputs import MAX_NOTE, MAX_REASON, check_text, format_expiry
from radius_op25b.errors import Conflict, InvalidInput, NotFound
from radius_op25b.store.audit import audit
from radius_op25b.store.checks import check_address, check_class, check_username, realm_for
from radius_op25b.store.jobs import queue_pushes
from radius_op25b.store.models import (
    Exemption,
    StaticAddress,
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
        select(Subscriber)
        .where(Subscriber.username_key == username_key(username))
        .options(selectinload(Subscriber.exemptions))
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one_or_none()


def get_subscriber(session: Session, username: str) -> Subscriber:
    """The subscriber an operator named (the name checked first); NotFound if there is none."""
    sub = find_subscriber(session, check_username(username))
    if sub is None:
        raise NotFound(f"no subscriber {username.strip()!r}")
    return sub


def lock_subscriber(session: Session, username: str) -> Subscriber:
    """The subscriber, locked for this transaction and read after the lock (so as another
    agent's committed change left it)."""
    key = username_key(check_username(username))
    # A no-op write: PostgreSQL locks the row, SQLite takes its write lock (waiting busy_timeout).
    session.execute(update(Subscriber).where(Subscriber.username_key == key).values(id=Subscriber.id))
    return get_subscriber(session, username)


def static_owners(session: Session, addresses: Sequence[str]) -> dict[str, str]:
    """address -> username of the subscriber owning it, for those of `addresses` that are owned."""
    if not addresses:
        return {}
    rows = session.execute(
        select(StaticAddress.address, Subscriber.username)
        .join(Subscriber, StaticAddress.subscriber_id == Subscriber.id)
        .where(StaticAddress.address.in_(list(addresses)))
    ).all()
    return {address: username for address, username in rows}


def _check_statics(session: Session, addresses: Sequence[str], owner: Subscriber | None) -> list[str]:
    statics = list(dict.fromkeys(check_address(a) for a in addresses))
    taken = {a: u for a, u in static_owners(session, statics).items() if owner is None or u != owner.username}
    if taken:
        address, user = next(iter(taken.items()))
        raise Conflict(f"static address {address} already belongs to subscriber {user!r}; one address, one subscriber")
    return statics


def _own_statics(sub: Subscriber, statics: Sequence[str]) -> None:
    """The ownership rows of `statics` (the caller sets `static_addresses` to the same list)."""
    kept = {row.address: row for row in sub.owned_addresses}
    sub.owned_addresses = [kept.get(a) or StaticAddress(address=a) for a in statics]


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
    note = (check_text(note, "note", MAX_NOTE, required=False, multiline=True) or None) if note is not None else None
    cls = check_class(class_override) if class_override else None
    chosen_realm = realm_for(name, realm)
    statics = [check_address(a) for a in static_addresses]
    if find_subscriber(session, name) is not None:
        raise Conflict(f"subscriber {name!r} already exists")
    statics = _check_statics(session, statics, None)
    sub = Subscriber(
        username=name,
        username_key=username_key(name),
        realm=chosen_realm,
        ip_type="static" if statics else "dynamic",
        static_addresses=statics,
        class_override=cls,
        note=note,
        created_at=now,
        updated_at=now,
    )
    _own_statics(sub, statics)
    session.add(sub)
    session.flush()
    audit(session, actor=actor, action="subscriber.add", target=sub.username_key, now=now, after=subscriber_state(sub))
    queue_pushes(session, cause="subscriber.add", now=now, username=sub.username_key)
    return sub


def _change(
    session: Session,
    sub: Subscriber,
    action: str,
    actor: str,
    now: datetime,
    *,
    push: bool = True,
    reason: str | None = None,
    **fields: Any,
) -> Subscriber:
    before = subscriber_state(sub)
    for key, value in fields.items():
        setattr(sub, key, value)
    sub.updated_at = now
    session.flush()
    audit(
        session,
        actor=actor,
        action=action,
        target=sub.username_key,
        now=now,
        before=before,
        after=subscriber_state(sub),
        reason=reason,
    )
    if push:
        queue_pushes(session, cause=action, now=now, username=sub.username_key)
    return sub


def set_static(session: Session, username: str, addresses: Sequence[str], *, actor: str, now: datetime) -> Subscriber:
    if not addresses:
        raise InvalidInput("set-static needs at least one IP address")
    [check_address(a) for a in addresses]  # malformed values first, before any lookup
    sub = lock_subscriber(session, username)
    statics = _check_statics(session, addresses, sub)
    _own_statics(sub, statics)
    return _change(session, sub, "subscriber.set-static", actor, now, ip_type="static", static_addresses=statics)


def set_dynamic(session: Session, username: str, *, actor: str, now: datetime) -> Subscriber:
    sub = lock_subscriber(session, username)
    _own_statics(sub, [])
    return _change(session, sub, "subscriber.set-dynamic", actor, now, ip_type="dynamic", static_addresses=[])


def set_class(session: Session, username: str, cls: str | None, *, actor: str, now: datetime) -> Subscriber:
    value = check_class(cls) if cls is not None else None
    sub = lock_subscriber(session, username)
    return _change(session, sub, "subscriber.set-class", actor, now, class_override=value)


def set_note(session: Session, username: str, note: str, *, actor: str, now: datetime) -> Subscriber:
    """A note changes no decision: nothing is pushed."""
    value = check_text(note, "note", MAX_NOTE, required=False, multiline=True) or None
    sub = lock_subscriber(session, username)
    return _change(session, sub, "subscriber.set-note", actor, now, push=False, note=value)


def set_realm(session: Session, username: str, realm: str | None, *, actor: str, now: datetime) -> Subscriber:
    """`realm` None: the part after '@' again (or none)."""
    sub = lock_subscriber(session, username)
    return _change(session, sub, "subscriber.set-realm", actor, now, realm=realm_for(sub.username, realm))


def delete_subscriber(session: Session, username: str, *, reason: str, actor: str, now: datetime) -> dict[str, Any]:
    """The subscriber and its exemptions go; its open sessions are decided as an unknown login's."""
    why = check_text(reason, "the reason", MAX_REASON)
    sub = lock_subscriber(session, username)
    before = {**subscriber_state(sub), "exemptions": [exemption_state(ex) for ex in sub.exemptions]}
    key = sub.username_key
    session.delete(sub)
    session.flush()
    audit(session, actor=actor, action="subscriber.delete", target=key, now=now, before=before, reason=why)
    queue_pushes(session, cause="subscriber.delete", now=now, username=key)
    return before


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


def active_exemption(sub: Subscriber, now: datetime) -> Exemption | None:
    return next((ex for ex in sub.exemptions if exemption_view(ex).active_at(now)), None)


def exempt(
    session: Session,
    username: str,
    *,
    reason: str,
    until: datetime | None,
    actor: str,
    now: datetime,
    extend: bool = False,
) -> Exemption:
    """Grant the one active exemption (`until` None: permanent), or with `extend` move the expiry
    of the active one. Limits (policy.max_exemption) are the caller's (services/desk.py)."""
    why = check_text(reason, "the reason", MAX_REASON)
    if until is not None and until <= now:
        raise InvalidInput(f"expiry {until.isoformat()} is not in the future")
    sub = lock_subscriber(session, username)
    current = active_exemption(sub, now)
    if extend:
        if current is None:
            raise NotFound(f"subscriber {sub.username!r} has no active exemption to extend")
        before = exemption_state(current)
        current.expires_at = until
        current.expiry_pushed_at = None
        sub.updated_at = now
        session.flush()
        audit(
            session,
            actor=actor,
            action="subscriber.exempt-extend",
            target=sub.username_key,
            now=now,
            before=before,
            after=exemption_state(current),
            reason=why,
        )
        queue_pushes(session, cause="subscriber.exempt-extend", now=now, username=sub.username_key)
        return current
    if current is not None:
        raise Conflict(
            f"subscriber {sub.username!r} is already exempt ({format_expiry(current.expires_at)}, by {current.actor}); "
            "extend it to move the end (--extend)"
        )
    ex = Exemption(subscriber=sub, reason=why, actor=actor, created_at=now, expires_at=until)
    session.add(ex)
    sub.updated_at = now
    session.flush()
    audit(
        session,
        actor=actor,
        action="subscriber.exempt",
        target=sub.username_key,
        now=now,
        after=exemption_state(ex),
        reason=why,
    )
    queue_pushes(session, cause="subscriber.exempt", now=now, username=sub.username_key)
    return ex


def unexempt(session: Session, username: str, *, reason: str, actor: str, now: datetime) -> list[Exemption]:
    why = check_text(reason, "the reason", MAX_REASON)
    sub = lock_subscriber(session, username)
    active = [ex for ex in sub.exemptions if exemption_view(ex).active_at(now)]
    if not active:
        revoked = [ex for ex in sub.exemptions if ex.revoked_at is not None]
        if revoked:
            last = max(revoked, key=lambda ex: ex.revoked_at or now)
            raise Conflict(
                f"subscriber {sub.username!r}: the exemption is already revoked "
                f"(at {last.revoked_at:%Y-%m-%d %H:%M:%S} UTC by {last.revoked_by})"
            )
        raise NotFound(f"subscriber {sub.username!r} has no active exemption")
    for ex in active:
        before = exemption_state(ex)
        # Compare-and-set: the row is revoked once, whoever else tries at the same moment.
        won = session.execute(
            update(Exemption)
            .where(Exemption.id == ex.id, Exemption.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=actor, revoke_reason=why)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not won:
            session.refresh(ex)
            raise Conflict(
                f"subscriber {sub.username!r}: the exemption is already revoked "
                f"(at {ex.revoked_at:%Y-%m-%d %H:%M:%S} UTC by {ex.revoked_by})"
            )
        session.refresh(ex)
        audit(
            session,
            actor=actor,
            action="subscriber.unexempt",
            target=sub.username_key,
            now=now,
            before=before,
            after=exemption_state(ex),
            reason=why,
        )
    sub.updated_at = now
    session.flush()
    queue_pushes(session, cause="subscriber.unexempt", now=now, username=sub.username_key)
    return active


def active_exemptions(session: Session, now: datetime, *, expiring_before: datetime | None = None) -> Sequence[Exemption]:
    """Exemptions active at `now`, soonest expiry first (permanent ones last)."""
    query = (
        select(Exemption)
        .join(Subscriber)
        .where(Exemption.revoked_at.is_(None), (Exemption.expires_at.is_(None)) | (Exemption.expires_at > now))
        .order_by(Exemption.expires_at.is_(None), Exemption.expires_at, Subscriber.username_key)
        .options(selectinload(Exemption.subscriber))
    )
    if expiring_before is not None:
        query = query.where(Exemption.expires_at <= expiring_before)
    return session.scalars(query).all()


def list_subscribers(
    session: Session, *, realm: str | None = None, limit: int = 1000, offset: int = 0, prefix: str | None = None
) -> tuple[Sequence[Subscriber], int]:
    """A page of subscribers by username (those starting with `prefix`), and how many there are in all."""
    query = select(Subscriber).order_by(Subscriber.username_key).options(selectinload(Subscriber.exemptions))
    count = select(func.count()).select_from(Subscriber)
    if realm is not None:
        key = realm.strip().lower()
        query, count = query.where(Subscriber.realm == key), count.where(Subscriber.realm == key)
    if prefix:
        # autoescape: '%' and '_' in a name are not wildcards.
        within = Subscriber.username_key.startswith(username_key(prefix), autoescape=True)
        query, count = query.where(within), count.where(within)
    return session.scalars(query.limit(limit).offset(offset)).all(), int(session.scalar(count) or 0)


def count_subscribers(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Subscriber)) or 0)


def subscriber_owning(session: Session, address: str) -> Subscriber | None:
    """The subscriber whose static address `address` is."""
    query = select(Subscriber).join(StaticAddress).where(StaticAddress.address == check_address(address))
    return session.scalars(query).one_or_none()
