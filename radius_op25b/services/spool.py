"""The on-disk spool that makes an acknowledged accounting record survive a crash until the
database has it, and the quarantine beside it for records the database will never take.

The spool is a directory of append-only JSON-lines segments `NNNNNNNNNN-<created ms>.jsonl`.
`append` writes and fsyncs before the NAS is acknowledged; the drainer applies whole segments in
order and deletes them only after the database committed them. Applying is idempotent, so a
replay after a crash is harmless. Every list, stat and unlink of a segment happens under one
lock, and the bytes in use are counted in memory: a writer never trips over a segment the
drainer is deleting (the FileNotFoundError that lost acknowledged records, issue 14).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from radius_op25b.core.accounting import AccountingRecord

log = logging.getLogger("op25b.accounting")

QUARANTINE = "quarantine"  # below the spool folder: records set aside, one file per refusal
_FIELDS = tuple(f.name for f in fields(AccountingRecord))


def record_line(record: AccountingRecord) -> str:
    """`record.to_json()` without `asdict`'s deep copy (every field is a scalar): the same text,
    a third of the cost on the writer's path (py-spy, issue 14)."""
    return json.dumps({name: getattr(record, name) for name in _FIELDS}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    number: int
    created: float  # epoch seconds: when its first record was spooled (at most that old)


def _parse(path: Path) -> Segment | None:
    number, _, created = path.stem.partition("-")
    try:
        # A segment of an older release has no creation time in its name: its mtime is the
        # closest bound we have (younger than its first record).
        return Segment(path, int(number), int(created) / 1000 if created else path.stat().st_mtime)
    except (ValueError, OSError):
        return None


def list_segments(directory: Path) -> list[Segment]:
    found = (_parse(p) for p in directory.glob("*.jsonl"))
    return sorted((s for s in found if s is not None), key=lambda s: s.number)


def _fsync_dir(directory: Path) -> None:
    """A new file's name is durable only once its folder is synced (ext4 and XFS alike)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Append-only segments in `directory`; bounded by `max_bytes`."""

    SEGMENT_BYTES = 4 * 1024 * 1024

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        # Accounting names subscribers and their addresses: readable by the service alone.
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        segments = list_segments(self.dir)
        self._number = segments[-1].number + 1 if segments else 1
        self._file: Any = None
        self._current: Segment | None = None
        self._size = 0
        # The segments not yet applied, kept here rather than listed from the folder on every
        # take: this process is the folder's only writer, and a glob under the lock held the writer up.
        self._segments = {s.path: s for s in segments}
        self._sizes = {s.path: s.path.stat().st_size for s in segments}
        self._born = {s.path: s.created for s in segments}
        self._counts = {s.path: self._count(s.path) for s in segments}
        self.bytes = sum(self._sizes.values())  # bytes in segments not yet in the database
        self.pending = sum(self._counts.values())  # records not yet in the database

    def segments(self) -> list[Path]:
        with self._lock:
            return [s.path for s in list_segments(self.dir)]

    @staticmethod
    def _count(segment: Path) -> int:
        with open(segment, "rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))

    def bytes_used(self) -> int:
        return self.bytes

    def oldest(self) -> float | None:
        """When the oldest record not yet in the database was spooled (None: nothing waits)."""
        with self._lock:
            return min(self._born.values(), default=None) if self.pending else None

    def append(self, records: list[AccountingRecord]) -> bool:
        """Write and fsync; False (and nothing written) when the spool is full. An OSError means
        the records may or may not be on disk: they must not be acknowledged (a replay of one
        that is there after all is idempotent)."""
        data = "".join([record_line(r) + "\n" for r in records]).encode()
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                return False
            try:
                if self._file is None:
                    now = time.time()
                    path = self.dir / f"{self._number:010d}-{int(now * 1000)}.jsonl"
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    self._file = os.fdopen(fd, "ab")  # kept open: the current segment
                    self._current, self._size = Segment(path, self._number, now), 0
                    self._segments[path] = self._current
                    self._sizes[path], self._born[path], self._counts[path] = 0, now, 0
                    _fsync_dir(self.dir)
                self._file.write(data)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                # Whatever half of it reached the file, the next append starts a new segment:
                # a torn line is then the last of its segment, where `read` expects one.
                self._seal()
                raise
            assert self._current is not None
            self._size += len(data)
            self._sizes[self._current.path] += len(data)
            self._counts[self._current.path] += len(records)
            self.bytes += len(data)
            self.pending += len(records)
            if self._size >= self.SEGMENT_BYTES:
                self._seal()
        return True

    def _seal(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                log.error("spool %s: closing segment: %s", self.dir, exc)
            self._file = None
            self._current = None
            self._number += 1

    def take_segment(self, hold: float = 0.0, hold_bytes: int = 0) -> Path | None:
        """The oldest segment, sealed first so no writer appends to it while it is applied. With
        `hold`, the segment being written is left to grow until it is `hold` seconds old or
        `hold_bytes` long: fewer, fuller batches (a transaction, a file and a fsync of the
        folder each) for at most `hold` seconds more lag."""
        with self._lock:
            if not self._segments:
                return None
            oldest = min(self._segments.values(), key=lambda s: s.number)
            if self._current is not None and oldest.path == self._current.path:
                if hold and time.time() - oldest.created < hold and self._size < hold_bytes:
                    return None
                self._seal()
            return oldest.path

    def seal_if_due(self, hold: float, hold_bytes: int) -> int:
        """For a drainer in another process, which may take only sealed segments: seal the one
        being written once it is `hold` seconds old or `hold_bytes` long. Returns the number
        below which every segment is sealed (the next one to be opened)."""
        with self._lock:
            current = self._current
            if current is not None and (time.time() - current.created >= hold or self._size >= hold_bytes):
                self._seal()
            return self._number

    @property
    def sealed_below(self) -> int:
        with self._lock:
            return self._number

    def read(self, segment: Path) -> tuple[list[AccountingRecord], list[str]]:
        """The records of a sealed segment, and the lines that are not records (to set aside)."""
        return read_segment(segment)

    def done(self, segment: Path, count: int) -> None:
        with self._lock:
            segment.unlink(missing_ok=True)
            self._forget(segment, count)

    def _forget(self, segment: Path, count: int) -> None:
        if self._segments.pop(segment, None) is None:
            return  # forgotten before (forget_missing, then the drain process's word)
        self.bytes = max(0, self.bytes - self._sizes.pop(segment, 0))
        self._born.pop(segment, None)
        self._counts.pop(segment, None)
        self.pending = max(0, self.pending - count)

    def forget_missing(self) -> int:
        """Count as applied the sealed segments that are gone from the folder (a drain process
        that died between deleting one and saying so); the number of records they held."""
        with self._lock:
            gone = [p for p in self._segments if (self._current is None or p != self._current.path) and not p.exists()]
            count = sum(self._counts.get(p, 0) for p in gone)
            for path in gone:
                self._forget(path, self._counts.get(path, 0))
            return count

    def close(self) -> None:
        with self._lock:
            self._seal()


def read_segment(segment: Path) -> tuple[list[AccountingRecord], list[str]]:
    """The records of a sealed segment, and the lines that are not records (to set aside)."""
    records, unreadable = [], []
    with open(segment, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # a torn last line from a crash mid-write: it was never acknowledged
            try:
                records.append(AccountingRecord.from_json(line))
            except (ValueError, TypeError):
                unreadable.append(line.rstrip("\n"))
    return records, unreadable


class SealedSegments:
    """A spool as the drain process sees it: another process writes it, so only the segments
    numbered below `sealed_below` (which the writer reports as it seals them) may be applied and
    deleted; None: every segment (a spool nobody writes any more)."""

    def __init__(self, directory: str | os.PathLike[str], sealed_below: int | None) -> None:
        self.dir = Path(directory)
        self.sealed_below = sealed_below

    def take_segment(self) -> Path | None:
        segments = list_segments(self.dir)
        if segments and (self.sealed_below is None or segments[0].number < self.sealed_below):
            return segments[0].path
        return None

    def read(self, segment: Path) -> tuple[list[AccountingRecord], list[str]]:
        return read_segment(segment)

    def done(self, segment: Path, count: int) -> None:
        segment.unlink(missing_ok=True)


# --- the quarantine ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """One record set aside: the record as spooled (or the raw line), and why."""

    reason: str
    record: dict[str, Any] | None
    line: str | None = None


class Quarantine:
    """`<spool>/quarantine/<time>-<pid>-<n>.jsonl`, 0600 like the segments: each line a JSON object
    {"reason", "record" | "line", "at", "source"}. Written and fsynced before the segment that held
    the records is deleted, so a refused record is never just gone."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, refusals: list[Refusal], source: str) -> Path | None:
        if not refusals:
            return None
        now = time.time()
        lines = [
            json.dumps(
                {"at": now, "source": source, "reason": r.reason}
                | ({"record": r.record} if r.record is not None else {"line": r.line}),
                separators=(",", ":"),
                ensure_ascii=True,
            )
            + "\n"
            for r in refusals
        ]
        with self._lock:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._count += 1
            path = self.dir / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{os.getpid()}-{self._count}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write("".join(lines).encode("ascii"))
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(self.dir)
        return path


def quarantined(spool_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record set aside under a spool folder (all workers'), oldest first, each with its file."""
    base = Path(spool_dir)
    entries: list[dict[str, Any]] = []
    for folder in [base / QUARANTINE, *sorted(base.glob(f"worker-*/{QUARANTINE}"))]:
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            with open(path, encoding="ascii", errors="replace") as fh:
                for number, line in enumerate(fh, 1):
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        entry = {"reason": "unreadable quarantine line", "line": line.rstrip("\n")}
                    entries.append({"file": str(path), "line_number": number, **entry})
    entries.sort(key=lambda e: (e.get("at") or 0, e["file"], e["line_number"]))
    return entries


@dataclass(frozen=True, slots=True)
class SpoolLag:
    """How far the sessions table is behind the acknowledged accounting (from the files alone)."""

    segments: int
    bytes: int
    oldest_age: float | None  # seconds since the oldest unapplied record was spooled; None: none
    known: bool = True  # False: the folder is not readable by this user (the spool is the service's)

    @property
    def behind(self) -> bool:
        return self.bytes > 0

    def json(self) -> dict[str, Any]:
        return {"segments": self.segments, "bytes": self.bytes, "oldest_age_seconds": self.oldest_age, "known": self.known}


def spool_lag(spool_dir: str | os.PathLike[str], now: float | None = None) -> SpoolLag:
    """The spool's backlog, read from its folder (every worker's): for `sessions who-had`, which
    runs in another process and may answer from a table that has not caught up."""
    base = Path(spool_dir)
    now = time.time() if now is None else now
    if base.exists() and not os.access(base, os.R_OK | os.X_OK):
        return SpoolLag(0, 0, None, known=False)  # glob would just find nothing: say we cannot tell
    count, size, oldest = 0, 0, None
    for folder in [base, *sorted(base.glob("worker-*"))]:
        for segment in list_segments(folder) if folder.is_dir() else []:
            try:
                length = segment.path.stat().st_size
            except FileNotFoundError:
                continue  # applied and deleted while we looked
            if length == 0:
                continue
            count, size = count + 1, size + length
            oldest = segment.created if oldest is None else min(oldest, segment.created)
    return SpoolLag(count, size, None if oldest is None else max(0.0, now - oldest))
