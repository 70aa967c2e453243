"""CSV import of subscribers: parsed and checked whole, then written in one transaction."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from radius_op25b.core.decision import username_key
from radius_op25b.errors import Conflict, InvalidInput
from radius_op25b.store.audit import audit
from radius_op25b.store.checks import IP_TYPES, check_address, check_class, check_username, realm_for
from radius_op25b.store.jobs import _add_jobs
from radius_op25b.store.models import (
    AcctSession,
    Subscriber,
)

CSV_COLUMNS = ("username", "realm", "ip_type", "static_addresses", "class", "note")


@dataclass(frozen=True)
class ImportRow:
    username: str
    realm: str | None
    ip_type: str
    static_addresses: tuple[str, ...]
    class_override: str | None
    note: str | None


def parse_import_csv(text: str, source: str) -> list[ImportRow]:
    """Check every line before anything is written: the first bad line is reported by number.

    Columns: username, realm, ip_type (dynamic|static), static_addresses (space-separated),
    class (full|mobile|none or empty), note. A header line naming these columns is optional.
    """
    rows: list[ImportRow] = []
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text))
    for line_no, fields in enumerate(reader, start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        if line_no == 1 and fields[0].strip().lower() == "username":
            continue
        where = f"{source}: line {line_no}"
        if len(fields) > len(CSV_COLUMNS):
            raise InvalidInput(f"{where}: {len(fields)} fields, expected at most {len(CSV_COLUMNS)} ({', '.join(CSV_COLUMNS)})")
        fields = [f.strip() for f in fields] + [""] * (len(CSV_COLUMNS) - len(fields))
        username, realm, ip_type, statics, cls, note = fields
        try:
            username = check_username(username)
            ip_type = ip_type.lower() or ("static" if statics else "dynamic")
            if ip_type not in IP_TYPES:
                raise InvalidInput(f"ip_type {ip_type!r} is not dynamic or static")
            addresses = tuple(check_address(a) for a in statics.split())
            if ip_type == "static" and not addresses:
                raise InvalidInput("ip_type static needs static_addresses")
            if ip_type == "dynamic" and addresses:
                raise InvalidInput("static_addresses given for a dynamic subscriber")
            cls_value = check_class(cls.lower()) if cls else None
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        key = username_key(username)
        if key in seen:
            raise InvalidInput(f"{where}: username {username!r} already on line {seen[key]}")
        seen[key] = line_no
        rows.append(ImportRow(username, realm_for(username, realm), ip_type, addresses, cls_value, note or None))
    return rows


def import_subscribers(session: Session, rows: Sequence[ImportRow], *, actor: str, now: datetime, source: str) -> int:
    """Insert all rows or none; an existing username is a conflict that aborts the import.

    On PostgreSQL (psycopg2) the rows go in by COPY on the session's own connection, inside the
    caller's transaction, so a failure still leaves nothing behind; elsewhere an executemany
    INSERT is the portable path. bench/import_bench.py times a million rows.
    """
    keys = [username_key(r.username) for r in rows]
    for chunk_start in range(0, len(keys), 10_000):
        chunk = keys[chunk_start : chunk_start + 10_000]
        existing = session.scalars(select(Subscriber.username).where(Subscriber.username_key.in_(chunk)).limit(1)).first()
        if existing is not None:
            raise Conflict(f"{source}: subscriber {existing!r} already exists; nothing imported")
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg2":
        # Imported here: only this path needs it.
        from sqlalchemy.exc import DBAPIError

        # Values go through the columns' own bind processors (JSON text, naive UTC), so COPY
        # stores exactly what an INSERT would.
        columns = Subscriber.__table__.c
        to_json = columns.static_addresses.type.dialect_impl(dialect).bind_processor(dialect)
        to_utc = columns.created_at.type.dialect_impl(dialect).bind_processor(dialect)
        assert to_json is not None and to_utc is not None  # JSON and UTCDateTime both convert
        stamp = str(to_utc(now))
        # COPY's text format: \N is NULL; backslash, tab, newline and CR inside a value are escaped.
        escapes = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

        def copy_value(value: str | None) -> str:
            return "\\N" if value is None else value.translate(escapes)

        names = "username, username_key, realm, ip_type, static_addresses, class_override, note, created_at, updated_at"
        copy = f"COPY {Subscriber.__tablename__} ({names}) FROM STDIN"
        cursor: Any = connection.connection.cursor()
        try:
            # In slices, so the text buffer stays small whatever the file size.
            for start in range(0, len(rows), 50_000):
                buffer = io.StringIO()
                for r, key in zip(rows[start : start + 50_000], keys[start : start + 50_000], strict=True):
                    values = (r.username, key, r.realm, r.ip_type, to_json(list(r.static_addresses)), r.class_override, r.note)
                    buffer.write("\t".join(map(copy_value, values)) + f"\t{stamp}\t{stamp}\n")
                buffer.seek(0)
                cursor.copy_expert(copy, buffer)
        except dialect.loaded_dbapi.Error as exc:
            # Handled as SQLAlchemy handles an INSERT's error: a dropped connection is invalidated
            # (so the rollback does not fail on it) and db.transaction reports StoreUnavailable.
            lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
            if lost:
                connection.invalidate(exc)
            raise DBAPIError.instance(
                copy, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
            ) from exc
        finally:
            cursor.close()
    else:
        batch = [
            {
                "username": r.username,
                "username_key": key,
                "realm": r.realm,
                "ip_type": r.ip_type,
                "static_addresses": list(r.static_addresses),
                "class_override": r.class_override,
                "note": r.note,
                "created_at": now,
                "updated_at": now,
            }
            for r, key in zip(rows, keys, strict=True)
        ]
        # render_nulls: without it the ORM leaves None columns out and starts a new INSERT
        # wherever that set changes, which turned a mixed file into one INSERT per few rows.
        statement = insert(Subscriber).execution_options(render_nulls=True)
        for start in range(0, len(batch), 10_000):
            session.execute(statement, batch[start : start + 10_000])
    audit(session, actor=actor, action="subscriber.import", target=f"import:{source}", now=now, after={"rows": len(rows)})
    # Imported subscribers may already be online (decided as unknowns): push to those sessions.
    for start in range(0, len(keys), 10_000):
        chunk = keys[start : start + 10_000]
        online = session.execute(
            select(AcctSession.id, AcctSession.username_key).where(
                AcctSession.stopped_at.is_(None), AcctSession.username_key.in_(chunk)
            )
        ).all()
        _add_jobs(session, online, "subscriber.import", now)
    return len(rows)
