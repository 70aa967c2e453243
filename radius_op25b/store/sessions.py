"""Sessions from accounting: who is online, who had an address; accounting applied in batches."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from radius_op25b.core.accounting import AccountingRecord, RecordRefused, clean_record, username_key_of
from radius_op25b.core.decision import username_key
from radius_op25b.errors import Op25bError
from radius_op25b.store.audit import audit
from radius_op25b.store.checks import check_address
from radius_op25b.store.models import (
    AcctSession,
    CoaJob,
    UTCDateTime,
)


class AccountingRefused(Op25bError):
    """The database refused a batch of accounting records (a value it cannot hold, a unique key
    another writer took first): split the batch, and set aside a record refused on its own."""


# Records per SELECT of existing rows: well under SQLite's 32,766 bound parameters.
_KEYS_PER_SELECT = 500
_COLUMNS = (
    "nas_name",
    "nas_address",
    "acct_session_id",
    "nas_ip_address",
    "nas_identifier",
    "nas_port_id",
    "username",
    "username_key",
    "framed_ip",
    "framed_ipv6_prefix",
    "delegated_ipv6_prefix",
    "class_applied",
    "started_at",
    "updated_at",
    "stopped_at",
    "terminate_cause",
    "input_octets",
    "output_octets",
)
_OPTIONAL = (
    "nas_ip_address",
    "nas_identifier",
    "nas_port_id",
    "framed_ip",
    "framed_ipv6_prefix",
    "delegated_ipv6_prefix",
    "class_applied",
)
# How much earlier than its row's start a record's event may be and still be of that session (an
# Interim opened the row at arrival minus Acct-Session-Time; the Start, late, says a little less).
_SAME_SESSION_SLACK = timedelta(seconds=60)
_TABLE = AcctSession.__table__
_UPDATE = (
    _TABLE.update()  # type: ignore[attr-defined]
    .where(_TABLE.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _COLUMNS})
)


def apply_accounting(session: Session, records: Sequence[AccountingRecord]) -> list[tuple[AccountingRecord, str]]:
    """Apply accounting records in order, in batches: the rows a batch touches are read with one
    SELECT per NAS, the records folded in memory in arrival order (so a Start, its Interims and
    its Stop end as they would one by one), and written with one multi-row upsert (INSERT ... ON
    CONFLICT DO UPDATE, both backends). Idempotent: a replayed or retransmitted record leaves the same rows as
    the first application did.

    Every record is validated first (core/accounting.py `clean_record`, the same on both
    backends); those that cannot be a session row are returned with the reason, not written.
    AccountingRefused when the database refuses the batch; StoreUnavailable when it is away."""
    session.flush()
    refused: list[tuple[AccountingRecord, str]] = []
    clean: list[AccountingRecord] = []
    for record in records:
        try:
            clean.append(clean_record(record))
        except (RecordRefused, TypeError, ValueError, OverflowError) as exc:
            refused.append((record, str(exc) or type(exc).__name__))
    try:
        start = 0
        while start < len(clean):
            start = _apply_run(session, clean, start, refused)
    except (IntegrityError, DataError) as exc:
        raise AccountingRefused(_first_line(exc)) from exc
    except DBAPIError:
        raise  # lost connection, a SQL bug: db.transaction's mapping decides
    except StatementError as exc:  # a bind value the driver or a column type would not take
        raise AccountingRefused(_first_line(exc)) from exc
    except (ValueError, OverflowError, TypeError) as exc:  # the driver's own refusal (psycopg2: NUL)
        raise AccountingRefused(f"{type(exc).__name__}: {exc}") from exc
    return refused


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _apply_run(session: Session, records: list[AccountingRecord], start: int, refused: list[tuple[AccountingRecord, str]]) -> int:
    """Apply records[start:] up to the next barrier; returns where the next run starts. A barrier
    is an Accounting-On/Off (it closes every open session of its NAS: the rows before it must be
    written first) or a reused Acct-Session-Id of a row this run created (it is renamed by its
    id, which the database gives only once it is written)."""
    first = records[start]
    if first.status in ("on", "off"):
        when = datetime.fromtimestamp(first.event_time, UTC)
        # RFC 2866 §5.1: Accounting-On/Off - the NAS (re)started or stops: its sessions ended.
        session.execute(
            update(AcctSession)
            .where(AcctSession.nas_address == first.nas_address, AcctSession.stopped_at.is_(None), AcctSession.started_at <= when)
            .values(stopped_at=when, updated_at=when, terminate_cause=f"Accounting-{first.status.capitalize()}"),
            execution_options={"synchronize_session": False},
        )
        return start + 1
    end = start
    while end < len(records) and records[end].status not in ("on", "off"):
        end += 1
    postgres = session.get_bind().dialect.name == "postgresql"
    rows = (_existing_rows_pg if postgres else _existing_rows)(session, records[start:end])
    renamed: list[dict[str, Any]] = []
    index = start
    while index < end:
        record = records[index]
        try:
            if not _fold(rows, renamed, record):
                break  # a barrier: write what we have, continue from this record
        except (ValueError, OverflowError, TypeError) as exc:
            refused.append((record, f"{type(exc).__name__}: {exc}"))
        index += 1
    if renamed:  # first: the new session takes the name the old one gives up
        session.execute(_UPDATE, [{"b_id": row["id"], **{f"b_{n}": row[n] for n in _COLUMNS}} for row in renamed])
    dirty = [row for row in rows.values() if row is not None and row["_dirty"]]
    if dirty and postgres:
        _upsert_pg(session, dirty)
    elif dirty:
        # With RETURNING, SQLAlchemy's "insertmanyvalues" sends pages of many VALUES rows per
        # statement from one cached compilation (without it, the driver would go row by row).
        session.execute(_upsert(session), [{n: row[n] for n in _COLUMNS} for row in dirty]).all()
    return index


def _upsert(session: Session) -> Any:
    """INSERT ... ON CONFLICT (nas_address, acct_session_id) DO UPDATE: new and changed rows in one
    multi-row statement (SQLAlchemy's insertmanyvalues pages it), on either backend."""
    name = session.get_bind().dialect.name
    statement = _UPSERTS.get(name)
    if statement is None:
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        base = dialect_insert(_TABLE)
        keys = ("nas_address", "acct_session_id")
        statement = _UPSERTS[name] = base.on_conflict_do_update(
            index_elements=list(keys), set_={n: base.excluded[n] for n in _COLUMNS if n not in keys}
        ).returning(_TABLE.c.id)
    return statement


_UPSERTS: dict[str, Any] = {}


def _existing_rows(session: Session, records: Sequence[AccountingRecord]) -> dict[tuple[str, str], dict[str, Any] | None]:
    by_nas: dict[str, set[str]] = {}
    for r in records:
        if r.acct_session_id:
            by_nas.setdefault(r.nas_address, set()).add(r.acct_session_id)
    rows: dict[tuple[str, str], dict[str, Any] | None] = {}
    for nas, ids in by_nas.items():
        wanted = sorted(ids)
        for i in range(0, len(wanted), _KEYS_PER_SELECT):
            chunk = wanted[i : i + _KEYS_PER_SELECT]
            # The unique (nas_address, acct_session_id) index answers this on both backends.
            query = select(_TABLE).where(_TABLE.c.nas_address == nas, _TABLE.c.acct_session_id.in_(chunk))
            for found in session.execute(query).mappings():
                rows[(nas, found["acct_session_id"])] = {**found, "_dirty": False}
    return rows


# PostgreSQL: one statement each way per batch, every column one array parameter (unnest zips
# them back into rows). The statement text never changes, so the server parses a few hundred
# bytes however large the batch; psycopg2 builds the arrays in C. In the 5-minute run at 2,000
# records/s the drain spent a third less time in transactions than with SQLAlchemy's
# insertmanyvalues (bench/RESULTS-accounting.md).
# The UTC columns, and their conversion to and from the database's naive UTC: models.UTCDateTime's.
_TIMES = tuple(n for n in _COLUMNS if isinstance(_TABLE.c[n].type, UTCDateTime))
_UTC = UTCDateTime()
_PG_TYPES = {
    **{name: "varchar" for name in _COLUMNS},
    **{name: "timestamp" for name in _TIMES},
    "input_octets": "bigint",
    "output_octets": "bigint",
}
_PG_SELECT = (
    f"SELECT s.id, {', '.join(f's.{n}' for n in _COLUMNS)} FROM {_TABLE.name} AS s"
    " JOIN unnest(%s::varchar[], %s::varchar[]) AS k(nas, asid)"
    " ON s.nas_address = k.nas AND s.acct_session_id = k.asid"
)
_PG_UPSERT = (
    f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)})"
    f" SELECT * FROM unnest({', '.join(f'%s::{_PG_TYPES[n]}[]' for n in _COLUMNS)})"
    " ON CONFLICT (nas_address, acct_session_id) DO UPDATE SET "
    + ", ".join(f"{n} = EXCLUDED.{n}" for n in _COLUMNS if n not in ("nas_address", "acct_session_id"))
)


def _existing_rows_pg(session: Session, records: Sequence[AccountingRecord]) -> dict[tuple[str, str], dict[str, Any] | None]:
    """`_existing_rows` in one query: the batch's (NAS, Acct-Session-Id) pairs as two arrays,
    joined through the unique index."""
    keys = sorted({(r.nas_address, r.acct_session_id) for r in records if r.acct_session_id})
    rows: dict[tuple[str, str], dict[str, Any] | None] = {}
    if not keys:
        return rows
    names = ("id", *_COLUMNS)
    dialect = session.get_bind().dialect
    result = session.connection().exec_driver_sql(_PG_SELECT, ([k[0] for k in keys], [k[1] for k in keys]))
    for values in result:
        row = dict(zip(names, values, strict=True))
        for name in _TIMES:
            row[name] = _UTC.process_result_value(row[name], dialect)
        row["_dirty"] = False
        rows[(row["nas_address"], row["acct_session_id"])] = row
    return rows


def _upsert_pg(session: Session, dirty: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect
    columns: list[list[Any]] = []
    for name in _COLUMNS:
        if name in _TIMES:
            columns.append([_UTC.process_bind_param(row[name], dialect) for row in dirty])
        else:
            columns.append([row[name] for row in dirty])
    session.connection().exec_driver_sql(_PG_UPSERT, tuple(columns))


def _fold(rows: dict[tuple[str, str], dict[str, Any] | None], renamed: list[dict[str, Any]], r: AccountingRecord) -> bool:
    """One record onto the in-memory rows, as the sessions table would take it alone. False when
    the record needs a row written first (see `_apply_run`)."""
    if not r.acct_session_id:
        return True
    key = (r.nas_address, r.acct_session_id)
    when = datetime.fromtimestamp(r.event_time, UTC)
    row = rows.get(key)
    if row is not None and when < row["started_at"] - _SAME_SESSION_SLACK:
        # An event from before this row's session began: an earlier session under a reused
        # Acct-Session-Id, replayed from the spool. It must not reopen or restop the new one.
        return True
    if row is not None and row["stopped_at"] is not None and r.status == "start" and when > row["stopped_at"]:
        if row.get("id") is None:
            return False
        # The NAS reused the Acct-Session-Id for a new session: keep the old one's history.
        row["acct_session_id"] = f"{row['acct_session_id']}#{row['id']}"[:253]
        renamed.append(row)
        row = None
    if row is None:
        started = when if r.status == "start" else when - timedelta(seconds=r.session_time or 0)
        row = {name: None for name in _COLUMNS} | {
            "nas_name": r.nas_name,
            "nas_address": r.nas_address,
            "acct_session_id": r.acct_session_id,
            "username": r.username,
            "username_key": username_key_of(r.username),
            "started_at": started,
            "updated_at": when,
            "input_octets": 0,
            "output_octets": 0,
            "id": None,
            "_dirty": True,
        }
        rows[key] = row
    elif row["stopped_at"] is not None and r.status != "stop":
        return True  # an earlier record replayed after the Stop
    for name in _OPTIONAL:
        value = getattr(r, name)
        if value:
            row[name] = value
    if r.username:
        row["username"], row["username_key"] = r.username, username_key_of(r.username)
    row["updated_at"] = max(row["updated_at"], when)
    row["input_octets"] = max(row["input_octets"] or 0, r.input_octets or 0)
    row["output_octets"] = max(row["output_octets"] or 0, r.output_octets or 0)
    if r.status == "stop":
        row["stopped_at"] = row["stopped_at"] or when
        row["terminate_cause"] = r.terminate_cause or row["terminate_cause"]
    row["_dirty"] = True
    return True


def _apply_record(session: Session, r: AccountingRecord) -> None:
    """One record alone (kept for callers of the one-by-one API)."""
    apply_accounting(session, [r])


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
