"""Garbage in, nothing out: 100,000 malformed datagrams from a configured client and from an
unknown address; the proxy stays up, its memory stays flat, and real requests still work.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from pathlib import Path

from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.radclient import parse_reply, radclient

SECRET = b"nas-secret"


def garbage(rng: random.Random, n: int) -> list[bytes]:
    """Every kind of broken datagram, in equal shares."""
    out: list[bytes] = []
    for i in range(n):
        kind = i % 7
        ident, auth = rng.randrange(256), rng.randbytes(16)
        if kind == 0:  # truncated header
            out.append(rng.randbytes(rng.randrange(0, 20)))
        elif kind == 1:  # length field larger than the datagram / below 20 / above 4096
            length = rng.choice((rng.randrange(21, 4096), rng.randrange(0, 20), rng.randrange(4097, 65536)))
            out.append(struct.pack("!BBH", 1, ident, length) + auth + rng.randbytes(rng.randrange(0, 8)))
        elif kind == 2:  # a zero-length attribute
            body = bytes((1, 5)) + b"bob" + bytes((rng.randrange(256), 0)) + b"xx"
            out.append(struct.pack("!BBH", 1, ident, 20 + len(body)) + auth + body)
        elif kind == 3:  # random bytes
            out.append(rng.randbytes(rng.randrange(20, 300)))
        elif kind == 4:  # valid header, attribute overrunning the packet
            body = bytes((26, 200)) + rng.randbytes(30)
            out.append(struct.pack("!BBH", 4, ident, 20 + len(body)) + auth + body)
        elif kind == 5:  # well-formed Access-Request whose Message-Authenticator is wrong
            body = bytes((1, 5)) + b"bob" + bytes((80, 18)) + rng.randbytes(16)
            out.append(struct.pack("!BBH", 1, ident, 20 + len(body)) + auth + body)
        else:  # well-formed Accounting-Request with a wrong Request Authenticator
            body = bytes((40, 6)) + struct.pack("!I", 1)
            out.append(struct.pack("!BBH", 4, ident, 20 + len(body)) + auth + body)
    return out


def flood(target: tuple[str, int], datagrams: list[bytes], source: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for i, d in enumerate(datagrams):
            s.sendto(d, target)
            if i % 200 == 199:
                time.sleep(0.002)  # keep within the socket buffer: we test the parser, not the kernel


def kernel_udp_drops() -> int:
    """Datagrams the kernel dropped for full receive buffers (machine-wide)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


def test_malformed_flood(tmp_path: Path, freeradius_factory) -> None:  # type: ignore[no-untyped-def]
    up = freeradius_factory("robust", secret="r1")
    body = client_block("nas", "127.0.0.1", SECRET.decode(), require_message_authenticator=False) + upstream_block("up", up)
    rng = random.Random(2026)
    with ProxyProcess(tmp_path, body) as p:
        host, port = p.auth_addr.split(":")
        acct_port = int(p.acct_addr.split(":")[1])
        ok = 'User-Name = "alice@isp.example"\nUser-Password = "alicepw"\n'
        assert parse_reply(radclient(ok, p.auth_addr, SECRET.decode()).stdout).code == "Access-Accept"
        flood((host, int(port)), garbage(rng, 5_000), "127.0.0.1")  # warm-up: allocate what a flood allocates
        time.sleep(0.5)
        rss_before = p.rss_kib()
        kernel_before = kernel_udp_drops()
        for source in ("127.0.0.1", "127.0.0.2"):
            batch = garbage(rng, 50_000)
            flood((host, int(port)), batch[:40_000], source)
            flood((host, acct_port), batch[40_000:], source)
        time.sleep(1.0)
        assert p.alive
        rss_after = p.rss_kib()
        assert rss_after - rss_before < 16 * 1024, (rss_before, rss_after)
        for _ in range(3):
            assert parse_reply(radclient(ok, p.auth_addr, SECRET.decode()).stdout).code == "Access-Accept"
        m = p.metrics()
        by_cause = {k.split('"')[1]: v for k, v in m.items() if k.startswith("op25b_drops_total{")}
        kernel_dropped = kernel_udp_drops() - kernel_before
        # Every datagram is accounted for: counted by us with its cause, or dropped by a busy
        # machine's kernel before we could read it (never silently lost in between).
        assert sum(by_cause.values()) + kernel_dropped >= 105_000, (by_cause, kernel_dropped)
        assert by_cause["unknown_client"] >= 40_000
        assert by_cause["malformed"] >= 20_000 and by_cause["bad_authenticator"] >= 5_000
        assert by_cause.get("internal_error", 0) == 0
        print(f"\nRSS {rss_before} -> {rss_after} KiB; drops {by_cause}")
