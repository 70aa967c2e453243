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
import ipaddress
import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select as sql_select

from radius_op25b.radius import named
from radius_op25b import metrics, store
from radius_op25b.store import db
from radius_op25b.core import decision as d
from radius_op25b.core import profiles
from radius_op25b.core.config import ClientConfig, Config
from radius_op25b.errors import StoreUnavailable
from radius_op25b.store.models import AuditLog
from radius_op25b.radius import CLASS, FRAMED_IP_ADDRESS, Attributes, get_first

log = logging.getLogger("op25b.policy")

NOTIFY_CHANNEL = store.NOTIFY_CHANNEL
RETRY_AFTER = 1.0  # seconds between attempts to reach the database again
POLL_INTERVAL = 0.5  # SQLite: seconds between reads of the audit log
HEARTBEAT = 1.0  # PostgreSQL: seconds of silence on the LISTEN connection before a SELECT 1
FIRST_LOAD_WAIT = 120.0  # seconds `start` waits for the first load (a dead database fails in 2 s)
# Changes that can touch any subscriber's decision: everything is loaded again.
GLOBAL_ACTIONS = ("realm.", "mobile-mta.", "subscriber.import")
RELOAD_ALL = ("*", "*")
Change = tuple[str, str]  # (audit action, audit target)


class Splice:
    """What an Accept of one profile and one decision gets: our attributes and the rules for
    removing the upstream's. They depend on few values, so they are built once and reused."""

    def __init__(self, config: Config, ctx: profiles.FilterContext) -> None:
        self.config, self.ctx = config, ctx
        self._memo: dict[tuple[Any, ...], tuple[Attributes, named.OwnedRules]] = {}

    def parts(self, profile: str, decision: d.Decision) -> tuple[Attributes, named.OwnedRules]:
        realm = decision.realm if decision.msa_permits else None  # only partner names use it
        key = (profile, decision.filter_class, decision.msa_permits, decision.partner_filter, realm)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) > 4096:
                self._memo.clear()
            ours = named.encode(profiles.attributes_for(profile, decision, self.ctx, self.config.profiles))
            owned = named.owned_rules(profiles.managed_attributes(profile, self.config.profiles))
            found = self._memo[key] = (ours, owned)
        return found


def framed_ip(attributes: Attributes) -> d.IPAddress | None:
    raw = get_first(attributes, FRAMED_IP_ADDRESS)
    return ipaddress.IPv4Address(raw) if raw is not None and len(raw) == 4 else None


def apply_decision(decision: d.Decision, client: ClientConfig, attributes: Attributes, splice: Splice) -> Attributes:
    """The Accept's attributes with the profile's filter spliced in and our Class tag added.

    `replace` (default): the profile's attributes from the upstream are removed and ours added.
    `keep-upstream`: if the upstream set any of them, its filter stands and we add none.
    The upstream's own Class attributes are never touched; ours is one more Class.
    """
    ours, owned = splice.parts(client.profile, decision)
    stripped, upstream_had_filter = named.strip_owned(attributes, owned)
    if client.managed_attributes == "keep-upstream" and upstream_had_filter:
        stripped, ours = tuple(attributes), ()
    return stripped + ours + _CLASS_TAGS[decision.filter_class]


_CLASS_TAGS = {cls: ((CLASS, f"op25b:{cls}".encode()),) for cls in d.FilterClass}


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
        key = store.username_key(job.username or "")
        request = d.Request(key, framed_ip(attributes), client.name, client.enforce)
        if self.loaded:
            subscriber = self.special.get(key)
            realm_name = d.realm_name(subscriber, key)
            realm = self.realms.get(realm_name) if realm_name else None
            decision = d.decide(request, subscriber, realm, self.config.policy, self.now())
        else:
            decision = d.decide_without_database(request, self.config.policy)
        counter = self._decisions.get((decision.filter_class, decision.reason_kind))
        if counter is None:
            counter = self._decisions[(decision.filter_class, decision.reason_kind)] = metrics.DECISIONS.labels(str(decision.filter_class), decision.reason_kind)
        counter.inc()
        return apply_decision(decision, client, attributes, self.splice)

    # --- the watcher thread ----------------------------------------------------------------------

    def _watch(self) -> None:
        """Follow the database's changes; after any failure, start again with a full load
        (changes made while we were away were not seen)."""
        changes = self._postgres_changes if self.engine.dialect.name == "postgresql" else self._audit_log_changes
        while not self._stop.is_set():
            try:
                if not self.loaded:  # `serve` may have started before the database answered
                    db.require_current_schema(self.engine)
                for batch in changes():  # the first batch is RELOAD_ALL, once we are listening
                    self._apply(batch)
                    if self.on_change is not None:
                        self.on_change()
                    self._first_attempt.set()
                    self._database_ok()
            except Exception as exc:
                self._database_failed(exc)
                self._first_attempt.set()
                self._stop.wait(RETRY_AFTER)

    def _apply(self, batch: list[Change]) -> None:
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
            time.monotonic() - started, len(special), len(realms), len(blocks),
        )

    def _audit_log_changes(self) -> Iterator[list[Change]]:
        """SQLite: each new audit row names what changed. The position is taken before the
        full load, so that no change falls between the two."""
        with db.reading(self.engine) as session:
            last = session.scalar(sql_select(func.max(AuditLog.id))) or 0
        yield [RELOAD_ALL]
        while not self._stop.wait(POLL_INTERVAL):
            with db.reading(self.engine) as session:
                rows = session.execute(
                    sql_select(AuditLog.id, AuditLog.action, AuditLog.target).where(AuditLog.id > last).order_by(AuditLog.id)
                ).all()
            if rows:
                last = rows[-1].id
                yield [(row.action, row.target) for row in rows]

    def _postgres_changes(self) -> Iterator[list[Change]]:
        """PostgreSQL: LISTEN on a dedicated connection, then load everything (a change
        committed after LISTEN is notified; one before is in the load)."""
        with db.unavailable_as_store_error(self.engine):
            raw = self.engine.raw_connection()
            try:
                connection: Any = raw.driver_connection
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
                yield [RELOAD_ALL]
                while not self._stop.is_set():
                    if select.select([connection], [], [], HEARTBEAT) == ([], [], []):
                        with connection.cursor() as cursor:
                            # Notice a dead server within a second. A notification that arrives
                            # meanwhile is read by this query: it is taken below, not left waiting.
                            cursor.execute("SELECT 1")
                    else:
                        connection.poll()
                    batch = []
                    while connection.notifies:
                        action, _, target = connection.notifies.pop(0).payload.partition("\t")
                        batch.append((action, target))
                    if batch:
                        yield batch
            finally:
                try:
                    raw.invalidate()
                except Exception:
                    pass

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
