"""Start-up benchmark: how long `op25b` takes to answer, and whether it loads SQLAlchemy to do it.

    python bench/startup_bench.py [--runs 20] [--no-record]

In a temporary directory, `op25b init` writes a fresh config with an embedded SQLite database;
then `op25b --help`, `op25b --version` and the read commands `subscriber list`, `realm list` and
`policy explain alice@isp.example` run --runs times each (interleaved, one of each per round),
next to two references in the same run: `python -c pass` (the interpreter alone) and
`python -c "import sqlalchemy"` (what loading SQLAlchemy costs by itself).  Wall time per run
from process start to exit; median and p90.  Whether SQLAlchemy is imported comes from one more
run of each under `python -X importtime` (the list of every module imported).  A command that
exits non-zero is reported in the table (exit status and the end of its stderr), not fatal.

Targets: --help and --version import no SQLAlchemy; the read commands answer well under 0.5 s
(p90 < 0.5 s).  Results are printed and appended as markdown to bench/RESULTS-startup.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import (  # noqa: E402 - after the path is set
    BENCH_DIR,
    append_record,
    git_revision,
    host_facts,
    load_average,
    median,
    op25b_command,
    percentile,
)

RESULTS = BENCH_DIR / "RESULTS-startup.md"
READ_LIMIT_S = 0.5


@dataclass
class Case:
    """One command line to time: `args` after `op25b` (or after `python` for a reference)."""

    label: str
    args: tuple[str, ...]
    reference: bool = False  # a `python ...` line, not op25b
    target: str = ""  # what it should achieve: "no sqlalchemy" or "fast"
    seconds: list[float] = field(default_factory=list)
    exit_codes: set[int] = field(default_factory=set)
    error: str = ""
    sqlalchemy: bool | None = None  # None: could not tell
    modules: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_codes == {0}


def cases(config: Path) -> list[Case]:
    c = ("-c", str(config))
    return [
        Case("python -c pass", ("-c", "pass"), reference=True),
        Case('python -c "import sqlalchemy"', ("-c", "import sqlalchemy"), reference=True),
        Case("op25b --help", ("--help",), target="no sqlalchemy"),
        Case("op25b --version", ("--version",), target="no sqlalchemy"),
        Case("op25b subscriber list", (*c, "subscriber", "list"), target="fast"),
        Case("op25b realm list", (*c, "realm", "list"), target="fast"),
        Case("op25b policy explain alice@isp.example", (*c, "policy", "explain", "alice@isp.example"), target="fast"),
    ]


def command(case: Case) -> list[str]:
    return [sys.executable, *case.args] if case.reference else [*op25b_command(), *case.args]


def importtime_command(case: Case) -> list[str]:
    """The same work under `python -X importtime` (op25b as `python -m radius_op25b`)."""
    prefix = [sys.executable, "-X", "importtime"]
    return [*prefix, *case.args] if case.reference else [*prefix, "-m", "radius_op25b", *case.args]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OP25B_CONFIG", "PYTHONPROFILEIMPORTTIME")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # byte-code caches as an installation has them
    return env


def time_once(case: Case, cwd: Path, env: dict[str, str]) -> None:
    start = time.perf_counter()
    done = subprocess.run(
        command(case), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, check=False, timeout=120,
    )  # fmt: skip
    case.seconds.append(time.perf_counter() - start)
    case.exit_codes.add(done.returncode)
    if done.returncode != 0 and not case.error:
        case.error = " ".join(done.stderr.strip().splitlines()[-2:])[-200:]


def imported_modules(case: Case, cwd: Path, env: dict[str, str]) -> None:
    """Which modules the command imports, from `-X importtime` (one line per module on stderr)."""
    done = subprocess.run(
        importtime_command(case), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, check=False, timeout=120,
    )  # fmt: skip
    names = [
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2 and "cumulative" not in line
    ]
    if not names:
        return  # no importtime output: cannot tell
    case.modules = len(names)
    case.sqlalchemy = any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in names)


def verdict(case: Case) -> str:
    if case.target == "no sqlalchemy":
        if not case.ok:
            return "**no** (exits non-zero)"
        return "yes" if case.sqlalchemy is False else "**no**"
    if case.target == "fast":
        if not case.ok:
            return "**no** (exits non-zero)"
        return "yes" if percentile(case.seconds, 0.9) < READ_LIMIT_S else "**no**"
    return ""


def markdown(all_cases: Sequence[Case], runs: int, facts: dict[str, str], started: str, cmd: str) -> str:
    out = [
        f"## {started}: {runs} runs per command",
        "",
        f"Command: `{cmd}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()),
        "",
        "| command | exit | median s | p90 s | min s | SQLAlchemy imported | modules imported | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in all_cases:
        exits = ", ".join(str(x) for x in sorted(c.exit_codes))
        if c.error:
            exits += f" (`{c.error.replace('|', '/').replace('`', '')}`)"
        imported = {None: "?", True: "yes", False: "no"}[c.sqlalchemy]
        target = {"no sqlalchemy": "no SQLAlchemy", "fast": f"p90 < {READ_LIMIT_S:g} s"}.get(c.target, "reference")
        out.append(
            f"| `{c.label}` | {exits} | {median(c.seconds):.3f} | {percentile(c.seconds, 0.9):.3f} | "
            f"{min(c.seconds, default=float('nan')):.3f} | {imported} | {c.modules or '?'} | {target} | {verdict(c)} |"
        )
    out += [
        "",
        "Wall time of each process from start to exit (stdout to /dev/null), the commands interleaved one "
        "per round; read commands on a fresh `op25b init` config (embedded SQLite, empty tables). "
        "SQLAlchemy imported and modules imported: from one more run under `python -X importtime` "
        "(op25b as `python -m radius_op25b`). The two `python -c` rows are the references: the interpreter "
        "alone, and the interpreter importing SQLAlchemy and nothing else.",
        "",
    ]
    return "\n".join(out) + "\n"


RESULTS_HEADER = """# Start-up benchmark: op25b's CLI

Written by `bench/startup_bench.py` (method: its docstring); newest runs last. Targets:
`op25b --help` and `op25b --version` import no SQLAlchemy; read commands answer well under 0.5 s.

"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    p.add_argument("--no-record", action="store_true", help=f"do not append to {RESULTS.name}")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = load_average()
    env = child_env()
    with tempfile.TemporaryDirectory(prefix="op25b-startup-bench-") as tmp:
        cwd = Path(tmp)
        init = subprocess.run(
            [*op25b_command(), "init"], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
        )
        if init.returncode != 0:
            raise SystemExit(f"op25b init failed ({init.returncode}): {init.stderr.strip()}")
        all_cases = cases(cwd / "op25b.toml")
        for case in all_cases:  # one untimed run each: byte-code caches written, files in the page cache
            time_once(case, cwd, env)
            case.seconds.clear()
        for _ in range(args.runs):
            for case in all_cases:
                time_once(case, cwd, env)
        for case in all_cases:
            imported_modules(case, cwd, env)
    facts = host_facts(("sqlalchemy",))
    revision = git_revision()
    if revision:
        facts["git"] = revision
    facts["load average 1/5/15 min at start"] = load_start
    facts["at end"] = load_average()
    cmd = " ".join(["python", "bench/startup_bench.py", *(argv if argv is not None else sys.argv[1:])])
    report = markdown(all_cases, args.runs, facts, started, cmd)
    print(report)
    if not args.no_record:
        append_record(RESULTS, RESULTS_HEADER, report)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
