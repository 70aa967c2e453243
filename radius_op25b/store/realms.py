"""Realms, their MSA(25) permits, and the mobile carriers' MTA blocks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from radius_op25b.core.inputs import MAX_CARRIER, MAX_FILTER_NAME, MAX_NOTE, check_text
from radius_op25b.errors import Conflict, InvalidInput, NotFound
from radius_op25b.store.audit import audit
from radius_op25b.store.checks import check_cidr, check_class, check_realm_name
from radius_op25b.store.jobs import queue_pushes
from radius_op25b.store.models import (
    MobileMtaBlock,
    Realm,
    RealmMsaPermit,
    Subscriber,
)


def realm_state(realm: Realm) -> dict[str, Any]:
    return {
        "name": realm.name,
        "default_class": realm.default_class,
        "model": realm.model,
        "filter_name": realm.filter_name,
        "note": realm.note,
        "msa_permits": [{"cidr": p.cidr, "until": p.permit_until.isoformat()} for p in realm.msa_permits],
    }


def find_realm(session: Session, name: str) -> Realm | None:
    query = select(Realm).where(Realm.name == name.strip().lower()).options(selectinload(Realm.msa_permits))
    return session.scalars(query).one_or_none()


def get_realm(session: Session, name: str) -> Realm:
    realm = find_realm(session, check_realm_name(name))
    if realm is None:
        raise NotFound(f"no realm {name!r}")
    return realm


def add_realm(
    session: Session,
    name: str,
    *,
    actor: str,
    now: datetime,
    default_class: str | None = None,
    model: str | None = None,
    filter_name: str | None = None,
    note: str | None = None,
) -> Realm:
    key = check_realm_name(name)
    if key == "default":
        raise InvalidInput("'default' is not a realm name: `subscriber set-realm USER default` means the part after @")
    if model is not None and model.upper() not in ("A", "B", "C"):
        raise InvalidInput(f"model {model!r} is not A, B or C")
    filter_name = check_text(filter_name, "--filter-name", MAX_FILTER_NAME) if filter_name is not None else None
    note = (check_text(note, "note", MAX_NOTE, required=False, multiline=True) or None) if note is not None else None
    if default_class:
        check_class(default_class)
    if find_realm(session, key) is not None:
        raise Conflict(f"realm {key!r} already exists")
    realm = Realm(
        name=key,
        default_class=check_class(default_class) if default_class else None,
        model=model.upper() if model else None,
        filter_name=filter_name,
        note=note,
        created_at=now,
        updated_at=now,
    )
    session.add(realm)
    session.flush()
    audit(session, actor=actor, action="realm.add", target=key, now=now, after=realm_state(realm))
    queue_pushes(session, cause="realm.add", now=now, realm=key)
    return realm


def permit_msa(session: Session, name: str, cidr: str, *, until: datetime, actor: str, now: datetime) -> RealmMsaPermit:
    block = check_cidr(cidr)
    if until <= now:
        raise InvalidInput(f"permit-until {until.isoformat()} is not in the future")
    realm = get_realm(session, name)
    before = realm_state(realm)
    existing = next((p for p in realm.msa_permits if p.cidr == block), None)
    if existing is not None:
        existing.permit_until, existing.actor = until, actor
        permit = existing
    else:
        permit = RealmMsaPermit(realm=realm, cidr=block, permit_until=until, actor=actor, created_at=now)
        session.add(permit)
    realm.updated_at = now
    session.flush()
    session.refresh(realm)
    audit(session, actor=actor, action="realm.permit-msa", target=realm.name, now=now, before=before, after=realm_state(realm))
    queue_pushes(session, cause="realm.permit-msa", now=now, realm=realm.name)
    return permit


def delete_realm(session: Session, name: str, *, actor: str, now: datetime) -> dict[str, Any]:
    """Refused while subscribers are in the realm: they would silently change policy."""
    realm = get_realm(session, name)
    users = int(session.scalar(select(func.count()).select_from(Subscriber).where(Subscriber.realm == realm.name)) or 0)
    if users:
        raise Conflict(
            f"realm {realm.name!r} has {users:,} subscriber(s); move them first "
            f"(`op25b subscriber list --realm {realm.name}`, then `subscriber set-realm`)"
        )
    before = realm_state(realm)
    session.delete(realm)
    session.flush()
    audit(session, actor=actor, action="realm.delete", target=before["name"], now=now, before=before)
    queue_pushes(session, cause="realm.delete", now=now, realm=before["name"])
    return before


def revoke_msa(session: Session, name: str, cidr: str, *, actor: str, now: datetime) -> dict[str, Any]:
    block = check_cidr(cidr)
    realm = get_realm(session, name)
    permit = next((p for p in realm.msa_permits if p.cidr == block), None)
    if permit is None:
        held = ", ".join(p.cidr for p in realm.msa_permits) or "none"
        raise NotFound(f"realm {realm.name!r} has no MSA(25) permit for {block} (permits: {held})")
    before = realm_state(realm)
    realm.msa_permits.remove(permit)
    realm.updated_at = now
    session.flush()
    audit(session, actor=actor, action="realm.revoke-msa", target=realm.name, now=now, before=before, after=realm_state(realm))
    queue_pushes(session, cause="realm.revoke-msa", now=now, realm=realm.name)
    return {"realm": realm.name, "cidr": block, "until": permit.permit_until.isoformat()}


def list_realms(session: Session) -> Sequence[Realm]:
    return session.scalars(select(Realm).order_by(Realm.name).options(selectinload(Realm.msa_permits))).all()


def add_mobile_mta_block(
    session: Session, cidr: str, *, carrier: str, actor: str, now: datetime, note: str | None = None
) -> MobileMtaBlock:
    block = check_cidr(cidr)
    carrier = check_text(carrier, "--carrier", MAX_CARRIER)
    note = (check_text(note, "note", MAX_NOTE, required=False, multiline=True) or None) if note is not None else None
    if session.scalars(select(MobileMtaBlock).where(MobileMtaBlock.cidr == block)).first() is not None:
        raise Conflict(f"mobile MTA block {block} already exists")
    row = MobileMtaBlock(cidr=block, carrier=carrier, note=note, created_at=now)
    session.add(row)
    session.flush()
    audit(session, actor=actor, action="mobile-mta.add", target=block, now=now, after={"cidr": block, "carrier": carrier})
    queue_pushes(session, cause="mobile-mta.add", now=now, mobile=True)
    return row


def list_mobile_mta_blocks(session: Session) -> Sequence[MobileMtaBlock]:
    return session.scalars(select(MobileMtaBlock).order_by(MobileMtaBlock.cidr)).all()


def remove_mobile_mta_block(session: Session, cidr: str, *, actor: str, now: datetime) -> dict[str, Any]:
    block = check_cidr(cidr)
    row = session.scalars(select(MobileMtaBlock).where(MobileMtaBlock.cidr == block)).first()
    if row is None:
        raise NotFound(f"no mobile MTA block {block} (see `op25b mobile-mta list`)")
    before = {"cidr": row.cidr, "carrier": row.carrier, "note": row.note}
    session.delete(row)
    session.flush()
    audit(session, actor=actor, action="mobile-mta.remove", target=block, now=now, before=before)
    queue_pushes(session, cause="mobile-mta.remove", now=now, mobile=True)
    return before
