"""The OP25B step of the relay: each Access-Accept gets the filter attributes of its decision.

Subscribers already seen are decided from a bounded in-memory cache (no database on the event
loop); first-seen ones are looked up in batches on worker threads. Changes made with the CLI
invalidate the cache on every instance: PostgreSQL LISTEN/NOTIFY, or polling on SQLite.
When the database is down, cached subscribers keep their inputs and unknown ones get
`policy.on_database_error` - never a Reject, never a dropped Accept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select as sql_select

from radius_op25b import attrs as named
from radius_op25b import db, metrics, store
from radius_op25b import decision as d
from radius_op25b import profiles
from radius_op25b.config import ClientConfig, Config
from radius_op25b.errors import StoreUnavailable
from radius_op25b.models import AuditLog
from radius_op25b.radius import CLASS, FRAMED_IP_ADDRESS, Attributes, get_first

log = logging.getLogger("op25b.policy")

NOTIFY_CHANNEL = store.NOTIFY_CHANNEL
BATCH = 500  # usernames per lookup query
LOOKUP_THREADS = 2  # database lookups in flight at once (bounded concurrency)
RETRY_AFTER = 2.0  # seconds the database is left alone after a failure
SECOND_BATCH = 64  # queued first-seen subscribers that justify a second lookup in parallel
# Changes that can touch any subscriber's decision: the whole cache goes.
GLOBAL_ACTIONS = ("realm.", "mobile-mta.", "subscriber.import")


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    subscriber: d.Subscriber | None
    realm: d.Realm | None


class PolicyCache:
    """Least-recently-used map of username key -> PolicyInputs, bounded in entries."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, PolicyInputs] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> PolicyInputs | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, inputs: PolicyInputs) -> None:
        self._entries[key] = inputs
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


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
    """Decides and rewrites Accepts for the relay; owns the cache and the database lookups."""

    def __init__(self, config: Config, engine: Engine, loop: asyncio.AbstractEventLoop, cache_entries: int = 250_000) -> None:
        self.config = config
        self.engine = engine
        # Lookups get their own pool without the per-checkout ping: it would double their cost.
        self.lookup_engine = db.make_engine(engine.url.render_as_string(hide_password=False), pre_ping=False)
        self.loop = loop
        self.cache = PolicyCache(cache_entries)
        self.ctx = profiles.FilterContext(config.filters, ())
        self._decisions: dict[tuple[str, str], Any] = {}
        self.batches = self.looked_up = 0
        self.prefetching = False
        self.realms: dict[str, d.Realm] = {}
        self._hit, self._miss = metrics.CACHE.labels("hit"), metrics.CACHE.labels("miss")
        self._executor = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="op25b-lookup")
        self._waiting: dict[str, list[asyncio.Future[PolicyInputs | None]]] = {}
        self._queue: list[str] = []
        self._batches_in_flight = 0
        self._down_until = 0.0
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._load_mta_blocks()
        except StoreUnavailable as exc:
            self._database_failed(exc)
        target = self._listen_postgres if self.engine.dialect.name == "postgresql" else self._poll_changes
        self._watcher = threading.Thread(target=target, name="op25b-invalidate", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self.lookup_engine.dispose()
        if self.batches:
            log.info("looked up %d subscriber(s) in %d batch(es)", self.looked_up, self.batches)
        self._stop.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ctx(self) -> profiles.FilterContext:
        return self._ctx

    @ctx.setter
    def ctx(self, value: profiles.FilterContext) -> None:
        self._ctx = value
        self.splice = Splice(self.config, value)  # names or blocks changed: rebuild the memo

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.ctx = profiles.FilterContext(config.filters, self.ctx.mobile_mta_blocks)

    def _load_mta_blocks(self) -> None:
        """The small, shared inputs: mobile MTA blocks and every realm with its permits."""
        with db.reading(self.engine) as session:
            blocks = store.mobile_mta_networks(session)
            self.realms = store.realm_views(session)
        self.ctx = profiles.FilterContext(self.config.filters, blocks)

    # --- the relay's hook ----------------------------------------------------------------------

    def rewrite_accept(self, job: Any, attributes: Attributes) -> Attributes | asyncio.Future[Attributes]:
        username = job.username or ""
        key = store.username_key(username)
        inputs = self.cache.get(key)
        if not self.prefetching:  # with prefetching, the request was counted when it arrived
            (self._hit if inputs is not None else self._miss).inc()
        if inputs is not None:
            return self._rewrite(job, attributes, inputs)
        if time.monotonic() < self._down_until:
            return self._rewrite(job, attributes, None)
        result: asyncio.Future[Attributes] = self.loop.create_future()

        def looked_up(lookup: asyncio.Future[PolicyInputs | None]) -> None:
            try:
                result.set_result(self._rewrite(job, attributes, lookup.result()))
            except Exception as exc:  # the relay then sends the Accept unchanged
                result.set_exception(exc)

        self._lookup(key).add_done_callback(looked_up)
        return result

    def prefetch(self, username: str) -> None:
        """An Access-Request arrived: start a first-seen subscriber's lookup now, so that it
        overlaps the upstream's round trip instead of following it."""
        self.prefetching = True
        key = store.username_key(username)
        if self.cache.get(key) is not None:
            self._hit.inc()
            return
        self._miss.inc()
        if key not in self._waiting and time.monotonic() >= self._down_until:
            self._lookup(key)

    def _rewrite(self, job: Any, attributes: Attributes, inputs: PolicyInputs | None) -> Attributes:
        client: ClientConfig = job.client
        request = d.Request(job.username or "", framed_ip(attributes), client.name, client.enforce)
        if inputs is None:
            decision = d.decide_without_database(request, self.config.policy)
        else:
            decision = d.decide(request, inputs.subscriber, inputs.realm, self.config.policy, self.now())
        counter = self._decisions.get((decision.filter_class, decision.reason_kind))
        if counter is None:
            counter = self._decisions[(decision.filter_class, decision.reason_kind)] = metrics.DECISIONS.labels(str(decision.filter_class), decision.reason_kind)
        counter.inc()
        return apply_decision(decision, client, attributes, self.splice)

    # --- batched lookups off the event loop -----------------------------------------------------

    def _lookup(self, key: str) -> asyncio.Future[PolicyInputs | None]:
        future: asyncio.Future[PolicyInputs | None] = self.loop.create_future()
        waiters = self._waiting.get(key)
        if waiters is not None:
            waiters.append(future)  # the same subscriber is already being looked up
            return future
        self._waiting[key] = [future]
        self._queue.append(key)
        self._flush()
        return future

    def _flush(self) -> None:
        """Start a lookup when the database is idle (lowest latency); while one is running, let
        first-seen subscribers pile up, so that under a login storm one query serves many. A
        second lookup runs alongside only for a large pile."""
        while self._queue and (
            self._batches_in_flight == 0
            or (self._batches_in_flight < LOOKUP_THREADS and len(self._queue) >= SECOND_BATCH)
        ):
            keys, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            self._batches_in_flight += 1
            self.batches += 1
            self.looked_up += len(keys)
            lookup = self.loop.run_in_executor(self._executor, self._fetch, keys)
            lookup.add_done_callback(lambda f, keys=keys: self._resolve(keys, f))

    def _fetch(self, keys: list[str]) -> dict[str, tuple[d.Subscriber | None, d.Realm | None]]:
        with db.reading(self.lookup_engine) as session:
            subscribers = store.subscriber_views_many(session, keys, self.now())
        realms = self.realms
        found: dict[str, tuple[d.Subscriber | None, d.Realm | None]] = {}
        for key in keys:
            subscriber = subscribers.get(key)
            realm_name = (subscriber.realm if subscriber is not None else None) or d.realm_of(key)
            found[key] = (subscriber, realms.get(realm_name) if realm_name else None)
        return found

    def _resolve(self, keys: list[str], lookup: asyncio.Future[Any]) -> None:
        self._batches_in_flight -= 1
        try:
            found = lookup.result()
        except StoreUnavailable as exc:
            self._database_failed(exc)
            found = None
        except Exception:
            log.exception("policy lookup failed")
            metrics.DATABASE_ERRORS.inc()
            found = None
        if found is not None:
            self._database_ok()
        for key in keys:
            inputs = None
            if found is not None:
                inputs = PolicyInputs(*found[key])
                self.cache.put(key, inputs)
            for waiter in self._waiting.pop(key, []):
                if not waiter.done():
                    waiter.set_result(inputs)
        self._flush()

    def _database_failed(self, exc: Exception) -> None:
        metrics.DATABASE_ERRORS.inc()
        self._down_until = time.monotonic() + RETRY_AFTER
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("database unavailable, deciding from the cache and policy.on_database_error: %s", exc)

    def _database_ok(self) -> None:
        if self._down_since is not None:
            log.warning("database available again after %.0fs", time.monotonic() - self._down_since)
            self._down_since = None

    # --- invalidation ------------------------------------------------------------------------------

    def invalidate(self, action: str, target: str) -> None:
        if action.startswith(GLOBAL_ACTIONS) or action == "*":
            self.cache.clear()
            if action.startswith(("mobile-mta.", "realm.")) or action == "*":
                self.loop.run_in_executor(self._executor, self._reload_mta_blocks)
        else:
            self.cache.invalidate(target)

    def _reload_mta_blocks(self) -> None:
        try:
            self._load_mta_blocks()
        except StoreUnavailable as exc:
            log.error("cannot reload realms and mobile MTA blocks: %s", exc)
            return
        self.loop.call_soon_threadsafe(self.cache.clear)  # entries made with the old realms

    def _from_thread(self, action: str, target: str) -> None:
        self.loop.call_soon_threadsafe(self.invalidate, action, target)

    def _poll_changes(self) -> None:
        """SQLite: read new audit rows twice a second; each names what changed."""
        last: int | None = None
        while not self._stop.wait(0.5):
            try:
                with db.transaction(self.engine) as session:
                    if last is None:
                        last = session.scalar(sql_select(AuditLog.id).order_by(AuditLog.id.desc()).limit(1)) or 0
                        continue
                    rows = session.execute(
                        sql_select(AuditLog.id, AuditLog.action, AuditLog.target).where(AuditLog.id > last).order_by(AuditLog.id)
                    ).all()
                for row_id, action, target in rows:
                    self._from_thread(action, target)
                    last = row_id
            except StoreUnavailable:
                continue

    def _listen_postgres(self) -> None:
        """PostgreSQL: LISTEN on a dedicated connection; after a reconnect, clear everything
        (notifications sent while we were away are lost)."""
        first = True
        while not self._stop.is_set():
            try:
                raw = self.engine.raw_connection()
            except Exception:
                self._stop.wait(1.0)
                continue
            try:
                connection = raw.driver_connection
                connection.autocommit = True  # type: ignore[union-attr]
                with connection.cursor() as cursor:  # type: ignore[union-attr]
                    cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
                if not first:
                    self._from_thread("*", "*")
                    log.info("listening for policy changes again")
                first = False
                while not self._stop.is_set():
                    if select.select([connection], [], [], 1.0) == ([], [], []):
                        with connection.cursor() as cursor:  # type: ignore[union-attr]
                            cursor.execute("SELECT 1")  # notice a dead server within a second
                        continue
                    connection.poll()  # type: ignore[union-attr]
                    while connection.notifies:  # type: ignore[union-attr]
                        note = connection.notifies.pop(0)  # type: ignore[union-attr]
                        action, _, target = note.payload.partition("\t")
                        self._from_thread(action, target)
            except Exception as exc:
                log.debug("policy listener: %s", exc)
                self._stop.wait(1.0)
            finally:
                try:
                    raw.invalidate()
                except Exception:
                    pass
