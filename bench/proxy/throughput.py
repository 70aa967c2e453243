"""Phase 1, throughput: the same radclient load through A and through B, in pairs alternating
AB, BA, ...; a freshly started proxy per run after a short warm-up on other subscribers. After
each pair, A once more with the NAS over RadSec (bench/proxy/radsec.py), beside its UDP figure."""

from __future__ import annotations

from bench.proxy import radsec
from bench.proxy.context import Bench
from bench.proxy.figures import Pair
from bench.proxy.radclient import RadclientRun, radclient_file
from bench.proxy.subscribers import NAS_SECRET, UPSTREAM_SECRET, write_requests


def run(bench: Bench) -> None:
    args, n, figures = bench.args, bench.n, bench.figures
    assert bench.upstream is not None
    r = args.requests
    warm_n = min(args.warmup, max(0, n - r)) if n > r else min(args.warmup, n // 10)
    measured, expect, warm = bench.tmp / "requests.txt", bench.tmp / "expected.txt", bench.tmp / "warmup.txt"
    write_requests(measured, (j % n for j in range(r)), n, expect)
    write_requests(warm, range(n - warm_n, n), n)
    print(f"throughput: {r:,} requests ({min(r, n):,} distinct subscribers), radclient -p {args.parallel}, {args.pairs} pair(s)")
    d = radclient_file(bench.upstream.auth_addr, UPSTREAM_SECRET, measured, r, parallel=args.parallel)
    figures.direct = d
    print(f"  direct to the upstream (capacity reference): {d.summary()}")

    def measured_run(addr: str, pid: int) -> RadclientRun:
        return radclient_file(addr, NAS_SECRET, measured, r, expect=expect, parallel=args.parallel, pid=pid)

    def measure(side: str) -> tuple[RadclientRun, RadclientRun | None]:
        server = bench.start_a("tput", workers=args.a_workers) if side == "A" else bench.start_b("tput")
        again = None
        try:
            if warm_n:
                radclient_file(server.auth_addr, NAS_SECRET, warm, warm_n, parallel=min(32, args.parallel))
            pg0 = bench.pg_backend_cpu()
            result = measured_run(server.auth_addr, server.pid)
            pg1 = bench.pg_backend_cpu()
            result.pg_cpu_s = sum(pg1.values()) - sum(v for pid, v in pg0.items() if pid in pg1)
            if side == "A":
                # Information only: the same requests again on the same (warm) process.
                again = measured_run(server.auth_addr, server.pid)
        finally:
            server.stop()
        print(
            f"    {side}: {result.summary()}; CPU per request: proxy {result.cpu_s * 1e6 / r:,.0f} us, "
            f"its PostgreSQL backends {result.pg_cpu_s * 1e6 / r:,.0f} us"
        )
        return result, again

    for p in range(args.pairs):
        order = "AB" if p % 2 == 0 else "BA"
        got = {side: measure(side) for side in order}
        pair = Pair(order, got["A"][0], got["B"][0], got["A"][1])
        figures.pairs.append(pair)
        for side, (result, _) in got.items():
            if result.drops_proxy:
                figures.notes.append(
                    f"throughput pair {p + 1}: {result.drops_proxy} datagram(s) dropped on {side}'s sockets "
                    f"(full receive buffer): its rate there mostly measures radclient's 5 s retransmission "
                    f"wait, not the proxy; --rmem-default 8388608 avoids that for B"
                )
        again = f"; A again on the same process {pair.a_cached.rate:,.0f}/s" if pair.a_cached else ""
        print(f"  pair {p + 1} ({order}): A {pair.a.rate:,.0f}/s, B {pair.b.rate:,.0f}/s, ratio A/B {pair.ratio:.2f}{again}")
        if radsec.available() and args.a_workers <= 1:
            tls = radsec.run(bench, measured, expect, warm, r, warm_n)
            figures.radsec.append(tls)
            print(
                f"    A over RadSec (radclient -> radsecproxy -> op25b TLS): {tls.summary()}; "
                f"CPU per request: proxy {tls.cpu_s * 1e6 / r:,.0f} us"
            )
