"""Staff of the support desk and their API tokens. Hashing is the caller's (services/staff.py):
this module stores and finds rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from radius_op25b.core.inputs import MAX_ACTOR, check_text
from radius_op25b.errors import Conflict, InvalidInput, NotFound
from radius_op25b.store.audit import audit
from radius_op25b.store.models import ApiToken, Staff

ROLES = ("viewer", "agent", "admin")


def check_staff_name(name: str) -> str:
    key = check_text(name, "staff name", MAX_ACTOR).lower()
    if any(ch.isspace() or ch in "/@:" for ch in key):
        raise InvalidInput(f"{name!r} is not a staff name (no spaces, '/', '@' or ':')")
    return key


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r} (choose {', '.join(ROLES)})")
    return role


def staff_state(member: Staff) -> dict[str, Any]:
    return {
        "name": member.name,
        "role": member.role,
        "created_at": member.created_at.isoformat(),
        "disabled_at": member.disabled_at.isoformat() if member.disabled_at else None,
        "has_password": member.password_hash is not None,
    }


def find_staff(session: Session, name: str) -> Staff | None:
    query = select(Staff).where(Staff.name == check_staff_name(name)).options(selectinload(Staff.tokens))
    return session.scalars(query).one_or_none()


def get_staff(session: Session, name: str) -> Staff:
    member = find_staff(session, name)
    if member is None:
        raise NotFound(f"no staff member {name.strip()!r}")
    return member


def add_staff(session: Session, name: str, *, role: str, password_hash: str | None, actor: str, now: datetime) -> Staff:
    key, role = check_staff_name(name), check_role(role)
    if find_staff(session, key) is not None:
        raise Conflict(f"staff member {key!r} already exists")
    member = Staff(name=key, role=role, password_hash=password_hash, created_at=now)
    session.add(member)
    session.flush()
    audit(session, actor=actor, action="staff.add", target=f"staff:{key}", now=now, after=staff_state(member))
    return member


def list_staff(session: Session) -> Sequence[Staff]:
    return session.scalars(select(Staff).order_by(Staff.name).options(selectinload(Staff.tokens))).all()


def disable_staff(session: Session, name: str, *, actor: str, now: datetime) -> Staff:
    member = get_staff(session, name)
    if member.disabled_at is not None:
        raise Conflict(f"staff member {member.name!r} is already disabled (since {member.disabled_at:%Y-%m-%d %H:%M} UTC)")
    before = staff_state(member)
    member.disabled_at = now
    revoke_tokens(session, member, now)
    audit(
        session,
        actor=actor,
        action="staff.disable",
        target=f"staff:{member.name}",
        now=now,
        before=before,
        after=staff_state(member),
    )
    return member


def add_token(
    session: Session, name: str, *, token_hash: str, prefix: str, expires_at: datetime | None, actor: str, now: datetime
) -> ApiToken:
    member = get_staff(session, name)
    if member.disabled_at is not None:
        raise Conflict(f"staff member {member.name!r} is disabled")
    token = ApiToken(staff=member, token_hash=token_hash, prefix=prefix, created_at=now, expires_at=expires_at)
    session.add(token)
    session.flush()
    audit(
        session,
        actor=actor,
        action="staff.token",
        target=f"staff:{member.name}",
        now=now,
        after={"prefix": prefix, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token


def revoke_tokens(session: Session, member: Staff, now: datetime) -> int:
    return int(
        session.execute(
            update(ApiToken).where(ApiToken.staff_id == member.id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
        ).rowcount
        or 0
    )


def revoke_staff_tokens(session: Session, name: str, *, actor: str, now: datetime) -> int:
    member = get_staff(session, name)
    count = revoke_tokens(session, member, now)
    audit(session, actor=actor, action="staff.revoke-tokens", target=f"staff:{member.name}", now=now, after={"revoked": count})
    return count


def staff_for_token(session: Session, token_hash: str, now: datetime) -> Staff | None:
    """The enabled staff member whose live token hashes to `token_hash` (its last use recorded)."""
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).one_or_none()
    if token is None or token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    member = token.staff
    if member.disabled_at is not None:
        return None
    token.last_used_at = now
    return member
