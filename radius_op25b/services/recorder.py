"""Session recording for the relay: every acknowledged Accounting-Request is first made durable
in the spool (group-committed fsync, off the event loop), then drained into the database in
order and in batches, by a background thread or (`drain_process=True`, `op25b serve`) by a
process of its own; a database outage only makes the spool deeper, and a record the database
refuses is set aside in the quarantine while the drain goes on.

Why a process: py-spy of `op25b serve` under the accounting benchmark found the drain holding the
GIL for over a third of the samples (building and sending 2,000-row upserts), time the relay
waited for. The drain process needs only the spool folders and the database URL; the writer
seals a segment before the drain process may take it (`Spool.seal_if_due`, the numbers below
which all are sealed go down a pipe), and what was applied comes back up it for the metrics
and the spool's counters. It exits when the pipe closes, so it never outlives its worker.

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
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

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
    multiprocess,
)
from radius_op25b.services.spool import (
    QUARANTINE,
    Quarantine,
    Refusal,
    SealedSegments,
    Spool,
    SpoolLag,
    list_segments,
    quarantined,
    spool_lag,
)
from radius_op25b.store import db
from radius_op25b.store.sessions import AccountingRefused

__all__ = ["Recorder", "quarantined", "spool_lag", "SpoolLag"]

log = logging.getLogger("op25b.recorder")

BATCH = 2000  # records per transaction: one SELECT per NAS, one multi-row INSERT, one UPDATE
RATE_WINDOW = 10.0
# The drainer leaves the segment being written to grow this long (or to this size) before it
# takes it: during a burst it applied a small segment per loop, and every transaction, new
# segment and folder fsync costs the relay GIL time (py-spy, issue 14). Lag: at most this more.
DRAIN_HOLD = 0.2
DRAIN_HOLD_BYTES = 512 * 1024
GAUGE_PERIOD = 0.5  # several workers: how often the callback gauges are written for the scrape


class Source(Protocol):
    """A spool as the drainer takes from it (Spool in-process, SealedSegments in the drain process)."""

    dir: Path

    def take_segment(self) -> Path | None: ...
    def read(self, segment: Path) -> tuple[list[AccountingRecord], list[str]]: ...
    def done(self, segment: Path, count: int) -> None: ...


class Drainer:
    """Applies spooled segments to the database, oldest first, in batches; the same code in the
    relay's thread and in the drain process. `report(applied, seconds)` is called per batch
    written, `set_aside(n)` per refusal quarantined, `failed()` per attempt that failed otherwise."""

    def __init__(
        self,
        engine: Engine,
        sources: Callable[[], Sequence[Source]],
        quarantine: Quarantine,
        report: Callable[[int, float], None],
        set_aside: Callable[[int], None],
        failed: Callable[[], None],
    ) -> None:
        self.engine, self.sources, self.quarantine = engine, sources, quarantine
        self.report, self.counted, self.failed = report, set_aside, failed
        self.limited = RateLimitedLog(log)

    def drain_once(self) -> tuple[int, int, Path] | None:
        """Apply the oldest segment of any source (the first source's first): (source index, lines
        it held, segment), None when there was none. Raises StoreUnavailable (nothing lost: the
        segment stays)."""
        taken = next(
            ((index, source, segment) for index, source in enumerate(self.sources()) if (segment := source.take_segment())),
            None,
        )
        if taken is None:
            return None
        index, source, segment = taken
        records, unreadable = source.read(segment)
        if unreadable:
            self._set_aside([Refusal("unreadable spool line", None, line) for line in unreadable], segment)
        for start in range(0, len(records), BATCH):
            self._apply(records[start : start + BATCH], segment)
        source.done(segment, len(records) + len(unreadable))
        return index, len(records) + len(unreadable), segment

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
        self.report(len(records) - len(refused), time.monotonic() - began)
        if refused:
            self._set_aside([Refusal(f"invalid: {reason}", asdict(record)) for record, reason in refused], segment)

    def _set_aside(self, refusals: list[Refusal], segment: Path) -> None:
        # Written (and fsync'd) before the segment is deleted: a refused record is never just gone.
        path = self.quarantine.add(refusals, source=segment.name)
        self.counted(len(refusals))
        self.limited.log(
            logging.ERROR,
            "quarantined",
            "accounting: %d record(s) of %s set aside in %s (%s); `op25b accounting quarantine` lists them",
            len(refusals),
            segment.name,
            path,
            refusals[0].reason,
        )

    def run(self, wait: Callable[[float], bool], drain: Callable[[], object], pending: Callable[[], int]) -> None:
        """`drain()` (one segment; falsy: none) until `wait(seconds)` says to stop; the database
        away means a backoff, never a loss. `pending()`: records waiting, for the log."""
        backoff = 0.0
        down_since: float | None = None
        while not wait(backoff):
            try:
                drained = drain()
            except StoreUnavailable as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("database unavailable; accounting stays in the spool (%d record(s)): %s", pending(), exc)
                backoff = min(5.0, max(0.5, backoff * 2))
                continue
            except Exception:
                self.failed()
                self.limited.exception("apply", "could not apply the spool; will retry")
                backoff = 5.0
                continue
            if down_since is not None:
                log.warning("database available again; draining %d spooled record(s)", pending())
                down_since = None
            backoff = 0.0 if drained else 0.05


class Recorder:
    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        loop: asyncio.AbstractEventLoop,
        orphans: list[Spool] | None = None,
        quarantine: Quarantine | None = None,
        on_unrecorded: Callable[[Any], None] | None = None,
        drain_process: bool = False,
    ) -> None:
        self.engine, self.spool, self.loop = engine, spool, loop
        self.orphans = orphans or []  # spools of workers that are gone: drained, never written
        self.quarantine = quarantine or Quarantine(spool.dir / QUARANTINE)
        # Called on the loop for a job whose record could not be spooled: the relay forgets it,
        # so the NAS's retransmission is relayed afresh instead of dropped as in flight.
        self.on_unrecorded = on_unrecorded
        self.drain_process = drain_process
        self._queue: list[tuple[AccountingRecord, asyncio.Future[None], Any]] = []
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._applied: collections.deque[tuple[float, int]] = collections.deque()
        self.drainer = Drainer(
            engine, self._held_sources, self.quarantine, self._count_applied, self._count_quarantined, DRAIN_ERRORS.inc
        )
        self._threads = [threading.Thread(target=self._write_loop, name="op25b-spool-writer", daemon=True)]
        if drain_process:
            self._link = DrainLink(self)
            self._threads.append(threading.Thread(target=self._link.run, name="op25b-drain-link", daemon=True))
        else:
            self._threads.append(threading.Thread(target=self._drain_loop, name="op25b-spool-drainer", daemon=True))
        self.limited = RateLimitedLog(log)
        self._gauges()
        if multiprocess():
            # The scrape reads the workers' files, never a callback of ours: write the values.
            self._threads.append(threading.Thread(target=self._gauge_loop, name="op25b-accounting-gauges", daemon=True))
        else:
            SPOOL_OLDEST.set_function(self.oldest_age)
            DRAIN_RATE.set_function(self.drain_rate)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._threads[0].join(timeout)  # the writer: what was queued is spooled (or refused)
        self.spool.close()
        if self.drain_process:
            self._link.close(timeout)  # the drain process ends its batch; the rest waits in the spool
        for thread in self._threads[1:]:
            thread.join(timeout)

    # --- what the metrics read --------------------------------------------------------------------

    def _spools(self) -> list[Spool]:
        return [self.spool, *self.orphans]

    def _held_sources(self) -> list[Source]:
        # In-process, the drainer seals the segment being written itself, once it is old or big
        # enough: fewer, fuller batches than a small segment per loop (py-spy, issue 14).
        return [_Held(self.spool), *self.orphans]

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
        if multiprocess():
            SPOOL_OLDEST.set(self.oldest_age())  # at once, not only at the next GAUGE_PERIOD

    def _gauge_loop(self) -> None:
        while True:
            SPOOL_OLDEST.set(self.oldest_age())
            DRAIN_RATE.set(self.drain_rate())
            if self._stop.wait(GAUGE_PERIOD):
                return

    def _count_applied(self, applied: int, seconds: float) -> None:
        DRAIN_BATCH.observe(seconds)
        RECORDED.inc(applied)
        self._applied.append((time.monotonic(), applied))

    def _count_quarantined(self, count: int) -> None:
        QUARANTINED.inc(count)

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
        # With a drain process, the writer also seals the segment it writes once it is due, and
        # says so: an idle writer wakes for that too, so the last records of a burst are not held.
        idle = DRAIN_HOLD if self.drain_process else 0.5
        while not self._stop.is_set() or self._queue:
            with self._wake:
                while not self._queue and not self._stop.is_set():
                    if not self._wake.wait(idle) and self.drain_process:
                        break
                batch, self._queue = self._queue, []
            if not batch:
                if self.drain_process:
                    self._link.sealed(self.spool.seal_if_due(DRAIN_HOLD, DRAIN_HOLD_BYTES))
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
            if self.drain_process:
                self._link.sealed(self.spool.seal_if_due(DRAIN_HOLD, DRAIN_HOLD_BYTES))

    def _unrecorded(self, jobs: list[Any]) -> None:
        if self.on_unrecorded is None:
            return
        for job in jobs:
            try:
                self.on_unrecorded(job)
            except Exception:
                self.limited.exception("unrecorded", "could not release an unrecorded accounting request")

    def _drain_loop(self) -> None:
        self.drainer.run(self._stop.wait, self.drain_once, lambda: self.spool.pending)

    def drain_once(self) -> int:
        """In-process: apply the oldest segment of any spool (ours first); the number of lines it
        held, 0 when there was none. Raises StoreUnavailable (nothing lost: the segment stays)."""
        drained = self.drainer.drain_once()
        self._gauges()
        return 0 if drained is None else drained[1]


class _Held:
    """Our spool as the in-process drainer takes from it: the segment being written is left to
    grow for DRAIN_HOLD (or DRAIN_HOLD_BYTES)."""

    def __init__(self, spool: Spool) -> None:
        self.spool, self.dir = spool, spool.dir

    def take_segment(self) -> Path | None:
        return self.spool.take_segment(DRAIN_HOLD, DRAIN_HOLD_BYTES)

    def read(self, segment: Path) -> tuple[list[AccountingRecord], list[str]]:
        return self.spool.read(segment)

    def done(self, segment: Path, count: int) -> None:
        self.spool.done(segment, count)


# --- the drain process --------------------------------------------------------------------------------


class DrainLink:
    """The relay's end of the drain process: starts it (again, should it die), tells it which
    segments are sealed, and turns what it applied into metrics and the spool's counters."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._told = -1
        self._unsent: int | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        r = self.recorder
        setup = {
            "url": r.engine.url.render_as_string(hide_password=False),
            "spools": [[str(r.spool.dir), r.spool.sealed_below], *[[str(o.dir), None] for o in r.orphans]],
            "quarantine": str(r.quarantine.dir),
            "log_level": logging.getLogger().getEffectiveLevel(),
        }
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # its metrics come up the pipe, not from files
        # Our own import path, so the child finds this tree and the venv's packages however it is
        # started: as an unprivileged user the venv's python may be a link into a folder we cannot
        # enter (deploy/op25b.service as nobody), and then the running binary is what we can exec.
        # (The tree first: an editable install's import hook comes from a .pth file, which a
        # folder on PYTHONPATH does not run.)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([package_root, *(p for p in sys.path if p)])
        executable = sys.executable if os.access(sys.executable, os.X_OK) else "/proc/self/exe"
        proc = subprocess.Popen(
            [executable, "-c", "from radius_op25b.services.recorder import drain_main; drain_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert proc.stdin is not None
        # The URL (with its password) goes down the pipe, never onto a command line.
        proc.stdin.write(json.dumps(setup).encode() + b"\n")
        proc.stdin.flush()
        os.set_blocking(proc.stdin.fileno(), False)  # the writer thread never waits for the drainer
        self._told = -1
        return proc

    def sealed(self, below: int) -> None:
        """Writer thread: every segment numbered below `below` is sealed (only the latest matters)."""
        if below == self._told and self._unsent is None:
            return
        with self._lock:
            proc = self.proc
            if proc is None or proc.stdin is None:
                return
            try:
                proc.stdin.write(json.dumps({"sealed_below": below}).encode() + b"\n")
                proc.stdin.flush()
                self._told, self._unsent = below, None
            except BlockingIOError:
                self._unsent = below  # the pipe is full: a later call sends the latest
            except (BrokenPipeError, ValueError, OSError):
                self._unsent = below  # restarting: run() tells the new one

    def run(self) -> None:
        r = self.recorder
        while not r._stop.is_set():  # noqa: SLF001
            for spool in r._spools():  # noqa: SLF001  (one a dead drain process deleted unsaid)
                spool.forget_missing()
            with self._lock:
                self.proc = self._spawn()
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                try:
                    report = json.loads(line)
                except ValueError:
                    continue
                self._take(report)
            if r._stop.is_set():  # noqa: SLF001
                return
            code = self.proc.wait()
            DRAIN_ERRORS.inc()
            log.error("accounting drain process exited (%s); starting it again", code)
            if r._stop.wait(1.0):  # noqa: SLF001
                return

    def _take(self, report: dict[str, Any]) -> None:
        r = self.recorder
        for applied, seconds in report.get("batches", ()):
            r._count_applied(applied, seconds)  # noqa: SLF001
        if report.get("quarantined"):
            r._count_quarantined(report["quarantined"])  # noqa: SLF001
        if report.get("errors"):
            DRAIN_ERRORS.inc(report["errors"])
        if "done" in report:
            index, path, count = report["done"]
            spools = r._spools()  # noqa: SLF001
            if 0 <= index < len(spools):
                spools[index].done(Path(path), count)
                # A drain process of a run before ours may have applied one we counted at start.
                spools[index].forget_missing()
            r._gauges()  # noqa: SLF001

    def close(self, timeout: float) -> None:
        """The pipe closes: the drain process finishes its batch and exits; killed past `timeout`."""
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def drain_main() -> None:
    """The drain process: the first line of stdin is its set-up; then `{"sealed_below": N}` lines.
    One JSON line on stdout per segment applied. The end of stdin (the relay gone) ends it."""
    import signal

    for sig in (signal.SIGINT, signal.SIGHUP):  # the relay's to handle; its exit ends us
        signal.signal(sig, signal.SIG_IGN)
    stdin = sys.stdin.buffer.fileno()  # read raw: a buffered readline would keep what follows from select
    buffered = b""
    while b"\n" not in buffered:
        chunk = os.read(stdin, 65536)
        if not chunk:
            return
        buffered += chunk
    first, buffered = buffered.split(b"\n", 1)
    setup = json.loads(first)
    logging.basicConfig(
        level=setup.get("log_level", logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    sources = [SealedSegments(directory, below) for directory, below in setup["spools"]]
    out = sys.stdout.buffer
    report: dict[str, Any] = {"batches": [], "quarantined": 0, "errors": 0}

    def counted(key: str, n: int) -> None:
        report[key] += n

    drainer = Drainer(
        # No pre-ping round trip per batch: a dead connection fails its statement instead
        # (StoreUnavailable: the segment stays, the pool replaces the connection, the next try works).
        db.make_engine(setup["url"], pre_ping=False),
        lambda: sources,
        Quarantine(setup["quarantine"]),
        lambda applied, seconds: report["batches"].append((applied, seconds)),
        lambda n: counted("quarantined", n),
        lambda: counted("errors", 1),
    )
    closed = False

    def take_lines() -> None:
        nonlocal buffered
        *lines, buffered = buffered.split(b"\n")
        for line in filter(None, (raw.strip() for raw in lines)):
            sources[0].sealed_below = max(sources[0].sealed_below or 0, int(json.loads(line)["sealed_below"]))

    def listen(timeout: float) -> bool:
        """What the relay says (sealed segments), for up to `timeout` s; True: the pipe closed."""
        nonlocal buffered, closed
        take_lines()
        deadline = time.monotonic() + timeout
        while not closed:
            ready, _, _ = select.select([stdin], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                chunk = os.read(stdin, 65536)
                closed = not chunk
                buffered += chunk
                take_lines()
            if time.monotonic() >= deadline:
                break
        return closed

    def drain_and_report() -> bool:
        drained = None
        try:
            drained = drainer.drain_once()
        finally:  # batches applied before an error are reported too
            if drained is not None or report["batches"] or report["quarantined"] or report["errors"]:
                if drained is not None:
                    report["done"] = [drained[0], str(drained[2]), drained[1]]
                out.write(json.dumps(report).encode() + b"\n")
                out.flush()
                report.update(batches=[], quarantined=0, errors=0)
                report.pop("done", None)
        return drained is not None

    def waiting() -> int:
        return sum(Spool._count(path) for s in sources for path in [x.path for x in list_segments(s.dir)])  # noqa: SLF001

    try:
        drainer.run(listen, drain_and_report, waiting)
    except (BrokenPipeError, KeyboardInterrupt):
        pass


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
