"""The on-disk spool that makes an acknowledged accounting record survive a crash until the
database has it.

The spool is a directory of append-only JSON-lines segments. `append` writes and fsyncs before
the NAS is acknowledged; the drainer applies whole segments in order and deletes them only after
the database committed them. Applying is idempotent, so a replay after a crash is harmless.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from radius_op25b.core.accounting import AccountingRecord

log = logging.getLogger("op25b.accounting")


class Spool:
    """Append-only segments `NNNNNNNNNN.jsonl` in `directory`; bounded by `max_bytes`."""

    SEGMENT_BYTES = 4 * 1024 * 1024

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        # Accounting names subscribers and their addresses: readable by the service alone.
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        segments = self.segments()
        self._number = int(segments[-1].stem) + 1 if segments else 1
        self._file: Any = None
        self._size = 0
        self.pending = sum(self._count(s) for s in segments)  # records not yet in the database

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("*.jsonl"))

    @staticmethod
    def _count(segment: Path) -> int:
        with open(segment, "rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))

    def bytes_used(self) -> int:
        return sum(s.stat().st_size for s in self.segments())

    def append(self, records: list[AccountingRecord]) -> bool:
        """Write and fsync; False (and nothing written) when the spool is full."""
        data = "".join(r.to_json() + "\n" for r in records).encode()
        with self._lock:
            if self._file is None:
                if self.bytes_used() + len(data) > self.max_bytes:
                    return False
                path = self.dir / f"{self._number:010d}.jsonl"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._file = os.fdopen(fd, "ab")  # kept open: the current segment
                self._size = 0
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._size += len(data)
            self.pending += len(records)
            if self._size >= self.SEGMENT_BYTES:
                self._seal()
        return True

    def _seal(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._number += 1

    def take_segment(self) -> Path | None:
        """The oldest segment, sealed first so no writer appends to it while it is applied."""
        with self._lock:
            segments = self.segments()
            if not segments:
                return None
            if self._file is not None and segments[0].stem == f"{self._number:010d}":
                self._seal()
            return segments[0]

    def read(self, segment: Path) -> list[AccountingRecord]:
        records = []
        with open(segment, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # a torn last line from a crash mid-write: it was never acknowledged
                try:
                    records.append(AccountingRecord.from_json(line))
                except (ValueError, TypeError):
                    log.error("spool %s: skipping an unreadable line", segment.name)
        return records

    def done(self, segment: Path, count: int) -> None:
        segment.unlink(missing_ok=True)
        with self._lock:
            self.pending = max(0, self.pending - count)

    def close(self) -> None:
        with self._lock:
            self._seal()
