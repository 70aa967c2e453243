"""The OP25B step of the relay: each Access-Accept gets the filter attributes of its decision.

No Access-Accept waits for the database. Most subscribers are decided exactly like a subscriber
who is not in the database (dynamic, no exemption, no override: the realm's or the policy's
default). The proxy holds only the others in memory - static subscribers, exemptions, class
overrides, realms and mobile MTA blocks - loaded at start and kept current by one watcher thread:
PostgreSQL LISTEN/NOTIFY (polling of the audit log on SQLite). A change refreshes the subscribers
it names; a bulk change (import, realm, mobile MTA block) or a reconnect reloads everything.

When the database goes away, the proxy keeps deciding from what it holds. Only when it has never
been able to load (database down at start) does it use `policy.on_database_error` for everyone
until the load succeeds - never a Reject, never a dropped Accept.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from radius_op25b import metrics, store
from radius_op25b.core import decision as d
from radius_op25b.core import profiles
from radius_op25b.core.config import ClientConfig, Config
from radius_op25b.core.splice import Splice, apply_decision, framed_ip
from radius_op25b.errors import StoreUnavailable
from radius_op25b.radius import Attributes
from radius_op25b.services import explain
from radius_op25b.store import db, notify

log = logging.getLogger("op25b.policy")

RETRY_AFTER = 1.0  # seconds between attempts to reach the database again
FIRST_LOAD_WAIT = 120.0  # seconds `start` waits for the first load (a dead database fails in 2 s)
# Changes that can touch any subscriber's decision: everything is loaded again.
GLOBAL_ACTIONS = ("realm.", "mobile-mta.", "subscriber.import")


class PolicyService:
    """Decides and rewrites Accepts for the relay; owns what is held in memory and its watcher.

    The watcher thread is the only writer of the held subscribers and realms: it swaps whole
    dicts or sets single keys, which the event loop reads without locks (each is one atomic step
    under the GIL). The filter context has two writers (SIGHUP, a reload) and a lock.
    """

    def __init__(self, config: Config, engine: Engine, on_change: Callable[[], None] | None = None) -> None:
        self.config = config
        self.engine = engine
        self.on_change = on_change  # called (from the watcher thread) after each batch of changes
        self.special: dict[str, d.Subscriber] = {}  # username key -> view, see d.decides_as_unknown
        self.realms: dict[str, d.Realm] = {}
        self.loaded = False  # False until the first load: then policy.on_database_error applies
        self._ctx_lock = threading.Lock()  # the event loop (SIGHUP) and the watcher both rebuild ctx
        self.ctx = profiles.FilterContext(config.filters, ())
        self._decisions: dict[tuple[str, str], Any] = {}
        self._down_since: float | None = None
        self._down_what = ""
        self._first_attempt = threading.Event()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the watcher and wait for its first load (a dead database is noticed at once)."""
        self._watcher = threading.Thread(target=self._watch, name="op25b-policy", daemon=True)
        self._watcher.start()
        if not self._first_attempt.wait(FIRST_LOAD_WAIT):
            log.error("no subscriber data after %.0fs; serving with policy.on_database_error until it loads", FIRST_LOAD_WAIT)

    def close(self) -> None:
        self._stop.set()

    @property
    def ctx(self) -> profiles.FilterContext:
        return self._ctx

    @ctx.setter
    def ctx(self, value: profiles.FilterContext) -> None:
        self._ctx = value
        self.splice = Splice(self.config, value)  # names or blocks changed: rebuild the memo

    def reconfigure(self, config: Config) -> None:
        with self._ctx_lock:
            self.config = config
            self.ctx = profiles.FilterContext(config.filters, self.ctx.mobile_mta_blocks)

    # --- the relay's hook ----------------------------------------------------------------------

    def rewrite_accept(self, job: Any, attributes: Attributes) -> Attributes:
        client: ClientConfig = job.client
        # The key (stripped, lower-cased) stands for the name throughout, as it does in
        # d.decides_as_unknown: held or not, the realm comes out the same.
        request = explain.request_for(job.username or "", framed_ip(attributes), client)
        if self.loaded:
            subscriber = self.special.get(request.username)
            realm = explain.held_realm(self.realms, subscriber, request)
            decision = explain.decide(self.config, request, subscriber, realm, self.now())
        else:
            decision = d.decide_without_database(request, self.config.policy)
        counter = self._decisions.get((decision.filter_class, decision.reason_kind))
        if counter is None:
            counter = self._decisions[(decision.filter_class, decision.reason_kind)] = metrics.DECISIONS.labels(
                str(decision.filter_class), decision.reason_kind
            )
        counter.inc()
        return apply_decision(decision, client, attributes, self.splice)

    # --- the watcher thread ----------------------------------------------------------------------

    def _watch(self) -> None:
        """Follow the database's changes; after any failure, start again with a full load
        (changes made while we were away were not seen)."""
        while not self._stop.is_set():
            try:
                if not self.loaded:  # `serve` may have started before the database answered
                    db.require_current_schema(self.engine)
                for batch in notify.changes(self.engine, self._stop):  # the first batch is RELOAD_ALL, once we are listening
                    self._apply(batch)
                    if self.on_change is not None:
                        self.on_change()
                    self._first_attempt.set()
                    self._database_ok()
            except Exception as exc:
                self._database_failed(exc)
                self._first_attempt.set()
                self._stop.wait(RETRY_AFTER)

    def _apply(self, batch: list[notify.Change]) -> None:
        if any(action == "*" or action.startswith(GLOBAL_ACTIONS) for action, _ in batch):
            self._load_all()
            return
        keys = sorted({target for action, target in batch if action.startswith("subscriber.")})
        if not keys:
            return
        with db.reading(self.engine) as session:
            held = store.special_subscriber_views(session, self.now(), keys)
        for key in keys:
            if key in held:
                self.special[key] = held[key]
            else:
                self.special.pop(key, None)
        metrics.SPECIAL_SUBSCRIBERS.set(len(self.special))

    def _load_all(self) -> None:
        started = time.monotonic()
        with db.reading(self.engine) as session:
            blocks = store.mobile_mta_networks(session)
            realms = store.realm_views(session)
            special = store.special_subscriber_views(session, self.now())
        self.realms, self.special = realms, special
        with self._ctx_lock:
            self.ctx = profiles.FilterContext(self.config.filters, blocks)
        if not self.loaded:
            # At start, before any traffic: the views live long and hold no cycles, so keep
            # the cyclic collector from walking them on every full collection (its pauses
            # would show in the reply latency). Not on later reloads: freezing then would
            # also keep whatever cyclic garbage exists at that moment.
            gc.collect()
            gc.freeze()
        self.loaded = True
        metrics.SPECIAL_SUBSCRIBERS.set(len(special))
        log.info(
            "policy loaded in %.2fs: %d subscriber(s) not on their default, %d realm(s), %d mobile MTA block(s)",
            time.monotonic() - started,
            len(special),
            len(realms),
            len(blocks),
        )

    def _database_failed(self, exc: Exception) -> None:
        metrics.DATABASE_ERRORS.inc()
        what = "database unavailable" if isinstance(exc, StoreUnavailable) else f"cannot load the policy ({type(exc).__name__})"
        if self._down_since is None or what != self._down_what:
            self._down_since = self._down_since or time.monotonic()
            self._down_what = what
            held = "the subscribers loaded before" if self.loaded else "policy.on_database_error (nothing loaded yet)"
            log.error("%s, deciding from %s: %s", what, held, exc)

    def _database_ok(self) -> None:
        if self._down_since is not None:
            log.warning("database available again after %.0fs", time.monotonic() - self._down_since)
            self._down_since, self._down_what = None, ""
