"""Change feeds: what the policy watcher follows to keep its held set current.

Each feed yields batches of `(audit action, audit target)`; the first batch is always
`RELOAD_ALL`, taken once the feed is in place, so that no change falls between the full load
the caller does on it and the first change it is told of.

- PostgreSQL: LISTEN on a dedicated connection (`store.audit` sends the NOTIFY in the same
  transaction as the change).
- SQLite: the audit log read twice a second from the position taken before the load.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy import select as sql_select

from radius_op25b.store import NOTIFY_CHANNEL, db
from radius_op25b.store.models import AuditLog

Change = tuple[str, str]  # (audit action, audit target)
RELOAD_ALL: Change = ("*", "*")
POLL_INTERVAL = 0.5  # SQLite: seconds between reads of the audit log
POLL_BATCH = 1000  # SQLite: more new audit rows than this in one poll reload everything
HEARTBEAT = 1.0  # PostgreSQL: seconds of silence on the LISTEN connection before a SELECT 1


def changes(engine: Engine, stop: threading.Event) -> Iterator[list[Change]]:
    """The feed for this engine's database; ends when `stop` is set, raises when the database
    fails (the caller starts again with a full load)."""
    if engine.dialect.name == "postgresql":
        return _postgres_changes(engine, stop)
    return _audit_log_changes(engine, stop)


def _audit_log_changes(engine: Engine, stop: threading.Event) -> Iterator[list[Change]]:
    """SQLite: each new audit row names what changed. The position is taken before the
    full load, so that no change falls between the two."""
    with db.reading(engine) as session:
        last = session.scalar(sql_select(func.max(AuditLog.id))) or 0
    yield [RELOAD_ALL]
    while not stop.wait(POLL_INTERVAL):
        with db.reading(engine) as session:
            rows = session.execute(
                sql_select(AuditLog.id, AuditLog.action, AuditLog.target)
                .where(AuditLog.id > last)
                .order_by(AuditLog.id)
                .limit(POLL_BATCH)
            ).all()
            bulk = len(rows) == POLL_BATCH
            if bulk:
                # A bulk change (an import writes a row per subscriber): one full load instead
                # of reading every row; the position jumps to the newest row before the load.
                last = session.scalar(sql_select(func.max(AuditLog.id))) or last
        if bulk:
            yield [RELOAD_ALL]
        elif rows:
            last = rows[-1].id
            yield [(row.action, row.target) for row in rows]


def _postgres_changes(engine: Engine, stop: threading.Event) -> Iterator[list[Change]]:
    """PostgreSQL: LISTEN on a dedicated connection, then load everything (a change
    committed after LISTEN is notified; one before is in the load)."""
    with db.unavailable_as_store_error(engine):
        raw = engine.raw_connection()
        try:
            connection: Any = raw.driver_connection
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
            yield [RELOAD_ALL]
            while not stop.is_set():
                if select.select([connection], [], [], HEARTBEAT) == ([], [], []):
                    with connection.cursor() as cursor:
                        # Notice a dead server within a second. A notification that arrives
                        # meanwhile is read by this query: it is taken below, not left waiting.
                        cursor.execute("SELECT 1")
                else:
                    connection.poll()
                batch = []
                while connection.notifies:
                    action, _, target = connection.notifies.pop(0).payload.partition("\t")
                    batch.append((action, target))
                if batch:
                    yield batch
        finally:
            try:
                raw.invalidate()
            except Exception:
                pass
