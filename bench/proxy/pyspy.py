"""Phase 5, profile: py-spy records `op25b serve` under radclient load twice (all threads; GIL
holder) and the hot spots are tabulated from its raw collapsed stacks."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.proxy.context import Bench
from bench.proxy.radclient import radclient_args
from bench.proxy.subscribers import NAS_SECRET, write_requests

VIEWS = (("threads", []), ("gil", ["--gil"]))

# Frames every sample of a serving process has: left out of the inclusive tables.
BORING = {
    "<module> (op25b)",
    "main (radius_op25b/cli/__init__.py)",
    "cmd_serve (radius_op25b/cli/commands.py)",
    "serve (radius_op25b/proxy/server.py)",
    "_run (radius_op25b/proxy/server.py)",
    "run (uvloop/__init__.py)",
    "Thread._bootstrap (threading.py)",
    "Thread._bootstrap_inner (threading.py)",
    "Thread.run (threading.py)",
    "_worker (concurrent/futures/thread.py)",
    "run (asyncio/runners.py)",
    "Runner.run (asyncio/runners.py)",
    "BaseEventLoop.run_until_complete (asyncio/base_events.py)",
    "BaseEventLoop.run_forever (asyncio/base_events.py)",
}


def pyspy_path() -> Path:
    return Path(shutil.which("py-spy") or Path(sys.executable).parent / "py-spy")


def run(bench: Bench) -> None:
    args, n, figures = bench.args, bench.n, bench.figures
    if args.profile_seconds <= 0:
        return
    pyspy = pyspy_path()
    if not pyspy.exists():
        figures.notes.append("profile: py-spy not installed (pip install py-spy); skipped")
        print("profile: py-spy not found, skipped")
        return
    seconds = int(max(1, args.profile_seconds))
    # More than op25b answers during the two recordings (it is killed after): 10,000/s is above
    # what `serve --workers 1` reaches on the benchmark machine.
    count = (seconds * 2 + 2) * 10_000
    path = bench.tmp / "profile-requests.txt"
    write_requests(path, (j % max(n, bench.in_db) for j in range(count)), n)
    base = Path(args.profile_output)
    print(f"profile: py-spy record 2 x {seconds} s of op25b serve under radclient -p {args.parallel} load -> {base}.*")
    server = bench.start_a("profile")
    try:
        load = radclient_args(server.auth_addr, NAS_SECRET, str(path), parallel=args.parallel)
        client = subprocess.Popen(load, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            for view, extra in VIEWS:
                out = Path(f"{base}.{view}.txt")
                rec = subprocess.run(
                    [
                        str(pyspy),
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
                    figures.notes.append(f"profile: py-spy failed: {rec.stderr.strip()[-300:]}")
                    print(f"  py-spy failed: {rec.stderr.strip()[-500:]}")
                    return
                summary = summarize(out)
                summary["file"] = str(out)
                figures.profile[view] = summary
                print(f"  view: {view}")
                print_summary(summary)
                if client.poll() is not None:
                    figures.notes.append("profile: the radclient load ended before the recording did")
        finally:
            if client.poll() is None:
                client.kill()
            client.wait(10)
    finally:
        server.stop()


# --- py-spy collapsed stacks ---------------------------------------------------------------------

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


def summarize(path: Path, top: int = 20) -> dict[str, object]:
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

    def interesting(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, pct(c)) for f, c in counter.most_common(top + 15) if f not in BORING]

    return {
        "samples": total,
        "threads": [(t, pct(c)) for t, c in groups.most_common(8)],
        "self": [(f, pct(c)) for f, c in self_t.most_common(top)],
        "inclusive": interesting(incl),
        "main_self": [(f, pct(c)) for f, c in main_self.most_common(12)],
        "main_inclusive": interesting(main_incl),
    }


def print_summary(profile: dict[str, object]) -> None:
    threads = ", ".join(f"{t} {p:.1f}%" for t, p in profile["threads"])  # type: ignore[attr-defined]
    print(f"  {profile['samples']:,} samples; by thread: {threads}")
    for key, title, k in (
        ("self", "top self (all threads)", 15),
        ("inclusive", "top inclusive (all threads)", 25),
        ("main_self", "top self (event loop thread)", 10),
    ):
        print(f"  {title}:")
        for f, p in profile[key][:k]:  # type: ignore[index]
            print(f"    {p:5.1f}%  {f}")
