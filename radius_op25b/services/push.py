"""Live changes: the proxy takes queued jobs and sends each live session its new filter by
RFC 5176 CoA-Request, or Disconnect-Request where the profile says so (or after a CoA-NAK where
the profile allows), to the NAS that owns the session; then records the outcome.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import Engine

from radius_op25b import store
from radius_op25b.core import decision as d
from radius_op25b.core import profiles
from radius_op25b.core.clients import ClientTable
from radius_op25b.core.config import ClientConfig, Config
from radius_op25b.errors import MalformedPacket, StoreUnavailable
from radius_op25b.logs import RateLimitedLog
from radius_op25b.radius import (
    ACCT_SESSION_ID,
    COA_ACK,
    COA_NAK,
    COA_REQUEST,
    DISCONNECT_ACK,
    DISCONNECT_NAK,
    DISCONNECT_REQUEST,
    ERROR_CAUSE,
    EVENT_TIMESTAMP,
    FRAMED_IP_ADDRESS,
    NAS_IP_ADDRESS,
    USER_NAME,
    ZERO_AUTHENTICATOR,
    Attributes,
    Packet,
    decode_integer,
    encode_integer,
    get_first,
    named,
    parse_packet,
    sign_accounting_request,
    verify_reply,
)
from radius_op25b.radius.stream import encode_v11
from radius_op25b.services import explain
from radius_op25b.store import db
from radius_op25b.store.models import AcctSession

log = logging.getLogger("op25b.push")

PUSHES = Counter("op25b_pushes", "CoA/Disconnect pushes to live sessions, by outcome", ["method", "result"])
REPLIES_DROPPED = Counter("op25b_coa_replies_dropped", "CoA/Disconnect answers refused, by cause", ["cause"])
# RFC 5176 §2.1, §2.2: the answer to each request, by request code.
ANSWERS = {COA_REQUEST: (COA_ACK, COA_NAK), DISCONNECT_REQUEST: (DISCONNECT_ACK, DISCONNECT_NAK)}

# Changes wake the worker at once (wake(), from the policy watcher's notifications); the poll
# only catches retries that fall due and jobs whose notification was missed. After a claim that
# found jobs, the next comes sooner: a realm-wide change is pushed 50 jobs per BUSY_POLL_SECONDS.
POLL_SECONDS = 1.0
BUSY_POLL_SECONDS = 0.25
TRIES = 3  # RFC 5176 requests are retransmitted unchanged; this many sends per attempt
TRY_TIMEOUT = 2.0
# A CoA tunnel: given a RadSec client, (a function that writes a packet to its open connection,
# whether that connection speaks RADIUS/1.1), or None when it has none open (proxy/radsec.py);
# the answers come back by tunnel_reply.
Tunnel = Callable[[ClientConfig], tuple[Callable[[bytes], None], bool] | None]


def tunnel_source(client_name: str) -> tuple[str, int]:
    return (f"radsec:{client_name}", 0)


MAX_ATTEMPTS = 5  # attempts per job, with exponential backoff between them


@dataclass(frozen=True, slots=True)
class LiveSession:
    """The open session a job is pushed to: what identifies it at its NAS (RFC 5176 §3)."""

    id: int
    nas_name: str
    nas_address: str
    acct_session_id: str
    nas_ip_address: str | None
    username: str
    framed_ip: str | None
    class_applied: str | None
    stopped_at: datetime | None

    @classmethod
    def of(cls, row: AcctSession) -> LiveSession:
        return cls(
            row.id,
            row.nas_name,
            row.nas_address,
            row.acct_session_id,
            row.nas_ip_address,
            row.username,
            row.framed_ip,
            row.class_applied,
            row.stopped_at,
        )


@dataclass(frozen=True)
class PushTask:
    job_id: int
    attempts: int
    cause: str  # the audited change that queued it
    session: LiveSession
    subscriber: d.Subscriber | None
    realm: d.Realm | None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: str  # ack | nak | timeout | unchanged | no-nas
    method: str | None
    error_cause: int | None = None
    detail: str | None = None
    class_applied: str | None = None


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A request sent and not yet answered: who may answer it, and how it is verified."""

    future: asyncio.Future[bytes]
    authenticator: bytes
    secret: bytes
    destination: tuple[str, int]
    v11: bool = False  # sent over a RADIUS/1.1 tunnel: matched by its Token, nothing to verify


class _CoaProtocol(asyncio.DatagramProtocol):
    def __init__(self, worker: PushWorker) -> None:
        self.worker = worker

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.worker.reply_received(data, addr)


class PushWorker:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        ctx: Callable[[], profiles.FilterContext],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        source: str = "0.0.0.0",
    ) -> None:
        self.config, self.engine, self.loop = config, engine, loop
        self.source = source  # the address CoA/Disconnect-Requests are sent from
        self.now = now  # the wall clock (claims, leases, Event-Timestamp); tests pass their own
        self.ctx_source = ctx  # the policy service's filter context, kept fresh
        self.clients = ClientTable(config.clients)
        self.transport: asyncio.DatagramTransport | None = None
        self._waiting: dict[int, _Waiting] = {}  # by Identifier
        self._next_id = int.from_bytes(os.urandom(1), "big")
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.limited = RateLimitedLog(log)  # forged answers must not flood the log
        self.tunnel: Tunnel | None = None  # set by the proxy when it has a RadSec listener

    def wake(self) -> None:
        """Jobs may have been queued (a change was notified): claim them now (event loop only)."""
        self._wake.set()

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.clients = ClientTable(config.clients)

    async def start(self) -> None:
        self.transport, _ = await self.loop.create_datagram_endpoint(lambda: _CoaProtocol(self), local_addr=(self.source, 0))
        self._task = self.loop.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._in_flight):
            task.cancel()
        if self.transport is not None:
            self.transport.close()

    # --- claiming jobs (worker thread) -------------------------------------------------------

    def _claim(self) -> list[PushTask]:
        now = self.now()
        # Mostly there is nothing to do: one cheap query says so, and keeps this thread from
        # holding the GIL (and the event loop) for an ORM transaction several times a second.
        with db.reading(self.engine) as session:
            if not store.push_work_due(session, now):
                return []
        with db.transaction(self.engine) as session:
            store.queue_expired(session, now)
        with db.transaction(self.engine) as session:
            jobs = store.claim_pushes(session, now)
            tasks = []
            for job in jobs:
                row = session.get(AcctSession, job.session_id)
                if row is None:
                    continue
                subscriber, realm = store.policy_inputs(session, row.username)
                tasks.append(PushTask(job.id, job.attempts, job.cause, LiveSession.of(row), subscriber, realm))
        return tasks

    async def _run(self) -> None:
        while True:
            try:
                tasks = await self.loop.run_in_executor(None, self._claim)
            except StoreUnavailable:
                tasks = []  # the policy service logs outages; jobs wait in the database
            except Exception:
                self.limited.exception("claim", "could not claim push jobs")
                tasks = []
            for task in tasks:
                running = self.loop.create_task(self._push(task))
                self._in_flight.add(running)
                running.add_done_callback(self._in_flight.discard)
            try:
                await asyncio.wait_for(self._wake.wait(), BUSY_POLL_SECONDS if tasks else POLL_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()

    # --- one push -----------------------------------------------------------------------------

    def _client_for(self, session: LiveSession) -> ClientConfig | None:
        return self.config.client(session.nas_name) or self.clients.lookup(session.nas_address)

    async def _push(self, task: PushTask) -> None:
        try:
            outcome = await self._attempt(task)
        except Exception as exc:
            self.limited.exception("push", "push job %d failed", task.job_id)
            outcome = Outcome(False, "error", None, detail=str(exc))
        retry = None
        if not outcome.ok and outcome.result in ("timeout", "error") and task.attempts < MAX_ATTEMPTS:
            retry = timedelta(seconds=2**task.attempts)
        PUSHES.labels(outcome.method or "-", outcome.result).inc()
        level = logging.INFO if outcome.ok else logging.WARNING
        log.log(
            level,
            "push %s to %s session %s (%s) for %s: %s%s%s",
            outcome.method or "-",
            task.session.username,
            task.session.acct_session_id,
            task.session.nas_name,
            task.cause,
            outcome.result,
            f" Error-Cause {outcome.error_cause}" if outcome.error_cause else "",
            f"; retry in {retry.total_seconds():.0f}s" if retry else "",
        )
        try:
            await self.loop.run_in_executor(None, self._finish, task.job_id, outcome, retry)
        except Exception:
            self.limited.exception(
                "finish", "could not record the outcome of push job %d (it will be retried after its lease)", task.job_id
            )

    def _finish(self, job_id: int, outcome: Outcome, retry: timedelta | None) -> None:
        with db.transaction(self.engine) as session:
            store.finish_push(
                session,
                job_id,
                now=self.now(),
                ok=outcome.ok,
                result=outcome.result,
                method=outcome.method,
                error_cause=outcome.error_cause,
                detail=outcome.detail,
                retry_in=retry,
                class_applied=outcome.class_applied,
            )

    async def _attempt(self, task: PushTask) -> Outcome:
        s = task.session
        if s.stopped_at is not None:
            return Outcome(True, "session-ended", None)
        client = self._client_for(s)
        if client is None:
            return Outcome(False, "no-nas", None, detail=f"no client for NAS {s.nas_name} ({s.nas_address})")
        framed = ipaddress.ip_address(s.framed_ip) if s.framed_ip else None
        request = explain.request_for(s.username, framed, client)
        found = explain.explain(self.config, self.ctx_source(), client.profile, request, task.subscriber, task.realm, self.now())
        decision, change, coa = found.decision, found.live_change, found.coa
        new_class = str(decision.filter_class)
        method = explain.push_method(found, s.class_applied)  # what the desk told the agent
        if method == "none":
            return Outcome(True, "unchanged", None, detail="class unchanged; no Disconnect needed", class_applied=new_class)
        if method == "disconnect" or coa is None:
            return await self._disconnect(client, s, new_class)
        code, cause = await self._send(COA_REQUEST, client, s, named.encode(coa))
        if code == COA_ACK:
            return Outcome(True, "ack", "coa", class_applied=new_class)
        if code == COA_NAK and change.nak_fallback:
            outcome = await self._disconnect(client, s, new_class)
            return Outcome(
                outcome.ok,
                outcome.result,
                "coa-nak+disconnect",
                outcome.error_cause,
                f"CoA-NAK Error-Cause {cause}",
                outcome.class_applied,
            )
        if code == COA_NAK:
            return Outcome(False, "nak", "coa", cause)
        if code is not None:
            return Outcome(False, "protocol-error", "coa", detail=f"answered a CoA-Request with code {code}")
        return Outcome(False, "timeout", "coa", detail=f"no answer from {self._destination(client, s)} after {TRIES} tries")

    async def _disconnect(self, client: ClientConfig, s: LiveSession, new_class: str) -> Outcome:
        code, cause = await self._send(DISCONNECT_REQUEST, client, s, ())
        if code == DISCONNECT_ACK:
            # The NAS re-authenticates the subscriber, who then gets the new decision.
            return Outcome(True, "ack", "disconnect", class_applied=new_class)
        if code == DISCONNECT_NAK:
            return Outcome(False, "nak", "disconnect", cause)
        if code is not None:
            return Outcome(False, "protocol-error", "disconnect", detail=f"answered a Disconnect-Request with code {code}")
        return Outcome(
            False, "timeout", "disconnect", detail=f"no answer from {self._destination(client, s)} after {TRIES} tries"
        )

    def _destination(self, client: ClientConfig, s: LiveSession) -> tuple[str, int]:
        return (client.coa_address or s.nas_address, client.coa_port)

    async def _send(self, code: int, client: ClientConfig, s: LiveSession, extra: Attributes) -> tuple[int | None, int | None]:
        """Send a CoA/Disconnect-Request; (reply code, Error-Cause) or (None, None) on silence."""
        # RFC 5176 §3: the session is identified by User-Name, Acct-Session-Id, the NAS's address
        # and Framed-IP-Address; Event-Timestamp (§6.3) lets the NAS refuse replays.
        identity: list[tuple[int, bytes]] = [(USER_NAME, s.username.encode()), (ACCT_SESSION_ID, s.acct_session_id.encode())]
        nas_ip = s.nas_ip_address or s.nas_address
        if ipaddress.ip_address(nas_ip).version == 4:
            identity.append((NAS_IP_ADDRESS, ipaddress.IPv4Address(nas_ip).packed))
        if s.framed_ip:
            identity.append((FRAMED_IP_ADDRESS, ipaddress.IPv4Address(s.framed_ip).packed))
        identity.append((EVENT_TIMESTAMP, encode_integer(int(self.now().timestamp()))))
        # A NAS that came in over RadSec is sent it over its own connection while one is open
        # (a "CoA tunnel", draft-ietf-radext-reverse-coa), with the connection's secret.
        link = self.tunnel(client) if self.tunnel is not None and client.transport == "radsec" else None
        send, v11 = link if link is not None else (None, False)
        secret = (client.secret if send is not None else client.coa_secret or client.secret).reveal()
        identifier = self._allocate_id()
        if v11:
            # RFC 9765 (the Token field): a Token instead of Identifier and authenticator; no MD5 at all.
            token = os.urandom(3) + bytes((identifier,))
            wire = encode_v11(code, token, (*identity, *extra))
        else:
            wire = sign_accounting_request(
                Packet(code, identifier, ZERO_AUTHENTICATOR, (*identity, *extra)), secret, add_message_authenticator=True
            )
        future: asyncio.Future[bytes] = self.loop.create_future()
        destination = tunnel_source(client.name) if send is not None else self._destination(client, s)
        self._waiting[identifier] = _Waiting(future, wire[4:20], secret, destination, v11)
        try:
            assert self.transport is not None
            # RFC 6613 §2.6.1: over TLS the transport retries, not we: one send, the same wait.
            tries, wait = (1, TRY_TIMEOUT * TRIES) if send is not None else (TRIES, TRY_TIMEOUT)
            for _ in range(tries):
                if send is not None:
                    send(wire)
                else:
                    self.transport.sendto(wire, destination)  # the same bytes: a retransmission
                try:
                    reply = await asyncio.wait_for(asyncio.shield(future), wait)
                except TimeoutError:
                    continue
                packet = parse_packet(reply)
                raw_cause = get_first(packet.attributes, ERROR_CAUSE)
                return packet.code, decode_integer(raw_cause) if raw_cause is not None and len(raw_cause) == 4 else None
            return None, None
        finally:
            self._waiting.pop(identifier, None)

    def _allocate_id(self) -> int:
        for _ in range(256):
            self._next_id = (self._next_id + 1) & 0xFF
            if self._next_id not in self._waiting:
                return self._next_id
        raise RuntimeError("256 CoA requests in flight")

    def reply_received(self, data: bytes, addr: Any) -> None:
        """An answer counts only from where its request went (RFC 5176 §2.3; RFC 5080 §2.2.2
        matches a reply by source address and port as well as Identifier) and only when its
        authenticator verifies; anything else is dropped and counted."""
        if len(data) < 20:
            return self._refuse("malformed", addr)
        waiting = self._waiting.get(data[1])
        if waiting is None:
            return self._refuse("unmatched", addr)
        if (addr[0], addr[1]) != waiting.destination:
            return self._refuse("wrong_source", addr)
        try:
            valid = verify_reply(data, waiting.authenticator, waiting.secret)
        except MalformedPacket:
            valid = False
        if not valid:
            return self._refuse("bad_authenticator", addr)
        return self._settle(waiting, data, addr)

    def tunnel_reply(self, data: bytes, client_name: str, v11: bool) -> None:
        """An answer that came back over a RadSec NAS's connection (the CoA tunnel)."""
        if not v11:
            return self.reply_received(data, tunnel_source(client_name))
        source = tunnel_source(client_name)
        waiting = self._waiting.get(data[7]) if len(data) >= 20 else None  # the Token's last octet
        if waiting is None or not waiting.v11 or data[4:8] != waiting.authenticator[:4] or waiting.destination != source:
            return self._refuse("unmatched", source)
        return self._settle(waiting, data, source)

    def _settle(self, waiting: _Waiting, data: bytes, source: Any) -> None:
        """A matched, authentic answer: it must be one of RFC 5176's four; then its request has it."""
        if data[0] not in (COA_ACK, COA_NAK, DISCONNECT_ACK, DISCONNECT_NAK):
            return self._refuse("unexpected_code", source)
        if not waiting.future.done():
            waiting.future.set_result(data)
        return None

    def _refuse(self, cause: str, addr: Any) -> None:
        REPLIES_DROPPED.labels(cause).inc()
        self.limited.warning(cause, "dropped a CoA/Disconnect answer from %s:%s: %s", addr[0], addr[1], cause)
