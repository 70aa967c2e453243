"""Side-by-side proxy benchmark: `op25b serve` (A) against FreeRADIUS 3.2 doing the same job (B).

    python bench/proxy_bench.py [--subscribers 100000] [--requests 20000] [--pairs 3]
    python bench/proxy_bench.py --subscribers 10000 --requests 5000 --pairs 1      # quick, ~1.5 min
    python bench/proxy_bench.py --rmem-default 8388608    # B without kernel drops (see below)

Set-up: a scratch PostgreSQL database `op25b_perf` (127.0.0.1:5432, user postgres) filled with
`op25b subscriber import` (N subscribers; 80 % class full, 20 % mobile by override or realm
default), and one FreeRADIUS upstream (deploy/freeradius, PAP, one `users` entry with its own
password per subscriber plus a DEFAULT entry for everybody else; its per-request log line off).
Then, each step bounded in count and time, on 127.0.0.1 only:

1. throughput: `radclient -p 256 -f requests:expected -s` with R distinct subscribers, through
   A (`op25b serve`: one client 127.0.0.1, generic profile, metrics off) and through B
   (FreeRADIUS 3.2 proxying to the same upstream, one rlm_sql query on op25b's tables per
   Accept: deploy/freeradius-sql-proxy/), in pairs alternating AB, BA, ...; a freshly started
   proxy per run after a short warm-up on other subscribers.
   Requests/s from radclient's wall time, ratio A/B per pair and medians; correctness from
   radclient's summary (accepted / rejected / lost, and `Passed filter`: the Accept carries the
   expected Filter-Id and Class); CPU per request of the proxy and of its PostgreSQL backends;
   UDP receive-buffer drops (each costs radclient a 5 s retransmission wait).
2. latency: bench/radload.py sends at a fixed rate (--latency-rates) direct to the upstream
   and through a fresh `op25b serve`, in rounds with the order alternating; RTT p50/p99 and the
   difference per round (its median over rounds is the result; pooled figures beside it), for
   subscribers seen for the first time and for the first round's again (`op25b-again`).
3. memory: VmRSS of `op25b serve` after --memory-subscribers distinct subscribers
   authenticated once (imported into the database first unless --no-memory-import).
4. storm: --storm requests with `radclient -p P -r 3` per --storm-parallel value into a fresh
   `op25b serve` (metrics on, to report its reply and duplicate counters); radclient's lost.
5. profile: py-spy records `op25b serve` under radclient load twice (all threads; GIL holder)
   and the hot spots are tabulated (raw collapsed stacks in --profile-output.*.txt).

FreeRADIUS 3.2.1 cannot size the receive buffer of its sockets towards the home server; under
a burst they overflow at the kernel default (net.core.rmem_default, 208 KiB) and the dropped
replies cost radclient -t each. --rmem-default raises the default for the run and restores it.

Results are printed and appended as markdown to bench/RESULTS.md (unless --no-record). Every
process started is stopped; the scratch database is dropped unless --keep. Needs Debian's
freeradius, freeradius-utils and freeradius-postgresql, PostgreSQL, and py-spy for step 5.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(BENCH_DIR))

import radload
import sqlalchemy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.freeradius import DICT_DIR, RADCLIENT, FreeRadiusInstance, free_udp_port
from tests.freeradius import TEMPLATE_DIR as UPSTREAM_TEMPLATE

RESULTS = BENCH_DIR / "RESULTS.md"
SQL_PROXY_TEMPLATE = REPO_ROOT / "deploy" / "freeradius-sql-proxy"
ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
SCRATCH_DB = "op25b_perf"
LOCK_PATH = "/tmp/op25b-proxy-bench.lock"
NAS_SECRET = "nas-secret"
UPSTREAM_SECRET = "upstream-secret"
DEFAULT_PASSWORD = (
    "anyone"  # the upstream's DEFAULT entry: subscribers without their own entry
)
SETPRIV = shutil.which("setpriv")
REALMS = (("isp.example", None), ("mvno.example", "mobile"))
FILTERS = {"full": "OP25B-FULL", "mobile": "OP25B-MOBILE"}


# --- the subscribers ---------------------------------------------------------------------------------
# Subscriber i: u<i>@isp.example, every tenth in mvno.example (realm default: mobile); every tenth
# (i % 10 == 4) has a class override `mobile`; everybody else is `full` (policy default).  All are
# dynamic, so every Accept gets a Filter-Id.  The upstream knows subscribers below --subscribers by
# their own password and everybody else by its DEFAULT entry.


def username(i: int) -> str:
    return f"u{i:07d}@{'mvno.example' if i % 10 == 9 else 'isp.example'}"


def expected_class(i: int) -> str:
    return "mobile" if i % 10 in (4, 9) else "full"


def password(i: int, known: int) -> str:
    return f"pw{i}" if i < known else DEFAULT_PASSWORD


def write_import_csv(path: Path, start: int, stop: int) -> None:
    with path.open("w") as fh:
        fh.write("username,realm,ip_type,static_addresses,class,note\n")
        for i in range(start, stop):
            fh.write(f"{username(i)},,dynamic,,{'mobile' if i % 10 == 4 else ''},\n")


def upstream_users(n: int) -> str:
    parts = [
        f'{username(i)}\tCleartext-Password := "pw{i}"\n'
        f"\tFramed-IP-Address = 100.{64 + (i >> 16) % 64}.{(i >> 8) & 255}.{i & 255},\n"
        f"\tSession-Timeout = 3600\n\n"
        for i in range(n)
    ]
    parts.append(
        f'DEFAULT\tCleartext-Password := "{DEFAULT_PASSWORD}"\n\tFramed-IP-Address = 100.127.0.1,\n\tSession-Timeout = 3600\n'
    )
    return "".join(parts)


# radclient's filter (-f requests:expected) must name every attribute of the reply (else "Attribute
# ... not found in filter"); `=* ANY` only asks for presence.  Filter-Id and our Class are checked.
EXPECT = """Response-Packet-Type == Access-Accept
Message-Authenticator =* ANY
Framed-IP-Address =* ANY
Session-Timeout =* ANY
Filter-Id == "{filter}"
Class == 0x{tag}

"""


def write_requests(
    path: Path, indices: Iterable[int], known: int, expect: Path | None = None
) -> int:
    """radclient -f file (packets separated by blank lines) and, optionally, its filter file."""
    count = 0
    with (
        path.open("w") as req,
        expect.open("w") if expect else open(os.devnull, "w") as exp,
    ):
        for i in indices:
            req.write(
                f'User-Name = "{username(i)}"\nUser-Password = "{password(i, known)}"\n\n'
            )
            cls = expected_class(i)
            exp.write(
                EXPECT.format(filter=FILTERS[cls], tag=f"op25b:{cls}".encode().hex())
            )
            count += 1
    return count


# --- processes -----------------------------------------------------------------------------------------


def recv_buffer() -> int:
    """UDP receive buffer for FreeRADIUS' listen sockets: 8 MiB like op25b's, capped by rmem_max
    (FreeRADIUS uses plain SO_RCVBUF, which the kernel silently caps there)."""
    try:
        return min(
            8 * 1024 * 1024, int(Path("/proc/sys/net/core/rmem_max").read_text())
        )
    except (OSError, ValueError):
        return 8 * 1024 * 1024


class Upstream(FreeRadiusInstance):
    """deploy/freeradius (the tests' upstream), rendered as is, then in the copy: no per-request
    auth log line, and a large UDP receive buffer (so bursts are not dropped by the kernel)."""

    def render(self) -> Path:
        conf = super().render()
        radiusd = conf / "radiusd.conf"
        body = radiusd.read_text()
        for key in ("auth", "auth_badpass", "auth_goodpass"):
            body = re.sub(rf"(?m)^(\s*{key}\s*=\s*)yes", r"\1no", body)
        radiusd.write_text(body)
        site = conf / "sites" / "default"
        body, count = re.subn(
            r"(?m)^(\s*)proto = udp$",
            rf"\g<0>\n\1recv_buff = {recv_buffer()}",
            site.read_text(),
        )
        if count != 2:
            raise RuntimeError(
                f"{site}: expected 2 listen sections with proto = udp, found {count}"
            )
        site.write_text(body)
        return conf


class SqlProxy(FreeRadiusInstance):
    """B: deploy/freeradius-sql-proxy rendered into run_dir/raddb (see its README.md)."""

    def __init__(
        self,
        name: str,
        auth_port: int,
        acct_port: int,
        tmp_dir: Path,
        *,
        upstream: FreeRadiusInstance,
        database: str,
        threads: int,
        sql_pool: int,
    ) -> None:
        super().__init__(
            name, auth_port, acct_port, NAS_SECRET, None, tmp_dir, start_timeout=20.0
        )
        self.values = {
            "@CONFDIR@": str(self.conf_dir),
            "@RUNDIR@": str(self.run_dir),
            "@AUTH_PORT@": str(auth_port),
            "@ACCT_PORT@": str(acct_port),
            "@SECRET@": NAS_SECRET,
            "@UPSTREAM_ADDR@": "127.0.0.1",
            "@UPSTREAM_AUTH_PORT@": str(upstream.auth_port),
            "@UPSTREAM_ACCT_PORT@": str(upstream.acct_port),
            "@UPSTREAM_SECRET@": upstream.secret,
            "@SQL_SERVER@": "127.0.0.1",
            "@SQL_PORT@": "5432",
            "@SQL_LOGIN@": "postgres",
            "@SQL_PASSWORD@": "",
            "@SQL_DB@": database,
            "@THREADS@": str(threads),
            "@THREADS_START@": str(max(1, threads // 2)),
            "@SQL_POOL@": str(sql_pool),
            "@SQL_POOL_START@": str(max(1, sql_pool // 2)),
            "@RECV_BUFF@": str(recv_buffer()),
        }

    def render(self) -> Path:
        conf = self.conf_dir
        if conf.exists():
            shutil.rmtree(conf)
        conf.mkdir(parents=True)
        os.chmod(self.run_dir, 0o700)
        pattern = re.compile("|".join(re.escape(k) for k in self.values))
        for src in sorted(SQL_PROXY_TEMPLATE.rglob("*")):
            rel = src.relative_to(SQL_PROXY_TEMPLATE)
            if rel.name == "README.md":
                continue
            dst = conf / rel
            if src.is_dir():
                dst.mkdir(exist_ok=True)
                continue
            dst.write_text(
                pattern.sub(lambda m: self.values[m.group(0)], src.read_text())
            )
            os.chmod(dst, 0o640)
        return conf

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Op25bServe:
    """A: `op25b serve` with a config of our own (one client 127.0.0.1, generic, metrics off)."""

    def __init__(
        self,
        run_dir: Path,
        database_url: str,
        upstream: FreeRadiusInstance,
        metrics: bool = False,
        workers: int = 1,
    ) -> None:
        self.dir = run_dir
        self.workers = workers
        run_dir.mkdir(parents=True, exist_ok=True)
        self.auth_port, self.acct_port = free_udp_port(), free_udp_port()
        while self.acct_port == self.auth_port:
            self.acct_port = free_udp_port()
        self.config = run_dir / "op25b.toml"
        self.log = run_dir / "op25b.log"
        policy = ""
        self.metrics_port = free_tcp_port() if metrics else None
        if self.metrics_port:
            policy += f'\n[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n'
        self.config.write_text(
            f'[database]\nurl = "{database_url}"\n\n'
            f'[server]\nauth_listen = "127.0.0.1:{self.auth_port}"\nacct_listen = "127.0.0.1:{self.acct_port}"\n'
            f"{policy}\n"
            f'[[clients]]\nname = "bench"\naddress = "127.0.0.1"\nsecret = "{NAS_SECRET}"\nprofile = "generic"\n'
            f"require_message_authenticator = false\n\n"
            f'[[upstreams]]\nname = "upstream"\naddress = "127.0.0.1"\nauth_port = {upstream.auth_port}\n'
            f'acct_port = {upstream.acct_port}\nsecret = "{upstream.secret}"\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def auth_addr(self) -> str:
        return f"127.0.0.1:{self.auth_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Op25bServe:
        args = [*op25b_command(), "-c", str(self.config), "serve"]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        if SETPRIV:
            args = [SETPRIV, "--pdeathsig", "TERM", "--", *args]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.append(self)
        deadline = time.monotonic() + timeout
        while "serving auth on" not in self.log.read_text(errors="replace")[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"op25b serve did not start:\n{tail}")
            time.sleep(0.05)
        return self

    def metrics(self) -> dict[str, float]:
        """Prometheus samples (name with labels -> value); {} when metrics are off."""
        if not self.metrics_port:
            return {}
        body = (
            urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10
            )
            .read()
            .decode()
        )
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if self in _LIVE:
            _LIVE.remove(self)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


_LIVE: list[Op25bServe] = []


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def op25b_command() -> list[str]:
    script = Path(sys.executable).parent / "op25b"
    if script.exists():
        return [str(script)]
    found = shutil.which("op25b")
    return [found] if found else [sys.executable, "-m", "radius_op25b"]


def run_op25b(config: Path, *args: str, timeout: float = 900) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [*op25b_command(), "-c", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"op25b {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
        )
    return time.perf_counter() - start, done.stdout


def proc_status(pid: int, key: str) -> int:
    """A kB figure (VmRSS, VmHWM, ...) from /proc/PID/status."""
    m = re.search(
        rf"^{key}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE
    )
    return int(m.group(1)) if m else 0


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    lines = [
        ln.split()
        for ln in Path("/proc/net/snmp").read_text().splitlines()
        if ln.startswith("Udp:")
    ]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (`op25b serve --workers N` forks N - 1 children)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(fields[1])].append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, ()))
    return tree


def socket_drops(pid: int) -> int:
    """Datagrams dropped on the UDP sockets of a process tree (the `drops` column of /proc/net/udp*)."""
    inodes = set()
    for member in process_tree(pid):
        try:
            fds = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 12 and cols[9] in inodes:
                total += int(cols[-1])
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its descendants, all threads."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# --- radclient -------------------------------------------------------------------------------------------


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
    verify_failed: int = (
        0  # radclient "Reply verification failed" lines (only without -q)
    )
    unmatched: int = (
        0  # radclient "Received reply to request we did not send" (only without -q)
    )
    drops_system: int = 0  # UDP RcvbufErrors on the whole machine during the run
    drops_proxy: int = (
        0  # datagrams dropped on the proxy's own sockets (since it started)
    )

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        s = f"{self.requests:,} req in {self.seconds:.2f} s = {self.rate:,.0f}/s; accepted {self.accepted:,}, rejected {self.rejected:,}, lost {self.lost:,}"
        if self.passed or self.failed:
            s += f", filter passed {self.passed:,} failed {self.failed:,}"
        if self.drops_system or self.drops_proxy:
            s += f"; UDP drops: proxy {self.drops_proxy:,}, machine {self.drops_system:,}"
        return s


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
    assert server.startswith("127.0.0.1:")
    files = f"{requests}:{expect}" if expect else str(requests)
    args = [
        RADCLIENT,
        "-D",
        DICT_DIR,
        "-d",
        str(UPSTREAM_TEMPLATE),
        *(["-q"] if quiet else []),
        "-s",
        "-p",
        str(parallel),
        "-t",
        str(timeout),
        "-r",
        str(retries),
        "-f",
        files,
        server,
        "auth",
        secret,
    ]
    bound = 60 + count * (timeout * (retries + 1)) / max(1, parallel) + count / 200
    cpu0 = cpu_seconds(pid) if pid else 0.0
    drops0 = udp_rcvbuf_errors()
    start = time.perf_counter()
    if quiet:
        done = subprocess.run(
            args, capture_output=True, text=True, check=False, timeout=bound
        )
        stdout = done.stdout
    else:
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(
                args,
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
                timeout=bound,
            )
            out.seek(0)
            stdout = out.read()
        stdout = (
            stdout[stdout.rfind("Packet summary") :]
            if "Packet summary" in stdout
            else stdout[-3000:]
        )
    seconds = time.perf_counter() - start
    run = RadclientRun(count, seconds, returncode=done.returncode)
    run.verify_failed = done.stderr.count("Reply verification failed")
    run.unmatched = done.stderr.count("Received reply to request we did not send")
    run.drops_system = udp_rcvbuf_errors() - drops0
    if pid:
        run.cpu_s = cpu_seconds(pid) - cpu0
        run.drops_proxy = socket_drops(pid)
    for label, attr in (
        ("Accepted", "accepted"),
        ("Rejected", "rejected"),
        ("Lost", "lost"),
        ("Passed filter", "passed"),
        ("Failed filter", "failed"),
    ):
        m = re.search(rf"{label}\s*:\s*(\d+)", stdout)
        if m:
            setattr(run, attr, int(m.group(1)))
    if "Accepted" not in stdout:
        raise RuntimeError(
            f"radclient printed no summary (rc {done.returncode}):\n{stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return run


# --- machine facts ---------------------------------------------------------------------------------------


def machine_facts(admin_url: str) -> dict[str, str]:
    facts = {"nproc": str(os.cpu_count())}
    try:
        models = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        if models:
            facts["cpu"] = models[0]
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        facts["memory"] = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    facts["kernel"] = platform.release()
    for knob in ("rmem_default", "rmem_max"):
        try:
            facts[f"net.core.{knob}"] = (
                Path(f"/proc/sys/net/core/{knob}").read_text().strip()
            )
        except OSError:
            pass
    facts["python"] = platform.python_version()
    facts["sqlalchemy"] = sqlalchemy.__version__
    for module in ("psycopg2", "pyrad"):
        try:
            mod = __import__(module)
            facts[module] = str(getattr(mod, "__version__", "?")).split()[0]
        except ImportError:
            pass
    for what, cmd in (
        ("freeradius", ["dpkg-query", "-W", "-f", "${Version}", "freeradius"]),
        (
            "freeradius-postgresql",
            ["dpkg-query", "-W", "-f", "${Version}", "freeradius-postgresql"],
        ),
    ):
        try:
            facts[what] = (
                subprocess.run(
                    cmd, capture_output=True, text=True, check=False, timeout=10
                ).stdout.strip()
                or "?"
            )
        except OSError:
            facts[what] = "?"
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            facts["postgresql"] = str(conn.scalar(text("SHOW server_version")))
            for setting in ("shared_buffers", "synchronous_commit"):
                facts[f"pg {setting}"] = str(conn.scalar(text(f"SHOW {setting}")))
    finally:
        engine.dispose()
    try:
        facts["git"] = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
                timeout=10,
            ).stdout.strip()
            + " (+ working tree)"
        )
    except OSError:
        pass
    return facts


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the phases --------------------------------------------------------------------------------------------


@dataclass
class Pair:
    order: str
    a: RadclientRun
    b: RadclientRun
    a_cached: RadclientRun | None = (
        None  # A again on the same process (information only)
    )

    @property
    def ratio(self) -> float:
        return self.a.rate / self.b.rate if self.b.rate else float("inf")


@dataclass
class Figures:
    command: str
    args: argparse.Namespace
    facts: dict[str, str] = field(default_factory=dict)
    load_start: str = ""
    load_end: str = ""
    started: str = ""
    import_s: float = 0.0
    upstream_start_s: float = 0.0
    direct: RadclientRun | None = None
    pairs: list[Pair] = field(default_factory=list)
    # rate -> (target -> merged phase, distinct subscribers proxied, requests proxied,
    #          per round: target -> (added p50 ms, added p99 ms))
    latency: dict[float, tuple[dict[str, radload.Phase], int, int, list[dict[str, tuple[float, float]]]]] = field(
        default_factory=dict
    )
    memory: dict[str, object] = field(default_factory=dict)
    storms: list[tuple[int, RadclientRun, dict[str, float]]] = field(
        default_factory=list
    )
    profile: dict[str, dict[str, object]] = field(
        default_factory=dict
    )  # view (threads, gil) -> summary
    notes: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.n = args.subscribers
        self.admin_url = args.admin_url
        self.db_url = (
            make_url(args.admin_url)
            .set(database=SCRATCH_DB)
            .render_as_string(hide_password=False)
        )
        self.figures = Figures(
            " ".join(["python", "bench/proxy_bench.py", *sys.argv[1:]]), args
        )
        self.upstream: Upstream | None = None
        self.in_db = 0  # subscribers imported so far
        self.runs = 0

    # -- set-up ------------------------------------------------------------------------------------
    def scratch_db(self, create: bool) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(
                    text(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
                )
                if create:
                    conn.execute(text(f'CREATE DATABASE "{SCRATCH_DB}"'))
        finally:
            engine.dispose()

    def setup(self) -> None:
        print(f"scratch database {SCRATCH_DB}, {self.n:,} subscribers")
        self.scratch_db(create=True)
        cfg = self.tmp / "admin.toml"
        cfg.write_text(
            f'[database]\nurl = "{self.db_url}"\n\n[[clients]]\nname = "bench"\naddress = "127.0.0.1"\nsecret = "{NAS_SECRET}"\n'
        )
        self.admin_cfg = cfg
        run_op25b(cfg, "db", "upgrade")
        for name, cls in REALMS:
            run_op25b(
                cfg,
                "realm",
                "add",
                name,
                *(("--class", cls) if cls else ()),
                "--actor",
                "bench",
            )
        self.import_range(0, self.n)
        users = upstream_users(self.n)
        self.upstream = Upstream(
            "upstream",
            free_udp_port(),
            free_udp_port(),
            UPSTREAM_SECRET,
            users,
            self.tmp / "upstream",
            start_timeout=120.0,
        )
        self.upstream.start()
        self.figures.upstream_start_s = self.upstream.startup_seconds or 0.0
        print(
            f"  upstream FreeRADIUS with {self.n:,} users entries up in {self.figures.upstream_start_s:.1f} s"
        )

    def import_range(self, start: int, stop: int) -> float:
        if stop <= start:
            return 0.0
        path = self.tmp / f"subscribers-{start}-{stop}.csv"
        write_import_csv(path, start, stop)
        seconds, out = run_op25b(
            self.admin_cfg, "subscriber", "import", str(path), "--actor", "bench"
        )
        path.unlink()
        self.in_db = max(self.in_db, stop)
        print(
            f"  op25b subscriber import of {stop - start:,} rows: {seconds:.1f} s ({out.strip()})"
        )
        if start == 0:
            self.figures.import_s = seconds
        # Fresh statistics, as a real installation would have; both A and B profit alike.
        engine = create_engine(self.db_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text("VACUUM ANALYZE"))
        finally:
            engine.dispose()
        return seconds

    def start_a(
        self, tag: str, metrics: bool = False, workers: int = 1
    ) -> Op25bServe:
        self.runs += 1
        assert self.upstream is not None
        return Op25bServe(
            self.tmp / f"a-{self.runs}-{tag}",
            self.db_url,
            self.upstream,
            metrics,
            workers,
        ).start()

    def start_b(self, tag: str) -> SqlProxy:
        self.runs += 1
        assert self.upstream is not None
        proxy = SqlProxy(
            "sqlproxy",
            free_udp_port(),
            free_udp_port(),
            self.tmp / f"b-{self.runs}-{tag}",
            upstream=self.upstream,
            database=SCRATCH_DB,
            threads=self.args.fr_threads,
            sql_pool=self.args.fr_sql_pool,
        )
        return proxy.start()

    def wait_idle(self, pid: int, limit: float = 30.0) -> float:
        """Wait (at most `limit` s) until the process uses under 5 % of a CPU over 0.2 s."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            c0 = cpu_seconds(pid)
            time.sleep(0.2)
            if cpu_seconds(pid) - c0 < 0.01:
                break
        waited = time.monotonic() - start
        if waited > 1.0:
            self.figures.notes.append(
                f"latency: waited {waited:.1f} s for op25b serve to finish a backlog before a round"
            )
        return waited

    def pg_backend_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each PostgreSQL backend connected to the scratch database."""
        engine = create_engine(self.admin_url)
        try:
            with engine.connect() as conn:
                pids = conn.scalars(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = :db"),
                    {"db": SCRATCH_DB},
                ).all()
        finally:
            engine.dispose()
        out = {}
        for pid in pids:
            try:
                out[int(pid)] = cpu_seconds(int(pid))
            except (OSError, ValueError, IndexError):
                pass  # gone, or on another host
        return out

    # -- 1. throughput -------------------------------------------------------------------------------
    def throughput(self) -> None:
        args, n = self.args, self.n
        assert self.upstream is not None
        r = args.requests
        warm_n = min(args.warmup, max(0, n - r)) if n > r else min(args.warmup, n // 10)
        measured = self.tmp / "requests.txt"
        expect = self.tmp / "expected.txt"
        warm = self.tmp / "warmup.txt"
        write_requests(measured, (j % n for j in range(r)), n, expect)
        write_requests(warm, range(n - warm_n, n), n)
        print(
            f"throughput: {r:,} requests ({min(r, n):,} distinct subscribers), radclient -p {args.parallel}, {args.pairs} pair(s)"
        )

        d = radclient_file(
            self.upstream.auth_addr,
            UPSTREAM_SECRET,
            measured,
            r,
            parallel=args.parallel,
        )
        self.figures.direct = d
        print(f"  direct to the upstream (capacity reference): {d.summary()}")

        cached: dict[int, RadclientRun] = {}

        def measure(side: str) -> RadclientRun:
            server = self.start_a("tput", workers=args.a_workers) if side == "A" else self.start_b("tput")
            try:
                addr = server.auth_addr
                if warm_n:
                    radclient_file(
                        addr, NAS_SECRET, warm, warm_n, parallel=min(32, args.parallel)
                    )
                pg0 = self.pg_backend_cpu()
                run = radclient_file(
                    addr,
                    NAS_SECRET,
                    measured,
                    r,
                    expect=expect,
                    parallel=args.parallel,
                    pid=server.pid,
                )
                pg1 = self.pg_backend_cpu()
                run.pg_cpu_s = sum(pg1.values()) - sum(
                    v for pid, v in pg0.items() if pid in pg1
                )
                if side == "A":
                    # Information only: the same requests again on the same (warm) process.
                    cached[len(self.figures.pairs)] = radclient_file(
                        addr,
                        NAS_SECRET,
                        measured,
                        r,
                        expect=expect,
                        parallel=args.parallel,
                        pid=server.pid,
                    )
            finally:
                server.stop()
            print(
                f"    {side}: {run.summary()}; CPU per request: proxy {run.cpu_s * 1e6 / r:,.0f} us, "
                f"its PostgreSQL backends {run.pg_cpu_s * 1e6 / r:,.0f} us"
            )
            return run

        for p in range(args.pairs):
            order = "AB" if p % 2 == 0 else "BA"
            got = {side: measure(side) for side in order}
            pair = Pair(order, got["A"], got["B"], cached.get(p))
            self.figures.pairs.append(pair)
            for side, run in got.items():
                if run.drops_proxy:
                    self.figures.notes.append(
                        f"throughput pair {p + 1}: {run.drops_proxy} datagram(s) dropped on {side}'s sockets "
                        f"(full receive buffer): its rate there mostly measures radclient's 5 s retransmission "
                        f"wait, not the proxy; --rmem-default 8388608 avoids that for B"
                    )
            print(
                f"  pair {p + 1} ({order}): A {pair.a.rate:,.0f}/s, B {pair.b.rate:,.0f}/s, ratio A/B {pair.ratio:.2f}"
                + (
                    f"; A again on the same process {pair.a_cached.rate:,.0f}/s"
                    if pair.a_cached
                    else ""
                )
            )

    # -- 2. latency ----------------------------------------------------------------------------------
    def latency(self) -> None:
        for rate in self.args.latency_rates:
            self.latency_at(rate)

    def latency_at(self, rate: float) -> None:
        """Rounds of direct / op25b (first-seen subscribers) / op25b-again (the first round's
        subscribers once more), the order alternating per round. The added latency is taken per
        round (op25b percentile minus direct percentile of the same round) and its median over
        rounds reported, next to the pooled figure: a few ms of stolen CPU in one round of a
        shared VM then moves one round, not the result."""
        args, n = self.args, self.n
        assert self.upstream is not None
        seconds, rounds = args.latency_seconds, args.latency_rounds
        per_round = max(1, int(rate * seconds))
        print(
            f"latency: {rate:,.0f} req/s, {rounds} rounds x {seconds:g} s per target, order alternating, fresh op25b serve"
        )
        server = self.start_a(f"latency-{rate:g}")
        # Subscribers from the middle of the range, other ones per rate where N allows.
        base = (n // 2 + len(self.figures.latency) * rounds * per_round) % n
        try:
            # A short warm-up (other subscribers), so connection set-up is not measured.
            warm = [
                (username((base - 1 - k) % n), password((base - 1 - k) % n, n))
                for k in range(min(200, n))
            ]
            radload.run_paced(
                "127.0.0.1",
                server.auth_port,
                NAS_SECRET.encode(),
                warm,
                rate=min(rate, 1000.0),
                seconds=len(warm) / min(rate, 1000.0),
            )
            phases: dict[str, list[radload.Phase]] = collections.defaultdict(list)
            per_round_added: list[dict[str, tuple[float, float]]] = []
            first_round: list[tuple[str, str]] = []
            proxied = 0
            distinct: set[str] = set()
            for rnd in range(rounds):
                users = [
                    (username(i % n), password(i % n, n))
                    for i in range(base + rnd * per_round, base + (rnd + 1) * per_round)
                ]
                first_round = first_round or users
                order = ["direct", "op25b", "op25b-again"]
                if rnd % 2:
                    order.reverse()
                got: dict[str, radload.Phase] = {}
                for target in order:
                    if target == "direct":
                        port, secret, batch = self.upstream.auth_port, UPSTREAM_SECRET, users
                    else:
                        port, secret = server.auth_port, NAS_SECRET
                        # op25b-again in round 0 comes after op25b (the order), so it is a repeat too.
                        batch = users if target == "op25b" else first_round
                    # A saturated round leaves op25b a backlog: let it finish first, so that
                    # no round is measured against the previous one's leftovers.
                    self.wait_idle(server.pid)
                    got[target] = radload.run_paced(
                        "127.0.0.1", port, secret.encode(), batch, rate=rate, seconds=seconds, target=target
                    )
                    if target != "direct":
                        proxied += got[target].sent
                        distinct.update(u for u, _ in batch[: got[target].sent])
                pct = radload.percentile
                d = got["direct"].rtts_ms
                per_round_added.append(
                    {
                        t: (pct(got[t].rtts_ms, 0.5) - pct(d, 0.5), pct(got[t].rtts_ms, 0.99) - pct(d, 0.99))
                        for t in ("op25b", "op25b-again")
                    }
                )
                for target, ph in got.items():
                    phases[target].append(ph)
        finally:
            server.stop()
        merged_all: dict[str, radload.Phase] = {}
        for target in ("direct", "op25b", "op25b-again"):
            merged = radload.Phase(target)
            for ph in phases[target]:
                merged.sent += ph.sent
                merged.accepted += ph.accepted
                merged.rejected += ph.rejected
                merged.with_filter_id += ph.with_filter_id
                merged.lost += ph.lost
                merged.skipped += ph.skipped
                merged.rtts_ms += ph.rtts_ms
                merged.send_lag_ms += ph.send_lag_ms
                merged.seconds += ph.seconds
            merged_all[target] = merged
        self.figures.latency[rate] = (merged_all, len(distinct), proxied, per_round_added)
        pct = radload.percentile
        for target, merged in merged_all.items():
            print(
                f"  {target:13s} sent {merged.sent:,} accepted {merged.accepted:,} lost {merged.lost:,}  RTT p50 "
                f"{pct(merged.rtts_ms, 0.5):.3f} ms p99 {pct(merged.rtts_ms, 0.99):.3f} ms max {max(merged.rtts_ms, default=float('nan')):.1f} ms"
            )
        d = merged_all["direct"].rtts_ms
        for target in ("op25b", "op25b-again"):
            r = merged_all[target].rtts_ms
            rounds_p50 = [a[target][0] for a in per_round_added]
            rounds_p99 = [a[target][1] for a in per_round_added]
            print(
                f"  added by op25b ({target}): median of rounds p50 {median(rounds_p50):.3f} ms, p99 {median(rounds_p99):.3f} ms "
                f"(rounds p99: {', '.join(f'{x:.2f}' for x in rounds_p99)}); pooled p50 {pct(r, 0.5) - pct(d, 0.5):.3f} ms, "
                f"p99 {pct(r, 0.99) - pct(d, 0.99):.3f} ms"
            )

    # -- 3. memory -------------------------------------------------------------------------------------
    def memory(self) -> None:
        args = self.args
        m = args.memory_subscribers
        if m <= 0:
            return
        if not args.no_memory_import and self.in_db < m:
            print(f"memory: importing subscribers {self.in_db:,}..{m - 1:,} first")
            self.figures.memory["import_s"] = self.import_range(self.in_db, m)
        in_db = min(m, self.in_db)
        print(
            f"memory: {m:,} distinct subscribers authenticate once through op25b serve ({in_db:,} of them in the database)"
        )
        server = self.start_a("memory")
        samples: list[tuple[int, int]] = []
        totals = RadclientRun(0, 0.0)
        try:
            time.sleep(0.5)
            samples.append((0, proc_status(server.pid, "VmRSS")))
            chunk = 100_000
            start = time.perf_counter()
            deadline = start + args.memory_max_seconds
            done = 0
            while done < m:
                if time.perf_counter() > deadline:
                    self.figures.notes.append(
                        f"memory: stopped at {done:,} subscribers (--memory-max-seconds {args.memory_max_seconds})"
                    )
                    break
                k = min(chunk, m - done)
                path = self.tmp / "memory-requests.txt"
                write_requests(path, range(done, done + k), self.n)
                run = radclient_file(
                    server.auth_addr, NAS_SECRET, path, k, parallel=args.parallel
                )
                totals.requests += k
                totals.seconds += run.seconds
                totals.accepted += run.accepted
                totals.rejected += run.rejected
                totals.lost += run.lost
                done += k
                samples.append((done, proc_status(server.pid, "VmRSS")))
                print(
                    f"  {done:>9,} subscribers: VmRSS {samples[-1][1] / 1024:.0f} MiB ({run.rate:,.0f} req/s, lost {run.lost})"
                )
            time.sleep(1.0)
            loaded = re.findall(r"policy loaded in ([\d.]+)s: (\d+) subscriber", server.log.read_text())
            self.figures.memory.update(
                held=int(loaded[-1][1]) if loaded else -1,
                load_s=float(loaded[-1][0]) if loaded else float("nan"),
                subscribers=done,
                in_db=in_db,
                rss_kib=proc_status(server.pid, "VmRSS"),
                hwm_kib=proc_status(server.pid, "VmHWM"),
                samples=samples,
                run=totals,
            )
        finally:
            server.stop()
        mem = self.figures.memory
        print(
            f"  after {done:,}: VmRSS {mem['rss_kib'] / 1024:.0f} MiB, VmHWM {mem['hwm_kib'] / 1024:.0f} MiB; {totals.summary()}"
        )

    # -- 4. storm ----------------------------------------------------------------------------------------
    def storm(self) -> None:
        args, n = self.args, self.n
        s = args.storm
        if s <= 0:
            return
        path = self.tmp / "storm.txt"
        write_requests(path, (j % max(n, self.in_db) for j in range(s)), n)
        for parallel in args.storm_parallels:
            print(
                f"storm: {s:,} Access-Requests, radclient -p {parallel} -r 3 -t {args.storm_timeout:g}, fresh op25b serve (metrics on)"
            )
            server = self.start_a(f"storm-{parallel}", metrics=True)
            try:
                run = radclient_file(
                    server.auth_addr,
                    NAS_SECRET,
                    path,
                    s,
                    parallel=parallel,
                    timeout=args.storm_timeout,
                    retries=3,
                    pid=server.pid,
                    quiet=False,
                )
                time.sleep(0.5)
                m = server.metrics()
            finally:
                server.stop()
            counters = {
                "requests": m.get(
                    'op25b_requests_total{client="bench",type="auth"}', 0.0
                ),
                "replies": m.get(
                    'op25b_replies_total{client="bench",type="auth"}', 0.0
                ),
                "duplicates answered from cache": m.get(
                    "op25b_duplicates_answered_total", 0.0
                ),
                "duplicates dropped in flight": m.get(
                    'op25b_drops_total{cause="duplicate_in_flight"}', 0.0
                ),
                "other drops": sum(
                    v
                    for k, v in m.items()
                    if k.startswith("op25b_drops_total")
                    and "duplicate_in_flight" not in k
                ),
                "upstream timeouts": sum(
                    v
                    for k, v in m.items()
                    if k.startswith("op25b_upstream_timeouts_total")
                ),
                "abandoned": sum(
                    v
                    for k, v in m.items()
                    if k.startswith("op25b_requests_abandoned_total")
                ),
                "mean upstream RTT ms": 1000.0
                * sum(
                    v
                    for k, v in m.items()
                    if k.startswith("op25b_upstream_rtt_seconds_sum")
                )
                / max(
                    1.0,
                    sum(
                        v
                        for k, v in m.items()
                        if k.startswith("op25b_upstream_rtt_seconds_count")
                    ),
                ),
            }
            self.figures.storms.append((parallel, run, counters))
            print(f"  {run.summary()}")
            print("  op25b: " + ", ".join(f"{k} {v:,.0f}" for k, v in counters.items()))

    # -- 5. profile --------------------------------------------------------------------------------------
    def profile(self) -> None:
        args, n = self.args, self.n
        if args.profile_seconds <= 0:
            return
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(pyspy).exists():
            self.figures.notes.append(
                "profile: py-spy not installed (pip install py-spy); skipped"
            )
            print("profile: py-spy not found, skipped")
            return
        seconds = int(max(1, args.profile_seconds))
        count = (
            seconds * 2 * 3000 + 5000
        )  # more than op25b answers in the two recordings; killed after
        path = self.tmp / "profile-requests.txt"
        write_requests(path, (j % max(n, self.in_db) for j in range(count)), n)
        base = Path(args.profile_output)
        print(
            f"profile: py-spy record 2 x {seconds} s of op25b serve under radclient -p {args.parallel} load -> {base}.*"
        )
        server = self.start_a("profile")
        try:
            client = subprocess.Popen(
                [
                    RADCLIENT,
                    "-D",
                    DICT_DIR,
                    "-d",
                    str(UPSTREAM_TEMPLATE),
                    "-q",
                    "-s",
                    "-p",
                    str(args.parallel),
                    "-f",
                    str(path),
                    server.auth_addr,
                    "auth",
                    NAS_SECRET,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(1.0)
                for view, extra in (("threads", []), ("gil", ["--gil"])):
                    out = Path(f"{base}.{view}.txt")
                    rec = subprocess.run(
                        [
                            pyspy,
                            "record",
                            "--pid",
                            str(server.pid),
                            "--duration",
                            str(seconds),
                            "--rate",
                            "200",
                            "--format",
                            "raw",
                            "--threads",
                            "--nonblocking",
                            *extra,
                            "-o",
                            str(out),
                        ],
                        capture_output=True,
                        text=True,
                        check=False,
                        timeout=seconds + 60,
                    )
                    if rec.returncode != 0:
                        self.figures.notes.append(
                            f"profile: py-spy failed: {rec.stderr.strip()[-300:]}"
                        )
                        print(f"  py-spy failed: {rec.stderr.strip()[-500:]}")
                        return
                    summary = summarize_profile(out)
                    summary["file"] = str(out)
                    self.figures.profile[view] = summary
                    print(f"  view: {view}")
                    print_profile(summary)
                    if client.poll() is not None:
                        self.figures.notes.append(
                            "profile: the radclient load ended before the recording did"
                        )
            finally:
                if client.poll() is None:
                    client.kill()
                client.wait(10)
        finally:
            server.stop()


# --- py-spy collapsed stacks -------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("radius_op25b/", "site-packages/", "/python3."):
        if marker in path:
            path = path[path.index(marker) :]
            break
    path = re.sub(r"^(site-packages/|/python3\.\d+/)", "", path)
    return f"{m.group('func')} ({path})"


def _thread_group(root: str) -> str:
    name = re.sub(r"\(0x[0-9a-f]+\)|\(\d+\)|thread", "", root).strip().strip(':" ')
    return re.sub(r"_\d+$", "", name) or root


def summarize_profile(path: Path, top: int = 20) -> dict[str, object]:
    """Sample shares from py-spy's raw (collapsed stacks) output: per thread group, self and
    inclusive per function (all threads), and self per function for the event loop thread."""
    total = 0
    groups: collections.Counter[str] = collections.Counter()
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    main_self: collections.Counter[str] = collections.Counter()
    main_incl: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        root = frames[0]
        frames = [_short(f) for f in frames[1:] if not f.startswith("process ")]
        total += count
        group = _thread_group(root)
        groups[group] += count
        if not frames:
            continue
        self_t[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
        if group == "MainThread":
            main_self[frames[-1]] += count
            for f in set(frames):
                main_incl[f] += count

    def pct(c: int) -> float:
        return 100.0 * c / total if total else 0.0

    boring = {
        "<module> (op25b)",
        "main (radius_op25b/cli.py)",
        "cmd_serve (radius_op25b/cli.py)",
        "serve (radius_op25b/proxy/server.py)",
        "Thread._bootstrap (threading.py)",
        "Thread._bootstrap_inner (threading.py)",
        "Thread.run (threading.py)",
        "_worker (concurrent/futures/thread.py)",
        "run (asyncio/runners.py)",
        "Runner.run (asyncio/runners.py)",
        "BaseEventLoop.run_until_complete (asyncio/base_events.py)",
        "BaseEventLoop.run_forever (asyncio/base_events.py)",
    }
    return {
        "samples": total,
        "threads": [(t, pct(c)) for t, c in groups.most_common(8)],
        "self": [(f, pct(c)) for f, c in self_t.most_common(top)],
        "inclusive": [
            (f, pct(c)) for f, c in incl.most_common(top + 15) if f not in boring
        ],
        "main_self": [(f, pct(c)) for f, c in main_self.most_common(12)],
        "main_inclusive": [
            (f, pct(c)) for f, c in main_incl.most_common(top + 15) if f not in boring
        ],
    }


def print_profile(profile: dict[str, object]) -> None:
    print(
        f"  {profile['samples']:,} samples; by thread: "
        + ", ".join(f"{t} {p:.1f}%" for t, p in profile["threads"])
    )  # type: ignore[union-attr]
    for key, title, k in (
        ("self", "top self (all threads)", 15),
        ("inclusive", "top inclusive (all threads)", 25),
        ("main_self", "top self (event loop thread)", 10),
    ):
        print(f"  {title}:")
        for f, p in profile[key][:k]:  # type: ignore[index]
            print(f"    {p:5.1f}%  {f}")


# --- report -------------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def markdown(f: Figures) -> str:
    a = f.args
    pct = radload.percentile
    out = [
        f"## {f.started}: {a.subscribers:,} subscribers, {a.requests:,} requests, {a.pairs} pair(s)",
        "",
    ]
    out.append(f"Command: `{f.command}`")
    out.append("")
    out.append(
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in f.facts.items())
        + f", load average 1/5/15 min at start {f.load_start}, at end {f.load_end}"
    )
    out.append("")
    out.append(
        f"Set-up: `op25b subscriber import` of {a.subscribers:,} rows {f.import_s:.1f} s; upstream FreeRADIUS with "
        f"{a.subscribers:,} `users` entries (+ DEFAULT) started in {f.upstream_start_s:.1f} s. "
        f"B: FreeRADIUS thread pool max {a.fr_threads}, rlm_sql pool max {a.fr_sql_pool}."
    )
    out.append("")
    if f.pairs:
        out.append(
            f"### Throughput (radclient -p {a.parallel}, {a.requests:,} requests per run, fresh proxy per run"
            + (f"; A is `op25b serve --workers {a.a_workers}`" if a.a_workers > 1 else "")
            + ")"
        )
        out.append("")
        if f.direct:
            out.append(
                f"Direct to the upstream (reference, no proxy): {f.direct.rate:,.0f} req/s ({f.direct.summary()})."
            )
            out.append("")
        out.append(
            "| pair | order | A op25b req/s | B FreeRADIUS+rlm_sql req/s | A/B | A: acc/rej/lost/filter ok | B: acc/rej/lost/filter ok "
            "| CPU us/req A / B: proxy | PostgreSQL | UDP drops A / B (proxy; machine) | info: A again, same process: req/s (CPU us/req) |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for i, p in enumerate(f.pairs, 1):
            out.append(
                f"| {i} | {p.order} | {p.a.rate:,.0f} | {p.b.rate:,.0f} | {p.ratio:.2f} | "
                f"{p.a.accepted:,}/{p.a.rejected}/{p.a.lost}/{p.a.passed:,} | {p.b.accepted:,}/{p.b.rejected}/{p.b.lost}/{p.b.passed:,} | "
                f"{p.a.cpu_s * 1e6 / p.a.requests:,.0f} / {p.b.cpu_s * 1e6 / p.b.requests:,.0f} | "
                f"{p.a.pg_cpu_s * 1e6 / p.a.requests:,.0f} / {p.b.pg_cpu_s * 1e6 / p.b.requests:,.0f} | "
                f"{p.a.drops_proxy}; {p.a.drops_system} / {p.b.drops_proxy}; {p.b.drops_system} | "
                + (
                    f"{p.a_cached.rate:,.0f} ({p.a_cached.cpu_s * 1e6 / p.a_cached.requests:,.0f}) |"
                    if p.a_cached
                    else " |"
                )
            )
        out.append(
            f"| **median** | | **{median([p.a.rate for p in f.pairs]):,.0f}** | **{median([p.b.rate for p in f.pairs]):,.0f}** | "
            f"**{median([p.ratio for p in f.pairs]):.2f}** | | | | | | "
            + (
                f"{median([p.a_cached.rate for p in f.pairs if p.a_cached]):,.0f} |"
                if any(p.a_cached for p in f.pairs)
                else " |"
            )
        )
        clean = [p for p in f.pairs if not (p.a.drops_proxy or p.b.drops_proxy)]
        if len(clean) < len(f.pairs):
            out.append("")
            out.append(
                f"**{len(f.pairs) - len(clean)} of {len(f.pairs)} pair(s) had UDP drops at a proxy.** "
                + (
                    f"Median over the {len(clean)} drop-free pair(s): A {median([p.a.rate for p in clean]):,.0f}, "
                    f"B {median([p.b.rate for p in clean]):,.0f}, A/B **{median([p.ratio for p in clean]):.2f}**."
                    if clean
                    else "No drop-free pair: rerun with --rmem-default 8388608."
                )
            )
        out.append("")
        out.append(
            "Filter ok = radclient's `Passed filter`: an Access-Accept with the subscriber's expected Filter-Id "
            "and Class. CPU per request: the proxy process' own utime+stime (all threads), and that of the PostgreSQL "
            "backends connected to the scratch database (the upstream's and radclient's not included). "
            "UDP drops: datagrams the kernel dropped for a full receive buffer, on the proxy's sockets / on the "
            "whole machine during the run; each one costs radclient a -t 5 s wait before its retransmission, "
            "which shows directly in the wall time. Info column: right after A's measured run, the same "
            "requests once more on the same (warm) process; not part of the ratio."
        )
        out.append("")
    for rate, (phases, distinct, proxied, per_round) in f.latency.items():
        d = phases["direct"].rtts_ms
        out.append(
            f"### Latency at {rate:,.0f} req/s (bench/radload.py, paced; {a.latency_rounds} rounds x {a.latency_seconds:g} s per target, order alternating)"
        )
        out.append("")
        out.append(
            "| target | sent | not sent (IDs busy) | accepted | with Filter-Id | lost | RTT p50 ms | p99 ms | max ms "
            "| added p50 ms: median of rounds (pooled) | added p99 ms: median of rounds (pooled) | added p99 ms per round |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for target, ph in phases.items():
            r = ph.rtts_ms
            if target == "direct":
                added = ("", "", "")
            else:
                added = (
                    f"**{median([x[target][0] for x in per_round]):.3f}** ({pct(r, 0.5) - pct(d, 0.5):.3f})",
                    f"**{median([x[target][1] for x in per_round]):.3f}** ({pct(r, 0.99) - pct(d, 0.99):.3f})",
                    ", ".join(f"{x[target][1]:.2f}" for x in per_round),
                )
            out.append(
                f"| {target} | {ph.sent:,} | {ph.skipped:,} | {ph.accepted:,} | {ph.with_filter_id:,} | {ph.lost} | {pct(r, 0.5):.3f} | "
                f"{pct(r, 0.99):.3f} | {max(r, default=float('nan')):.2f} | {added[0]} | {added[1]} | {added[2]} |"
            )
        out.append("")
        out.append(
            f"`op25b`: {proxied:,} requests for {distinct:,} distinct subscribers on a fresh process; in each round `op25b` "
            "sends subscribers it has not seen before, `op25b-again` the first round's once more. Added = proxy "
            "percentile minus direct percentile of the same round; the result is the median over rounds, the pooled "
            "figure (all rounds' samples together) is in brackets. Lost = no answer within 2 s; not sent = the generator "
            "had 16 x 256 requests outstanding (the proxy is saturated)."
        )
        out.append("")
    if f.memory:
        m = f.memory
        run = m["run"]
        out.append("### Memory")
        out.append("")
        out.append(
            f"`op25b serve` after {m['subscribers']:,} distinct subscribers authenticated once ({m['in_db']:,} of them in the "
            f"database, {m['held']:,} of them held in memory as not decided by default, loaded in {m['load_s']:.2f} s): "
            f"**VmRSS {m['rss_kib'] / 1024:.0f} MiB**, VmHWM {m['hwm_kib'] / 1024:.0f} MiB. "
            f"radclient -p {a.parallel}: {run.summary()}."
        )  # type: ignore[union-attr]
        out.append("")
        out.append(
            "VmRSS by subscribers seen: "
            + ", ".join(f"{k:,}: {v / 1024:.0f} MiB" for k, v in m["samples"])
        )  # type: ignore[union-attr]
        out.append("")
    if f.storms:
        out.append("### Reconnect storm")
        out.append("")
        out.append(
            "| radclient | requests | radclient Lost | accepted | seconds | req/s | radclient: reply verification failed / reply to a request it did not send "
            "| op25b replies | duplicates answered from cache | in-flight duplicates dropped | upstream timeouts | mean upstream RTT ms |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for parallel, run, c in f.storms:
            out.append(
                f"| `-p {parallel} -r 3 -t {a.storm_timeout:g}` | {run.requests:,} | **{run.lost:,}** | {run.accepted:,} | "
                f"{run.seconds:.1f} | {run.rate:,.0f} | {run.verify_failed:,} / {run.unmatched:,} | "
                f"{c['replies']:,.0f} | {c['duplicates answered from cache']:,.0f} | "
                f"{c['duplicates dropped in flight']:,.0f} | {c['upstream timeouts']:,.0f} | {c['mean upstream RTT ms']:,.0f} |"
            )
        out.append("")
        out.append(
            "Fresh `op25b serve` per row, metrics on to read its counters; radclient without -q "
            "(its packet lines go to a file) so that its error lines can be counted. radclient 3.2.1's `Lost` counts "
            "requests whose tries all timed out *and* every reply that fails verification: a late answer to one of "
            "its retransmissions (op25b answers those from its duplicate cache) that arrives after radclient reused "
            "the Identifier for another request fails the Message-Authenticator check and is counted `Lost`, while "
            "the request it belonged to was accepted. `accepted` = requests that got an Access-Accept."
        )
        out.append("")
    for view, p in f.profile.items():
        what = (
            "every sampled thread that was not idle (a thread waiting for the GIL counts in the C call it waits in)"
            if view == "threads"
            else "only the thread holding the GIL (where the Python CPU time goes)"
        )
        out.append(
            f"### Profile, py-spy `{view}` view ({a.profile_seconds:g} s under radclient -p {a.parallel} with first-seen "
            f"subscribers; {p['samples']:,} samples of {what})"
        )
        out.append("")
        out.append("By thread: " + ", ".join(f"{t} {v:.1f}%" for t, v in p["threads"]))  # type: ignore[union-attr]
        out.append("")
        out.append("| self % | function (all threads) |")
        out.append("|---|---|")
        for fn, v in p["self"][:15]:  # type: ignore[index]
            out.append(f"| {v:.1f} | `{fn}` |")
        out.append("")
        out.append("| inclusive % | function (all threads) |")
        out.append("|---|---|")
        for fn, v in p["inclusive"][:25]:  # type: ignore[index]
            out.append(f"| {v:.1f} | `{fn}` |")
        out.append("")
        out.append("| self % | function (event loop thread only; % of all samples) |")
        out.append("|---|---|")
        for fn, v in p["main_self"][:10]:  # type: ignore[index]
            out.append(f"| {v:.1f} | `{fn}` |")
        out.append("")
    if f.notes:
        out.append("Notes: " + " ".join(f"{n}." for n in f.notes))
        out.append("")
    return "\n".join(out) + "\n"


RESULTS_HEADER = """# Proxy benchmark: op25b serve (A) against FreeRADIUS 3.2 + rlm_sql (B)

Written by `bench/proxy_bench.py` (method: its docstring and the notes at the top of this file);
newest runs last. Same machine, same upstream, same load tool, same subscribers for A and B.

"""


def record(f: Figures) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(RESULTS_HEADER)
    with RESULTS.open("a") as fh:
        fh.write(markdown(f))


# --- main ------------------------------------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--subscribers",
        type=int,
        default=100_000,
        help="N subscribers in the database and the upstream",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=20_000,
        help="requests per throughput run (distinct subscribers while <= N)",
    )
    p.add_argument(
        "--pairs", type=int, default=3, help="A/B pairs (alternating order AB, BA, ...)"
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=256,
        help="radclient -p for throughput, memory and profile load",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="requests (other subscribers) before each measured run",
    )
    p.add_argument(
        "--fr-threads",
        type=int,
        default=8,
        help="B: FreeRADIUS thread pool max_servers",
    )
    p.add_argument(
        "--fr-sql-pool", type=int, default=8, help="B: rlm_sql connection pool max"
    )
    p.add_argument(
        "--rmem-default",
        type=int,
        default=0,
        help="set net.core.rmem_default to this many bytes for the run and restore it afterwards "
        "(B's sockets towards the upstream take the kernel default; 0: leave it alone)",
    )
    p.add_argument(
        "--a-workers",
        type=int,
        default=1,
        help="throughput: run A as `op25b serve --workers N` (CPU and drops summed over its processes)",
    )
    p.add_argument(
        "--latency-rates",
        type=_floats,
        default=[1000.0, 250.0],
        help="latency probe: requests per second, comma-separated",
    )
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=None,
        help="latency probe: seconds per target and round "
        "(default 3, or 2 when N < 100000; 0: skip)",
    )
    p.add_argument(
        "--latency-rounds",
        type=int,
        default=6,
        help="latency probe: rounds per rate (the added latency is the median over rounds)",
    )
    p.add_argument(
        "--memory-subscribers",
        type=int,
        default=None,
        help="memory: distinct subscribers (default 10 x N when N >= 100000, else N; 0: skip)",
    )
    p.add_argument(
        "--no-memory-import",
        action="store_true",
        help="memory: do not import the extra subscribers (they are decided by default)",
    )
    p.add_argument(
        "--memory-max-seconds",
        type=float,
        default=2400.0,
        help="memory: stop sending after this long",
    )
    p.add_argument(
        "--storm", type=int, default=None, help="storm: requests (default N; 0: skip)"
    )
    p.add_argument(
        "--storm-parallel",
        dest="storm_parallels",
        type=_ints,
        default=[256, 2048],
        help="storm: radclient -p values, comma-separated",
    )
    p.add_argument(
        "--storm-timeout", type=float, default=3.0, help="storm: radclient -t"
    )
    p.add_argument(
        "--profile-seconds",
        type=float,
        default=None,
        help="py-spy: seconds per recording (default 10, or 5 when N < 100000; 0: skip)",
    )
    p.add_argument(
        "--profile-output",
        default="/tmp/op25b-profile",
        help="py-spy raw (collapsed stacks) output prefix",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated phases to skip: throughput,latency,memory,storm,profile",
    )
    p.add_argument(
        "--admin-url",
        default=ADMIN_URL,
        help="PostgreSQL maintenance database URL (the scratch DB is created next to it)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help=f"keep the scratch database {SCRATCH_DB} and the temp directory",
    )
    p.add_argument(
        "--no-record", action="store_true", help=f"do not append to {RESULTS.name}"
    )
    args = p.parse_args(argv)
    full = args.subscribers >= 100_000
    if args.latency_seconds is None:
        args.latency_seconds = 3.0 if full else 2.0
    if args.profile_seconds is None:
        args.profile_seconds = 10.0 if full else 5.0
    if args.memory_subscribers is None:
        args.memory_subscribers = 10 * args.subscribers if full else args.subscribers
    if args.storm is None:
        args.storm = args.subscribers
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"throughput", "latency", "memory", "storm", "profile"}
    if unknown:
        p.error(f"--skip: unknown phase(s) {', '.join(sorted(unknown))}")
    if "latency" in skip or not args.latency_rates:
        args.latency_seconds = 0
    if "memory" in skip:
        args.memory_subscribers = 0
    if "storm" in skip:
        args.storm = 0
    if "profile" in skip:
        args.profile_seconds = 0
    args.skip_throughput = "throughput" in skip or args.pairs <= 0
    if args.subscribers < 10:
        p.error("--subscribers must be at least 10")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if RADCLIENT is None or not shutil.which("freeradius"):
        raise SystemExit(
            "needs Debian's freeradius and freeradius-utils (apt-get install freeradius freeradius-utils)"
        )
    if not Path("/usr/lib/freeradius/rlm_sql_postgresql.so").exists():
        raise SystemExit(
            "needs rlm_sql_postgresql: apt-get install freeradius-postgresql"
        )

    # One run at a time: runs share the scratch database name and net.core.rmem_default.
    lock = open(LOCK_PATH, "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(
            f"another proxy_bench run holds {LOCK_PATH}; wait for it"
        ) from None

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    rmem_path = Path("/proc/sys/net/core/rmem_default")
    rmem_saved = rmem_path.read_text().strip() if args.rmem_default else None
    if args.rmem_default:
        rmem_path.write_text(str(args.rmem_default))
        print(f"net.core.rmem_default {rmem_saved} -> {args.rmem_default} for this run")
    tmp = Path(tempfile.mkdtemp(prefix="op25b-proxy-bench-"))
    bench = Bench(args, tmp)
    f = bench.figures
    f.started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    f.load_start = load_average()
    try:
        f.facts = machine_facts(args.admin_url)
        bench.setup()
        if not args.skip_throughput:
            bench.throughput()
        if args.latency_seconds > 0:
            bench.latency()
        if args.storm > 0:
            bench.storm()
        if args.profile_seconds > 0:
            bench.profile()
        if args.memory_subscribers > 0:
            bench.memory()
        f.load_end = load_average()
    finally:
        while _LIVE:
            _LIVE[-1].stop()
        if bench.upstream is not None:
            bench.upstream.stop()
        if rmem_saved is not None:
            rmem_path.write_text(rmem_saved)
            print(f"net.core.rmem_default restored to {rmem_saved}")
        if not args.keep:
            try:
                bench.scratch_db(create=False)
            except Exception as exc:  # noqa: BLE001 - report, keep cleaning up
                print(f"warning: could not drop {SCRATCH_DB}: {exc}", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {SCRATCH_DB} and {tmp}")
    report = markdown(f)
    print()
    print(report)
    if not args.no_record:
        record(f)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
