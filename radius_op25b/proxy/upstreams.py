"""Upstream health and choice, with the clock passed in: alive -> zombie on a timeout, zombie ->
dead after `zombie_period` with no answer, and back to alive on any verified reply (RFC 5997
Status-Server probes are how a zombie or dead server gets the chance to answer).
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from radius_op25b import metrics
from radius_op25b.core.config import Config, PoolConfig, UpstreamConfig
from radius_op25b.core.decision import realm_of


class Health(Enum):
    ALIVE = "alive"
    ZOMBIE = "zombie"
    DEAD = "dead"


@dataclass
class Upstream:
    config: UpstreamConfig
    zombie_period: float = 10.0  # seconds of silence before a zombie is declared dead
    probe_interval: float = 1.0  # Status-Server cadence while zombie; dead ones: 5x this
    health: Health = Health.ALIVE
    outstanding: int = 0
    zombie_since: float = 0.0
    next_probe: float = 0.0
    changes: list[tuple[float, Health]] = field(default_factory=list)
    _counters: dict[str, Any] = field(default_factory=dict)
    _rtt: Any = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def family(self) -> int:
        """4 or 6: which of the relay's upstream sockets can reach it."""
        return _family(self.config.address)

    # Metric children resolved once: label lookups cost more than the increments themselves.
    def sent_counter(self, kind: str) -> Any:
        child = self._counters.get(kind)
        if child is None:
            child = self._counters[kind] = metrics.UPSTREAM_REQUESTS.labels(self.name, kind)
        return child

    @property
    def rtt(self) -> Any:
        if self._rtt is None:
            self._rtt = metrics.UPSTREAM_RTT.labels(self.name)
        return self._rtt

    def _become(self, health: Health, now: float) -> bool:
        if health is self.health:
            return False
        self.health = health
        self.changes.append((now, health))
        del self.changes[:-20]
        return True

    def on_reply(self, now: float) -> bool:
        """A verified reply (to a request or a probe); True if that revived the server."""
        return self._become(Health.ALIVE, now)

    def on_timeout(self, now: float) -> bool:
        """No answer within the response window; True if the health changed."""
        if self.health is Health.ALIVE:
            self.zombie_since, self.next_probe = now, now
            return self._become(Health.ZOMBIE, now)
        return self.tick(now)

    def tick(self, now: float) -> bool:
        if self.health is Health.ZOMBIE and now - self.zombie_since >= self.zombie_period:
            return self._become(Health.DEAD, now)
        return False

    def probe_due(self, now: float) -> bool:
        if self.health is Health.ALIVE or now < self.next_probe:
            return False
        self.next_probe = now + self.probe_interval * (1 if self.health is Health.ZOMBIE else 5)
        return True


@dataclass
class Pool:
    name: str
    strategy: str
    members: list[Upstream]

    def choose(self, exclude: Iterable[str] = ()) -> Upstream | None:
        """The server for the next try: alive ones first, then zombies, dead ones as a last resort."""
        skip = set(exclude)
        for health in (Health.ALIVE, Health.ZOMBIE, Health.DEAD):
            candidates = [m for m in self.members if m.health is health and m.name not in skip]
            if not candidates:
                continue
            if self.strategy == "load-balance":
                # The fewest requests in flight (FreeRADIUS's rule), ties broken at random.
                least = min(m.outstanding for m in candidates)
                return random.choice([m for m in candidates if m.outstanding == least])
            return candidates[0]
        return None


class Router:
    """Realm routes to pools; everything else to the first pool (README: "Configuration", `[[routes]]`)."""

    def __init__(self, config: Config, previous: Mapping[str, Upstream] | None = None) -> None:
        old = previous or {}
        self.upstreams: dict[str, Upstream] = {}
        for u in config.upstreams:
            kept = old.get(u.name)
            if kept is not None and (kept.config.address, kept.config.auth_port, kept.config.acct_port) == (
                u.address,
                u.auth_port,
                u.acct_port,
            ):
                kept.config = u  # same server, maybe a new secret: keep its health
                kept.zombie_period, kept.probe_interval = u.zombie_period, u.status_interval
                self.upstreams[u.name] = kept
            else:
                self.upstreams[u.name] = Upstream(u, u.zombie_period, u.status_interval)
        pools = config.pools or (PoolConfig("default", tuple(u.name for u in config.upstreams)),)
        self.pools = {p.name: Pool(p.name, p.strategy, [self.upstreams[n] for n in p.upstreams]) for p in pools}
        self.default = self.pools[pools[0].name] if pools and pools[0].upstreams else None
        self.routes = {r.realm: self.pools[r.pool] for r in config.routes}

    def pool_for(self, username: str | None) -> Pool | None:
        realm = realm_of(username) if username else None
        if realm is not None and realm in self.routes:
            return self.routes[realm]
        return self.default


@functools.lru_cache(maxsize=256)
def _family(address: str) -> int:
    # Asked for every request relayed (Relay._allocate): parsing the text each time showed in py-spy.
    return ipaddress.ip_address(address).version
