"""Peers that misbehave, over real UDP on 127.0.0.1, with `op25b serve` and a real FreeRADIUS:
an upstream whose Accept cannot be re-encrypted, a CoA answer from another address, and a
flood of forged datagrams that must not become a flood of log lines. The fake peers are small
UdpResponders: no real server produces these faults on purpose."""

from __future__ import annotations

import json
import random
import socket
import time
from pathlib import Path
from types import SimpleNamespace

from radius_op25b.radius import (
    ACCESS_ACCEPT,
    COA_ACK,
    PROXY_STATE,
    TUNNEL_PASSWORD,
    Packet,
    get_all,
    parse_packet,
    sign_reply,
)
from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.processes import wait_until
from tests.support.radclient import parse_reply, radclient
from tests.support.udp import UdpResponder

NAS_SECRET = "nas-secret"
LOGIN = 'User-Name = "alice@isp.example"\nUser-Password = "alicepw"\n'


def bad_tunnel_password_upstream(secret: bytes) -> UdpResponder:
    """Answers every Access-Request with a correctly signed Accept whose Tunnel-Password is
    only a tag and a salt (RFC 2868 §3.5 wants at least one 16-octet block)."""

    def answer(data: bytes, addr: tuple[str, int]) -> bytes | None:
        request = parse_packet(data)
        echo = tuple((PROXY_STATE, v) for v in get_all(request.attributes, PROXY_STATE))
        attrs = ((TUNNEL_PASSWORD, b"\x01\x80\x01"), *echo)
        return sign_reply(
            Packet(ACCESS_ACCEPT, request.identifier, request.authenticator, attrs), request.authenticator, secret, True
        )

    return UdpResponder(answer)


def test_an_upstream_reply_that_cannot_be_re_encrypted_fails_over_to_freeradius(tmp_path: Path, freeradius_factory) -> None:  # type: ignore[no-untyped-def]
    real = freeradius_factory("after-bad", secret="real-secret")
    bad = bad_tunnel_password_upstream(b"bad-secret")
    try:
        fake = SimpleNamespace(auth_port=bad.port, acct_port=bad.port, secret="bad-secret")
        body = (
            client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
            + upstream_block("broken", fake)
            + upstream_block("freeradius", real)
            + '[[pools]]\nname = "main"\nstrategy = "fail-over"\nupstreams = ["broken", "freeradius"]\n\n'
        )
        with ProxyProcess(tmp_path, body) as p:
            started = time.monotonic()
            done = radclient(LOGIN, p.auth_addr, NAS_SECRET, timeout=3.0, retries=3)
            took = time.monotonic() - started
            reply = parse_reply(done.stdout)
            assert reply.code == "Access-Accept", done.stdout + p.log_text()[-2000:]
            assert reply.get("Filter-Id") == "OP25B-FULL"
            assert took < 3.0  # answered within radclient's first try: no response window waited
            assert p.metrics().get('op25b_drops_total{cause="upstream_malformed"}', 0) >= 1
            assert "Traceback" not in p.log_text()
    finally:
        bad.close()


def test_25000_forged_datagrams_make_a_few_log_lines(tmp_path: Path, freeradius_factory) -> None:  # type: ignore[no-untyped-def]
    up = freeradius_factory("flooded", secret="up-secret")
    body = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=True) + upstream_block("up", up)
    rng = random.Random(16)
    with ProxyProcess(tmp_path, body) as p:
        host, port = p.auth_addr.split(":")
        lines_before = len(p.log_text().splitlines())
        kinds = [
            lambda: bytes([1, rng.randrange(256)]) + (40).to_bytes(2, "big") + rng.randbytes(36),  # bad authenticator
            lambda: rng.randbytes(rng.randrange(0, 19)),  # not a packet
            lambda: bytes([2, 1]) + (20).to_bytes(2, "big") + rng.randbytes(16),  # a reply code on the request port
            lambda: (
                bytes([1, 1]) + (25).to_bytes(2, "big") + rng.randbytes(16) + bytes([1, 5]) + b"bob"
            ),  # no Message-Authenticator
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            s.bind(("127.0.0.1", 0))
            stranger.bind(("127.0.0.2", 0))  # not a client at all
            for i in range(25_000):
                (stranger if i % 5 == 0 else s).sendto(kinds[i % 4](), (host, int(port)))
                if i % 200 == 199:
                    time.sleep(0.002)
        assert wait_until(lambda: sum(v for k, v in p.metrics().items() if k.startswith("op25b_drops_total{")) >= 20_000, 10)
        time.sleep(0.5)
        new_lines = p.log_text().splitlines()[lines_before:]
        assert len(new_lines) <= 24, "\n".join(new_lines[:40])  # one per cause per 10 s
        assert p.alive


def test_a_coa_ack_from_another_address_is_not_taken(tmp_path: Path, freeradius_factory) -> None:  # type: ignore[no-untyped-def]
    """The NAS at 127.0.0.1 stays silent; an impostor at 127.0.0.2 answers each CoA-Request
    with a correctly signed CoA-ACK. The job must not count as acknowledged. Then the NAS itself
    answers, and it does."""
    up = freeradius_factory("coa-up", secret="up-secret")
    impostor = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    impostor.bind(("127.0.0.2", 0))
    mode = {"real": False}

    def answer(data: bytes, addr: tuple[str, int]) -> bytes | None:
        request = parse_packet(data)
        reply = sign_reply(
            Packet(COA_ACK, request.identifier, request.authenticator, ()), request.authenticator, NAS_SECRET.encode(), True
        )
        if mode["real"]:
            return reply  # from the NAS's own address and port
        impostor.sendto(reply, addr)  # from 127.0.0.2
        return None

    nas = UdpResponder(answer)
    try:
        body = client_block(
            "nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False, profile="juniper", coa_port=nas.port
        ) + upstream_block("up", up)
        with ProxyProcess(tmp_path, body) as p:
            p.op25b("subscriber", "add", "alice@isp.example")
            start = 'User-Name = "alice@isp.example"\nAcct-Status-Type = Start\nAcct-Session-Id = "H-1"\nNAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 100.64.0.9\nClass = "op25b:full"\n'
            assert parse_reply(radclient(start, p.acct_addr, NAS_SECRET, "acct").stdout).code == "Accounting-Response"

            def last_push():  # type: ignore[no-untyped-def]
                shown = json.loads(p.op25b("subscriber", "show", "alice@isp.example", "--json").stdout)
                return (shown["sessions"] or [{}])[0].get("last_push") or {}

            assert wait_until(lambda: json.loads(p.op25b("sessions", "active", "--json").stdout)["sessions"], 5)
            assert p.op25b("subscriber", "set-class", "alice@isp.example", "mobile").returncode == 0
            assert wait_until(lambda: last_push().get("result") == "timeout", 15), last_push()
            assert p.metrics().get('op25b_coa_replies_dropped_total{cause="wrong_source"}', 0) >= 3
            mode["real"] = True  # the retry (2 s later) is answered by the NAS itself
            assert wait_until(lambda: last_push().get("result") == "ack", 15), last_push()
    finally:
        nas.close()
        impostor.close()
