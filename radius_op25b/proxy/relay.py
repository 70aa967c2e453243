"""The relay pipeline: a datagram from a NAS becomes a request to an upstream, and the upstream's
reply becomes the NAS's answer. Transports are handed in; the wire work is radius_op25b.radius.

Every input failure has one named outcome, counted in op25b_drops{cause}:

    source not a configured client ........ drop  unknown_client
    not a RADIUS packet ................... drop  malformed
    wrong code for the port ............... drop  unexpected_code
    authenticator / MA does not verify .... drop  bad_authenticator
    no MA from a client that requires it .. drop  missing_message_authenticator
    Proxy-State but no MA (limit) ......... drop  proxy_state_without_message_authenticator
    retransmission still in flight ........ drop  duplicate_in_flight
    retransmission already answered ....... resend the cached reply
    Status-Server ......................... answered here, never proxied (RFC 5997)
    no upstream reachable in the budget ... no answer (the NAS retries), requests_abandoned
    upstream reply unmatched / forged ..... drop  upstream_unmatched / upstream_bad_authenticator
    a bug ................................. traceback logged, drop  internal_error
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from radius_op25b import metrics
from radius_op25b.core.clients import ClientTable
from radius_op25b.core.config import ClientConfig, Config
from radius_op25b.errors import MalformedPacket
from radius_op25b.logs import RateLimitedLog
from radius_op25b.proxy.dedup import DuplicateCache, Key, Seen
from radius_op25b.proxy.upstreams import Health, Pool, Router, Upstream
from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_CHALLENGE,
    ACCESS_REJECT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCOUNTING_RESPONSE,
    PROXY_STATE,
    STATUS_SERVER,
    USER_NAME,
    ZERO_AUTHENTICATOR,
    Attributes,
    Packet,
    append_proxy_state,
    get_first,
    new_request_authenticator,
    parse_packet,
    reencrypt_reply_attributes,
    reencrypt_request_attributes,
    sign_access_request,
    sign_accounting_request,
    sign_reply,
    strip_own_proxy_state,
    verify_accounting_request,
    verify_message_authenticator,
    verify_reply,
)

log = logging.getLogger("op25b.relay")

AUTH, ACCT = "auth", "acct"
ACCESS_REPLIES = frozenset((ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE))
UPSTREAM_SOCKETS = 16  # 256 identifiers each: 4,096 requests in flight


class Transport(Protocol):
    def sendto(self, data: bytes, addr: Any = None, /) -> None: ...


class Clock(Protocol):
    """The relay's clock and timers: the asyncio loop in `serve`, a hand-driven clock in the
    in-process tests (tests/test_relay_inprocess.py). `time()` is monotonic seconds."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle: ...


# An Access-Accept rewriter (the OP25B policy): takes the job and the reply attributes on their
# way to the NAS, returns the attributes to send, at once (it never waits for I/O).
AcceptHook = Callable[["Job", Attributes], Attributes]
# Called for each Accounting-Request an upstream acknowledged; the NAS is answered when the
# returned future is done (the record is durable), or at once for None.
AccountingHook = Callable[["Job"], "asyncio.Future[None] | None"]


@dataclass(slots=True)
class Job:
    """One NAS request for as long as we try to get it answered."""

    listener: str
    nas_addr: tuple[str, int]
    key: Key
    client: ClientConfig
    request: Packet
    pool: Pool | None
    deadline: float
    received: float
    tried: list[str] = field(default_factory=list)

    @property
    def username(self) -> str | None:
        raw = get_first(self.request.attributes, USER_NAME)
        return raw.decode("utf-8", "replace") if raw is not None else None


@dataclass(slots=True)
class Pending:
    """One try of a job (or a Status-Server probe, job None) at one upstream."""

    job: Job | None
    upstream: Upstream
    secret: bytes  # the upstream's secret when sent: a reload must not break verification
    authenticator: bytes
    state: bytes
    sent: float
    timer: asyncio.TimerHandle | None = None


class Relay:
    def __init__(self, config: Config, loop: Clock, accept_hook: AcceptHook | None = None) -> None:
        self.loop = loop
        self.accept_hook = accept_hook
        self.accounting_hook: AccountingHook | None = None
        self.router: Router | None = None
        self.apply_config(config)
        self.dedup = DuplicateCache(hold=10.0)
        self.pending: dict[tuple[int, int], Pending] = {}
        self.nas_transports: dict[str, Transport] = {}
        self.upstream_transports: list[Transport] = []
        self._free_ids: list[deque[int]] = []
        self._families: list[int] = []  # IP version of each upstream socket
        self.hot = metrics.Hot()
        self.draining = False
        self._tag = os.urandom(4)  # our Proxy-State: 4 random octets per process + a counter
        self._sequence = 0
        self.limited = RateLimitedLog(log, clock=loop.time)  # a flood must not become a log flood

    # --- configuration -------------------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Swap in a new config; jobs in flight keep the clients and secrets they started with."""
        self.config = config
        self.clients = ClientTable(config.clients)
        self.router = Router(config, self.router.upstreams if self.router else None)
        for upstream in self.router.upstreams.values():
            metrics.UPSTREAM_UP.labels(upstream.name).set(_health_value(upstream.health))

    def add_upstream_transport(self, transport: Transport, family: int = 4) -> int:
        """A socket towards upstreams of one IP version (4 or 6): 256 identifiers of its own."""
        self.upstream_transports.append(transport)
        self._free_ids.append(deque(range(256)))
        self._families.append(family)
        return len(self.upstream_transports) - 1

    # --- from the NAS ----------------------------------------------------------------------------

    def datagram_from_nas(self, listener: str, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._from_nas(listener, data, addr)
        except Exception:  # the process never dies on input
            self.limited.exception("internal_error", "internal error handling a datagram from %s:%s", addr[0], addr[1])
            self._drop("internal_error", addr[0])

    def _from_nas(self, listener: str, data: bytes, addr: tuple[str, int]) -> None:
        if self.draining:
            return self._drop("draining", addr[0])
        client = self.clients.lookup(addr[0])
        if client is None:
            return self._drop("unknown_client", addr[0])
        try:
            request = parse_packet(data)
        except MalformedPacket as exc:
            return self._drop("malformed", addr[0], str(exc))
        secret = client.secret.reveal()
        if request.code == STATUS_SERVER:
            return self._answer_status_server(listener, client, data, request, addr)
        if request.code != (ACCESS_REQUEST if listener == AUTH else ACCOUNTING_REQUEST):
            return self._drop("unexpected_code", addr[0], f"code {request.code} on the {listener} port")
        if request.code == ACCESS_REQUEST:
            has_ma = verify_message_authenticator(data, secret)
            if has_ma is False:
                return self._drop("bad_authenticator", addr[0])
            if has_ma is None:
                # BlastRADIUS (CVE-2024-3596): per client, require Message-Authenticator ...
                if client.require_message_authenticator:
                    return self._drop("missing_message_authenticator", addr[0])
                # ... or at least refuse Proxy-State without one: NASes never send Proxy-State.
                if client.limit_proxy_state and get_first(request.attributes, PROXY_STATE) is not None:
                    return self._drop("proxy_state_without_message_authenticator", addr[0])
        # RFC 2866 §3: the Request Authenticator of an Accounting-Request is an MD5 over the
        # packet and the secret; one that does not verify is silently discarded.
        elif not verify_accounting_request(data, secret):
            return self._drop("bad_authenticator", addr[0])

        now = self.loop.time()
        key = (addr[0], addr[1], request.identifier, listener)
        seen, cached = self.dedup.check(key, request.authenticator, now)
        if seen is Seen.IN_FLIGHT:
            return self._drop("duplicate_in_flight", addr[0])
        if seen is Seen.ANSWERED:
            self.hot.duplicate_resent.inc()
            self.nas_transports[listener].sendto(cached, addr)  # type: ignore[arg-type]
            return None
        self.hot.request(client.name, listener)
        job = Job(listener, addr, key, client, request, None, 0.0, now)
        assert self.router is not None
        job.pool = self.router.pool_for(job.username)
        job.deadline = now + (self.config.auth_budget if listener == AUTH else self.config.acct_budget)
        self._send(job)
        return None

    def _answer_status_server(
        self, listener: str, client: ClientConfig, data: bytes, request: Packet, addr: tuple[str, int]
    ) -> None:
        secret = client.secret.reveal()
        # RFC 5997 §3: "Status-Server packets MUST contain a Message-Authenticator"; and they
        # are answered by the server that receives them, never proxied.
        if verify_message_authenticator(data, secret) is not True:
            return self._drop("bad_authenticator", addr[0], "Status-Server without a valid Message-Authenticator")
        code = ACCESS_ACCEPT if listener == AUTH else ACCOUNTING_RESPONSE
        reply = Packet(code, request.identifier, request.authenticator, ())
        wire = sign_reply(reply, request.authenticator, secret, True, request_code=STATUS_SERVER)
        self.nas_transports[listener].sendto(wire, addr)
        self.hot.reply(client.name, "status")

    # --- to the upstream -------------------------------------------------------------------------

    def _proxy_state(self) -> bytes:
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        return self._tag + struct.pack("!I", self._sequence)

    def _allocate(self, upstream: Upstream) -> tuple[int, int] | None:
        """A free (socket, identifier) on a socket of the upstream's IP version."""
        family = upstream.family
        for index, free in enumerate(self._free_ids):
            if free and self._families[index] == family:
                return index, free.popleft()
        return None

    def _release(self, index: int, identifier: int) -> None:
        # RFC 5080 §2.2.2: clients SHOULD reuse identifiers least-recently-used first.
        self._free_ids[index].append(identifier)

    def _send(self, job: Job) -> None:
        upstream = job.pool.choose(job.tried) if job.pool else None
        if upstream is None and job.pool and job.tried:
            job.tried.clear()  # every server was tried once: go round again while the budget lasts
            upstream = job.pool.choose()
        slot = self._allocate(upstream) if upstream is not None else None
        if upstream is None or slot is None:
            return self._give_up(job, "no_upstream")
        index, identifier = slot
        secret = upstream.config.secret.reveal()
        state = self._proxy_state()
        request = job.request
        try:
            if job.listener == AUTH:
                authenticator = new_request_authenticator()
                attrs = reencrypt_request_attributes(
                    request.attributes, job.client.secret.reveal(), request.authenticator, secret, authenticator
                )
                # RFC 2865 §5.33: a proxy appends its own Proxy-State after the NAS's.
                wire = sign_access_request(
                    Packet(ACCESS_REQUEST, identifier, authenticator, append_proxy_state(attrs, state)), secret
                )
                port = upstream.config.auth_port
            else:
                wire = sign_accounting_request(
                    Packet(ACCOUNTING_REQUEST, identifier, ZERO_AUTHENTICATOR, append_proxy_state(request.attributes, state)),
                    secret,
                )
                authenticator = wire[4:20]
                port = upstream.config.acct_port
        except (MalformedPacket, ValueError) as exc:
            self._release(index, identifier)
            self.dedup.forget(job.key, request.authenticator)
            return self._drop("malformed", job.nas_addr[0], f"cannot relay: {exc}")
        now = self.loop.time()
        pending = Pending(job, upstream, secret, authenticator, state, now)
        pending.timer = self.loop.call_later(upstream.config.response_window, self._timeout, (index, identifier))
        self.pending[(index, identifier)] = pending
        upstream.outstanding += 1
        self.upstream_transports[index].sendto(wire, (upstream.config.address, port))
        upstream.sent_counter(job.listener).inc()
        return None

    def _timeout(self, slot: tuple[int, int], why: str | None = None) -> None:
        """No usable reply to `slot`: by its timer, or at once for a reply that could not be used."""
        pending = self.pending.pop(slot, None)
        if pending is None:
            return
        self._release(*slot)
        upstream = pending.upstream
        upstream.outstanding -= 1
        now = self.loop.time()
        if upstream.on_timeout(now):
            self._health_changed(upstream, why or f"no reply within {upstream.config.response_window:.1f}s")
        metrics.UPSTREAM_TIMEOUTS.labels(upstream.name).inc()
        job = pending.job
        if job is None:
            return
        job.tried.append(upstream.name)
        if now + 0.05 < job.deadline:
            self._send(job)
        else:
            self._give_up(job, "budget")

    def _give_up(self, job: Job, why: str) -> None:
        self.dedup.forget(job.key, job.request.authenticator)
        metrics.GIVE_UPS.labels(job.listener).inc()
        if why == "no_upstream":
            self._drop("no_upstream", job.nas_addr[0])
        else:
            self.limited.warning(
                "abandoned",
                "no upstream answered %s request %d from %s within %.0fs (tried %s)",
                job.listener,
                job.request.identifier,
                job.client.name,
                job.deadline - job.received,
                ", ".join(job.tried),
            )

    # --- from the upstream -------------------------------------------------------------------

    def datagram_from_upstream(self, index: int, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._from_upstream(index, data, addr)
        except Exception:
            self.limited.exception("internal_error_upstream", "internal error handling a reply from %s:%s", addr[0], addr[1])
            self._drop("internal_error", addr[0])

    def _from_upstream(self, index: int, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 20:
            return self._drop("upstream_malformed", addr[0])
        slot = (index, data[1])
        pending = self.pending.get(slot)
        if pending is None:
            return self._drop("upstream_unmatched", addr[0], "late or unknown reply")
        upstream = pending.upstream
        expected_port = (
            upstream.config.acct_port if pending.job is not None and pending.job.listener == ACCT else upstream.config.auth_port
        )
        if addr[0] != upstream.config.address or addr[1] != expected_port:
            return self._drop("upstream_unmatched", addr[0], "reply from an address we did not ask")
        try:
            # RFC 2865 §3: a Response Authenticator that does not verify is silently discarded;
            # BlastRADIUS: a Message-Authenticator, when present, must verify too.
            if not verify_reply(data, pending.authenticator, pending.secret):
                return self._drop("upstream_bad_authenticator", addr[0])
            if (
                upstream.config.require_message_authenticator
                and verify_message_authenticator(data, pending.secret, pending.authenticator) is None
            ):
                return self._drop("upstream_missing_message_authenticator", addr[0])
            reply = parse_packet(data)
        except MalformedPacket as exc:
            return self._drop("upstream_malformed", addr[0], str(exc))
        job = pending.job
        listener = job.listener if job is not None else AUTH
        allowed = ACCESS_REPLIES if listener == AUTH else (ACCOUNTING_RESPONSE,)
        if reply.code not in allowed:
            return self._drop("upstream_unexpected_code", addr[0], f"code {reply.code}")

        attrs: Attributes = ()
        if job is not None:
            attrs, _ = strip_own_proxy_state(reply.attributes, pending.state)
            if listener == AUTH:
                try:
                    attrs = reencrypt_reply_attributes(
                        attrs, pending.secret, pending.authenticator, job.client.secret.reveal(), job.request.authenticator
                    )
                except (MalformedPacket, ValueError) as exc:
                    # A Tunnel-Password or MPPE key that does not decrypt: treat the reply as
                    # none from this upstream, so health and fail-over act and the next
                    # upstream answers within the budget.
                    self._drop("upstream_malformed", addr[0], f"reply from {upstream.name} cannot be re-encrypted: {exc}")
                    if pending.timer is not None:
                        pending.timer.cancel()
                    self._timeout(slot, "a reply that could not be re-encrypted")
                    return None

        del self.pending[slot]
        if pending.timer is not None:
            pending.timer.cancel()
        self._release(*slot)
        upstream.outstanding -= 1
        now = self.loop.time()
        upstream.rtt.observe(now - pending.sent)
        if upstream.on_reply(now):
            self._health_changed(upstream, "answered" if job is not None else "answered Status-Server")
        if job is None:
            return None
        if listener == ACCT and self.accounting_hook is not None:
            try:
                durable = self.accounting_hook(job)
            except Exception:
                # Recording must never fail the relay: the upstream has recorded it already.
                self.limited.exception("record_failed", "could not record accounting from %s", job.client.name)
                durable = None
            if durable is not None:
                durable.add_done_callback(lambda _: self._finish(job, reply.code, attrs))
                return None
        if reply.code == ACCESS_ACCEPT and self.accept_hook is not None:
            try:
                rewritten = self.accept_hook(job, attrs)
            except Exception:
                # Never turn an Accept into a Reject or into silence because of our own policy step.
                self.limited.exception("policy_failed", "policy step failed for %s; relaying the Accept unchanged", job.username)
                rewritten = attrs
            attrs = rewritten
        self._finish(job, reply.code, attrs)
        return None

    def _finish(self, job: Job, code: int, attrs: Attributes) -> None:
        request = job.request
        try:
            # BlastRADIUS: Message-Authenticator first in every Accept, Reject and Challenge.
            wire = sign_reply(
                Packet(code, request.identifier, request.authenticator, attrs),
                request.authenticator,
                job.client.secret.reveal(),
                code in ACCESS_REPLIES,
            )
        except (MalformedPacket, ValueError) as exc:
            self.dedup.forget(job.key, request.authenticator)
            return self._drop("internal_error", job.nas_addr[0], f"cannot build the reply: {exc}")
        self.nas_transports[job.listener].sendto(wire, job.nas_addr)
        self.dedup.answered(job.key, request.authenticator, wire, self.loop.time())
        self.hot.reply(job.client.name, job.listener)
        return None

    # --- health probes and housekeeping ------------------------------------------------------

    def housekeeping(self) -> None:
        """Called a few times a second: Status-Server probes, health ticks, cache purge."""
        now = self.loop.time()
        assert self.router is not None
        for upstream in self.router.upstreams.values():
            if upstream.tick(now):
                self._health_changed(upstream, f"no reply for {upstream.zombie_period:.0f}s")
            if upstream.probe_due(now):
                self._probe(upstream)
        self.dedup.purge(now)
        metrics.IN_FLIGHT.set(len(self.pending))

    def _probe(self, upstream: Upstream) -> None:
        slot = self._allocate(upstream)
        if slot is None:
            return
        secret = upstream.config.secret.reveal()
        authenticator = new_request_authenticator()
        # RFC 5997 §3: a new Identifier for every probe; never retransmitted.
        wire = sign_access_request(Packet(STATUS_SERVER, slot[1], authenticator, ()), secret)
        pending = Pending(None, upstream, secret, authenticator, b"", self.loop.time())
        pending.timer = self.loop.call_later(upstream.config.response_window, self._timeout, slot)
        self.pending[slot] = pending
        upstream.outstanding += 1
        self.upstream_transports[slot[0]].sendto(wire, (upstream.config.address, upstream.config.auth_port))

    def _health_changed(self, upstream: Upstream, why: str) -> None:
        metrics.UPSTREAM_UP.labels(upstream.name).set(_health_value(upstream.health))
        log.warning("upstream %s is now %s (%s)", upstream.name, upstream.health.value, why)

    def _drop(self, cause: str, source: str, detail: str = "") -> None:
        self.hot.drops[cause].inc()
        self.limited.warning(cause, "dropped a datagram from %s: %s%s", source, cause, f": {detail}" if detail else "")


def _health_value(health: Health) -> float:
    return {Health.ALIVE: 1.0, Health.ZOMBIE: 0.5, Health.DEAD: 0.0}[health]
