"""The audit log: one row per change, with the NOTIFY that tells running proxies."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from radius_op25b.errors import InvalidInput
from radius_op25b.store.checks import NOTIFY_CHANNEL
from radius_op25b.store.models import (
    AuditLog,
)

#: Every action the audit log records (`op25b audit --action` takes one, or its group before the dot).
ACTIONS = (
    "subscriber.add",
    "subscriber.delete",
    "subscriber.set-static",
    "subscriber.set-dynamic",
    "subscriber.set-class",
    "subscriber.set-note",
    "subscriber.set-realm",
    "subscriber.exempt",
    "subscriber.exempt-extend",
    "subscriber.unexempt",
    "subscriber.import",
    "subscriber.import-update",
    "realm.add",
    "realm.delete",
    "realm.permit-msa",
    "realm.revoke-msa",
    "mobile-mta.add",
    "mobile-mta.remove",
    "sessions.purge",
    "staff.add",
    "staff.token",
    "staff.disable",
    "staff.revoke-tokens",
)
ACTION_GROUPS = tuple(dict.fromkeys(a.partition(".")[0] for a in ACTIONS))
VIA = ("cli", "web", "api")
VIA_KEY = "op25b.via"  # session.info: where this transaction's changes are made (default cli)


def made_via(session: Session, via: str) -> None:
    """The changes of this transaction are made through `via` (cli, web or api), for the audit log."""
    assert via in VIA, via
    session.info[VIA_KEY] = via


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    assert action in ACTIONS, action
    via = session.info.get(VIA_KEY, "cli")
    session.add(AuditLog(at=now, actor=actor, action=action, target=target, reason=reason, via=via, before=before, after=after))
    notify(session, action, target)


def notify(session: Session, action: str, target: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Delivered to every running proxy when (and only if) this transaction commits.
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": f"{action}\t{target}"}
        )


def check_action(action: str) -> str:
    """An action of ACTIONS or a group of them ("subscriber"); else an error with a suggestion."""
    if action in ACTIONS or action in ACTION_GROUPS:
        return action
    close = difflib.get_close_matches(action, ACTIONS + ACTION_GROUPS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(ACTION_GROUPS)} or one of their actions"
    raise InvalidInput(f"unknown audit action {action!r} ({hint})")


def audit_entries(
    session: Session,
    target: str | None = None,
    limit: int = 200,
    *,
    since: datetime | None = None,
    action: str | None = None,
) -> Sequence[AuditLog]:
    """The newest `limit` entries matching, oldest first."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if target is not None:
        query = query.where(AuditLog.target == target)
    if since is not None:
        query = query.where(AuditLog.at >= since)
    if action is not None:
        query = query.where(or_(AuditLog.action == action, AuditLog.action.startswith(action + ".")))
    return list(reversed(session.scalars(query).all()))
