"""Session recording for the relay: every acknowledged Accounting-Request is first made durable
in the spool (group-committed fsync, off the event loop), then drained into the database in
order and in batches by a background thread; a database outage only makes the spool deeper, and
a record the database refuses is set aside in the quarantine while the drain goes on.

The outcomes, once per record:
    spooled (fsync'd)            the NAS is answered
    spool full, or an OSError    no answer (the NAS retries, RFC 2866 §2); counted, logged
    applied                      the segment is deleted once every record in it is in the table
    refused by validation or     set aside in <spool>/quarantine (counted), the drain goes on
      by the database alone
    database away                stays in the spool; retried with backoff
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from radius_op25b import store
from radius_op25b.core.accounting import AccountingRecord, record_from_request
from radius_op25b.errors import StoreUnavailable
from radius_op25b.logs import RateLimitedLog
from radius_op25b.metrics import (
    DRAIN_BATCH,
    DRAIN_ERRORS,
    DRAIN_RATE,
    QUARANTINED,
    RECORDED,
    SPOOL_BYTES,
    SPOOL_DEPTH,
    SPOOL_FAILURES,
    SPOOL_OLDEST,
)
from radius_op25b.services.spool import QUARANTINE, Quarantine, Refusal, Spool, SpoolLag, quarantined, spool_lag
from radius_op25b.store import db
from radius_op25b.store.sessions import AccountingRefused

__all__ = ["Recorder", "quarantined", "spool_lag", "SpoolLag"]

log = logging.getLogger("op25b.recorder")

BATCH = 2000  # records per transaction: one SELECT per NAS, one multi-row INSERT, one UPDATE
RATE_WINDOW = 10.0


class Recorder:
    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        loop: asyncio.AbstractEventLoop,
        orphans: list[Spool] | None = None,
        quarantine: Quarantine | None = None,
        on_unrecorded: Callable[[Any], None] | None = None,
    ) -> None:
        self.engine, self.spool, self.loop = engine, spool, loop
        self.orphans = orphans or []  # spools of workers that are gone: drained, never written
        self.quarantine = quarantine or Quarantine(spool.dir / QUARANTINE)
        # Called on the loop for a job whose record could not be spooled: the relay forgets it,
        # so the NAS's retransmission is relayed afresh instead of dropped as in flight.
        self.on_unrecorded = on_unrecorded
        self._queue: list[tuple[AccountingRecord, asyncio.Future[None], Any]] = []
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._applied: collections.deque[tuple[float, int]] = collections.deque()
        self._threads = [
            threading.Thread(target=self._write_loop, name="op25b-spool-writer", daemon=True),
            threading.Thread(target=self._drain_loop, name="op25b-spool-drainer", daemon=True),
        ]
        self.limited = RateLimitedLog(log)
        self._gauges()
        SPOOL_OLDEST.set_function(self.oldest_age)
        DRAIN_RATE.set_function(self.drain_rate)

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

    # --- what the metrics read --------------------------------------------------------------------

    def _spools(self) -> list[Spool]:
        return [self.spool, *self.orphans]

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds since the oldest record not yet in the table was spooled; 0 when none waits."""
        oldest = [t for t in (s.oldest() for s in self._spools()) if t is not None]
        return max(0.0, (time.time() if now is None else now) - min(oldest)) if oldest else 0.0

    def drain_rate(self) -> float:
        now = time.monotonic()
        while self._applied and self._applied[0][0] < now - RATE_WINDOW:
            self._applied.popleft()
        return sum(n for _, n in self._applied) / RATE_WINDOW

    def _gauges(self) -> None:
        SPOOL_DEPTH.set(sum(s.pending for s in self._spools()))
        SPOOL_BYTES.set(sum(s.bytes for s in self._spools()))

    # --- the relay's accounting hook (event loop) ---------------------------------------------

    def record(self, job: Any) -> asyncio.Future[None] | None:
        """Queue the record of a request the upstream acknowledged; the NAS's ack waits for the
        returned future, which is resolved only once the record is fsync'd in the spool (never,
        when it cannot be: then `on_unrecorded(job)`). None when the request is not one we record."""
        record = record_from_request(job.request.attributes, job.client.name, job.nas_addr[0], time.time())
        return None if record is None else self.submit(record, job)

    def submit(self, record: AccountingRecord, job: Any = None) -> asyncio.Future[None]:
        """Queue one record (event loop): the future resolves once it is fsync'd in the spool;
        when it cannot be, it never resolves and `on_unrecorded(job)` is called instead."""
        future: asyncio.Future[None] = self.loop.create_future()
        with self._wake:
            self._queue.append((record, future, job))
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
                durable = self.spool.append([record for record, _, _ in batch])
                if not durable:
                    self.limited.log(
                        logging.ERROR,
                        "spool_full",
                        "accounting spool %s is full: %d record(s) not answered (the NAS will retry)",
                        self.spool.dir,
                        len(batch),
                    )
            except OSError as exc:
                durable = False
                self.limited.log(
                    logging.ERROR,
                    "spool_error",
                    "accounting spool %s: %s; %d record(s) not answered (the NAS will retry)",
                    self.spool.dir,
                    exc,
                    len(batch),
                )
            self._gauges()
            if durable:
                self.loop.call_soon_threadsafe(_resolve_all, [future for _, future, _ in batch])
            else:
                # RFC 2866 §2: "If the RADIUS accounting server is unable to successfully record
                # the accounting packet it MUST NOT send an Accounting-Response acknowledgment".
                SPOOL_FAILURES.inc(len(batch))
                self.loop.call_soon_threadsafe(self._unrecorded, [job for _, _, job in batch])

    def _unrecorded(self, jobs: list[Any]) -> None:
        if self.on_unrecorded is None:
            return
        for job in jobs:
            try:
                self.on_unrecorded(job)
            except Exception:
                self.limited.exception("unrecorded", "could not release an unrecorded accounting request")

    def _drain_loop(self) -> None:
        backoff = 0.0
        down_since: float | None = None
        while not self._stop.wait(backoff):
            try:
                drained = self.drain_once()
            except StoreUnavailable as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("database unavailable; accounting stays in the spool (%d record(s)): %s", self.spool.pending, exc)
                backoff = min(5.0, max(0.5, backoff * 2))
                continue
            except Exception:
                DRAIN_ERRORS.inc()
                self.limited.exception("apply", "could not apply the spool; will retry")
                backoff = 5.0
                continue
            if down_since is not None:
                log.warning("database available again; draining %d spooled record(s)", self.spool.pending)
                down_since = None
            backoff = 0.0 if drained else 0.05

    def drain_once(self) -> int:
        """Apply the oldest segment of any spool (ours first); the number of lines it held, 0
        when there was none. Raises StoreUnavailable (nothing lost: the segment stays)."""
        for source in self._spools():
            segment = source.take_segment()
            if segment is not None:
                break
        else:
            return 0
        records, unreadable = source.read(segment)
        if unreadable:
            self._set_aside([Refusal("unreadable spool line", None, line) for line in unreadable], segment)
        for start in range(0, len(records), BATCH):
            self._apply(records[start : start + BATCH], segment)
        source.done(segment, len(records) + len(unreadable))
        self._gauges()
        return len(records) + len(unreadable)

    def _apply(self, records: Sequence[AccountingRecord], segment: Path) -> None:
        """One batch in one transaction; a batch the database refuses is split in halves until
        the records it refuses alone are found and set aside (the others are applied in order)."""
        began = time.monotonic()
        try:
            with db.transaction(self.engine) as session:
                refused = store.apply_accounting(session, records)
        except StoreUnavailable:
            raise
        except AccountingRefused as exc:
            if len(records) == 1:
                self._set_aside([Refusal(f"refused by the database: {exc}", asdict(records[0]))], segment)
                return
            # Any other error propagates: the segment stays, and is replayed (idempotently) later.
            middle = len(records) // 2
            self._apply(records[:middle], segment)
            self._apply(records[middle:], segment)
            return
        DRAIN_BATCH.observe(time.monotonic() - began)
        applied = len(records) - len(refused)
        RECORDED.inc(applied)
        self._applied.append((time.monotonic(), applied))
        if refused:
            self._set_aside([Refusal(f"invalid: {reason}", asdict(record)) for record, reason in refused], segment)

    def _set_aside(self, refusals: list[Refusal], segment: Path) -> None:
        # Written (and fsync'd) before the segment is deleted: a refused record is never just gone.
        path = self.quarantine.add(refusals, source=segment.name)
        QUARANTINED.inc(len(refusals))
        self.limited.log(
            logging.ERROR,
            "quarantined",
            "accounting: %d record(s) of %s set aside in %s (%s); `op25b accounting quarantine` lists them",
            len(refusals),
            segment.name,
            path,
            refusals[0].reason,
        )


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
