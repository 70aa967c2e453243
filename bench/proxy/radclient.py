"""One `radclient -f` run against a proxy or the upstream, timed, with its summary parsed and
the proxy's CPU time and UDP drops during the run."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.proxy.procs import cpu_seconds, socket_drops, udp_rcvbuf_errors
from tests.support.paths import TEMPLATE_DIR as UPSTREAM_TEMPLATE
from tests.support.radclient import DICT_DIR, RADCLIENT


@dataclass
class RadclientRun:
    requests: int
    seconds: float
    accepted: int = 0
    rejected: int = 0
    lost: int = 0
    passed: int = 0
    failed: int = 0
    returncode: int = 0
    cpu_s: float = 0.0  # the proxy's CPU time during the run (when a pid was given)
    pg_cpu_s: float = 0.0  # CPU time of the PostgreSQL backends serving the proxy
    verify_failed: int = 0  # radclient "Reply verification failed" lines (only without -q)
    unmatched: int = 0  # radclient "Received reply to request we did not send" (only without -q)
    drops_system: int = 0  # UDP RcvbufErrors on the whole machine during the run
    drops_proxy: int = 0  # datagrams dropped on the proxy's own sockets (since it started)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def add(self, other: RadclientRun) -> None:
        """Sum another run's counts and time into this one (a run sent in chunks)."""
        self.requests += other.requests
        self.seconds += other.seconds
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.lost += other.lost

    def summary(self) -> str:
        s = (
            f"{self.requests:,} req in {self.seconds:.2f} s = {self.rate:,.0f}/s; accepted {self.accepted:,}, "
            f"rejected {self.rejected:,}, lost {self.lost:,}"
        )
        if self.passed or self.failed:
            s += f", filter passed {self.passed:,} failed {self.failed:,}"
        if self.drops_system or self.drops_proxy:
            s += f"; UDP drops: proxy {self.drops_proxy:,}, machine {self.drops_system:,}"
        return s


def radclient_args(
    server: str,
    secret: str,
    files: str,
    *,
    parallel: int,
    timeout: float | None = None,
    retries: int | None = None,
    quiet: bool = True,
) -> list[str]:
    """`radclient -p N -f files -s [-q] [-t T -r R] server auth secret` with the Debian dictionaries."""
    assert server.startswith("127.0.0.1:")
    assert RADCLIENT is not None
    return [
        RADCLIENT,
        "-D",
        DICT_DIR,
        "-d",
        str(UPSTREAM_TEMPLATE),
        *(["-q"] if quiet else []),
        "-s",
        "-p",
        str(parallel),
        *(["-t", str(timeout)] if timeout is not None else []),
        *(["-r", str(retries)] if retries is not None else []),
        "-f",
        files,
        server,
        "auth",
        secret,
    ]


_SUMMARY = (
    ("Accepted", "accepted"),
    ("Rejected", "rejected"),
    ("Lost", "lost"),
    ("Passed filter", "passed"),
    ("Failed filter", "failed"),
)


def radclient_file(
    server: str,
    secret: str,
    requests: Path,
    count: int,
    *,
    expect: Path | None = None,
    parallel: int = 256,
    timeout: float = 5.0,
    retries: int = 3,
    pid: int | None = None,
    quiet: bool = True,
) -> RadclientRun:
    """`radclient -p N -f requests[:expect] -s -q`; wall time of the process; summary parsed.

    quiet=False drops -q (radclient then prints every packet, which goes to a file), because -q
    also silences its error lines, and those tell what its "Lost" counted."""
    files = f"{requests}:{expect}" if expect else str(requests)
    args = radclient_args(server, secret, files, parallel=parallel, timeout=timeout, retries=retries, quiet=quiet)
    bound = 60 + count * (timeout * (retries + 1)) / max(1, parallel) + count / 200
    cpu0 = cpu_seconds(pid) if pid else 0.0
    drops0 = udp_rcvbuf_errors()
    start = time.perf_counter()
    if quiet:
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=bound)
        stdout = done.stdout
    else:
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(args, stdout=out, stderr=subprocess.PIPE, text=True, check=False, timeout=bound)
            out.seek(0)
            stdout = out.read()
        stdout = stdout[stdout.rfind("Packet summary") :] if "Packet summary" in stdout else stdout[-3000:]
    seconds = time.perf_counter() - start
    run = RadclientRun(count, seconds, returncode=done.returncode)
    run.verify_failed = done.stderr.count("Reply verification failed")
    run.unmatched = done.stderr.count("Received reply to request we did not send")
    run.drops_system = udp_rcvbuf_errors() - drops0
    if pid:
        run.cpu_s = cpu_seconds(pid) - cpu0
        run.drops_proxy = socket_drops(pid)
    for label, attr in _SUMMARY:
        m = re.search(rf"{label}\s*:\s*(\d+)", stdout)
        if m:
            setattr(run, attr, int(m.group(1)))
    if "Accepted" not in stdout:
        raise RuntimeError(f"radclient printed no summary (rc {done.returncode}):\n{stdout[-2000:]}\n{done.stderr[-2000:]}")
    return run
