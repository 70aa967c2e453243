"""Staff accounts: passwords hashed with argon2id (argon2-cffi), API tokens of 256 random bits
stored as their SHA-256, shown once. Used by `op25b staff` and `op25b web`."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine

from radius_op25b.core.inputs import format_duration, parse_duration
from radius_op25b.errors import InvalidInput
from radius_op25b.store import db, staff

TOKEN_PREFIX = "op25b_"
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_hasher = PasswordHasher()
# Verified against when the name is unknown, so an unknown name costs as much time as a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password is shorter than {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"the password is longer than {MAX_PASSWORD} characters")
    return password


@dataclass(frozen=True, slots=True)
class Member:
    """A signed-in staff member, as the web face and the audit log know them."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        """At least `role` (viewer < agent < admin)."""
        return staff.ROLES.index(self.role) >= staff.ROLES.index(role)


def member_json(row: Any) -> dict[str, Any]:
    live = [t for t in row.tokens if t.revoked_at is None]
    return {**staff.staff_state(row), "tokens": len(live)}


class StaffService:
    def __init__(self, engine: Engine, *, actor: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine, self.actor, self.clock = engine, actor, clock

    def add(self, name: str, *, role: str, password: str | None) -> dict[str, Any]:
        staff.check_staff_name(name)
        staff.check_role(role)
        hashed = _hasher.hash(check_password(password)) if password is not None else None
        with db.transaction(self.engine) as session:
            return member_json(
                staff.add_staff(session, name, role=role, password_hash=hashed, actor=self.actor, now=self.clock())
            )

    def token(self, name: str, *, valid_for: str | None = "90d") -> tuple[str, dict[str, Any]]:
        """A new token (returned once, never stored) and what is stored of it."""
        staff.check_staff_name(name)
        length = parse_duration(valid_for) if valid_for is not None else None
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with db.transaction(self.engine) as session:
            now = self.clock()
            expires = now + length if length is not None else None
            row = staff.add_token(
                session, name, token_hash=hash_token(token), prefix=token[:12], expires_at=expires, actor=self.actor, now=now
            )
            data = {
                "name": row.staff.name,
                "prefix": row.prefix,
                "expires_at": expires.isoformat() if expires else None,
                "valid_for": format_duration(length) if length else None,
            }
        return token, data

    def list(self) -> dict[str, Any]:
        with db.transaction(self.engine) as session:
            return {"staff": [member_json(m) for m in staff.list_staff(session)]}

    def disable(self, name: str) -> dict[str, Any]:
        with db.transaction(self.engine) as session:
            return member_json(staff.disable_staff(session, name, actor=self.actor, now=self.clock()))

    def revoke_tokens(self, name: str) -> dict[str, Any]:
        with db.transaction(self.engine) as session:
            return {
                "name": staff.check_staff_name(name),
                "revoked": staff.revoke_staff_tokens(session, name, actor=self.actor, now=self.clock()),
            }

    # --- authentication (web) ---------------------------------------------------------------------

    def sign_in(self, name: str, password: str) -> Member | None:
        """The member, if `password` is theirs and they are enabled; None otherwise (no detail)."""
        try:
            key = staff.check_staff_name(name)
        except InvalidInput:
            return None
        if not password or len(password) > MAX_PASSWORD:
            return None
        with db.transaction(self.engine) as session:
            row = staff.find_staff(session, key)
            hashed = row.password_hash if row is not None and row.password_hash and row.disabled_at is None else None
            try:
                _hasher.verify(hashed or _DUMMY_HASH, password)
            except (VerificationError, InvalidHashError):
                return None
            if hashed is None or row is None:
                return None
            return Member(row.name, row.role)

    def for_token(self, token: str) -> Member | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with db.transaction(self.engine) as session:
            row = staff.staff_for_token(session, hash_token(token), self.clock())
            return Member(row.name, row.role) if row is not None else None

    def member(self, name: str) -> Member | None:
        """The enabled member named `name` (a trusted SSO header, or a session cookie's name)."""
        try:
            key = staff.check_staff_name(name)
        except InvalidInput:
            return None
        with db.transaction(self.engine) as session:
            row = staff.find_staff(session, key)
            return Member(row.name, row.role) if row is not None and row.disabled_at is None else None
