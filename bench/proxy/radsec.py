"""Throughput over RadSec, in the same run as phase 1: radclient -> radsecproxy (Debian's; UDP
in, TLS out) -> op25b's RadSec listener -> the same upstream, the same requests and checks as A
over UDP. radsecproxy stands in for a RadSec NAS because radclient speaks no TLS; it shares the
two cores with op25b, so the figure is a floor. Certificates: a CA made for the run (openssl).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.proxy.context import Bench
from bench.proxy.radclient import RadclientRun, radclient_file
from bench.proxy.servers import Op25bServe
from bench.proxy.subscribers import NAS_SECRET
from tests.support.certs import Leaf, TestCA
from tests.support.freeradius import FreeRadiusInstance
from tests.support.ports import free_tcp_port
from tests.support.radsec import RADSECPROXY, RadSecProxy


class Op25bRadSec(Op25bServe):
    """A with a RadSec listener and one RadSec client (127.0.0.1, the radsecproxy)."""

    def __init__(self, run_dir: Path, database_url: str, upstream: FreeRadiusInstance, leaf: Leaf) -> None:
        super().__init__(run_dir, database_url, upstream)
        self.radsec_port = free_tcp_port()
        text = self.config.read_text()
        server = f'acct_listen = "127.0.0.1:{self.acct_port}"\n'
        text = text.replace(server, server + f'radsec_listen = "127.0.0.1:{self.radsec_port}"\n', 1)
        text += (
            '\n[[clients]]\nname = "bench-radsec"\naddress = "127.0.0.1"\ntransport = "radsec"\nprofile = "generic"\n'
            "require_message_authenticator = false  # radsecproxy 1.9 adds none\n\n"
            f'[tls]\ncertificate_file = "{leaf.cert}"\nprivate_key_file = "{leaf.key}"\nca_file = "{leaf.ca}"\n'
        )
        self.config.write_text(text)


def available() -> bool:
    return RADSECPROXY is not None


def run(bench: Bench, requests: Path, expect: Path, warm: Path, count: int, warm_n: int) -> RadclientRun:
    """One run: a fresh op25b and radsecproxy, a warm-up, then the measured requests."""
    args = bench.args
    assert bench.upstream is not None
    pki = bench.tmp / "radsec-pki"
    if not (pki / "ca" / "ca.pem").exists():
        ca = TestCA(pki / "ca", "bench CA")
        ca.issue("op25b"), ca.issue("nas")
    op25b = Leaf("op25b", pki / "ca" / "op25b.pem", pki / "ca" / "op25b.key", pki / "ca" / "ca.pem")
    nas = Leaf("nas", pki / "ca" / "nas.pem", pki / "ca" / "nas.key", pki / "ca" / "ca.pem")
    bench.runs += 1
    server = Op25bRadSec(bench.tmp / f"a-{bench.runs}-radsec", bench.db_url, bench.upstream, op25b).start()
    try:
        with RadSecProxy(bench.tmp / f"radsecproxy-{bench.runs}", nas, server.radsec_port, NAS_SECRET, log_level=2) as rsp:
            deadline = time.monotonic() + 15
            while "RadSec client bench-radsec connected" not in server.log.read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"radsecproxy did not connect to op25b:\n{rsp.log_text()[-2000:]}")
                time.sleep(0.05)
            if warm_n:
                radclient_file(rsp.addr, NAS_SECRET, warm, warm_n, parallel=min(32, args.parallel))
            return radclient_file(rsp.addr, NAS_SECRET, requests, count, expect=expect, parallel=args.parallel, pid=server.pid)
    finally:
        server.stop()
