"""Side-by-side accounting benchmark (issue 14): `op25b serve` on PostgreSQL (A) against FreeRADIUS
3.2 proxying accounting and writing `radacct` with rlm_sql (B).

    python bench/accounting_bench.py [--sessions 20000] [--pairs 3] [--parallel 256]
    python bench/accounting_bench.py --quick          # 2,000 sessions, one pair, ~1 min, recorded
    python bench/accounting_bench.py --no-record      # print only
    python bench/accounting_bench.py --rmem-default 8388608   # B without kernel drops (as proxy_bench)
    python bench/accounting_bench.py --sustained-rate 2000 --sustained-seconds 300   # the flat-lag check (default)

Set-up: a scratch PostgreSQL database `op25b_acct_perf` (127.0.0.1:5432, user postgres) holding
op25b's schema (`op25b db upgrade`) and Debian's stock radacct schema
(/etc/freeradius/3.0/mods-config/sql/main/postgresql/schema.sql), and one FreeRADIUS upstream
(deploy/freeradius, which writes every accounting record to its detail file).

A: `op25b serve` (one client 127.0.0.1, generic profile), its spool in the run directory.
B: deploy/freeradius-sql-proxy rendered as for bench/proxy_bench.py, then changed for accounting:
   preacct sets Acct-Unique-Session-Id (the stock `acct_unique` policy's MD5) and proxies to the
   upstream; accounting runs `sql` with Debian's stock PostgreSQL queries.conf, which FreeRADIUS
   runs before it proxies (acct.c: "Do the data storage before proxying"), so B answers after
   both the row and the upstream's response exist.

Each run, on a fresh proxy and an empty table: radclient `-p P -f` sends S Starts (phase
"start"), then S Interim-Updates followed by S Stops for the same sessions (phase "update").
For each phase: acknowledged records/s (radclient's wall time), lost, and the lag: the time from
radclient's exit (the last acknowledgement) until every session is in the table (start: S rows;
update: S rows stopped). B's lag is zero by construction (measured all the same). Runs alternate
AB, BA, ...; the ratio A/B is per pair, the result is the median over pairs.

Then A alone at --sustained-rate Starts/s for --sustained-seconds (metrics on): the age of the
oldest unapplied record (op25b_accounting_oldest_unapplied_seconds), sampled every 0.5 s, must
stay flat.

Durability modes (A only; with either, the pairs and the sustained run are skipped unless asked for):

    python bench/accounting_bench.py --loss-runs 10 [--loss-records 60000]   # no fault: every ack in the table
    python bench/accounting_bench.py --db-outage 30 [--outage-records 150000]
        # A on a private PostgreSQL cluster (initdb + pg_ctl in a temp dir, never the shared
        # server), stopped 30 s mid-burst and started again: every acknowledged record in the table

--a-workers N runs A as `op25b serve --workers N`; --nases K splits the load over K radclient
processes on both sides (each its own source port, as a NAS fleet: SO_REUSEPORT spreads them over
the workers); --py-spy PREFIX records each A run with py-spy (`.venv/bin/pip install py-spy`; raw
folded stacks, all threads, the drain process too; --py-spy-gil: only samples holding the GIL)
to PREFIX-<run>.txt.

Results are printed and appended as markdown to bench/RESULTS-accounting.md (unless --no-record).
Every process started is stopped; the scratch database is dropped unless --keep.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402

from bench.common import append_record, git_revision, host_facts, median, pg_facts, run_op25b  # noqa: E402
from bench.proxy.procs import cpu_seconds  # noqa: E402
from bench.proxy.radclient import RadclientRun  # noqa: E402
from bench.proxy.servers import Op25bServe, SqlProxy, Upstream, recv_buffer, stop_all, udp_ports  # noqa: E402
from bench.proxy.subscribers import NAS_SECRET, UPSTREAM_SECRET  # noqa: E402
from tests.support.paths import TEMPLATE_DIR as UPSTREAM_TEMPLATE  # noqa: E402
from tests.support.postgres import PrivatePostgres  # noqa: E402
from tests.support.radclient import DICT_DIR, RADCLIENT  # noqa: E402

SCRATCH_DB = "op25b_acct_perf"
RESULTS = REPO_ROOT / "bench" / "RESULTS-accounting.md"
STOCK_SQL = Path("/etc/freeradius/3.0/mods-config/sql/main/postgresql")
RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")
LAG_LIMIT = 300.0  # seconds to wait for the table to catch up before calling it a failure

ACCT_UNIQUE = (
    "%{md5:%{User-Name},%{Acct-Session-ID},%{%{NAS-IPv6-Address}:-%{NAS-IP-Address}},"
    "%{%{NAS-Identifier}:-},%{NAS-Port-ID},%{NAS-Port}}"
)
SQL_ACCOUNTING = """
	acct_table1 = "radacct"
	acct_table2 = "radacct"
	postauth_table = "radpostauth"
	authcheck_table = "radcheck"
	groupcheck_table = "radgroupcheck"
	authreply_table = "radreply"
	groupreply_table = "radgroupreply"
	usergroup_table = "radusergroup"
	client_table = "nas"
	group_attribute = "SQL-Group"
	delete_stale_sessions = yes
	$INCLUDE ${confdir}/queries.conf
"""


# --- B: FreeRADIUS proxying accounting, rlm_sql writing radacct -------------------------------------


class AcctSqlProxy(SqlProxy):
    def render(self) -> Path:
        conf = super().render()
        shutil.copy(STOCK_SQL / "queries.conf", conf / "queries.conf")
        sql = conf / "mods" / "sql"
        body = sql.read_text()
        body, count = re.subn(r"(?m)^(\s*read_profiles = no\n)", lambda m: m.group(1) + SQL_ACCOUNTING, body)
        if count != 1:
            raise RuntimeError(f"{sql}: no read_profiles line to extend")
        sql.write_text(body)
        radiusd = conf / "radiusd.conf"  # queries.conf picks its query with %{tolower:...}: rlm_expr
        body, count = re.subn(r"(?m)^(\s*)\$INCLUDE \$\{confdir\}/mods/sql$", r"\g<0>\n\1expr {\n\1}", radiusd.read_text())
        if count != 1:
            raise RuntimeError(f"{radiusd}: no mods/sql include")
        radiusd.write_text(body)
        site = conf / "sites" / "default"
        body = site.read_text()
        preacct = (
            "\tpreacct {\n\t\tupdate request {\n"
            f'\t\t\t&Acct-Unique-Session-Id := "{ACCT_UNIQUE}"\n'
            '\t\t}\n\t\tupdate control {\n\t\t\t&Proxy-To-Realm := "upstream"\n\t\t}\n\t}\n'
        )
        body, n1 = re.subn(r"(?ms)^\tpreacct \{.*?^\t\}\n", lambda _: preacct, body)
        body, n2 = re.subn(r"(?ms)^\taccounting \{.*?^\t\}\n", lambda _: "\taccounting {\n\t\tsql\n\t}\n", body)
        if (n1, n2) != (1, 1):
            raise RuntimeError(f"{site}: preacct/accounting sections not found ({n1}, {n2})")
        site.write_text(body)
        return conf


# --- the load ------------------------------------------------------------------------------------------


def write_load(path: Path, sessions: int, phase: str, run: int) -> int:
    """radclient -f input: Starts, or Interim-Updates then Stops, of `sessions` sessions."""
    t0 = int(time.time())
    out = []

    def entry(n: int, status: str, extra: str) -> str:
        stamp = t0 if status == "Start" else t0 + 600
        return (
            f'User-Name = "acct{n}@isp.example"\nAcct-Status-Type = {status}\nAcct-Session-Id = "r{run}-{n:08d}"\n'
            f'NAS-IP-Address = 127.0.0.1\nNAS-Port-Id = "eth0/{n % 4096}"\n'
            f"Framed-IP-Address = 100.{64 + n // 65536 % 64}.{n // 256 % 256}.{n % 256}\nEvent-Timestamp = {stamp}\n{extra}"
        )

    if phase == "start":
        out = [entry(n, "Start", "") for n in range(sessions)]
    else:
        octets = "Acct-Input-Octets = 123456\nAcct-Output-Octets = 654321\nAcct-Session-Time = 600\n"
        out = [entry(n, "Interim-Update", octets) for n in range(sessions)]
        out += [entry(n, "Stop", octets + "Acct-Terminate-Cause = User-Request\n") for n in range(sessions)]
    path.write_text("\n".join(out))
    return len(out)


def radclient_acct(server: str, load: Path, count: int, parallel: int, nases: int = 1) -> RadclientRun:
    """radclient over `load`; with `nases` > 1, that many radclient processes at once (a NAS fleet:
    each its own source port, so `serve --workers N` gets them all), each with its share of the
    sessions (a session's Interim and Stop stay in one file, in order) and parallel / nases."""
    assert RADCLIENT is not None
    files = [load]
    if nases > 1:
        shares: list[list[str]] = [[] for _ in range(nases)]
        for entry in load.read_text().split("\n\n"):
            number = re.search(r'Acct-Session-Id = "[^"]*?-(\d+)"', entry)
            shares[int(number.group(1)) % nases if number else 0].append(entry)
        files = [load.with_suffix(f".{k}.txt") for k in range(nases)]
        for path, share in zip(files, shares, strict=True):
            path.write_text("\n\n".join(share))
    runs = []
    start = time.perf_counter()
    for path in files:
        args = [RADCLIENT, "-D", DICT_DIR, "-d", str(UPSTREAM_TEMPLATE), "-q", "-s", "-p", str(max(1, parallel // nases))]
        args += ["-t", "5", "-r", "3", "-f", str(path), server, "acct", NAS_SECRET]
        runs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    run = RadclientRun(count, 0.0)
    for proc in runs:
        try:
            out, err = proc.communicate(timeout=120 + count / 50)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        run.returncode = run.returncode or proc.returncode
        for label, attr in (("Accepted", "accepted"), ("Rejected", "rejected"), ("Lost", "lost")):
            m = re.search(rf"{label}\s*:\s*(\d+)", out)
            if m:
                setattr(run, attr, getattr(run, attr) + int(m.group(1)))
        if "Accepted" not in out:
            raise RuntimeError(f"radclient printed no summary (rc {proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
    run.seconds = time.perf_counter() - start
    return run


def wait_rows(engine: Engine, query: str, want: int) -> tuple[float, int]:
    """Seconds until `query` counts `want` rows, and the count at the end. Polled every 10 ms, or
    every 4 counts' time when counting takes longer (a count over a big table is a scan that
    would take PostgreSQL from the drain it measures)."""
    start = time.perf_counter()
    while True:
        asked = time.perf_counter()
        with engine.connect() as conn:
            have = int(conn.execute(text(query)).scalar_one())
        took = time.perf_counter() - asked
        if have >= want or time.perf_counter() - start > LAG_LIMIT:
            return time.perf_counter() - start, have
        time.sleep(max(0.01, 4 * took))


QUERIES = {
    "A": {
        "start": "SELECT count(*) FROM sessions WHERE acct_session_id LIKE :p",
        "update": "SELECT count(*) FROM sessions WHERE stopped_at IS NOT NULL AND acct_session_id LIKE :p",
    },
    "B": {
        "start": "SELECT count(*) FROM radacct WHERE acctsessionid LIKE :p",
        "update": "SELECT count(*) FROM radacct WHERE acctstoptime IS NOT NULL AND acctsessionid LIKE :p",
    },
}


@dataclass
class PhaseResult:
    side: str
    phase: str
    records: int
    seconds: float
    acked: int
    lost: int
    lag: float
    rows: int
    cpu: Cpu | None = None

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def per_record(self, seconds: float) -> float:
        """CPU microseconds per acknowledged record."""
        return seconds / self.acked * 1e6 if self.acked else 0.0


# --- CPU per record: what each side itself costs, apart from the load and the upstream they share ---

BENCH_APP = "op25b-accounting-bench"  # application_name of the bench's own connections (not counted)


@dataclass
class Cpu:
    """CPU seconds over one phase (from radclient's start until the table is complete): the
    proxy's own processes (A: `op25b serve` and its drain process; B: FreeRADIUS, all threads),
    the PostgreSQL backends serving them, and the shared upstream FreeRADIUS. radclient and the
    kernel's writeback threads are not counted on either side."""

    proxy: float = 0.0
    database: float = 0.0
    upstream: float = 0.0

    @property
    def own(self) -> float:
        return self.proxy + self.database


class CpuMeter:
    def __init__(self, engine: Engine, proxy_pid: int, upstream_pid: int) -> None:
        self.engine, self.proxy_pid, self.upstream_pid = engine, proxy_pid, upstream_pid
        self.before: dict[str, dict[int, float]] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        with self.engine.connect() as conn:
            backends = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND application_name <> :me"
                ),
                {"me": BENCH_APP},
            ).scalars()
            backend_pids = list(backends)
        # The proxy's whole process tree in one figure (procs.cpu_seconds): its drain process too.
        groups = {"proxy": [self.proxy_pid], "database": backend_pids, "upstream": [self.upstream_pid]}
        return {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()}

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> Cpu:
        """A process (or backend) that appeared during the phase counts from zero."""
        after = self._sample()
        spent = {
            name: sum(max(0.0, c - self.before.get(name, {}).get(pid, 0.0)) for pid, c in after[name].items()) for name in after
        }
        return Cpu(spent["proxy"], spent["database"], spent["upstream"])


@dataclass
class LossRun:
    """One burst with no fault: what radclient saw acknowledged against what is in the table."""

    run: int
    records: int
    seconds: float
    acked: int
    lost: int
    rows: int
    lag: float
    quarantined: int

    @property
    def missing(self) -> int:
        return max(0, self.acked - self.rows)  # rows >= acked: a record unanswered may still be there


@dataclass
class Outage:
    seconds: float  # how long the cluster was down
    records: int
    burst_seconds: float
    acked: int
    lost: int
    rows_at_stop: int
    spool_max: float
    rows: int
    catch_up: float  # from the cluster's restart until every row is in the table
    after_burst: float  # from radclient's exit until every row is in the table
    quarantined: int


@dataclass
class Figures:
    results: list[PhaseResult] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    sustained: Sustained | None = None
    loss: list[LossRun] = field(default_factory=list)
    outage: Outage | None = None


PY_SPY = Path(sys.executable).parent / "py-spy"
PROFILERS: list[subprocess.Popen[bytes]] = []


def start_a(run_dir: Path, db_url: str, upstream: Upstream, args: argparse.Namespace, metrics: bool = False) -> Op25bServe:
    """`op25b serve`, from --a-pythonpath when given (an unpacked older tree: the "before")."""
    saved = os.environ.get("PYTHONPATH")
    if args.a_pythonpath:
        os.environ["PYTHONPATH"] = args.a_pythonpath
    try:
        proxy = Op25bServe(run_dir, db_url, upstream, metrics, workers=args.a_workers).start()
    finally:
        if args.a_pythonpath:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    if args.py_spy:
        out = f"{args.py_spy}-{run_dir.name}.txt"
        command = [
            str(PY_SPY),
            "record",
            "--format",
            "raw",
            "--threads",
            "--subprocesses",
            "--nonblocking",
            "-r",
            "100",
            "-o",
            out,
        ]
        command += ["--gil"] if args.py_spy_gil else []
        PROFILERS.append(
            subprocess.Popen([*command, "--pid", str(proxy.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        time.sleep(1.0)  # py-spy attaches
    return proxy


def stop_a(proxy: Op25bServe) -> None:
    proxy.stop()
    while PROFILERS:  # py-spy writes its file when the process it samples is gone
        profiler = PROFILERS.pop()
        try:
            profiler.wait(30)
        except subprocess.TimeoutExpired:
            profiler.terminate()
            profiler.wait(10)


def one_run(
    side: str, run: int, args: argparse.Namespace, tmp: Path, engine: Engine, db_url: str, upstream: Upstream
) -> list[PhaseResult]:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE sessions, coa_jobs, radacct RESTART IDENTITY"))
    run_dir = tmp / f"{side}-{run}"
    proxy: Op25bServe | AcctSqlProxy
    if side == "A":
        proxy = start_a(run_dir, db_url, upstream, args)
        server = f"127.0.0.1:{proxy.acct_port}"
    else:
        proxy = AcctSqlProxy(run_dir, upstream=upstream, database=SCRATCH_DB, threads=args.fr_threads, sql_pool=args.fr_sql_pool)
        proxy.start()
        server = f"127.0.0.1:{proxy.acct_port}"
    results = []
    try:
        warm = tmp / f"warm-{side}-{run}.txt"
        write_load(warm, 200, "start", 10_000 + run)  # connections, caches, the spool's first segment
        radclient_acct(server, warm, 200, args.parallel)
        for phase in ("start", "update"):
            load = tmp / f"{phase}-{run}.txt"
            count = write_load(load, args.sessions, phase, run)
            meter = CpuMeter(engine, proxy.pid, upstream.pid)
            meter.start()
            done = radclient_acct(server, load, count, args.parallel, args.nases)
            query = text(QUERIES[side][phase]).bindparams(p=f"r{run}-%")
            lag, rows = wait_rows(engine, str(query.compile(compile_kwargs={"literal_binds": True})), args.sessions)
            result = PhaseResult(side, phase, count, done.seconds, done.accepted, done.lost, lag, rows, meter.stop())
            results.append(result)
            cpu = result.cpu
            assert cpu is not None
            print(
                f"  {side} {phase:6}: {count:,} records in {done.seconds:.2f} s = {result.rate:,.0f} acked/s, "
                f"lost {done.lost:,}; table complete {lag:.2f} s after the last ack ({rows:,}/{args.sessions:,} rows); "
                f"CPU us/record: proxy {result.per_record(cpu.proxy):.0f}, database {result.per_record(cpu.database):.0f}, "
                f"upstream {result.per_record(cpu.upstream):.0f}"
            )
    finally:
        if isinstance(proxy, Op25bServe):
            stop_a(proxy)
        else:
            proxy.stop()
    return results


@dataclass
class Sustained:
    rate: float
    seconds: float
    sent: int
    answered: int
    oldest_max: float  # op25b_accounting_oldest_unapplied_seconds, sampled every 0.5 s
    oldest_last: float
    depth_max: float
    lag_after: float


def sustained(args: argparse.Namespace, tmp: Path, engine: Engine, db_url: str, upstream: Upstream) -> Sustained:
    """A at a fixed rate of Starts for a while: does the age of the oldest unapplied record stay flat?"""
    import socket
    import threading

    from radius_op25b.radius import (
        ACCOUNTING_REQUEST,
        ACCT_SESSION_ID,
        ACCT_STATUS_START,
        ACCT_STATUS_TYPE,
        FRAMED_IP_ADDRESS,
        NAS_IP_ADDRESS,
        USER_NAME,
        Packet,
        encode_integer,
        sign_accounting_request,
    )

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE sessions, coa_jobs, radacct RESTART IDENTITY"))
    proxy = start_a(tmp / "A-sustained", db_url, upstream, args, metrics=True)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.settimeout(0.2)
    answered = [0]
    stop = threading.Event()

    def receive(sock: socket.socket) -> None:
        while not stop.is_set():
            try:
                sock.recv(4096)
                answered[0] += 1
            except OSError:
                continue

    readers = [threading.Thread(target=receive, args=(sock,), daemon=True) for sock in socks]
    for reader in readers:
        reader.start()
    samples: list[tuple[float, float]] = []
    total = int(args.sustained_rate * args.sustained_seconds)
    start = time.monotonic()
    next_sample = start
    try:
        for n in range(total):
            due = start + n / args.sustained_rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            attrs = (
                (USER_NAME, f"paced{n}@isp.example".encode()),
                (ACCT_STATUS_TYPE, encode_integer(ACCT_STATUS_START)),
                (ACCT_SESSION_ID, f"p-{n:09d}".encode()),
                (NAS_IP_ADDRESS, bytes([127, 0, 0, 1])),
                (FRAMED_IP_ADDRESS, bytes([100, 64 + n // 65536 % 64, n // 256 % 256, n % 256])),
            )
            wire = sign_accounting_request(Packet(ACCOUNTING_REQUEST, n % 256, bytes(16), attrs), NAS_SECRET.encode())
            socks[n // 256 % len(socks)].sendto(wire, ("127.0.0.1", proxy.acct_port))
            if now >= next_sample:
                m = proxy.metrics()
                samples.append(
                    (m.get("op25b_accounting_oldest_unapplied_seconds", 0.0), m.get("op25b_accounting_spool_records", 0.0))
                )
                next_sample = now + 0.5
        query = "SELECT count(*) FROM sessions WHERE acct_session_id LIKE 'p-%'"
        time.sleep(0.5)  # the last answers
        m = proxy.metrics()
        batches = m.get("op25b_accounting_drain_batch_seconds_count", 0.0)
        if batches:
            seconds = m.get("op25b_accounting_drain_batch_seconds_sum", 0.0)
            print(
                f"  drain so far: {m.get('op25b_accounting_recorded_total', 0):,.0f} records in {batches:,.0f} batches, "
                f"{seconds:.1f} s in transactions ({1000 * seconds / batches:.1f} ms a batch)"
            )
        lag, _ = wait_rows(engine, query, total)
    finally:
        stop.set()
        stop_a(proxy)
        problems = [
            line for line in proxy.log.read_text(errors="replace").splitlines() if " ERROR " in line or " WARNING " in line
        ]
        if problems:
            print("  op25b log:\n    " + "\n    ".join(problems[-10:]))
        for sock in socks:
            sock.close()
    return Sustained(
        args.sustained_rate,
        args.sustained_seconds,
        total,
        answered[0],
        max((o for o, _ in samples), default=0.0),
        samples[-1][0] if samples else 0.0,
        max((d for _, d in samples), default=0.0),
        lag,
    )


def quarantined_count(run_dir: Path) -> int:
    from radius_op25b.services.spool import quarantined

    return len(quarantined(run_dir / "op25b-spool"))


def loss_runs(args: argparse.Namespace, tmp: Path, engine: Engine, db_url: str, upstream: Upstream) -> list[LossRun]:
    """No fault, many times: a fresh A, a burst of --loss-records Starts, every ack in the table?"""
    found = []
    for k in range(1, args.loss_runs + 1):
        run = 1000 + k
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE sessions, coa_jobs RESTART IDENTITY"))
        run_dir = tmp / f"A-loss-{k}"
        proxy = start_a(run_dir, db_url, upstream, args)
        try:
            load = tmp / f"loss-{k}.txt"
            count = write_load(load, args.loss_records, "start", run)
            done = radclient_acct(f"127.0.0.1:{proxy.acct_port}", load, count, args.parallel, args.nases)
            query = f"SELECT count(*) FROM sessions WHERE acct_session_id LIKE 'r{run}-%'"
            lag, rows = wait_rows(engine, query, done.accepted)
            time.sleep(0.5)
            rows = wait_rows(engine, query, count)[1] if rows < count else rows
        finally:
            stop_a(proxy)
        result = LossRun(k, count, done.seconds, done.accepted, done.lost, rows, lag, quarantined_count(run_dir))
        found.append(result)
        print(
            f"  loss run {k}: {count:,} sent in {done.seconds:.2f} s ({done.accepted / done.seconds:,.0f} acked/s), "
            f"acked {done.accepted:,}, lost {done.lost:,}, rows {rows:,}, acknowledged but missing {result.missing:,}, "
            f"quarantined {result.quarantined}, table complete {lag:.2f} s after the last ack"
        )
    return found


def db_outage(args: argparse.Namespace, tmp: Path, upstream: Upstream) -> Outage:
    """A on a private cluster that is stopped --db-outage seconds in the middle of a burst."""
    import threading

    pg = PrivatePostgres()  # never the shared server: other people's work runs on it
    try:
        pg.start()
        cfg = tmp / "outage-admin.toml"
        cfg.write_text(f'[database]\nurl = "{pg.url}"\n')
        run_op25b(cfg, "db", "upgrade")
        run_dir = tmp / "A-outage"
        proxy = start_a(run_dir, pg.url, upstream, args, metrics=True)
        engine = create_engine(pg.url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        query = "SELECT count(*) FROM sessions WHERE acct_session_id LIKE 'r2000-%'"

        def rows_now() -> int:
            try:
                with engine.connect() as conn:
                    return int(conn.execute(text(query)).scalar_one())
            except Exception:  # noqa: BLE001  (down)
                return -1

        try:
            load = tmp / "outage.txt"
            count = write_load(load, args.outage_records, "start", 2000)
            done: list[RadclientRun] = []
            sender = threading.Thread(
                target=lambda: done.append(radclient_acct(f"127.0.0.1:{proxy.acct_port}", load, count, args.parallel, args.nases))
            )
            sender.start()
            time.sleep(3.0)
            rows_at_stop = rows_now()
            engine.dispose()
            pg.stop()
            down_at = time.monotonic()
            spool_max = 0.0
            while time.monotonic() - down_at < args.db_outage:
                spool_max = max(spool_max, proxy.metrics().get("op25b_accounting_spool_records", 0.0))
                time.sleep(0.5)
            if not sender.is_alive():
                print("  warning: the burst ended during the outage (more --outage-records would keep it going)")
            pg.start()
            up_at = time.monotonic()
            sender.join()
            burst_end = time.monotonic()
            wait_rows(engine, query, done[0].accepted)
            complete = time.monotonic()
            rows = rows_now()
        finally:
            stop_a(proxy)
            engine.dispose()
        result = Outage(
            args.db_outage,
            count,
            done[0].seconds,
            done[0].accepted,
            done[0].lost,
            rows_at_stop,
            spool_max,
            rows,
            complete - up_at,
            max(0.0, complete - burst_end),
            quarantined_count(run_dir),
        )
        print(f"  {result}")
        return result
    finally:
        pg.destroy()


def report(fig: Figures, args: argparse.Namespace) -> str:
    lines = [f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — `python bench/accounting_bench.py {' '.join(sys.argv[1:])}`\n"]
    if fig.loss:
        lines += [
            f"No fault, {len(fig.loss)} run(s) of {args.loss_records:,} Starts (A only, a fresh `op25b serve` each, "
            f"radclient -p {args.parallel}): acknowledged records missing from `sessions` in all runs: "
            f"**{sum(r.missing for r in fig.loss)}**.\n",
            "| run | records | s | acked/s | acked | lost (no ack) | rows | acked but missing | quarantined | lag s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.run} | {r.records:,} | {r.seconds:.2f} | {r.acked / r.seconds:,.0f} | {r.acked:,} | {r.lost:,} | "
            f"{r.rows:,} | {r.missing} | {r.quarantined} | {r.lag:.2f} |"
            for r in fig.loss
        ]
    if fig.outage is not None:
        o = fig.outage
        lines.append(
            f"\nDatabase outage (A only, a private PostgreSQL cluster): {o.records:,} Starts sent in {o.burst_seconds:.1f} s; "
            f"the cluster stopped 3 s into the burst ({o.rows_at_stop:,} rows in by then) for {o.seconds:.0f} s, then "
            f"started. Acked {o.acked:,}, lost (no ack) {o.lost:,}; rows {o.rows:,} "
            f"(acknowledged but missing: **{max(0, o.acked - o.rows)}**), quarantined {o.quarantined}; spool at most "
            f"{o.spool_max:,.0f} records; table complete {o.catch_up:.1f} s after the restart, "
            f"{o.after_burst:.1f} s after the last ack.\n"
        )
    if fig.results:
        lines += pairs_report(fig, args)
    if fig.sustained is not None:
        x = fig.sustained
        lines.append(
            f"\nSustained (A only): {x.rate:,.0f} Starts/s for {x.seconds:.0f} s: {x.sent:,} sent, {x.answered:,} answered; "
            f"age of the oldest unapplied record max {x.oldest_max:.2f} s (last sample {x.oldest_last:.2f} s), "
            f"spool depth max {x.depth_max:,.0f} records; table complete {x.lag_after:.2f} s after the last send + 0.5 s.\n"
        )
    lines.append("\nMachine: " + ", ".join(f"{k} {v}" for k, v in fig.facts.items()) + "\n")
    return "\n".join(lines) + "\n"


def pairs_report(fig: Figures, args: argparse.Namespace) -> list[str]:
    lines = [
        f"{args.sessions:,} sessions per run (start: {args.sessions:,} Starts; update: {args.sessions:,} Interim-Updates "
        f"then {args.sessions:,} Stops), radclient -p {args.parallel}"
        f"{f' split over {args.nases} radclient processes' if args.nases > 1 else ''}, A with --workers {args.a_workers}, "
        f"{args.pairs} pair(s) alternating.\n",
        "| phase | A acked/s (median) | B acked/s (median) | A/B (median of pairs) | A lag s (median, max) | B lag s (max) | lost A / B |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase in ("start", "update"):
        a = [r for r in fig.results if r.side == "A" and r.phase == phase]
        b = [r for r in fig.results if r.side == "B" and r.phase == phase]
        ratios = [x.rate / y.rate for x, y in zip(a, b, strict=False) if y.rate]
        lines.append(
            f"| {phase} | {median([r.rate for r in a]):,.0f} | {median([r.rate for r in b]):,.0f} | "
            f"{median(ratios):.2f} | {median([r.lag for r in a]):.2f}, {max(r.lag for r in a):.2f} | "
            f"{max(r.lag for r in b):.2f} | {sum(r.lost for r in a)} / {sum(r.lost for r in b)} |"
        )
    lines += [
        "\nCPU per acknowledged record (microseconds, user + system, /proc): each side's own processes "
        "(A: `op25b serve` and its drain process; B: FreeRADIUS) and the PostgreSQL backends serving them, "
        "from radclient's start until the table is complete. The upstream FreeRADIUS is shared; radclient "
        "(the same load for both) and the kernel's writeback threads are not counted.\n",
        "| phase | A proxy + database = own | B proxy + database = own | B own / A own (median of pairs) | upstream A / B |",
        "|---|---|---|---|---|",
    ]
    for phase in ("start", "update"):
        a = [r for r in fig.results if r.side == "A" and r.phase == phase and r.cpu]
        b = [r for r in fig.results if r.side == "B" and r.phase == phase and r.cpu]
        if not a or not b:
            continue

        def us(rs: list[PhaseResult], part: str) -> float:
            return median([r.per_record(getattr(r.cpu, part)) for r in rs])

        own_ratios = [y.per_record(y.cpu.own) / x.per_record(x.cpu.own) for x, y in zip(a, b, strict=False) if x.cpu and y.cpu]
        lines.append(
            f"| {phase} | {us(a, 'proxy'):.0f} + {us(a, 'database'):.0f} = {us(a, 'own'):.0f} | "
            f"{us(b, 'proxy'):.0f} + {us(b, 'database'):.0f} = {us(b, 'own'):.0f} | {median(own_ratios):.2f} | "
            f"{us(a, 'upstream'):.0f} / {us(b, 'upstream'):.0f} |"
        )
    lines.append("\nPer run:\n")
    lines.append("| side | phase | records | s | acked/s | lost | lag s | rows | CPU us/record proxy, database |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in fig.results:
        cpu = f"{r.per_record(r.cpu.proxy):.0f}, {r.per_record(r.cpu.database):.0f}" if r.cpu else "-"
        lines.append(
            f"| {r.side} | {r.phase} | {r.records:,} | {r.seconds:.2f} | {r.rate:,.0f} | {r.lost} | {r.lag:.2f} | {r.rows:,} | {cpu} |"
        )
    return lines


HEADER = """# Accounting benchmark results

`bench/accounting_bench.py`: A = `op25b serve` on PostgreSQL (spool, batched drain into `sessions`),
B = FreeRADIUS 3.2 proxying accounting and writing `radacct` with rlm_sql (Debian's stock schema and
queries), the same upstream and the same radclient load, alternating pairs. "lag" is the time from
the last acknowledgement until the last row is in the table. Newest runs last.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=20_000)
    p.add_argument("--pairs", type=int, default=None, help="A/B pairs (default 3; 0 with --loss-runs or --db-outage)")
    p.add_argument("--parallel", type=int, default=256)
    p.add_argument("--fr-threads", type=int, default=32)
    p.add_argument("--fr-sql-pool", type=int, default=32)
    p.add_argument("--admin-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--quick", action="store_true", help="2,000 sessions, one pair")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    p.add_argument(
        "--rmem-default",
        type=int,
        metavar="BYTES",
        help="set net.core.rmem_default for the run and restore it (FreeRADIUS 3.2.1 sizes no buffer of its "
        "sockets towards the home server: at the kernel default a burst drops replies, each costing radclient -t)",
    )
    p.add_argument(
        "--a-pythonpath",
        metavar="DIR",
        help="run A from this source tree (e.g. `git archive HEAD | tar -x -C DIR`: the code before a change)",
    )
    p.add_argument("--sustained-rate", type=float, default=None, help="A alone at this many Starts/s (default 2000; 0: skip)")
    p.add_argument("--sustained-seconds", type=float, default=300.0)
    p.add_argument(
        "--nases", type=int, default=1, metavar="K", help="K radclient processes at once, both sides (-p parallel/K each)"
    )
    p.add_argument("--a-workers", type=int, default=1, metavar="N", help="A as `op25b serve --workers N`")
    p.add_argument("--py-spy", metavar="PREFIX", help="profile every A run with py-spy into PREFIX-<run>.txt")
    p.add_argument("--py-spy-gil", action="store_true", help="with --py-spy: only samples holding the GIL")
    p.add_argument("--loss-runs", type=int, default=0, metavar="K", help="K bursts with no fault: every ack in the table?")
    p.add_argument("--loss-records", type=int, default=60_000)
    p.add_argument("--db-outage", type=float, default=0.0, metavar="S", help="stop a private cluster S s mid-burst")
    p.add_argument("--outage-records", type=int, default=150_000)
    args = p.parse_args(argv)
    durability = bool(args.loss_runs or args.db_outage)
    args.pairs = (0 if durability else 3) if args.pairs is None else args.pairs
    args.sustained_rate = (0.0 if durability else 2000.0) if args.sustained_rate is None else args.sustained_rate
    if args.py_spy and not PY_SPY.exists():
        raise SystemExit(f"{PY_SPY} missing: .venv/bin/pip install py-spy (a tool, not a dependency)")
    if args.quick:
        args.sessions, args.pairs = min(args.sessions, 2_000), 1
        args.sustained_seconds = min(args.sustained_seconds, 10.0)
    if not (STOCK_SQL / "queries.conf").exists():
        raise SystemExit(f"{STOCK_SQL}/queries.conf missing: apt-get install -y freeradius-postgresql")
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    db_url = make_url(args.admin_url).set(database=SCRATCH_DB).render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp(prefix="op25b-acct-bench-"))
    fig = Figures()
    rmem_saved = RMEM_DEFAULT.read_text().strip() if args.rmem_default else None
    if args.rmem_default:
        RMEM_DEFAULT.write_text(str(args.rmem_default))
        print(f"net.core.rmem_default {rmem_saved} -> {args.rmem_default} for this run")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{SCRATCH_DB}"'))
        cfg = tmp / "admin.toml"
        cfg.write_text(f'[database]\nurl = "{db_url}"\n')
        run_op25b(cfg, "db", "upgrade")
        engine = create_engine(db_url, isolation_level="AUTOCOMMIT", connect_args={"application_name": BENCH_APP})
        with engine.connect() as conn:
            conn.exec_driver_sql((STOCK_SQL / "schema.sql").read_text())
        fig.facts = host_facts()
        fig.facts.update(pg_facts(engine, ("shared_buffers", "synchronous_commit")))
        fig.facts["recv_buffer"] = str(recv_buffer())
        fig.facts["net.core.rmem_default"] = RMEM_DEFAULT.read_text().strip()
        revision = git_revision()
        if revision:
            fig.facts["git"] = revision
        auth_port, acct_port = udp_ports()
        upstream = Upstream("upstream", auth_port, acct_port, UPSTREAM_SECRET, "", tmp / "upstream", start_timeout=60.0)
        upstream.start()
        run = 0
        for pair in range(args.pairs):
            for side in "AB" if pair % 2 == 0 else "BA":
                run += 1
                print(f"pair {pair + 1}, run {run}: {side}")
                fig.results += one_run(side, run, args, tmp, engine, db_url, upstream)
        if args.loss_runs:
            print(f"no fault: {args.loss_runs} run(s) of {args.loss_records:,} Starts")
            fig.loss = loss_runs(args, tmp, engine, db_url, upstream)
        if args.db_outage:
            print(f"database outage: a private cluster stopped {args.db_outage:.0f} s mid-burst")
            fig.outage = db_outage(args, tmp, upstream)
        if args.sustained_rate > 0:
            print(f"sustained: A at {args.sustained_rate:,.0f} Starts/s for {args.sustained_seconds:.0f} s")
            fig.sustained = sustained(args, tmp, engine, db_url, upstream)
            print(f"  {fig.sustained}")
        engine.dispose()
        text_report = report(fig, args)
        print(text_report)
        if not args.no_record:
            append_record(RESULTS, HEADER, text_report)
            print(f"appended to {RESULTS}")
    finally:
        stop_all()
        if rmem_saved is not None:
            RMEM_DEFAULT.write_text(rmem_saved)
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
