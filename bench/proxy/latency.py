"""Phase 2, latency: bench/radload.py sends at a fixed rate direct to the upstream and through a
fresh `op25b serve`, in rounds with the order alternating; the added RTT per round."""

from __future__ import annotations

import collections

from bench import radload
from bench.common import median, percentile
from bench.proxy.context import Bench
from bench.proxy.figures import Latency
from bench.proxy.procs import wait_idle
from bench.proxy.subscribers import NAS_SECRET, UPSTREAM_SECRET, credentials

TARGETS = ("direct", "op25b", "op25b-again")


def run(bench: Bench) -> None:
    for rate in bench.args.latency_rates:
        at_rate(bench, rate)


def at_rate(bench: Bench, rate: float) -> None:
    """Rounds of direct / op25b (first-seen subscribers) / op25b-again (the first round's
    subscribers once more), the order alternating per round. The added latency is taken per
    round (op25b percentile minus direct percentile of the same round) and its median over
    rounds reported, next to the pooled figure: a few ms of stolen CPU in one round of a
    shared VM then moves one round, not the result."""
    args, n, figures = bench.args, bench.n, bench.figures
    assert bench.upstream is not None
    seconds, rounds = args.latency_seconds, args.latency_rounds
    per_round = max(1, int(rate * seconds))
    print(f"latency: {rate:,.0f} req/s, {rounds} rounds x {seconds:g} s per target, order alternating, fresh op25b serve")
    server = bench.start_a(f"latency-{rate:g}")
    # Subscribers from the middle of the range, other ones per rate where N allows.
    base = (n // 2 + len(figures.latency) * rounds * per_round) % n
    phases: dict[str, list[radload.Phase]] = collections.defaultdict(list)
    per_round_added: list[dict[str, tuple[float, float]]] = []
    proxied = 0
    distinct: set[str] = set()
    try:
        # A short warm-up (other subscribers), so connection set-up is not measured.
        warm = credentials(((base - 1 - k) % n for k in range(min(200, n))), n)
        warm_rate = min(rate, 1000.0)
        radload.run_paced("127.0.0.1", server.auth_port, NAS_SECRET.encode(), warm, rate=warm_rate, seconds=len(warm) / warm_rate)
        first_round: list[tuple[str, str]] = []
        for rnd in range(rounds):
            users = credentials((i % n for i in range(base + rnd * per_round, base + (rnd + 1) * per_round)), n)
            first_round = first_round or users
            order = list(TARGETS) if rnd % 2 == 0 else list(reversed(TARGETS))
            got: dict[str, radload.Phase] = {}
            for target in order:
                if target == "direct":
                    port, secret, batch = bench.upstream.auth_port, UPSTREAM_SECRET, users
                else:
                    port, secret = server.auth_port, NAS_SECRET
                    # op25b-again in round 0 comes after op25b (the order), so it is a repeat too.
                    batch = users if target == "op25b" else first_round
                # A saturated round leaves op25b a backlog: let it finish first, so that
                # no round is measured against the previous one's leftovers.
                waited = wait_idle(server.pid)
                if waited > 1.0:
                    figures.notes.append(f"latency: waited {waited:.1f} s for op25b serve to finish a backlog before a round")
                got[target] = radload.run_paced(
                    "127.0.0.1", port, secret.encode(), batch, rate=rate, seconds=seconds, target=target
                )
                if target != "direct":
                    proxied += got[target].sent
                    distinct.update(u for u, _ in batch[: got[target].sent])
            d = got["direct"].rtts_ms
            per_round_added.append(
                {
                    t: (
                        percentile(got[t].rtts_ms, 0.5) - percentile(d, 0.5),
                        percentile(got[t].rtts_ms, 0.99) - percentile(d, 0.99),
                    )
                    for t in TARGETS[1:]
                }
            )
            for target, ph in got.items():
                phases[target].append(ph)
    finally:
        server.stop()
    merged = {target: radload.Phase.merged(target, phases[target]) for target in TARGETS}
    figures.latency[rate] = Latency(merged, len(distinct), proxied, per_round_added)
    for target, ph in merged.items():
        print(
            f"  {target:13s} sent {ph.sent:,} accepted {ph.accepted:,} lost {ph.lost:,}  RTT p50 "
            f"{percentile(ph.rtts_ms, 0.5):.3f} ms p99 {percentile(ph.rtts_ms, 0.99):.3f} ms "
            f"max {max(ph.rtts_ms, default=float('nan')):.1f} ms"
        )
    d = merged["direct"].rtts_ms
    for target in TARGETS[1:]:
        r = merged[target].rtts_ms
        rounds_p50 = [a[target][0] for a in per_round_added]
        rounds_p99 = [a[target][1] for a in per_round_added]
        print(
            f"  added by op25b ({target}): median of rounds p50 {median(rounds_p50):.3f} ms, "
            f"p99 {median(rounds_p99):.3f} ms (rounds p99: {', '.join(f'{x:.2f}' for x in rounds_p99)}); "
            f"pooled p50 {percentile(r, 0.5) - percentile(d, 0.5):.3f} ms, "
            f"p99 {percentile(r, 0.99) - percentile(d, 0.99):.3f} ms"
        )
