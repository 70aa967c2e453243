"""Who is asking: API tokens, signed-in sessions, a carrier's SSO header; CSRF tokens; and the
sign-in rate limit. State is in this process's memory (one `op25b web` process): a restart signs
everyone out, which is the safe direction."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass, field

from radius_op25b.core.config import WebConfig
from radius_op25b.services.staff import Member

SESSION_COOKIE = "op25b_session"
SESSION_SECONDS = 8 * 3600  # a working day; then sign in again
IDLE_SECONDS = 3600


@dataclass
class WebSession:
    member: Member
    csrf: str
    created: float
    seen: float


@dataclass
class Sessions:
    """Session id (256 random bits, in an HttpOnly cookie) -> who signed in, and their CSRF token."""

    _by_id: dict[str, WebSession] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, member: Member) -> tuple[str, WebSession]:
        sid = secrets.token_urlsafe(32)
        now = time.monotonic()
        session = WebSession(member, secrets.token_urlsafe(32), now, now)
        with self._lock:
            # Expired sessions go here too, not only when looked up: a client that keeps no
            # cookie (an SSO proxy's health check) opens one per request.
            for old in [k for k, v in self._by_id.items() if now - v.created > SESSION_SECONDS or now - v.seen > IDLE_SECONDS]:
                del self._by_id[old]
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> WebSession | None:
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if now - session.created > SESSION_SECONDS or now - session.seen > IDLE_SECONDS:
                del self._by_id[sid]
                return None
            session.seen = now
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def close_member(self, name: str) -> None:
        with self._lock:
            for sid in [k for k, v in self._by_id.items() if v.member.name == name]:
                del self._by_id[sid]


def csrf_ok(session: WebSession, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode("utf-8", "replace"))


@dataclass
class SignInLimit:
    """At most `attempts` failed sign-ins per user and per address within `window` seconds."""

    attempts: int = 5
    window: float = 300.0
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, user: str, address: str) -> float:
        """Seconds until a sign-in for `user` from `address` may be tried again (0: now)."""
        now = time.monotonic()
        with self._lock:
            waits = []
            for key in (f"user:{user.strip().lower()}", f"addr:{address}"):
                recent = [t for t in self._failures.get(key, []) if now - t < self.window]
                self._failures[key] = recent
                if len(recent) >= self.attempts:
                    waits.append(self.window - (now - recent[0]))
            return max(waits, default=0.0)

    def failed(self, user: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"user:{user.strip().lower()}", f"addr:{address}"):
                self._failures.setdefault(key, []).append(now)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{user.strip().lower()}", None)


def trusted_proxy(config: WebConfig, address: str | None) -> bool:
    """Whether the SSO header may be believed from `address` (the TCP peer, not a header)."""
    if not config.trusted_user_header or not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in config.trusted_proxies)
