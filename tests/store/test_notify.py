"""SQLite's change feed (store/notify.py): audit rows read as they come, a bulk change as one reload."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from radius_op25b.store import db, notify
from radius_op25b.store.models import AuditLog

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _audit(engine, count: int, action: str = "subscriber.set-note") -> None:  # type: ignore[no-untyped-def]
    rows = [{"at": NOW, "actor": "t", "action": action, "target": f"u{i}@isp.example"} for i in range(count)]
    with engine.begin() as conn:
        conn.execute(insert(AuditLog), rows)


def test_a_bulk_change_is_one_reload_not_every_row(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    db.upgrade(engine)
    stop = threading.Event()
    feed = notify.changes(engine, stop)
    assert next(feed) == [notify.RELOAD_ALL]
    _audit(engine, 3)
    assert next(feed) == [("subscriber.set-note", f"u{i}@isp.example") for i in range(3)]
    _audit(engine, notify.POLL_BATCH * 3, "subscriber.import")
    assert next(feed) == [notify.RELOAD_ALL]
    _audit(engine, 1, "subscriber.exempt")
    assert next(feed) == [("subscriber.exempt", "u0@isp.example")]  # the bulk rows are not read again
    stop.set()
    engine.dispose()
