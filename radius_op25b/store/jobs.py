"""Live changes: CoA / Disconnect jobs queued per open session and claimed by the push worker."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.orm import Session

from radius_op25b.core.decision import username_key
from radius_op25b.store.models import (
    AcctSession,
    CoaJob,
    Exemption,
    Realm,
    RealmMsaPermit,
    Subscriber,
    UTCDateTime,
)

HOLD_KEY = "op25b.hold_pushes"  # session.info: this transaction's changes wait for the next login
QUEUED_KEY = "op25b.queued_sessions"  # session.info: ids of the open sessions this transaction touched


def hold_pushes(session: Session) -> None:
    """The changes of this transaction apply when each customer next logs in: open sessions are
    still listed by `affected_sessions`, but no CoA or Disconnect is queued (--at-next-login)."""
    session.info[HOLD_KEY] = True


def affected_sessions(session: Session) -> list[int]:
    """The open sessions the changes of this transaction reach (queued, or held), by id, once each."""
    return list(dict.fromkeys(session.info.get(QUEUED_KEY, ())))


def queue_pushes(
    session: Session, *, cause: str, now: datetime, username: str | None = None, realm: str | None = None, mobile: bool = False
) -> int:
    """Queue one job per open session whose decision this change may alter (same transaction)."""
    query = select(AcctSession.id, AcctSession.username_key).where(AcctSession.stopped_at.is_(None))
    if username is not None:
        query = query.where(AcctSession.username_key == username_key(username))
    elif realm is not None:
        members = select(Subscriber.username_key).where(Subscriber.realm == realm)
        query = query.where(AcctSession.username_key.in_(members) | AcctSession.username_key.like(f"%@{realm}"))
    elif mobile:
        query = query.where(AcctSession.class_applied == "mobile")
    else:
        return 0
    rows = session.execute(query).all()
    _add_jobs(session, rows, cause, now)
    return len(rows)


def _add_jobs(session: Session, sessions: Iterable[Any], cause: str, now: datetime) -> None:
    """One pending push per (session id, username key), unless this transaction holds them."""
    rows = list(sessions)
    session.info.setdefault(QUEUED_KEY, []).extend(session_id for session_id, _ in rows)
    if session.info.get(HOLD_KEY):
        return
    for session_id, key in rows:
        session.add(
            CoaJob(
                session_id=session_id,
                username_key=key,
                cause=cause,
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )


# What the push worker has to do at `now` (one condition each, shared by the work itself and by
# push_work_due's cheap probe): exemptions and permits that expired and were not pushed yet,
# jobs due, and jobs whose claim ran out.
def _exemption_expired_unpushed(now: Any) -> Any:
    return (Exemption.expires_at <= now) & Exemption.revoked_at.is_(None) & Exemption.expiry_pushed_at.is_(None)


def _permit_expired_unpushed(now: Any) -> Any:
    return (RealmMsaPermit.permit_until <= now) & RealmMsaPermit.expiry_pushed_at.is_(None)


def _job_claimable(now: Any) -> Any:
    due = (CoaJob.status == "pending") & (CoaJob.next_attempt_at <= now)
    stale = (CoaJob.status == "sending") & (CoaJob.claimed_until < now)
    return due | stale


def queue_expired(session: Session, now: datetime) -> int:
    """Exemptions and MSA permits that expired since the last sweep become pushes, once each."""
    queued = 0
    expired = session.execute(
        select(Exemption.id, Subscriber.username_key).join(Subscriber).where(_exemption_expired_unpushed(now))
    ).all()
    for exemption_id, key in expired:
        claimed = session.execute(
            update(Exemption)
            .where(Exemption.id == exemption_id, Exemption.expiry_pushed_at.is_(None))
            .values(expiry_pushed_at=now)
        ).rowcount
        if claimed:  # another instance may have swept it first
            queued += queue_pushes(session, cause="exemption.expired", now=now, username=key)
    permits = session.execute(select(RealmMsaPermit.id, Realm.name).join(Realm).where(_permit_expired_unpushed(now))).all()
    for permit_id, realm_name in permits:
        claimed = session.execute(
            update(RealmMsaPermit)
            .where(RealmMsaPermit.id == permit_id, RealmMsaPermit.expiry_pushed_at.is_(None))
            .values(expiry_pushed_at=now)
        ).rowcount
        if claimed:
            queued += queue_pushes(session, cause="msa-permit.expired", now=now, realm=realm_name)
    return queued


_NOW = bindparam("now", type_=UTCDateTime())
_PUSH_WORK_DUE = select(
    exists().where(_job_claimable(_NOW))
    | exists().where(_exemption_expired_unpushed(_NOW))
    | exists().where(_permit_expired_unpushed(_NOW))
)


def push_work_due(session: Session, now: datetime) -> bool:
    """Whether queue_expired or claim_pushes would find anything at `now`: one cheap query."""
    return bool(session.execute(_PUSH_WORK_DUE, {"now": now}).scalar())


def claim_pushes(session: Session, now: datetime, limit: int = 50, lease: timedelta = timedelta(seconds=60)) -> list[CoaJob]:
    """Jobs due now, claimed for this instance until `lease` runs out (a crashed instance's
    claims expire and are taken again). PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent
    instances take disjoint jobs; every dialect: a compare-and-set on the status as well."""
    query = select(CoaJob).where(_job_claimable(now)).order_by(CoaJob.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for job in session.scalars(query).all():
        won = session.execute(
            update(CoaJob)
            .where(CoaJob.id == job.id, CoaJob.status == job.status, CoaJob.attempts == job.attempts)
            .values(status="sending", claimed_until=now + lease, attempts=job.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won:
            session.refresh(job)
            claimed.append(job)
    return claimed


def finish_push(
    session: Session,
    job_id: int,
    *,
    now: datetime,
    ok: bool,
    result: str,
    method: str | None,
    error_cause: int | None = None,
    detail: str | None = None,
    retry_in: timedelta | None = None,
    class_applied: str | None = None,
) -> None:
    job = session.get(CoaJob, job_id)
    if job is None:
        return
    job.result, job.method, job.error_cause, job.detail = result, method, error_cause, detail
    job.claimed_until = None
    if ok or retry_in is None:
        job.status, job.finished_at = ("done" if ok else "failed"), now
    else:
        job.status, job.next_attempt_at = "pending", now + retry_in
    if ok and class_applied is not None:
        row = session.get(AcctSession, job.session_id)
        if row is not None:
            row.class_applied = class_applied


def last_pushes(session: Session, session_ids: Sequence[int]) -> dict[int, CoaJob]:
    if not session_ids:
        return {}
    jobs = session.scalars(select(CoaJob).where(CoaJob.session_id.in_(session_ids)).order_by(CoaJob.id)).all()
    return {job.session_id: job for job in jobs}
