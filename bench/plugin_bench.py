"""The FreeRADIUS plugin against rlm_sql (issue 17): the same FreeRADIUS 3.2 answering the NAS
itself (PAP from its users file), deciding OP25B two ways in post-auth.

    python bench/plugin_bench.py [--subscribers 20000] [--requests 20000] [--pairs 3] [--parallel 64]
    python bench/plugin_bench.py --quick        # 2,000 subscribers, one pair, not recorded

A = FreeRADIUS + deploy/freeradius-plugin (rlm_rest: `op25b_post_auth` asks `op25b web`'s
    POST /api/v1/decide, which decides from the policy set it holds in memory);
C = FreeRADIUS + the rlm_python3 variant (mods-available/op25b_python3: the same held set and
    decision inside the FreeRADIUS process), unless --no-python3;
B = FreeRADIUS + rlm_sql doing the same lookup: the one query of deploy/freeradius-sql-proxy's
    post-auth on op25b's tables (subscribers, exemptions, realms), per Accept;
plain = the same FreeRADIUS with neither (the reference for the added latency).

Set-up: a scratch PostgreSQL database `op25b_plugin_perf` (127.0.0.1:5432, user postgres) with
op25b's schema, the two realms of bench/proxy/subscribers.py and N subscribers imported with
`op25b subscriber import` (80 % full, 20 % mobile by override or realm); each FreeRADIUS has one
users entry per subscriber (Framed-IP-Address, Session-Timeout) and its per-request log off.
`op25b web` runs on the same database (one client 127.0.0.1, generic profile), called with an
agent's token.

1. throughput: `radclient -p P -f requests:expected -s` with R distinct subscribers through A,
   B and C, rounds rotating the order (ABC, BCA, CAB, ...); a freshly started FreeRADIUS (and, for A, the same
   `op25b web`) per run after a warm-up on other subscribers. Accepts/s from radclient's wall
   time, the ratio A/B per pair and its median (target >= 1.0). `Passed filter` checks every
   Accept carries the expected Filter-Id and Class op25b:<class>.
2. latency: --latency-requests Access-Requests one at a time (radclient -p 1) through plain,
   A and B, in rounds alternating the order; the mean per request, and the added latency of A
   and B over plain per round (median over rounds).

Results are printed and appended as markdown to bench/RESULTS.md (unless --no-record). Every
process started is stopped (by PID); the scratch database is dropped unless --keep.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.common import append_record, git_revision, host_facts, load_average, median, run_op25b, scratch_database  # noqa: E402
from bench.proxy.radclient import RadclientRun, radclient_file  # noqa: E402
from bench.proxy.servers import LIVE, SQL_PROXY_TEMPLATE, Upstream, stop_all, udp_ports  # noqa: E402
from bench.proxy.subscribers import (  # noqa: E402
    NAS_SECRET,
    REALMS,
    upstream_users,
    username,
    write_import_csv,
    write_requests,
)
from tests.support.plugin import install_plugin, install_python_plugin  # noqa: E402
from tests.support.ports import free_tcp_port  # noqa: E402
from tests.support.web import WebProcess  # noqa: E402

SCRATCH_DB = "op25b_plugin_perf"
RESULTS = REPO_ROOT / "bench" / "RESULTS.md"


class Plain(Upstream):
    """FreeRADIUS answering the NAS from its users file (deploy/freeradius, log line off)."""

    def __init__(self, name: str, users: str, tmp: Path) -> None:
        auth, acct = udp_ports()
        super().__init__(name, auth, acct, NAS_SECRET, users, tmp / name, start_timeout=120.0)


class WithPlugin(Plain):
    """A: the plugin installed as its README says (module, policies, the two lines)."""

    def render(self) -> Path:
        conf = super().render()
        install_plugin(conf)
        return conf


class WithPython(Plain):
    """C: the rlm_python3 variant (mods-available/op25b_python3): the decision inside FreeRADIUS."""

    def render(self) -> Path:
        conf = super().render()
        install_python_plugin(conf)
        return conf


class WithSql(Plain):
    """B: rlm_sql and deploy/freeradius-sql-proxy's post-auth lookup, in post-auth."""

    def __init__(self, name: str, users: str, tmp: Path, database: str, pool: int) -> None:
        super().__init__(name, users, tmp)
        self.database, self.pool = database, pool

    def render(self) -> Path:
        conf = super().render()
        values = {
            "@SQL_SERVER@": "127.0.0.1",
            "@SQL_PORT@": "5432",
            "@SQL_LOGIN@": "postgres",
            "@SQL_PASSWORD@": "",
            "@SQL_DB@": self.database,
            "@SQL_POOL@": str(self.pool),
            "@SQL_POOL_START@": str(max(1, self.pool // 2)),
        }
        sql = (SQL_PROXY_TEMPLATE / "mods" / "sql").read_text()
        for key, value in values.items():
            sql = sql.replace(key, value)
        (conf / "mods" / "sql").write_text(sql)
        radiusd = (conf / "radiusd.conf").read_text()
        radiusd = radiusd.replace(
            "\t$INCLUDE ${confdir}/mods/detail\n", "\t$INCLUDE ${confdir}/mods/detail\n\t$INCLUDE ${confdir}/mods/sql\n"
        )
        (conf / "radiusd.conf").write_text(radiusd)
        # The lookup and the reply it sets, from B of the proxy benchmark, without the
        # Message-Authenticator lines (A's Accept has none either: the same reply on both sides).
        template = (SQL_PROXY_TEMPLATE / "sites" / "default").read_text()
        found = re.search(r"(?ms)^\tpost-auth \{\n(.*?)^\t\tPost-Auth-Type REJECT \{", template)
        if found is None:
            raise RuntimeError(f"{SQL_PROXY_TEMPLATE}/sites/default: no post-auth section")
        lookup = re.sub(r"(?m)^.*Message-Authenticator.*\n", "", found.group(1))
        site = conf / "sites" / "default"
        body, n = re.subn(r"(\tpost-auth \{\n)", lambda m: m.group(1) + lookup, site.read_text())
        if n != 1:
            raise RuntimeError(f"{site}: no post-auth section")
        site.write_text(body)
        return conf


@dataclass
class Pair:
    a: RadclientRun
    b: RadclientRun
    c: RadclientRun | None = None  # the rlm_python3 variant, same round

    @property
    def ratio(self) -> float:
        return self.a.rate / self.b.rate if self.b.rate else float("nan")

    @property
    def ratio_c(self) -> float:
        return self.c.rate / self.b.rate if self.c is not None and self.b.rate else float("nan")


@dataclass
class Figures:
    command: str
    pairs: list[Pair] = field(default_factory=list)
    latency: list[dict[str, float]] = field(default_factory=list)  # per round: side -> ms per request
    facts: dict[str, str] = field(default_factory=dict)


def scratch_db(admin_url: str, create: bool) -> None:
    scratch_database(admin_url, SCRATCH_DB, create)


def write_load(path: Path, expect: Path, indices: range) -> int:
    return write_requests(path, indices, known=indices.stop, expect=expect)  # every one with its own password


def throughput(server: Plain, tmp: Path, indices: range, parallel: int, tag: str) -> RadclientRun:
    requests, expect = tmp / f"req-{tag}.txt", tmp / f"exp-{tag}.txt"
    count = write_load(requests, expect, indices)
    warm = range(indices.stop, indices.stop + min(500, len(indices)))
    write_load(tmp / "warm.txt", tmp / "warm-exp.txt", warm)
    radclient_file(server.auth_addr, NAS_SECRET, tmp / "warm.txt", len(warm), parallel=parallel)
    run = radclient_file(server.auth_addr, NAS_SECRET, requests, count, expect=expect, parallel=parallel, pid=server.proc.pid)  # type: ignore[union-attr]
    print(f"  {tag}: {run.summary()}")
    return run


def sequential_ms(server: Plain, tmp: Path, indices: range, tag: str, check: bool) -> float:
    requests, expect = tmp / f"lat-{tag}.txt", tmp / f"lat-exp-{tag}.txt"
    count = write_load(requests, expect, indices)
    run = radclient_file(server.auth_addr, NAS_SECRET, requests, count, expect=expect if check else None, parallel=1)
    if run.accepted != count or (check and run.passed != count):
        raise SystemExit(f"{tag}: {run.summary()}")
    return run.seconds / count * 1e3


def report(fig: Figures, args: argparse.Namespace) -> str:
    ratios = [p.ratio for p in fig.pairs]
    lines = [
        f"\n## FreeRADIUS plugin vs rlm_sql (issue 17) {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — `{fig.command}`\n",
        f"FreeRADIUS 3.2 answering from its users file; A = + deploy/freeradius-plugin (rlm_rest to `op25b web`, "
        f"held policy set), B = + rlm_sql doing the same lookup per Accept (deploy/freeradius-sql-proxy's query); "
        f"{args.subscribers:,} subscribers, {args.requests:,} distinct ones per run, radclient -p {args.parallel}, "
        f"{len(fig.pairs)} pair(s) alternating. Load average before: {fig.facts.get('load', '?')}.\n",
        "| | A plugin | B rlm_sql | A/B |",
        "|---|---|---|---|",
        f"| Accepts/s (median of runs) | {median([p.a.rate for p in fig.pairs]):,.0f} | "
        f"{median([p.b.rate for p in fig.pairs]):,.0f} | **{median(ratios):.2f}** (median of pairs; target >= 1.0) |",
        f"| pairs A/B | | | {', '.join(f'{r:.2f}' for r in ratios)} |",
        f"| lost / failed filter (all runs) | {sum(p.a.lost for p in fig.pairs)} / {sum(p.a.failed for p in fig.pairs)} | "
        f"{sum(p.b.lost for p in fig.pairs)} / {sum(p.b.failed for p in fig.pairs)} | |",
        *(
            [
                f"| C rlm_python3: Accepts/s (median), C/B (median of rounds) | {median([p.c.rate for p in fig.pairs if p.c]):,.0f} | | "
                f"**{median([p.ratio_c for p in fig.pairs]):.2f}** ({', '.join(f'{p.ratio_c:.2f}' for p in fig.pairs)}) |"
            ]
            if any(p.c for p in fig.pairs)
            else []
        ),
        f"| FreeRADIUS CPU ms per request (median) | {median([p.a.cpu_s / p.a.requests * 1e3 for p in fig.pairs]):.3f} | "
        f"{median([p.b.cpu_s / p.b.requests * 1e3 for p in fig.pairs]):.3f} | (A's `op25b web` not included) |",
    ]
    if fig.latency:
        added_a = [r["A"] - r["plain"] for r in fig.latency]
        added_b = [r["B"] - r["plain"] for r in fig.latency]
        has_c = all("C" in r for r in fig.latency)
        lines += [
            "",
            f"Latency, {args.latency_requests} Access-Requests one at a time (radclient -p 1), {len(fig.latency)} round(s), "
            "mean ms per request:\n",
            "| | plain | A plugin | B rlm_sql | C rlm_python3 | added by A | added by B | added by C |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| round {i + 1} | {r['plain']:.3f} | {r['A']:.3f} | {r['B']:.3f} | {r.get('C', float('nan')):.3f} | "
                f"{r['A'] - r['plain']:+.3f} | {r['B'] - r['plain']:+.3f} | {r.get('C', float('nan')) - r['plain']:+.3f} |"
                for i, r in enumerate(fig.latency)
            ),
            f"| median | | | | | **{median(added_a):+.3f}** | **{median(added_b):+.3f}** | "
            + (f"**{median([r['C'] - r['plain'] for r in fig.latency]):+.3f}** |" if has_c else "|"),
        ]
    lines += [
        "",
        "Per run:\n",
        "| pair | side | requests | s | Accepts/s | lost | passed filter | FreeRADIUS CPU s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, p in enumerate(fig.pairs):
        for side, run in (("A", p.a), ("B", p.b), *((("C", p.c),) if p.c else ())):
            lines.append(
                f"| {i + 1} | {side} | {run.requests:,} | {run.seconds:.2f} | {run.rate:,.0f} | {run.lost} | {run.passed:,} | {run.cpu_s:.2f} |"
            )
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in fig.facts.items() if k != "load"), ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=20000)
    p.add_argument("--requests", type=int, default=20000, help="distinct subscribers per run")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--parallel", type=int, default=64)
    p.add_argument("--latency-requests", type=int, default=500)
    p.add_argument("--latency-rounds", type=int, default=3)
    p.add_argument("--sql-pool", type=int, default=32)
    p.add_argument("--no-python3", dest="python3", action="store_false", help="leave out C, the rlm_python3 variant")
    p.add_argument("--admin-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--quick", action="store_true", help="2,000 subscribers, one pair, one latency round; not recorded")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = p.parse_args(argv)
    if args.quick:
        args.subscribers, args.requests, args.pairs, args.latency_rounds, args.latency_requests = 3000, 1000, 1, 1, 200
        args.no_record = True
    if args.subscribers < args.requests + 500 + args.latency_requests:
        p.error("--subscribers must cover --requests, the warm-up (500) and --latency-requests")
    fig = Figures(" ".join(["python", "bench/plugin_bench.py", *(argv if argv is not None else sys.argv[1:])]))
    fig.facts = {"load": load_average(), **host_facts(), "git": git_revision() or "?"}
    db_url = make_url(args.admin_url).set(database=SCRATCH_DB).render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp(prefix="op25b-plugin-bench-"))
    web: WebProcess | None = None
    try:
        print(f"scratch database {SCRATCH_DB}, {args.subscribers:,} subscribers")
        scratch_db(args.admin_url, create=True)
        config = tmp / "op25b.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n\n[accounting]\nspool_dir = "{tmp / "spool"}"\n\n'
            f'[[clients]]\nname = "bench"\naddress = "127.0.0.1"\nsecret = "{NAS_SECRET}"\nprofile = "generic"\n\n'
        )
        run_op25b(config, "db", "upgrade")
        for name, cls in REALMS:
            run_op25b(config, "realm", "add", name, *(("--class", cls) if cls else ()), "--actor", "bench")
        write_import_csv(tmp / "subscribers.csv", 0, args.subscribers)
        seconds, _ = run_op25b(config, "subscriber", "import", str(tmp / "subscribers.csv"), "--actor", "bench")
        print(f"  imported in {seconds:.1f} s")
        # Fresh statistics, as a real installation would have (and no autovacuum in the first run).
        engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text("VACUUM ANALYZE"))
        finally:
            engine.dispose()
        run_op25b(config, "staff", "add", "radius", "--role", "agent", "--actor", "bench")
        _, out = run_op25b(config, "staff", "token", "radius", "--actor", "bench")
        token = next(w for w in out.split() if w.startswith("op25b_"))
        web = WebProcess(config, tmp / "web.log", port=free_tcp_port())
        web.start()
        LIVE.append(web)
        users = upstream_users(args.subscribers)
        env = {"OP25B_URL": web.base_url, "OP25B_TOKEN": token, "OP25B_FAILSAFE_FILTER": "OP25B-FAILSAFE"}
        # C: the package as this interpreter has it (site-packages, and the checkout if editable)
        env |= {"OP25B_CONFIG": str(config), "OP25B_PYTHONPATH": f"{sysconfig.get_paths()['purelib']}:{REPO_ROOT}"}
        os.environ.update(env)  # FreeRADIUS reads them from the environment it starts with
        with httpx.Client(base_url=web.base_url, headers={"Authorization": f"Bearer {token}"}) as api:
            probe = api.post("/api/v1/decide", json={"user_name": username(0), "nas_ip_address": "127.0.0.1"})
            if probe.status_code != 200:
                raise SystemExit(f"op25b web's decide answers {probe.status_code}: {probe.text}")

        def fresh(side: str, tag: str) -> Plain:
            server: Plain
            if side == "A":
                server = WithPlugin(f"plugin-{tag}", users, tmp)
            elif side == "C":
                server = WithPython(f"python3-{tag}", users, tmp)
            elif side == "B":
                server = WithSql(f"sql-{tag}", users, tmp, SCRATCH_DB, args.sql_pool)
            else:
                server = Plain(f"plain-{tag}", users, tmp)
            return server.start()  # type: ignore[return-value]

        load = range(0, args.requests)
        print("1. throughput")
        for pair in range(args.pairs):
            runs: dict[str, RadclientRun] = {}
            order = ["A", "B", "C"] if args.python3 else ["A", "B"]
            for side in order[pair % len(order) :] + order[: pair % len(order)]:
                server = fresh(side, f"{side}{pair}")
                try:
                    runs[side] = throughput(server, tmp, load, args.parallel, f"{side} pair {pair + 1}")
                finally:
                    server.stop()
            fig.pairs.append(Pair(runs["A"], runs["B"], runs.get("C")))
            print(
                f"  pair {pair + 1}: A/B {fig.pairs[-1].ratio:.2f}"
                + (f", C/B {fig.pairs[-1].ratio_c:.2f}" if args.python3 else "")
            )
        print("2. latency")
        lat = range(args.requests + 500, args.requests + 500 + args.latency_requests)
        sides = ["plain", "A", "B", *(["C"] if args.python3 else [])]
        servers = {side: fresh(side, f"lat-{side}") for side in sides}
        try:
            for side, server in servers.items():  # warm: connections, caches
                sequential_ms(server, tmp, range(lat.start, lat.start + 50), f"warm-{side}", check=False)
            for r in range(args.latency_rounds):
                order = sides if r % 2 == 0 else sides[::-1]
                fig.latency.append({side: sequential_ms(servers[side], tmp, lat, side, check=side != "plain") for side in order})
                print("  round", r + 1, ", ".join(f"{k} {v:.3f} ms" for k, v in fig.latency[-1].items()))
        finally:
            for server in servers.values():
                server.stop()
        markdown = report(fig, args)
        print(markdown)
        if not args.no_record:
            append_record(RESULTS, "# Benchmark results\n", markdown)
            print(f"appended to {RESULTS}")
        return 0
    finally:
        stop_all()
        if web is not None:
            web.stop()
        if not args.keep:
            scratch_db(args.admin_url, create=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
