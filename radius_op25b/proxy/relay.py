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

RadSec (proxy/radsec.py) hands whole packets of a TLS connection to `packet_from_stream`, with
the client already matched by address and certificate; the rows above apply to them too, except
that a RADIUS/1.1 connection (RFC 9765) has no authenticators or Message-Authenticator to check.
Towards an upstream, a TLS connection is one more "socket" of 256 identifiers that only its
upstream uses; what is sent over it is never sent over it again (RFC 6613 §2.6.1).
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
from radius_op25b.radius.stream import (
    V10,
    V11,
    encode_v11,
    hide_request_attributes,
    plain_reply_attributes,
    reveal_request_attributes,
    token_of,
    v11_authenticator,
)

log = logging.getLogger("op25b.relay")

AUTH, ACCT = "auth", "acct"
ACCESS_REPLIES = frozenset((ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE))
UPSTREAM_SOCKETS = 16  # 256 identifiers each: 4,096 requests in flight
V11_OUTSTANDING = 4096  # per RADIUS/1.1 connection: its Token is not limited to 256 (RFC 9765, the Token field)


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
    reply_to: Transport | None = None  # a RadSec connection; None: the UDP listener
    version: str = V10  # the NAS's: RADIUS/1.1 only over a RadSec connection that chose it
    sent_on: set[int] = field(default_factory=set)  # TLS connections that carried it

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
        self._owners: list[str | None] = []  # a TLS connection's upstream; None: a shared UDP socket
        self._versions: list[str] = []  # RADIUS/1.0 or 1.1 per upstream socket
        self._links: dict[str, int] = {}  # upstream name -> index of its open TLS connection
        self.hot = metrics.Hot()
        self.draining = False
        self._tag = os.urandom(4)  # our Proxy-State: 4 random octets per process + a counter
        self._sequence = 0
        self.limited = RateLimitedLog(log, clock=loop.time)  # a flood must not become a log flood

    # --- configuration -------------------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Swap in a new config; jobs in flight keep the clients and secrets they started with."""
        self.config = config
        # A RadSec client is matched on the RadSec listener only (proxy/radsec.py), never over UDP.
        self.clients = ClientTable(c for c in config.clients if c.transport == "udp")
        self.router = Router(config, self.router.upstreams if self.router else None)
        for upstream in self.router.upstreams.values():
            metrics.UPSTREAM_UP.labels(upstream.name).set(_health_value(upstream.health))

    def add_upstream_transport(self, transport: Transport, family: int = 4, owner: str | None = None, version: str = V10) -> int:
        """A socket towards upstreams of one IP version (4 or 6): 256 identifiers of its own.

        With `owner`, a TLS connection that only that upstream uses, until `upstream_link_lost`.
        RFC 6613 §2.6.5 (RADIUS/1.0): at most 256 requests outstanding on one connection; over
        RADIUS/1.1 the Token tells them apart, so V11_OUTSTANDING.
        """
        self.upstream_transports.append(transport)
        self._free_ids.append(deque(range(V11_OUTSTANDING if version == V11 else 256)))
        self._families.append(family)
        self._owners.append(owner)
        self._versions.append(version)
        index = len(self.upstream_transports) - 1
        if owner is not None:
            self._links[owner] = index
        return index

    def upstream_link_lost(self, index: int) -> None:
        """A TLS connection to an upstream closed: what waited on it is tried again elsewhere
        (or over the next connection) at once: a new connection may carry them (RFC 6613 §2.6.1)."""
        owner = self._owners[index]
        if owner is not None and self._links.get(owner) == index:
            del self._links[owner]
        self._free_ids[index] = deque()  # never used again; the list keeps its place
        for slot in [s for s in self.pending if s[0] == index]:
            pending = self.pending[slot]
            if pending.timer is not None:
                pending.timer.cancel()
            self._timeout(slot, "its connection closed")
        self._free_ids[index] = deque()

    def upstream_unreachable(self, upstream_name: str, why: str) -> None:
        """A RadSec upstream cannot be connected to, or its connection closed: it counts as a
        timeout for its health (zombie, then dead), and a Status-Server over the next connection
        revives it."""
        upstream = self.router.upstreams.get(upstream_name) if self.router is not None else None
        if upstream is not None and upstream.on_timeout(self.loop.time()):
            self._health_changed(upstream, why)

    def upstream_version(self, upstream_name: str) -> str | None:
        """RADIUS/1.0 or 1.1 on the upstream's open TLS connection; None when none is open."""
        index = self._links.get(upstream_name)
        return self._versions[index] if index is not None else None

    # --- from the NAS ----------------------------------------------------------------------------

    def datagram_from_nas(self, listener: str, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._from_nas(listener, data, addr)
        except Exception:  # the process never dies on input
            self.limited.exception("internal_error", "internal error handling a datagram from %s:%s", addr[0], addr[1])
            self._drop("internal_error", addr[0])

    def packet_from_stream(
        self, connection: Transport, client: ClientConfig, version: str, data: bytes, addr: tuple[str, int]
    ) -> None:
        """One whole packet from a RadSec connection whose client is already known."""
        try:
            # One connection carries both (RFC 6614 §2.1): the code says which it is.
            listener = ACCT if len(data) > 0 and data[0] == ACCOUNTING_REQUEST else AUTH
            self._from_nas(listener, data, addr, client, connection, version)
        except Exception:
            self.limited.exception("internal_error", "internal error handling a packet from %s:%s", addr[0], addr[1])
            self._drop("internal_error", addr[0])

    def _from_nas(
        self,
        listener: str,
        data: bytes,
        addr: tuple[str, int],
        client: ClientConfig | None = None,
        reply_to: Transport | None = None,
        version: str = V10,
    ) -> None:
        if self.draining:
            return self._drop("draining", addr[0])
        if client is None:
            client = self.clients.lookup(addr[0])
        if client is None:
            return self._drop("unknown_client", addr[0])
        try:
            request = parse_packet(data)
        except MalformedPacket as exc:
            return self._drop("malformed", addr[0], str(exc))
        secret = client.secret.reveal()
        if request.code == STATUS_SERVER:
            return self._answer_status_server(listener, client, data, request, addr, reply_to, version)
        if request.code != (ACCESS_REQUEST if listener == AUTH else ACCOUNTING_REQUEST):
            return self._drop("unexpected_code", addr[0], f"code {request.code} on the {listener} port")
        if version == V11:
            pass  # RFC 9765 (attribute handling): no authenticator and no Message-Authenticator; TLS vouches for it
        elif request.code == ACCESS_REQUEST:
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
        # Over TLS the connection is the "socket" (its source port is its own), and a 1.1
        # request is told apart by its Token (RFC 9765, the Token field) instead of the Identifier.
        identifier = int.from_bytes(token_of(request)) if version == V11 else request.identifier
        key = (addr[0], addr[1], identifier, listener if reply_to is None else f"tls-{listener}")
        seen, cached = self.dedup.check(key, request.authenticator, now)
        if seen is Seen.IN_FLIGHT:
            return self._drop("duplicate_in_flight", addr[0])
        if seen is Seen.ANSWERED:
            self.hot.duplicate_resent.inc()
            (reply_to or self.nas_transports[listener]).sendto(cached, addr)  # type: ignore[arg-type]
            return None
        self.hot.request(client.name, listener)
        job = Job(listener, addr, key, client, request, None, 0.0, now, reply_to=reply_to, version=version)
        assert self.router is not None
        job.pool = self.router.pool_for(job.username)
        job.deadline = now + (self.config.auth_budget if listener == AUTH else self.config.acct_budget)
        self._send(job)
        return None

    def _answer_status_server(
        self,
        listener: str,
        client: ClientConfig,
        data: bytes,
        request: Packet,
        addr: tuple[str, int],
        reply_to: Transport | None = None,
        version: str = V10,
    ) -> None:
        secret = client.secret.reveal()
        code = ACCESS_ACCEPT if listener == AUTH else ACCOUNTING_RESPONSE
        if version == V11:
            wire = encode_v11(code, token_of(request), ())  # RFC 9765 (the Token field): the reply copies the Token
        else:
            # RFC 5997 §3: all Status-Server packets must include a Message-Authenticator; and they
            # are answered by the server that receives them, never proxied (§4.4).
            if verify_message_authenticator(data, secret) is not True:
                return self._drop("bad_authenticator", addr[0], "Status-Server without a valid Message-Authenticator")
            reply = Packet(code, request.identifier, request.authenticator, ())
            wire = sign_reply(reply, request.authenticator, secret, True, request_code=STATUS_SERVER)
        (reply_to or self.nas_transports[listener]).sendto(wire, addr)
        self.hot.reply(client.name, "status")

    # --- to the upstream -------------------------------------------------------------------------

    def _proxy_state(self) -> bytes:
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        return self._tag + struct.pack("!I", self._sequence)

    def _allocate(self, upstream: Upstream, job: Job | None = None) -> tuple[int, int] | None:
        """A free (socket, identifier) on a socket of the upstream's IP version, or on its TLS
        connection for a RadSec upstream."""
        if upstream.config.transport == "radsec":
            index = self._links.get(upstream.name)
            # RFC 6613 §2.6.1: over TCP a client does not retransmit on the same connection.
            if index is None or not self._free_ids[index] or (job is not None and index in job.sent_on):
                return None
            return index, self._free_ids[index].popleft()
        family = upstream.family
        for index, free in enumerate(self._free_ids):
            if free and self._families[index] == family and self._owners[index] is None:
                return index, free.popleft()
        return None

    def _pick(self, job: Job) -> tuple[Upstream, tuple[int, int]] | None:
        """The upstream for the next try and a slot on it: servers not tried yet first; when
        every one was tried, round again while the budget lasts (a RadSec upstream only over
        a connection that did not carry the request yet)."""
        if job.pool is None:
            return None
        for again in (False, True):
            if again and not job.tried:
                break
            skip = set() if again else set(job.tried)
            while (upstream := job.pool.choose(skip)) is not None:
                slot = self._allocate(upstream, job)
                if slot is not None:
                    if again:
                        job.tried.clear()
                    return upstream, slot
                skip.add(upstream.name)
        return None

    def _release(self, index: int, identifier: int) -> None:
        # RFC 5080 §2.2.2: clients SHOULD reuse identifiers least-recently-used first.
        self._free_ids[index].append(identifier)

    def _send(self, job: Job) -> None:
        picked = self._pick(job)
        if picked is None:
            return self._give_up(job, "no_upstream")
        upstream, (index, identifier) = picked
        secret = upstream.config.secret.reveal()
        state = self._proxy_state()
        request = job.request
        version = self._versions[index]
        try:
            if version == V11:
                # RFC 9765 (the Token field): the Token tells replies apart; its last two octets are our slot.
                token = _token(identifier)
                authenticator = v11_authenticator(token)
                attrs = request.attributes
                if job.listener == AUTH and job.version == V10:
                    attrs = reveal_request_attributes(attrs, job.client.secret.reveal(), request.authenticator)
                code = ACCESS_REQUEST if job.listener == AUTH else ACCOUNTING_REQUEST
                # RFC 2865 §5.33: a proxy appends its own Proxy-State after the NAS's.
                wire = encode_v11(code, token, append_proxy_state(attrs, state))
                port = upstream.config.radsec_port
            elif job.listener == AUTH:
                authenticator = new_request_authenticator()
                if job.version == V11:
                    attrs = hide_request_attributes(request.attributes, secret, authenticator)
                else:
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
        if self._owners[index] is not None:
            job.sent_on.add(index)
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
        v11 = self._versions[index] == V11
        slot = (index, int.from_bytes(data[6:8]) if v11 else data[1])  # 1.1: the Token's last two octets (_token)
        pending = self.pending.get(slot)
        if pending is None or (v11 and token_of(data) != pending.authenticator[:4]):
            return self._drop("upstream_unmatched", addr[0], "late or unknown reply")
        upstream = pending.upstream
        expected_port = (
            upstream.config.acct_port if pending.job is not None and pending.job.listener == ACCT else upstream.config.auth_port
        )
        # A TLS connection is the upstream's own: what arrives on it comes from it.
        if self._owners[index] is None and (addr[0] != upstream.config.address or addr[1] != expected_port):
            return self._drop("upstream_unmatched", addr[0], "reply from an address we did not ask")
        try:
            if v11:
                pass  # RFC 9765 (attribute handling): nothing to verify but the Token; TLS vouches for the rest
            # RFC 2865 §4.2, §4.4: a Response Authenticator that does not verify is silently discarded;
            # BlastRADIUS: a Message-Authenticator, when present, must verify too.
            elif not verify_reply(data, pending.authenticator, pending.secret):
                return self._drop("upstream_bad_authenticator", addr[0])
            elif (
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
                    if v11 or job.version == V11:
                        if not (v11 and job.version == V11):
                            attrs = plain_reply_attributes(attrs)
                    else:
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
            if job.version == V11:
                wire = encode_v11(code, token_of(request), attrs)  # RFC 9765 (the Token field): the request's Token
            else:
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
        (job.reply_to or self.nas_transports[job.listener]).sendto(wire, job.nas_addr)
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

    def probe(self, upstream: Upstream) -> bool:
        """A Status-Server to `upstream` now (RadSec keepalive, RFC 6613 §2.6); False if no slot."""
        return self._probe(upstream)

    def _probe(self, upstream: Upstream) -> bool:
        slot = self._allocate(upstream)
        if slot is None:
            return False
        secret = upstream.config.secret.reveal()
        if self._versions[slot[0]] == V11:
            token = _token(slot[1])
            authenticator = v11_authenticator(token)
            wire = encode_v11(STATUS_SERVER, token, ())
        else:
            authenticator = new_request_authenticator()
            # RFC 5997 §4.1: a new Identifier for every probe; never retransmitted.
            wire = sign_access_request(Packet(STATUS_SERVER, slot[1], authenticator, ()), secret)
        pending = Pending(None, upstream, secret, authenticator, b"", self.loop.time())
        pending.timer = self.loop.call_later(upstream.config.response_window, self._timeout, slot)
        self.pending[slot] = pending
        upstream.outstanding += 1
        self.upstream_transports[slot[0]].sendto(wire, (upstream.config.address, upstream.config.auth_port))
        return True

    def _health_changed(self, upstream: Upstream, why: str) -> None:
        metrics.UPSTREAM_UP.labels(upstream.name).set(_health_value(upstream.health))
        log.warning("upstream %s is now %s (%s)", upstream.name, upstream.health.value, why)

    def _drop(self, cause: str, source: str, detail: str = "") -> None:
        counter = self.hot.drops.get(cause)
        (counter if counter is not None else metrics.DROPS.labels(cause)).inc()
        self.limited.warning(cause, "dropped a datagram from %s: %s%s", source, cause, f": {detail}" if detail else "")


def _token(slot: int) -> bytes:
    """A RADIUS/1.1 Token for a request in `slot`: two random octets, then the slot."""
    return os.urandom(2) + slot.to_bytes(2, "big")


def _health_value(health: Health) -> float:
    return {Health.ALIVE: 1.0, Health.ZOMBIE: 0.5, Health.DEAD: 0.0}[health]
