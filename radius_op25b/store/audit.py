"""The audit log: one row per change, with the NOTIFY that tells running proxies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from radius_op25b.store.checks import NOTIFY_CHANNEL
from radius_op25b.store.models import (
    AuditLog,
)


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(AuditLog(at=now, actor=actor, action=action, target=target, before=before, after=after))
    if session.get_bind().dialect.name == "postgresql":
        # Delivered to every running proxy when (and only if) this transaction commits.
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": f"{action}\t{target}"}
        )


def audit_entries(session: Session, target: str | None = None, limit: int = 200) -> Sequence[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if target is not None:
        query = query.where(AuditLog.target == target)
    return list(reversed(session.scalars(query).all()))
