"""Realms, their MSA(25) permits, and the mobile carriers' MTA blocks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from radius_op25b.errors import Conflict, InvalidInput, NotFound
from radius_op25b.store.audit import audit
from radius_op25b.store.checks import check_cidr, check_class
from radius_op25b.store.jobs import queue_pushes
from radius_op25b.store.models import (
    MobileMtaBlock,
    Realm,
    RealmMsaPermit,
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
    realm = find_realm(session, name)
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
    key = name.strip().lower()
    if not key or any(ch.isspace() or ch == "@" for ch in key):
        raise InvalidInput(f"{name!r} is not a realm name")
    if find_realm(session, key) is not None:
        raise Conflict(f"realm {key!r} already exists")
    if model is not None and model.upper() not in ("A", "B", "C"):
        raise InvalidInput(f"model {model!r} is not A, B or C")
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


def list_realms(session: Session) -> Sequence[Realm]:
    return session.scalars(select(Realm).order_by(Realm.name).options(selectinload(Realm.msa_permits))).all()


def add_mobile_mta_block(
    session: Session, cidr: str, *, carrier: str, actor: str, now: datetime, note: str | None = None
) -> MobileMtaBlock:
    block = check_cidr(cidr)
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
