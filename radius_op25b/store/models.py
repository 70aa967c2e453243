"""Typed SQLAlchemy 2 models of the subscriber database (README: "JSON shapes").

One DeclarativeBase whose MetaData has a naming convention, so Alembic revisions name constraints
identically on SQLite and PostgreSQL. Times are stored as naive UTC and come back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CLASS_VALUES = "('full', 'mobile', 'none')"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = (
        CheckConstraint("ip_type IN ('dynamic', 'static')", name="ip_type"),
        CheckConstraint(f"class_override IN {CLASS_VALUES}", name="class_override"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(253))  # as the NAS sends User-Name
    # Lower-cased User-Name: the unique, indexed lookup key (usernames are case-insensitive).
    username_key: Mapped[str] = mapped_column(String(253), unique=True)
    realm: Mapped[str | None] = mapped_column(String(253), index=True)
    ip_type: Mapped[str] = mapped_column(String(8), default="dynamic")
    static_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    class_override: Mapped[str | None] = mapped_column(String(8))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    exemptions: Mapped[list[Exemption]] = relationship(
        back_populates="subscriber", order_by="Exemption.id", cascade="all, delete-orphan"
    )
    owned_addresses: Mapped[list[StaticAddress]] = relationship(
        back_populates="subscriber", order_by="StaticAddress.address", cascade="all, delete-orphan"
    )


class StaticAddress(Base):
    """Who owns a static address: one subscriber per address (the unique key says so on both
    backends, also between two agents at once). `Subscriber.static_addresses` stays the list the
    decision reads; store/subscribers.py writes both in the same transaction."""

    __tablename__ = "static_addresses"

    address: Mapped[str] = mapped_column(String(45), primary_key=True)  # ipaddress' canonical text
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)

    subscriber: Mapped[Subscriber] = relationship(back_populates="owned_addresses")


class Exemption(Base):
    __tablename__ = "exemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(100))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    # Set when the expiry has been pushed to live sessions (so it is pushed once).
    expiry_pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subscriber: Mapped[Subscriber] = relationship(back_populates="exemptions")


class Realm(Base):
    __tablename__ = "realms"
    __table_args__ = (
        CheckConstraint(f"default_class IN {CLASS_VALUES}", name="default_class"),
        CheckConstraint("model IN ('A', 'B', 'C')", name="model"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)  # lower-cased
    default_class: Mapped[str | None] = mapped_column(String(8))
    model: Mapped[str | None] = mapped_column(String(1))  # JEAG ISP model A/B/C
    filter_name: Mapped[str | None] = mapped_column(String(100))  # the partner's own full filter
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    msa_permits: Mapped[list[RealmMsaPermit]] = relationship(
        back_populates="realm", order_by="RealmMsaPermit.cidr", cascade="all, delete-orphan"
    )


class RealmMsaPermit(Base):
    __tablename__ = "realm_msa_permits"
    __table_args__ = (UniqueConstraint("realm_id", "cidr"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    realm_id: Mapped[int] = mapped_column(ForeignKey("realms.id", ondelete="CASCADE"))
    cidr: Mapped[str] = mapped_column(String(49))
    permit_until: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expiry_pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    realm: Mapped[Realm] = relationship(back_populates="msa_permits")


class MobileMtaBlock(Base):
    """Mobile carriers' mail servers: the destinations that `mobile` class blocks on port 25."""

    __tablename__ = "mobile_mta_blocks"

    id: Mapped[int] = mapped_column(primary_key=True)
    cidr: Mapped[str] = mapped_column(String(49), unique=True)
    carrier: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AcctSession(Base):
    """One accounting session; answers "who had 198.51.100.7 at 14:03?"."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("nas_address", "acct_session_id"),
        Index("ix_sessions_framed_ip_started_at", "framed_ip", "started_at"),
        Index("ix_sessions_username_key", "username_key"),
        Index("ix_sessions_framed_ipv6_prefix", "framed_ipv6_prefix"),
        Index("ix_sessions_delegated_ipv6_prefix", "delegated_ipv6_prefix"),
        Index("ix_sessions_nas_address_stopped_at", "nas_address", "stopped_at"),
        Index("ix_sessions_stopped_at", "stopped_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    nas_name: Mapped[str] = mapped_column(String(100))
    nas_address: Mapped[str] = mapped_column(String(45))
    acct_session_id: Mapped[str] = mapped_column(String(253))
    nas_ip_address: Mapped[str | None] = mapped_column(String(45))  # the NAS-IP-Address attribute
    nas_identifier: Mapped[str | None] = mapped_column(String(253))
    nas_port_id: Mapped[str | None] = mapped_column(String(253))
    username: Mapped[str] = mapped_column(String(253))
    username_key: Mapped[str] = mapped_column(String(253))
    framed_ip: Mapped[str | None] = mapped_column(String(45))
    framed_ipv6_prefix: Mapped[str | None] = mapped_column(String(49))
    delegated_ipv6_prefix: Mapped[str | None] = mapped_column(String(49))
    class_applied: Mapped[str | None] = mapped_column(String(8))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    terminate_cause: Mapped[str | None] = mapped_column(String(64))
    input_octets: Mapped[int] = mapped_column(BigInteger, default=0)
    output_octets: Mapped[int] = mapped_column(BigInteger, default=0)


class CoaJob(Base):
    """A policy change to push to one live session (RFC 5176 CoA or Disconnect).

    Queued in the same transaction as the change; a running proxy claims it (PostgreSQL:
    FOR UPDATE SKIP LOCKED, so several instances never send it twice), sends, records the outcome.
    """

    __tablename__ = "coa_jobs"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sending', 'done', 'failed')", name="status"),
        Index("ix_coa_jobs_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    username_key: Mapped[str] = mapped_column(String(253), index=True)
    cause: Mapped[str] = mapped_column(String(64))  # the audited action that queued it
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    method: Mapped[str | None] = mapped_column(String(16))  # coa | disconnect, as sent last
    result: Mapped[str | None] = mapped_column(String(64))  # ack | nak | timeout | no-nas | ...
    error_cause: Mapped[int | None] = mapped_column()
    detail: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(253), index=True)  # lower-cased username or realm
    reason: Mapped[str | None] = mapped_column(Text)  # the --reason given, or the import's file
    via: Mapped[str | None] = mapped_column(String(8))  # cli | web | api: where the change was made
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Staff(Base):
    """A person of the support desk: signs in to `op25b web`, holds API tokens, names changes."""

    __tablename__ = "staff"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'agent', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # lower-cased
    role: Mapped[str] = mapped_column(String(8))
    password_hash: Mapped[str | None] = mapped_column(Text)  # argon2id; None: tokens only
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="staff", order_by="ApiToken.id", cascade="all, delete-orphan")


class ApiToken(Base):
    """An API token: only its SHA-256 is stored (the token is 256 random bits, so a fast hash is
    enough); the token itself is printed once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    staff: Mapped[Staff] = relationship(back_populates="tokens")
