"""What every benchmark under bench/ shares: running the op25b CLI, percentiles, the machine
facts and load average recorded with each run, and appending a run to a RESULTS file.

Imported as `bench.common` (each script puts the repository root on sys.path first).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


def op25b_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m radius_op25b`."""
    script = Path(sys.executable).parent / "op25b"
    if script.exists():
        return [str(script)]
    found = shutil.which("op25b")
    return [found] if found else [sys.executable, "-m", "radius_op25b"]


def run_op25b(config: Path, *args: str, timeout: float | None = 900) -> tuple[float, str]:
    """Run `op25b -c CONFIG ARGS...` as its own process; (wall seconds, stdout); exit on failure."""
    start = time.perf_counter()
    done = subprocess.run(
        [*op25b_command(), "-c", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"op25b {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done.stdout


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_average() -> str:
    """The 1/5/15 min load average: other work on the machine skews every figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def host_facts(modules: Iterable[str] = ("sqlalchemy", "psycopg2", "pyrad")) -> dict[str, str]:
    """CPU, memory, kernel and Python, and the versions of `modules` that are installed."""
    facts = {"nproc": str(os.cpu_count())}
    try:
        models = [
            ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")
        ]
        if models:
            facts["cpu"] = models[0]
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        facts["memory"] = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    facts["kernel"] = platform.release()
    facts["python"] = platform.python_version()
    for module in modules:
        try:
            mod = __import__(module)
        except ImportError:
            continue
        facts[module] = str(getattr(mod, "__version__", "?")).split()[0]
    return facts


def pg_facts(engine: object, settings: Iterable[str]) -> dict[str, str]:
    """The server version and the named settings of the PostgreSQL behind a SQLAlchemy engine."""
    from sqlalchemy import text

    facts: dict[str, str] = {}
    with engine.connect() as conn:  # type: ignore[attr-defined]
        facts["postgresql"] = str(conn.scalar(text("SHOW server_version")))
        for setting in settings:
            facts[f"pg {setting}"] = str(conn.scalar(text(f"SHOW {setting}")))
    return facts


def git_revision() -> str | None:
    """`abc1234 (+ working tree)`: the commit the figures were taken on, or None outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() + " (+ working tree)"


def append_record(path: Path, header: str, markdown: str) -> None:
    """Append one run's markdown to a RESULTS file, writing its header first if it is new."""
    if not path.exists():
        path.write_text(header)
    with path.open("a") as fh:
        fh.write(markdown)


def scratch_database(admin_url: str, name: str, create: bool) -> None:
    """Drop the benchmark's scratch database `name` (its connections too), and create it afresh
    when `create`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if create:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
