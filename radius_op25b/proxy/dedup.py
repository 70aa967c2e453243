"""RFC 5080 §2.2.2 duplicate detection: one entry per (client IP, port, ID, listening socket).

"a duplicate ... is a packet received on the same socket from the same source IP address and
port, with the same Identifier and the same Request Authenticator" - in flight it is dropped,
answered it gets the cached reply, and a new Request Authenticator starts a new request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

Key = tuple[str, int, int, str]  # (source address, source port, identifier, socket name)


class Seen(Enum):
    NEW = "new"
    IN_FLIGHT = "in-flight"
    ANSWERED = "answered"


@dataclass
class _Entry:
    authenticator: bytes
    expires: float
    reply: bytes | None = None


class DuplicateCache:
    """Bounded by time (`hold` seconds after the reply) and by size (oldest evicted first)."""

    def __init__(self, hold: float = 10.0, in_flight_limit: float = 60.0, max_entries: int = 1_000_000) -> None:
        self.hold, self.in_flight_limit, self.max_entries = hold, in_flight_limit, max_entries
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, key: Key, authenticator: bytes, now: float) -> tuple[Seen, bytes | None]:
        """Classify a request; a NEW one is recorded as in flight."""
        entry = self._entries.get(key)
        if entry is not None and entry.authenticator == authenticator and entry.expires > now:
            if entry.reply is None:
                return Seen.IN_FLIGHT, None
            return Seen.ANSWERED, entry.reply
        # Unseen, expired, or a new Request Authenticator under the same ID: a new request.
        self._entries[key] = _Entry(authenticator, now + self.in_flight_limit)
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return Seen.NEW, None

    def answered(self, key: Key, authenticator: bytes, reply: bytes, now: float) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.authenticator == authenticator:
            entry.reply, entry.expires = reply, now + self.hold
            self._entries.move_to_end(key)

    def forget(self, key: Key, authenticator: bytes) -> None:
        """A request we gave up on: the NAS's next retransmission is relayed afresh."""
        entry = self._entries.get(key)
        if entry is not None and entry.authenticator == authenticator and entry.reply is None:
            del self._entries[key]

    def purge(self, now: float) -> int:
        """Drop expired entries, oldest-refreshed first; stops after 1,000 live ones (bounded work)."""
        doomed: list[Key] = []
        live = 0
        for key, entry in self._entries.items():
            if entry.expires <= now:
                doomed.append(key)
            else:
                live += 1
                if live > 1000:
                    break
        for key in doomed:
            del self._entries[key]
        return len(doomed)
