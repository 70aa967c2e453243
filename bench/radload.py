"""A small RADIUS load generator for the latency probe of bench/proxy_bench.py.

It sends PAP Access-Requests at a fixed rate from a handful of UDP sockets (one asyncio event
loop, no threads), matches each reply to its request by socket, Identifier and Response
Authenticator, and records the round-trip time of every request.  Only 127.0.0.1 targets.

    phase = run_paced("127.0.0.1", 1812, b"secret", users, rate=1000.0, seconds=10.0)
    phase.rtts_ms  # one entry per answered request, in send order
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_REJECT,
    ACCESS_REQUEST,
    FILTER_ID,
    USER_NAME,
    USER_PASSWORD,
    Packet,
    encode_packet,
    encrypt_user_password,
    get_first,
    new_request_authenticator,
    parse_packet,
    sign_access_request,
    verify_reply,
)


def pap_packet(ident: int, secret: bytes, user: str, password: str, with_ma: bool = False) -> tuple[bytes, bytes]:
    """(packet, request authenticator) of one Access-Request with User-Name and User-Password;
    built with op25b's own wire layer (radius_op25b.radius)."""
    req_auth = new_request_authenticator()
    attrs = (
        (USER_NAME, user.encode()),
        (USER_PASSWORD, encrypt_user_password(password.encode(), secret, req_auth)),
    )
    packet = Packet(ACCESS_REQUEST, ident, req_auth, attrs)
    return (sign_access_request(packet, secret) if with_ma else encode_packet(packet)), req_auth


def reply_ok(data: bytes, req_auth: bytes, secret: bytes) -> bool:
    """The Response Authenticator (and a Message-Authenticator, if any) verify."""
    try:
        return verify_reply(data, req_auth, secret)
    except MalformedPacket:
        return False


def filter_id(data: bytes) -> bytes | None:
    try:
        return get_first(parse_packet(data).attributes, FILTER_ID)
    except MalformedPacket:
        return None


@dataclass
class Phase:
    """What one paced run saw."""

    target: str
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    with_filter_id: int = 0
    lost: int = 0
    skipped: int = 0  # not sent: every Identifier of the socket was still waiting for a reply
    rtts_ms: list[float] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)  # how late each send was vs schedule
    seconds: float = 0.0

    @classmethod
    def merged(cls, target: str, phases: Iterable[Phase]) -> Phase:
        """One phase adding up several (the rounds of a latency probe)."""
        out = cls(target)
        for ph in phases:
            out.sent += ph.sent
            out.accepted += ph.accepted
            out.rejected += ph.rejected
            out.with_filter_id += ph.with_filter_id
            out.lost += ph.lost
            out.skipped += ph.skipped
            out.rtts_ms += ph.rtts_ms
            out.send_lag_ms += ph.send_lag_ms
            out.seconds += ph.seconds
        return out


@dataclass
class _Slot:
    sent_at: float
    req_auth: bytes
    index: int


class _Runner:
    def __init__(self, host: str, port: int, secret: bytes, sockets: int) -> None:
        if host != "127.0.0.1":
            raise ValueError("the load generator only targets 127.0.0.1")
        self.addr = (host, port)
        self.secret = secret
        self.socks: list[socket.socket] = []
        for _ in range(sockets):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks.append(s)
        self.inflight: list[dict[int, _Slot]] = [{} for _ in self.socks]
        self.next_id = [0] * len(self.socks)

    def close(self) -> None:
        for s in self.socks:
            s.close()

    async def run(
        self,
        users: Sequence[tuple[str, str]],
        rate: float,
        seconds: float,
        phase: Phase,
        timeout: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        count = min(len(users), max(1, int(rate * seconds)))
        rtts: list[float | None] = [None] * count
        codes: list[int] = [0] * count
        fids: list[bool] = [False] * count
        done = asyncio.Event()
        answered = 0

        def on_readable(k: int) -> None:
            nonlocal answered
            sock, table = self.socks[k], self.inflight[k]
            while True:
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    return
                now = time.perf_counter()
                if len(data) < 20:
                    continue
                slot = table.get(data[1])
                if slot is None or not reply_ok(data, slot.req_auth, self.secret):
                    continue
                del table[data[1]]
                rtts[slot.index] = (now - slot.sent_at) * 1000.0
                codes[slot.index] = data[0]
                fids[slot.index] = filter_id(data) is not None
                answered += 1
                if answered == count:
                    done.set()

        for k, sock in enumerate(self.socks):
            loop.add_reader(sock.fileno(), on_readable, k)
        try:
            start = time.perf_counter()
            interval = 1.0 / rate
            hard_stop = start + seconds * 3 + timeout + 5  # bound, whatever happens
            for i in range(count):
                due = start + i * interval
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                    now = time.perf_counter()
                if now > hard_stop:
                    break
                k = i % len(self.socks)
                table = self.inflight[k]
                ident = self.next_id[k]
                for _ in range(256):  # skip identifiers still waiting for a reply
                    if ident not in table:
                        break
                    ident = (ident + 1) & 0xFF
                else:
                    phase.skipped += 1  # 256 outstanding on this socket
                    continue
                self.next_id[k] = (ident + 1) & 0xFF
                user, password = users[i]
                pkt, req_auth = pap_packet(ident, self.secret, user, password)
                sent_at = time.perf_counter()
                table[ident] = _Slot(sent_at, req_auth, i)
                try:
                    self.socks[k].sendto(pkt, self.addr)
                except (BlockingIOError, InterruptedError):
                    del table[ident]
                    continue
                phase.sent += 1
                phase.send_lag_ms.append((sent_at - due) * 1000.0)
                # Expire requests older than the timeout (their identifier may be reused).
                if i % 256 == 0:
                    cutoff = sent_at - timeout
                    for t in self.inflight:
                        for old in [key for key, s in t.items() if s.sent_at < cutoff]:
                            del t[old]
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except TimeoutError:
                pass
            phase.seconds = time.perf_counter() - start
        finally:
            for sock in self.socks:
                loop.remove_reader(sock.fileno())
        phase.rtts_ms = [r for r in rtts if r is not None]
        phase.accepted = sum(1 for c in codes if c == ACCESS_ACCEPT)
        phase.rejected = sum(1 for c in codes if c == ACCESS_REJECT)
        phase.with_filter_id = sum(fids)
        phase.lost = phase.sent - len(phase.rtts_ms)


def run_paced(
    host: str,
    port: int,
    secret: bytes,
    users: Sequence[tuple[str, str]],
    *,
    rate: float,
    seconds: float,
    target: str = "",
    sockets: int = 16,
    timeout: float = 2.0,
) -> Phase:
    """Send min(len(users), rate*seconds) requests at `rate` per second; bounded in count and time."""
    phase = Phase(target or f"{host}:{port}")
    runner = _Runner(host, port, secret, sockets)
    try:
        asyncio.run(runner.run(users, rate, seconds, phase, timeout))
    finally:
        runner.close()
    return phase
