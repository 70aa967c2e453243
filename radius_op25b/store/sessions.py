"""Sessions from accounting: who is online, who had an address."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from radius_op25b.core.accounting import AccountingRecord
from radius_op25b.core.decision import username_key
from radius_op25b.store.audit import audit
from radius_op25b.store.checks import check_address
from radius_op25b.store.models import (
    AcctSession,
    CoaJob,
)


def apply_accounting(session: Session, records: Sequence[AccountingRecord]) -> None:
    """Apply accounting records in order. Idempotent: a replayed or retransmitted record
    leaves the same rows as the first application did."""
    for record in records:
        _apply_record(session, record)
        session.flush()


def _apply_record(session: Session, r: AccountingRecord) -> None:
    when = datetime.fromtimestamp(r.event_time, UTC)
    if r.status in ("on", "off"):
        # RFC 2866 §5.1: Accounting-On/Off - the NAS (re)started or stops: its sessions ended.
        session.execute(
            update(AcctSession)
            .where(AcctSession.nas_address == r.nas_address, AcctSession.stopped_at.is_(None), AcctSession.started_at <= when)
            .values(stopped_at=when, updated_at=when, terminate_cause=f"Accounting-{r.status.capitalize()}")
        )
        return
    if not r.acct_session_id:
        return
    row = session.scalars(
        select(AcctSession).where(AcctSession.nas_address == r.nas_address, AcctSession.acct_session_id == r.acct_session_id)
    ).one_or_none()
    if row is not None and row.stopped_at is not None and r.status == "start" and when > row.stopped_at:
        # The NAS reused the Acct-Session-Id for a new session: keep the old one's history.
        row.acct_session_id = f"{row.acct_session_id}#{row.id}"
        session.flush()
        row = None
    if row is None:
        started = when if r.status == "start" else when - timedelta(seconds=r.session_time or 0)
        row = AcctSession(
            nas_name=r.nas_name,
            nas_address=r.nas_address,
            acct_session_id=r.acct_session_id,
            username=r.username,
            username_key=username_key(r.username),
            started_at=started,
            updated_at=when,
            input_octets=0,
            output_octets=0,
        )
        session.add(row)
    elif row.stopped_at is not None and r.status != "stop":
        return  # an earlier record replayed after the Stop
    for field_name in (
        "nas_ip_address",
        "nas_identifier",
        "nas_port_id",
        "framed_ip",
        "framed_ipv6_prefix",
        "delegated_ipv6_prefix",
        "class_applied",
    ):
        value = getattr(r, field_name)
        if value:
            setattr(row, field_name, value)
    if r.username:
        row.username, row.username_key = r.username, username_key(r.username)
    row.updated_at = max(row.updated_at, when)
    row.input_octets = max(row.input_octets or 0, r.input_octets or 0)
    row.output_octets = max(row.output_octets or 0, r.output_octets or 0)
    if r.status == "stop":
        row.stopped_at = row.stopped_at or when
        row.terminate_cause = r.terminate_cause or row.terminate_cause


def active_sessions(session: Session, username: str | None = None, limit: int = 1000) -> Sequence[AcctSession]:
    query = select(AcctSession).where(AcctSession.stopped_at.is_(None)).order_by(AcctSession.started_at.desc()).limit(limit)
    if username is not None:
        query = query.where(AcctSession.username_key == username_key(username))
    return session.scalars(query).all()


def _prefix_candidates(address: ipaddress.IPv6Address) -> list[str]:
    """Every prefix (/16 to /128) that contains `address`, normalized as stored: an exact-match
    IN query on the prefix columns then finds containing prefixes through their indexes."""
    return [str(ipaddress.IPv6Network((int(address) >> (128 - n) << (128 - n), n))) for n in range(16, 129)]


def who_had(session: Session, address: str, at: datetime) -> Sequence[AcctSession]:
    """Sessions that held `address` (IPv4, or an IPv6 address inside a framed/delegated prefix) at `at`."""
    ip = ipaddress.ip_address(check_address(address))
    during = (AcctSession.started_at <= at) & (AcctSession.stopped_at.is_(None) | (AcctSession.stopped_at >= at))
    if isinstance(ip, ipaddress.IPv4Address):
        where = AcctSession.framed_ip == str(ip)
    else:
        candidates = _prefix_candidates(ip)
        where = AcctSession.framed_ipv6_prefix.in_(candidates) | AcctSession.delegated_ipv6_prefix.in_(candidates)
    return session.scalars(select(AcctSession).where(where, during).order_by(AcctSession.started_at)).all()


def last_session_with(session: Session, address: str) -> AcctSession | None:
    """The session that most recently started holding `address` (open or ended)."""
    ip = ipaddress.ip_address(check_address(address))
    if isinstance(ip, ipaddress.IPv4Address):
        where = AcctSession.framed_ip == str(ip)
    else:
        candidates = _prefix_candidates(ip)
        where = AcctSession.framed_ipv6_prefix.in_(candidates) | AcctSession.delegated_ipv6_prefix.in_(candidates)
    query = select(AcctSession).where(where).order_by(AcctSession.started_at.desc(), AcctSession.id.desc()).limit(1)
    return session.scalars(query).first()


def purge_sessions(session: Session, older_than: datetime, *, actor: str, now: datetime) -> int:
    """Delete sessions that stopped before `older_than` (their CoA jobs go with them)."""
    doomed = select(AcctSession.id).where(AcctSession.stopped_at.is_not(None), AcctSession.stopped_at < older_than)
    session.execute(delete(CoaJob).where(CoaJob.session_id.in_(doomed)))
    count = session.execute(
        delete(AcctSession).where(AcctSession.stopped_at.is_not(None), AcctSession.stopped_at < older_than)
    ).rowcount
    audit(
        session,
        actor=actor,
        action="sessions.purge",
        target="sessions",
        now=now,
        after={"older_than": older_than.isoformat(), "deleted": count},
    )
    return int(count or 0)
