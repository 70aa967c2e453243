"""Scale benchmark: import N subscribers into PostgreSQL with the real `op25b subscriber import`,
then time `policy explain` lookups and show that a lookup by username is an index lookup.

The import is the whole of store/imports.py: parse_import (the file has a header, read by
name), plan_import against the database, apply_import by COPY: the subscribers, who owns each
static address, and one audit row per subscriber. The run checks all three counts afterwards.

    python bench/import_bench.py [--rows 1000000] [--database-url URL] [--keep]

Without --database-url it drops and recreates a scratch database `op25b_bench` on
127.0.0.1:5432 (trust auth, user postgres) and drops it again at the end unless --keep.
Results are printed and appended as markdown to bench/RESULTS-import.md.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from radius_op25b import store
from radius_op25b.core import profiles
from radius_op25b.core.config import Config, load_config
from radius_op25b.services import explain
from radius_op25b.store import db

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import (  # noqa: E402 - after the path is set
    append_record,
    git_revision,
    host_facts,
    load_average,
    percentile,
    pg_facts,
    run_op25b,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS-import.md"
ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
SCRATCH_DB = "op25b_bench"
SUBSCRIBER_INDEX = "uq_subscribers_username_key"
REALM_INDEX = "uq_realms_name"

# (realm, weight, default class): the realms the generated usernames live in; all but the last
# are registered with `op25b realm add`, so most lookups also find a realm row.
REALMS = [
    ("isp-a.example", 55, None),
    ("isp-b.example", 20, "mobile"),
    ("partner-c.example", 10, "full"),
    ("partner-d.example", 7, None),
    ("mvno-e.example", 5, "mobile"),
    ("unregistered.example", 3, None),
]

CONFIG = """\
[database]
url = "{url}"

[policy]
default_class = "full"
static_pools = ["203.0.113.0/24"]

[[clients]]
name = "bng1"
address = "192.0.2.10"
secret = "bench"
profile = "juniper"
"""


# --- the input file -------------------------------------------------------------------------------


@dataclass
class Mix:
    """What the generated CSV holds, for the report."""

    rows: int = 0
    dynamic: int = 0
    static: int = 0
    static_addresses: int = 0  # addresses in all (some static subscribers have two)
    class_override: int = 0
    explicit_realm: int = 0
    no_at_sign: int = 0
    notes: int = 0
    per_realm: dict[str, int] = field(default_factory=dict)


def generate_csv(path: Path, rows: int, rng: random.Random) -> tuple[list[str], Mix]:
    """Write the import file; return every username (for lookups) and the mix."""
    realm_names = [r for r, _, _ in REALMS]
    weights = [w for _, w, _ in REALMS]
    realm_choice = rng.choices(realm_names, weights, k=rows)
    mix = Mix(rows=rows, per_realm=dict.fromkeys(realm_names, 0))
    usernames: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(store.CSV_COLUMNS)
        for i in range(rows):
            realm = realm_choice[i]
            mix.per_realm[realm] += 1
            roll = rng.random()
            realm_col = ""
            if roll < 0.03:
                # A bare User-Name with the realm given in its own column.
                username, realm_col = f"h{i:08d}", realm
                mix.no_at_sign += 1
            elif roll < 0.05:
                # Mixed case as some NASes send it; also an explicit (redundant) realm column.
                username, realm_col = f"User{i:08d}@{realm.upper()}", realm
            else:
                username = f"u{i:08d}@{realm}"
            if realm_col:
                mix.explicit_realm += 1
            usernames.append(username)

            ip_type, statics = "dynamic", ""
            kind = rng.random()
            if kind < 0.05:
                # Static: one IPv4 from 100.64.0.0/10, sometimes an IPv6 too (written long-hand,
                # so the import's normalisation is exercised).
                ip_type = "static"
                statics = f"100.{64 + (i >> 16) % 64}.{(i >> 8) & 255}.{i & 255}"
                if rng.random() < 0.2:
                    statics += f" 2001:0db8:0000:0000:0000:0000:{(i >> 16) & 0xFFFF:04x}:{i & 0xFFFF:04x}"
                mix.static += 1
                mix.static_addresses += len(statics.split())
            else:
                mix.dynamic += 1
            if kind > 0.8:
                ip_type = ""  # left for the import to infer (dynamic: no addresses)
            cls = ""
            if rng.random() < 0.04:
                cls = rng.choice(("full", "mobile", "none", "Mobile"))
                mix.class_override += 1
            note = ""
            if rng.random() < 0.01:
                note = rng.choice(("shop, 2F", "school", 'migrated from "legacy"', "VIP"))
                mix.notes += 1
            out.writerow((username, realm_col, ip_type, statics, cls, note))
    return usernames, mix


# --- running the CLI ------------------------------------------------------------------------------


def run_cli(config: Path, *args: str) -> tuple[float, str]:
    """Run `op25b -c CONFIG ARGS...` as its own process; return (wall seconds, stdout)."""
    return run_op25b(config, *args, timeout=None)


# --- lookups --------------------------------------------------------------------------------------


def explain_in_process(engine: Engine, config: Config, username: str, now: datetime) -> profiles.Attributes:
    """What `op25b policy explain USER --nas bng1` does once its config and engine exist."""
    client = config.clients[0]
    request = explain.request_for(username, None, client)
    with db.transaction(engine) as session:
        subscriber, realm = store.policy_inputs(session, username)
        mta = store.mobile_mta_networks(session)
    ctx = profiles.FilterContext(config.filters, mta)
    return explain.explain(config, ctx, client.profile, request, subscriber, realm, now).accept


def captured_statements(engine: Engine, username: str) -> list[tuple[str, Any]]:
    """The SQL the store really issues for one lookup, captured off the engine (not re-typed)."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with db.transaction(engine) as session:
            store.policy_inputs(session, username)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT") and "FROM" in s.upper()]


def explain_plan(engine: Engine, statement: str, parameters: Any) -> str:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.close()
        raw.rollback()
        return plan
    finally:
        raw.close()


# --- scratch database -----------------------------------------------------------------------------


def recreate_scratch(admin: Engine) -> str:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{SCRATCH_DB}"'))
    return make_url(ADMIN_URL).set(database=SCRATCH_DB).render_as_string(hide_password=False)


def drop_scratch(admin: Engine) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)'))


# --- machine facts for the record ------------------------------------------------------------------


def machine_facts(engine: Engine, load_at_start: str) -> dict[str, str]:
    facts = host_facts(("sqlalchemy", "psycopg2"))
    facts.update(pg_facts(engine, ("shared_buffers", "synchronous_commit", "max_wal_size")))
    # Other work on the machine skews the figures; the load average says how much there was.
    facts["load average 1/5/15 min at start"] = load_at_start
    facts["at end"] = load_average()
    revision = git_revision()
    if revision:
        facts["git"] = revision
    return facts


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000, help="subscribers to import (default 1000000)")
    p.add_argument("--database-url", help=f"use this (empty) PostgreSQL database instead of a scratch {SCRATCH_DB}")
    p.add_argument("--keep", action="store_true", help=f"keep the scratch database {SCRATCH_DB} afterwards")
    p.add_argument("--lookups", type=int, default=2_000, help="in-process policy explain lookups (default 2000)")
    p.add_argument("--cli-lookups", type=int, default=20, help="end-to-end `op25b policy explain` runs (default 20)")
    p.add_argument("--seed", type=int, default=25, help="random seed for the data and the lookups")
    p.add_argument("--no-record", action="store_true", help=f"do not append to {RESULTS.name}")
    return p.parse_args(argv)


@dataclass
class Figures:
    """Everything one run measured, for the summary and the markdown record."""

    command: str
    rows: int
    mix: Mix
    csv_bytes: int = 0
    generate_s: float = 0.0
    import_s: float = 0.0
    import_peak_rss_mib: float = 0.0
    counted: int = 0
    owned_addresses: int = 0  # rows of static_addresses
    audited: int = 0  # subscriber.import rows of audit_log
    table_size: str = ""
    index_size: str = ""
    cli_ms: list[float] = field(default_factory=list)
    lookup_ms: list[float] = field(default_factory=list)
    lookup_wall_s: float = 0.0
    plans: list[tuple[str, str, str]] = field(default_factory=list)  # (what, SQL, plan)
    plan_verdicts: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    load_at_start: str = ""


def run(args: argparse.Namespace, url: str, engine: Engine, tmp: Path) -> Figures:
    rng = random.Random(args.seed)
    config_path = tmp / "op25b.toml"
    config_path.write_text(CONFIG.format(url=url))
    csv_path = tmp / "subscribers.csv"
    figures = Figures(command=" ".join(["python", "bench/import_bench.py", *sys.argv[1:]]), rows=args.rows, mix=Mix())
    figures.load_at_start = load_average()

    start = time.perf_counter()
    usernames, figures.mix = generate_csv(csv_path, args.rows, rng)
    figures.generate_s = time.perf_counter() - start
    figures.csv_bytes = csv_path.stat().st_size
    print(f"generated {args.rows:,} rows ({figures.csv_bytes / 2**20:.0f} MiB) in {figures.generate_s:.1f} s")

    run_cli(config_path, "db", "upgrade")
    for name, _, cls in REALMS[:-1]:
        run_cli(config_path, "realm", "add", name, *(("--class", cls) if cls else ()))
    run_cli(config_path, "realm", "permit-msa", "isp-b.example", "198.51.100.0/24", "--until", "2099-12-31")
    run_cli(config_path, "mobile-mta", "add", "192.0.2.128/25", "--carrier", "bench-mobile")

    print(f"importing with: op25b -c {config_path} subscriber import {csv_path}")
    figures.import_s, out = run_cli(config_path, "subscriber", "import", str(csv_path))
    # ru_maxrss is the largest child so far (KiB on Linux); the import dwarfs the small commands.
    figures.import_peak_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  {'; '.join(out.strip().splitlines())} in {figures.import_s:.1f} s ({args.rows / figures.import_s:,.0f} rows/s)")

    with db.transaction(engine) as session:
        figures.counted = store.count_subscribers(session)
    if figures.counted != args.rows:
        raise SystemExit(f"the database holds {figures.counted:,} subscribers, expected {args.rows:,}")
    with engine.connect() as conn:
        figures.owned_addresses = int(conn.scalar(text("SELECT count(*) FROM static_addresses")) or 0)
        figures.audited = int(conn.scalar(text("SELECT count(*) FROM audit_log WHERE action = 'subscriber.import'")) or 0)
    if figures.owned_addresses != figures.mix.static_addresses:
        raise SystemExit(f"static_addresses holds {figures.owned_addresses:,} rows, expected {figures.mix.static_addresses:,}")
    if figures.audited != args.rows:
        raise SystemExit(
            f"the audit log has {figures.audited:,} subscriber.import rows, expected one per subscriber ({args.rows:,})"
        )
    with engine.connect() as conn:
        figures.table_size = str(conn.scalar(text("SELECT pg_size_pretty(pg_table_size('subscribers'))")))
        figures.index_size = str(conn.scalar(text(f"SELECT pg_size_pretty(pg_relation_size('{SUBSCRIBER_INDEX}'))")))

    # (a) End to end: a new `op25b` process per lookup, as support staff run it (Python start-up,
    # imports, config, engine and connection included).
    for username in rng.sample(usernames, min(args.cli_lookups, len(usernames))):
        elapsed, out = run_cli(config_path, "policy", "explain", username, "--nas", "bng1")
        if not out.startswith(f"{username}: "):
            raise SystemExit(f"unexpected policy explain output for {username}: {out!r}")
        figures.cli_ms.append(elapsed * 1000)
    print(f"  CLI policy explain: median {statistics.median(figures.cli_ms):.0f} ms over {len(figures.cli_ms)} runs")

    # (b) In process: the functions the CLI calls, one transaction per lookup, on one engine (as the
    # proxy holds it). A short warm-up first, so statement compilation and the pool are not timed.
    config = load_config(str(config_path))
    now = datetime.now(UTC)
    for username in rng.sample(usernames, 20):
        explain_in_process(engine, config, username, now)
    sample = [rng.choice(usernames) for _ in range(args.lookups)]
    wall = time.perf_counter()
    for username in sample:
        start = time.perf_counter()
        explain_in_process(engine, config, username, now)
        figures.lookup_ms.append((time.perf_counter() - start) * 1000)
    figures.lookup_wall_s = time.perf_counter() - wall
    print(
        f"  in-process lookups: p50 {percentile(figures.lookup_ms, 0.5):.2f} ms, p99 {percentile(figures.lookup_ms, 0.99):.2f} ms, "
        f"{len(sample) / figures.lookup_wall_s:,.0f} lookups/s"
    )

    figures.plans, figures.plan_verdicts = check_plans(engine, rng.choice([u for u in usernames if "@" in u]))
    for verdict in figures.plan_verdicts:
        print(f"  plan: {verdict}")
    figures.facts = machine_facts(engine, figures.load_at_start)
    return figures


def check_plans(engine: Engine, username: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """EXPLAIN ANALYZE the subscriber and realm SELECTs of one lookup; insist on the unique indexes."""
    plans: list[tuple[str, str, str]] = []
    verdicts: list[str] = []
    for statement, parameters in captured_statements(engine, username):
        plan = explain_plan(engine, statement, parameters)
        sql = " ".join(statement.split())
        if "FROM subscribers" in sql and "username_key" in sql:
            what = f"subscriber by username_key ({username!r})"
            if f"Index Scan using {SUBSCRIBER_INDEX}" not in plan and f"Index Only Scan using {SUBSCRIBER_INDEX}" not in plan:
                raise SystemExit(f"the subscriber lookup does not use {SUBSCRIBER_INDEX}:\n{plan}")
            verdicts.append(f"subscriber lookup: index scan on {SUBSCRIBER_INDEX}")
        elif "FROM realms" in sql:
            what = "realm by name"
            if f"Index Scan using {REALM_INDEX}" in plan or f"Index Only Scan using {REALM_INDEX}" in plan:
                verdicts.append(f"realm lookup: index scan on {REALM_INDEX}")
            elif "Seq Scan on realms" in plan and realm_pages(engine) <= 1:
                # A handful of realms fit in one page: reading it beats descending an index, and
                # the planner is right to say so. Not a scale problem; reported, not failed.
                verdicts.append("realm lookup: Seq Scan, but realms is a single page (planner's right choice)")
            else:
                raise SystemExit(f"the realm lookup scans a multi-page realms table:\n{plan}")
        else:
            what = "other: " + sql.split(" FROM ", 1)[-1].split()[0]
        plans.append((what, sql, plan))
    if not any(v.startswith("subscriber lookup") for v in verdicts):
        raise SystemExit("no subscriber lookup was captured")
    # Whether the planner had statistics yet: the unique index wins either way, but say which.
    with engine.connect() as conn:
        analyzed = conn.scalar(
            text("SELECT greatest(last_analyze, last_autoanalyze) FROM pg_stat_user_tables WHERE relname = 'subscribers'")
        )
    verdicts.append(
        f"subscribers last analyzed {analyzed.astimezone(UTC):%H:%M:%S} UTC" if analyzed else "subscribers not analyzed yet"
    )
    return plans, verdicts


def realm_pages(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_relation_size('realms') / current_setting('block_size')::int")) or 0)


def summary_markdown(f: Figures) -> str:
    m = f.mix
    cli_median = statistics.median(f.cli_ms)
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {f.rows:,} subscribers",
        "",
        f"Command: `{f.command}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in f.facts.items()),
        "",
        f"Input: {f.rows:,} rows, {f.csv_bytes / 2**20:.0f} MiB CSV: {m.dynamic:,} dynamic, {m.static:,} static "
        f"({m.static_addresses:,} addresses), "
        f"{m.class_override:,} with a class override, {m.explicit_realm:,} with a realm column "
        f"({m.no_at_sign:,} bare names), {m.notes:,} notes; realms "
        + ", ".join(f"{r} {n:,}" for r, n in m.per_realm.items())
        + ".",
        "",
        "| measure | result |",
        "|---|---|",
        (
            f"| `op25b subscriber import` wall clock (process start to exit) | **{f.import_s:.1f} s** "
            f"({f.rows / f.import_s:,.0f} rows/s; target < 120 s: {'met' if f.import_s < 120 else 'NOT met'}) |"
        ),
        f"| import peak RSS | {f.import_peak_rss_mib:,.0f} MiB |",
        (
            f"| rows in the database afterwards | {f.counted:,} subscribers, {f.owned_addresses:,} owned static addresses, "
            f"{f.audited:,} audit rows |"
        ),
        f"| subscribers table / {SUBSCRIBER_INDEX} size | {f.table_size} / {f.index_size} |",
        (
            f"| `op25b policy explain USER --nas bng1`, new process each | median {cli_median:.0f} ms, "
            f"min {min(f.cli_ms):.0f} ms, max {max(f.cli_ms):.0f} ms over {len(f.cli_ms)} runs |"
        ),
        (
            f"| in-process lookup (policy_inputs + decide + attributes_for, one transaction) | "
            f"p50 **{percentile(f.lookup_ms, 0.5):.2f} ms**, p99 **{percentile(f.lookup_ms, 0.99):.2f} ms**, "
            f"max {max(f.lookup_ms):.2f} ms over {len(f.lookup_ms):,} lookups; "
            f"{len(f.lookup_ms) / f.lookup_wall_s:,.0f} lookups/s |"
        ),
        "",
        "Plans (" + "; ".join(f.plan_verdicts) + "):",
        "",
    ]
    for what, sql, plan in f.plans:
        lines += [
            f"- {what}",
            "",
            "  ```sql",
            f"  {sql}",
            "  ```",
            "",
            "  ```",
            *(f"  {p}" for p in plan.splitlines()),
            "  ```",
            "",
        ]
    return "\n".join(lines) + "\n"


RESULTS_HEADER = (
    "# Import and lookup benchmark\n\n"
    "Written by `bench/import_bench.py`; newest runs last. The import is the real\n"
    "`op25b subscriber import` process (start to exit, COPY on PostgreSQL); lookups are\n"
    "`op25b policy explain`: end to end as a new process each (mostly Python start-up and\n"
    "imports), and in process with the functions the CLI calls (ORM work plus about five\n"
    "statements per lookup; the index scan itself takes some 0.02 ms). The machine is shared\n"
    "with other work, so the load average is recorded with each run.\n\n"
)


def record(markdown: str) -> None:
    append_record(RESULTS, RESULTS_HEADER, markdown)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    admin: Engine | None = None
    if args.database_url:
        url = args.database_url
    else:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        url = recreate_scratch(admin)
    engine = db.make_engine(url)
    try:
        with tempfile.TemporaryDirectory(prefix="op25b-bench-") as tmp:
            figures = run(args, url, engine, Path(tmp))
    finally:
        engine.dispose()
        if admin is not None:
            if not args.keep:
                drop_scratch(admin)
            admin.dispose()
    markdown = summary_markdown(figures)
    print()
    print(markdown)
    if not args.no_record:
        record(markdown)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
