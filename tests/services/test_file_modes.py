"""Files that name subscribers and their addresses are the service's alone, whatever the umask:
the spool folder 0700 and its segments 0600, the SQLite database 0600."""

from __future__ import annotations

import os
import stat

from radius_op25b.core.accounting import AccountingRecord
from radius_op25b.services.spool import Spool
from radius_op25b.store import db


def _mode(path) -> int:  # type: ignore[no-untyped-def]
    return stat.S_IMODE(os.stat(path).st_mode)


def test_spool_and_database_are_private_under_a_lax_umask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0o002)
    try:
        spool = Spool(tmp_path / "spool")
        spool.append([AccountingRecord("start", 0.0, "bng1", "192.0.2.1", "s1", "alice")])
        spool.close()
        engine = db.make_engine(f"sqlite:///{tmp_path / 'op25b.db'}")
        db.upgrade(engine)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "spool") == 0o700
    (segment,) = (tmp_path / "spool").glob("*.jsonl")
    assert _mode(segment) == 0o600
    assert _mode(tmp_path / "op25b.db") == 0o600
