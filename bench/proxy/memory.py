"""Phase 3, memory: VmRSS of `op25b serve` after --memory-subscribers distinct subscribers
authenticated once (imported into the database first unless --no-memory-import)."""

from __future__ import annotations

import re
import time

from bench.proxy.context import Bench
from bench.proxy.procs import proc_status
from bench.proxy.radclient import RadclientRun, radclient_file
from bench.proxy.subscribers import NAS_SECRET, write_requests

CHUNK = 100_000  # subscribers per radclient run (and per RSS sample)


def run(bench: Bench) -> None:
    args, figures = bench.args, bench.figures
    m = args.memory_subscribers
    if m <= 0:
        return
    if not args.no_memory_import and bench.in_db < m:
        print(f"memory: importing subscribers {bench.in_db:,}..{m - 1:,} first")
        figures.memory["import_s"] = bench.import_range(bench.in_db, m)
    in_db = min(m, bench.in_db)
    print(f"memory: {m:,} distinct subscribers authenticate once through op25b serve ({in_db:,} of them in the database)")
    server = bench.start_a("memory")
    samples: list[tuple[int, int]] = []
    totals = RadclientRun(0, 0.0)
    done = 0
    try:
        time.sleep(0.5)
        samples.append((0, proc_status(server.pid, "VmRSS")))
        deadline = time.perf_counter() + args.memory_max_seconds
        path = bench.tmp / "memory-requests.txt"
        while done < m:
            if time.perf_counter() > deadline:
                figures.notes.append(f"memory: stopped at {done:,} subscribers (--memory-max-seconds {args.memory_max_seconds})")
                break
            k = min(CHUNK, m - done)
            write_requests(path, range(done, done + k), bench.n)
            chunk = radclient_file(server.auth_addr, NAS_SECRET, path, k, parallel=args.parallel)
            totals.add(chunk)
            done += k
            samples.append((done, proc_status(server.pid, "VmRSS")))
            print(f"  {done:>9,} subscribers: VmRSS {samples[-1][1] / 1024:.0f} MiB ({chunk.rate:,.0f} req/s, lost {chunk.lost})")
        time.sleep(1.0)
        loaded = re.findall(r"policy loaded in ([\d.]+)s: (\d+) subscriber", server.log.read_text())
        figures.memory.update(
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
    mem = figures.memory
    print(
        f"  after {done:,}: VmRSS {mem['rss_kib'] / 1024:.0f} MiB, VmHWM {mem['hwm_kib'] / 1024:.0f} MiB; "  # type: ignore[operator]
        f"{totals.summary()}"
    )
