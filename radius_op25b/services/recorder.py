"""Session recording for the relay: every acknowledged Accounting-Request is first made durable
in the spool (group-committed fsync, off the event loop), then drained into the database in
order by a background thread; a database outage only makes the spool deeper.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine

from radius_op25b import store
from radius_op25b.core.accounting import AccountingRecord, record_from_request
from radius_op25b.errors import StoreUnavailable
from radius_op25b.logs import RateLimitedLog
from radius_op25b.services.spool import Spool
from radius_op25b.store import db

log = logging.getLogger("op25b.recorder")

SPOOL_DEPTH = Gauge("op25b_accounting_spool_records", "Accounting records spooled, not yet in the database")
RECORDED = Counter("op25b_accounting_recorded", "Accounting records written to the database")
SPOOL_FAILURES = Counter("op25b_accounting_spool_failures", "Accounting records that could not be spooled (full or I/O error)")


class Recorder:
    def __init__(self, engine: Engine, spool: Spool, loop: asyncio.AbstractEventLoop, orphans: list[Spool] | None = None) -> None:
        self.engine, self.spool, self.loop = engine, spool, loop
        self.orphans = orphans or []  # spools of workers that are gone: drained, never written
        self._queue: list[tuple[AccountingRecord, asyncio.Future[None]]] = []
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write_loop, name="op25b-spool-writer", daemon=True),
            threading.Thread(target=self._drain_loop, name="op25b-spool-drainer", daemon=True),
        ]
        SPOOL_DEPTH.set(spool.pending)
        self.limited = RateLimitedLog(log)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self.spool.close()

    # --- the relay's accounting hook (event loop) ---------------------------------------------

    def record(self, job: Any) -> asyncio.Future[None] | None:
        """Queue the record of a request the upstream acknowledged; the NAS's ack waits for the
        returned future (the fsync). None when the request is not one we record."""
        record = record_from_request(job.request.attributes, job.client.name, job.nas_addr[0], time.time())
        if record is None:
            return None
        future: asyncio.Future[None] = self.loop.create_future()
        with self._wake:
            self._queue.append((record, future))
            self._wake.notify()
        return future

    # --- threads ----------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while not self._stop.is_set() or self._queue:
            with self._wake:
                while not self._queue and not self._stop.is_set():
                    self._wake.wait(0.5)
                batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                if not self.spool.append([record for record, _ in batch]):
                    SPOOL_FAILURES.inc(len(batch))
                    self.limited.log(
                        logging.ERROR,
                        "spool_full",
                        "accounting spool %s is full: %d record(s) not recorded here (the upstream has them)",
                        self.spool.dir,
                        len(batch),
                    )
            except OSError as exc:
                SPOOL_FAILURES.inc(len(batch))
                self.limited.log(
                    logging.ERROR,
                    "spool_error",
                    "accounting spool %s: %s; %d record(s) not recorded here",
                    self.spool.dir,
                    exc,
                    len(batch),
                )
            SPOOL_DEPTH.set(self.spool.pending)
            self.loop.call_soon_threadsafe(_resolve_all, [future for _, future in batch])

    def _drain_loop(self) -> None:
        backoff = 0.0
        down_since: float | None = None
        while not self._stop.wait(backoff):
            source, segment = self.spool, self.spool.take_segment()
            for orphan in self.orphans:
                if segment is None:
                    source, segment = orphan, orphan.take_segment()
            if segment is None:
                backoff = 0.2
                continue
            records = source.read(segment)
            try:
                with db.transaction(self.engine) as session:
                    store.apply_accounting(session, records)
            except StoreUnavailable as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("database unavailable; accounting stays in the spool (%d record(s)): %s", self.spool.pending, exc)
                backoff = min(5.0, max(0.5, backoff * 2))
                continue
            except Exception:
                self.limited.exception("apply", "could not apply spool segment %s; will retry", segment.name)
                backoff = 5.0
                continue
            if down_since is not None:
                log.warning("database available again; draining %d spooled record(s)", self.spool.pending)
                down_since = None
            source.done(segment, len(records))
            RECORDED.inc(len(records))
            SPOOL_DEPTH.set(self.spool.pending)
            backoff = 0.0


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
