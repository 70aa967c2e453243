"""The run's context: the scratch PostgreSQL database with the subscribers imported, the upstream
FreeRADIUS, and starting a fresh A or B for each measurement."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import git_revision, host_facts, pg_facts, run_op25b, scratch_database
from bench.proxy.figures import Figures
from bench.proxy.procs import cpu_seconds
from bench.proxy.servers import Op25bServe, SqlProxy, Upstream, udp_ports
from bench.proxy.subscribers import NAS_SECRET, REALMS, UPSTREAM_SECRET, upstream_users, write_import_csv

SCRATCH_DB = "op25b_perf"


def machine_facts(admin_url: str) -> dict[str, str]:
    """The machine, the software versions and the PostgreSQL settings, for the record."""
    facts = host_facts()
    for knob in ("rmem_default", "rmem_max"):
        try:
            facts[f"net.core.{knob}"] = Path(f"/proc/sys/net/core/{knob}").read_text().strip()
        except OSError:
            pass
    for package in ("freeradius", "freeradius-postgresql"):
        try:
            facts[package] = (
                subprocess.run(
                    ["dpkg-query", "-W", "-f", "${Version}", package],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=10,
                ).stdout.strip()
                or "?"
            )
        except OSError:
            facts[package] = "?"
    engine = create_engine(admin_url)
    try:
        facts.update(pg_facts(engine, ("shared_buffers", "synchronous_commit")))
    finally:
        engine.dispose()
    revision = git_revision()
    if revision:
        facts["git"] = revision
    return facts


class Bench:
    """Set-up and the servers of one run; the phases (bench.proxy.throughput, ...) take it."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.n = args.subscribers
        self.admin_url = args.admin_url
        self.db_url = make_url(args.admin_url).set(database=SCRATCH_DB).render_as_string(hide_password=False)
        self.figures = Figures(" ".join(["python", "bench/proxy_bench.py", *sys.argv[1:]]), args)
        self.upstream: Upstream | None = None
        self.in_db = 0  # subscribers imported so far
        self.runs = 0
        self.admin_cfg = tmp / "admin.toml"

    # -- the database ------------------------------------------------------------------------------
    def scratch_db(self, create: bool) -> None:
        scratch_database(self.admin_url, SCRATCH_DB, create)

    def setup(self) -> None:
        print(f"scratch database {SCRATCH_DB}, {self.n:,} subscribers")
        self.scratch_db(create=True)
        self.admin_cfg.write_text(
            f'[database]\nurl = "{self.db_url}"\n\n[[clients]]\nname = "bench"\naddress = "127.0.0.1"\nsecret = "{NAS_SECRET}"\n'
        )
        run_op25b(self.admin_cfg, "db", "upgrade")
        for name, cls in REALMS:
            run_op25b(self.admin_cfg, "realm", "add", name, *(("--class", cls) if cls else ()), "--actor", "bench")
        self.import_range(0, self.n)
        auth_port, acct_port = udp_ports()
        self.upstream = Upstream(
            "upstream",
            auth_port,
            acct_port,
            UPSTREAM_SECRET,
            upstream_users(self.n),
            self.tmp / "upstream",
            start_timeout=120.0,
        )
        self.upstream.start()
        self.figures.upstream_start_s = self.upstream.startup_seconds or 0.0
        print(f"  upstream FreeRADIUS with {self.n:,} users entries up in {self.figures.upstream_start_s:.1f} s")

    def import_range(self, start: int, stop: int) -> float:
        """`op25b subscriber import` of subscribers start..stop-1, then VACUUM ANALYZE."""
        if stop <= start:
            return 0.0
        path = self.tmp / f"subscribers-{start}-{stop}.csv"
        write_import_csv(path, start, stop)
        seconds, out = run_op25b(self.admin_cfg, "subscriber", "import", str(path), "--actor", "bench")
        path.unlink()
        self.in_db = max(self.in_db, stop)
        print(f"  op25b subscriber import of {stop - start:,} rows: {seconds:.1f} s ({out.strip()})")
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

    def pg_backend_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each PostgreSQL backend connected to the scratch database."""
        engine = create_engine(self.admin_url)
        try:
            with engine.connect() as conn:
                pids = conn.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = :db"), {"db": SCRATCH_DB}).all()
        finally:
            engine.dispose()
        out = {}
        for pid in pids:
            try:
                out[int(pid)] = cpu_seconds(int(pid))
            except (OSError, ValueError, IndexError):
                pass  # gone, or on another host
        return out

    # -- the proxies -------------------------------------------------------------------------------
    def start_a(self, tag: str, metrics: bool = False, workers: int = 1) -> Op25bServe:
        self.runs += 1
        assert self.upstream is not None
        run_dir = self.tmp / f"a-{self.runs}-{tag}"
        return Op25bServe(run_dir, self.db_url, self.upstream, metrics, workers).start()

    def start_b(self, tag: str) -> SqlProxy:
        self.runs += 1
        assert self.upstream is not None
        proxy = SqlProxy(
            self.tmp / f"b-{self.runs}-{tag}",
            upstream=self.upstream,
            database=SCRATCH_DB,
            threads=self.args.fr_threads,
            sql_pool=self.args.fr_sql_pool,
        )
        return proxy.start()  # type: ignore[return-value]
