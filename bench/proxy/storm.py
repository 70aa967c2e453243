"""Phase 4, reconnect storm: --storm requests with `radclient -p P -r 3` per --storm-parallel
value into a fresh `op25b serve` (metrics on, to report its reply and duplicate counters)."""

from __future__ import annotations

import time

from bench.proxy.context import Bench
from bench.proxy.figures import Storm
from bench.proxy.radclient import radclient_file
from bench.proxy.subscribers import NAS_SECRET, write_requests


def counters(m: dict[str, float]) -> dict[str, float]:
    """op25b's counters that tell what happened to the storm."""

    def total(prefix: str, exclude: str = "\0") -> float:
        return sum(v for k, v in m.items() if k.startswith(prefix) and exclude not in k)

    return {
        "requests": m.get('op25b_requests_total{client="bench",type="auth"}', 0.0),
        "replies": m.get('op25b_replies_total{client="bench",type="auth"}', 0.0),
        "duplicates answered from cache": m.get("op25b_duplicates_answered_total", 0.0),
        "duplicates dropped in flight": m.get('op25b_drops_total{cause="duplicate_in_flight"}', 0.0),
        "other drops": total("op25b_drops_total", exclude="duplicate_in_flight"),
        "upstream timeouts": total("op25b_upstream_timeouts_total"),
        "abandoned": total("op25b_requests_abandoned_total"),
        "mean upstream RTT ms": 1000.0
        * total("op25b_upstream_rtt_seconds_sum")
        / max(1.0, total("op25b_upstream_rtt_seconds_count")),
    }


def run(bench: Bench) -> None:
    args, n = bench.args, bench.n
    s = args.storm
    if s <= 0:
        return
    path = bench.tmp / "storm.txt"
    write_requests(path, (j % max(n, bench.in_db) for j in range(s)), n)
    for parallel in args.storm_parallels:
        print(
            f"storm: {s:,} Access-Requests, radclient -p {parallel} -r 3 -t {args.storm_timeout:g}, "
            "fresh op25b serve (metrics on)"
        )
        server = bench.start_a(f"storm-{parallel}", metrics=True)
        try:
            result = radclient_file(
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
            seen = counters(server.metrics())
        finally:
            server.stop()
        bench.figures.storms.append(Storm(parallel, result, seen))
        print(f"  {result.summary()}")
        print("  op25b: " + ", ".join(f"{k} {v:,.0f}" for k, v in seen.items()))
