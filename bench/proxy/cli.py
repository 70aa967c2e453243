"""The options of bench/proxy_bench.py and the order of a run: set-up, throughput, latency,
storm, profile, memory; then the report.  Everything started is stopped at the end."""

from __future__ import annotations

import argparse
import fcntl
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.common import load_average
from bench.proxy import latency, memory, pyspy, storm, throughput
from bench.proxy.context import SCRATCH_DB, Bench, machine_facts
from bench.proxy.report import RESULTS, markdown, record
from bench.proxy.servers import stop_all
from tests.support.radclient import RADCLIENT

DESCRIPTION = "Side-by-side proxy benchmark: `op25b serve` (A) against FreeRADIUS 3.2 doing the same job (B)."
ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
LOCK_PATH = "/tmp/op25b-proxy-bench.lock"
PHASES = ("throughput", "latency", "memory", "storm", "profile")
RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")

# --quick: every phase shrunk, for a smoke run of the whole benchmark in well under 3 minutes
# (options given on the command line still win).  Its figures are not recorded.
QUICK = {
    "subscribers": 2_000,
    "requests": 2_000,
    "pairs": 1,
    "warmup": 200,
    "latency_seconds": 1.0,
    "latency_rounds": 2,
    "memory_subscribers": 5_000,
    "memory_max_seconds": 60.0,
    "storm": 2_000,
    "profile_seconds": 2.0,
    "no_record": True,
}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add(
        "--quick",
        action="store_true",
        help="smoke run: every phase shrunk ("
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items() if k != "no_record")
        + "); not recorded",
    )
    add("--subscribers", type=int, default=100_000, help="N subscribers in the database and the upstream")
    add("--requests", type=int, default=20_000, help="requests per throughput run (distinct subscribers while <= N)")
    add("--pairs", type=int, default=3, help="A/B pairs (alternating order AB, BA, ...)")
    add("--parallel", type=int, default=256, help="radclient -p for throughput, memory and profile load")
    add("--warmup", type=int, default=500, help="requests (other subscribers) before each measured run")
    add("--fr-threads", type=int, default=8, help="B: FreeRADIUS thread pool max_servers")
    add("--fr-sql-pool", type=int, default=8, help="B: rlm_sql connection pool max")
    add(
        "--rmem-default",
        type=int,
        default=0,
        help="set net.core.rmem_default to this many bytes for the run and restore it afterwards "
        "(B's sockets towards the upstream take the kernel default; 0: leave it alone)",
    )
    add(
        "--a-workers",
        type=int,
        default=1,
        help="throughput: run A as `op25b serve --workers N` (CPU and drops summed over its processes)",
    )
    add("--latency-rates", type=_floats, default=[1000.0, 250.0], help="latency probe: requests per second, comma-separated")
    add(
        "--latency-seconds",
        type=float,
        default=None,
        help="latency probe: seconds per target and round (default 3, or 2 when N < 100000; 0: skip)",
    )
    add(
        "--latency-rounds",
        type=int,
        default=6,
        help="latency probe: rounds per rate (the added latency is the median over rounds)",
    )
    add(
        "--memory-subscribers",
        type=int,
        default=None,
        help="memory: distinct subscribers (default 10 x N when N >= 100000, else N; 0: skip)",
    )
    add(
        "--no-memory-import",
        action="store_true",
        help="memory: do not import the extra subscribers (they are decided by default)",
    )
    add("--memory-max-seconds", type=float, default=2400.0, help="memory: stop sending after this long")
    add("--storm", type=int, default=None, help="storm: requests (default N; 0: skip)")
    add(
        "--storm-parallel",
        dest="storm_parallels",
        type=_ints,
        default=[256, 2048],
        help="storm: radclient -p values, comma-separated",
    )
    add("--storm-timeout", type=float, default=3.0, help="storm: radclient -t")
    add(
        "--profile-seconds",
        type=float,
        default=None,
        help="py-spy: seconds per recording (default 10, or 5 when N < 100000; 0: skip)",
    )
    add("--profile-output", default="/tmp/op25b-profile", help="py-spy raw (collapsed stacks) output prefix")
    add("--skip", default="", help="comma-separated phases to skip: " + ",".join(PHASES))
    add("--admin-url", default=ADMIN_URL, help="PostgreSQL maintenance database URL (the scratch DB is created next to it)")
    add("--keep", action="store_true", help=f"keep the scratch database {SCRATCH_DB} and the temp directory")
    add("--no-record", action="store_true", help=f"do not append to {RESULTS.name}")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser()
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)
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
    unknown = skip - set(PHASES)
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


def check_requirements() -> None:
    if RADCLIENT is None or not shutil.which("freeradius"):
        raise SystemExit("needs Debian's freeradius and freeradius-utils (apt-get install freeradius freeradius-utils)")
    if not Path("/usr/lib/freeradius/rlm_sql_postgresql.so").exists():
        raise SystemExit("needs rlm_sql_postgresql: apt-get install freeradius-postgresql")


def run_phases(bench: Bench) -> None:
    args = bench.args
    bench.setup()
    if not args.skip_throughput:
        throughput.run(bench)
    if args.latency_seconds > 0:
        latency.run(bench)
    if args.storm > 0:
        storm.run(bench)
    if args.profile_seconds > 0:
        pyspy.run(bench)
    if args.memory_subscribers > 0:
        memory.run(bench)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_requirements()
    # One run at a time: runs share the scratch database name and net.core.rmem_default.
    lock = open(LOCK_PATH, "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another proxy_bench run holds {LOCK_PATH}; wait for it") from None

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    rmem_saved = RMEM_DEFAULT.read_text().strip() if args.rmem_default else None
    if args.rmem_default:
        RMEM_DEFAULT.write_text(str(args.rmem_default))
        print(f"net.core.rmem_default {rmem_saved} -> {args.rmem_default} for this run")
    tmp = Path(tempfile.mkdtemp(prefix="op25b-proxy-bench-"))
    bench = Bench(args, tmp)
    f = bench.figures
    f.started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    f.load_start = load_average()
    try:
        f.facts = machine_facts(args.admin_url)
        run_phases(bench)
        f.load_end = load_average()
    finally:
        stop_all()
        if rmem_saved is not None:
            RMEM_DEFAULT.write_text(rmem_saved)
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
