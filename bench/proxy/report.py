"""A run's figures as markdown, printed and appended to bench/RESULTS.md."""

from __future__ import annotations

from bench.common import BENCH_DIR, append_record, median, percentile
from bench.proxy.figures import Figures

RESULTS = BENCH_DIR / "RESULTS.md"

RESULTS_HEADER = """# Proxy benchmark: op25b serve (A) against FreeRADIUS 3.2 + rlm_sql (B)

Written by `bench/proxy_bench.py` (method: its docstring and the notes at the top of this file);
newest runs last. Same machine, same upstream, same load tool, same subscribers for A and B.

"""

THROUGHPUT_NOTE = (
    "Filter ok = radclient's `Passed filter`: an Access-Accept with the subscriber's expected Filter-Id "
    "and Class. CPU per request: the proxy process' own utime+stime (all threads), and that of the PostgreSQL "
    "backends connected to the scratch database (the upstream's and radclient's not included). "
    "UDP drops: datagrams the kernel dropped for a full receive buffer, on the proxy's sockets / on the "
    "whole machine during the run; each one costs radclient a -t 5 s wait before its retransmission, "
    "which shows directly in the wall time. Info column: right after A's measured run, the same "
    "requests once more on the same (warm) process; not part of the ratio."
)

LATENCY_NOTE = (
    "sends subscribers it has not seen before, `op25b-again` the first round's once more. Added = proxy "
    "percentile minus direct percentile of the same round; the result is the median over rounds, the pooled "
    "figure (all rounds' samples together) is in brackets. Lost = no answer within 2 s; not sent = the generator "
    "had 16 x 256 requests outstanding (the proxy is saturated)."
)

STORM_NOTE = (
    "Fresh `op25b serve` per row, metrics on to read its counters; radclient without -q "
    "(its packet lines go to a file) so that its error lines can be counted. radclient 3.2.1's `Lost` counts "
    "requests whose tries all timed out *and* every reply that fails verification: a late answer to one of "
    "its retransmissions (op25b answers those from its duplicate cache) that arrives after radclient reused "
    "the Identifier for another request fails the Message-Authenticator check and is counted `Lost`, while "
    "the request it belonged to was accepted. `accepted` = requests that got an Access-Accept."
)


def _throughput(f: Figures) -> list[str]:
    a = f.args
    workers = f"; A is `op25b serve --workers {a.a_workers}`" if a.a_workers > 1 else ""
    out = [
        f"### Throughput (radclient -p {a.parallel}, {a.requests:,} requests per run, fresh proxy per run{workers})",
        "",
    ]
    if f.direct:
        out += [f"Direct to the upstream (reference, no proxy): {f.direct.rate:,.0f} req/s ({f.direct.summary()}).", ""]
    out.append(
        "| pair | order | A op25b req/s | B FreeRADIUS+rlm_sql req/s | A/B | A: acc/rej/lost/filter ok | B: acc/rej/lost/filter ok "
        "| CPU us/req A / B: proxy | PostgreSQL | UDP drops A / B (proxy; machine) | info: A again, same process: req/s (CPU us/req) |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for i, p in enumerate(f.pairs, 1):
        again = f"{p.a_cached.rate:,.0f} ({p.a_cached.cpu_s * 1e6 / p.a_cached.requests:,.0f}) |" if p.a_cached else " |"
        out.append(
            f"| {i} | {p.order} | {p.a.rate:,.0f} | {p.b.rate:,.0f} | {p.ratio:.2f} | "
            f"{p.a.accepted:,}/{p.a.rejected}/{p.a.lost}/{p.a.passed:,} | {p.b.accepted:,}/{p.b.rejected}/{p.b.lost}/{p.b.passed:,} | "
            f"{p.a.cpu_s * 1e6 / p.a.requests:,.0f} / {p.b.cpu_s * 1e6 / p.b.requests:,.0f} | "
            f"{p.a.pg_cpu_s * 1e6 / p.a.requests:,.0f} / {p.b.pg_cpu_s * 1e6 / p.b.requests:,.0f} | "
            f"{p.a.drops_proxy}; {p.a.drops_system} / {p.b.drops_proxy}; {p.b.drops_system} | " + again
        )
    cached = [p.a_cached.rate for p in f.pairs if p.a_cached]
    out.append(
        f"| **median** | | **{median([p.a.rate for p in f.pairs]):,.0f}** | **{median([p.b.rate for p in f.pairs]):,.0f}** | "
        f"**{median([p.ratio for p in f.pairs]):.2f}** | | | | | | " + (f"{median(cached):,.0f} |" if cached else " |")
    )
    clean = [p for p in f.pairs if not (p.a.drops_proxy or p.b.drops_proxy)]
    if len(clean) < len(f.pairs):
        out.append("")
        out.append(
            f"**{len(f.pairs) - len(clean)} of {len(f.pairs)} pair(s) had UDP drops at a proxy.** "
            + (
                f"Median over the {len(clean)} drop-free pair(s): A {median([p.a.rate for p in clean]):,.0f}, "
                f"B {median([p.b.rate for p in clean]):,.0f}, A/B **{median([p.ratio for p in clean]):.2f}**."
                if clean
                else "No drop-free pair: rerun with --rmem-default 8388608."
            )
        )
    if f.radsec:
        out += [
            "",
            "A with the NAS over RadSec, same run, one after each pair (radclient -> radsecproxy 1.9 "
            "(UDP in, TLS out) -> op25b's RadSec listener -> the same upstream; radsecproxy shares the cores):",
            "",
            "| run | A over UDP req/s (that pair) | A over RadSec req/s | RadSec/UDP | RadSec: acc/rej/lost/filter ok "
            "| CPU us/req op25b: UDP / RadSec |",
            "|---|---|---|---|---|---|",
        ]
        for i, (p, t) in enumerate(zip(f.pairs, f.radsec, strict=False), 1):
            out.append(
                f"| {i} | {p.a.rate:,.0f} | {t.rate:,.0f} | {t.rate / p.a.rate if p.a.rate else 0:.2f} | "
                f"{t.accepted:,}/{t.rejected}/{t.lost}/{t.passed:,} | "
                f"{p.a.cpu_s * 1e6 / p.a.requests:,.0f} / {t.cpu_s * 1e6 / t.requests:,.0f} |"
            )
        out.append(
            f"| **median** | **{median([p.a.rate for p in f.pairs]):,.0f}** | **{median([t.rate for t in f.radsec]):,.0f}** | | | |"
        )
    return [*out, "", THROUGHPUT_NOTE, ""]


def _latency(f: Figures) -> list[str]:
    a, out = f.args, []
    for rate, lat in f.latency.items():
        d = lat.phases["direct"].rtts_ms
        out += [
            f"### Latency at {rate:,.0f} req/s (bench/radload.py, paced; {a.latency_rounds} rounds x "
            f"{a.latency_seconds:g} s per target, order alternating)",
            "",
            "| target | sent | not sent (IDs busy) | accepted | with Filter-Id | lost | RTT p50 ms | p99 ms | max ms "
            "| added p50 ms: median of rounds (pooled) | added p99 ms: median of rounds (pooled) | added p99 ms per round |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for target, ph in lat.phases.items():
            r = ph.rtts_ms
            if target == "direct":
                added = ("", "", "")
            else:
                added = (
                    f"**{median([x[target][0] for x in lat.per_round]):.3f}** ({percentile(r, 0.5) - percentile(d, 0.5):.3f})",
                    f"**{median([x[target][1] for x in lat.per_round]):.3f}** ({percentile(r, 0.99) - percentile(d, 0.99):.3f})",
                    ", ".join(f"{x[target][1]:.2f}" for x in lat.per_round),
                )
            out.append(
                f"| {target} | {ph.sent:,} | {ph.skipped:,} | {ph.accepted:,} | {ph.with_filter_id:,} | {ph.lost} | "
                f"{percentile(r, 0.5):.3f} | {percentile(r, 0.99):.3f} | {max(r, default=float('nan')):.2f} | "
                f"{added[0]} | {added[1]} | {added[2]} |"
            )
        out += [
            "",
            f"`op25b`: {lat.proxied:,} requests for {lat.distinct:,} distinct subscribers on a fresh process; "
            f"in each round `op25b` {LATENCY_NOTE}",
            "",
        ]
    return out


def _memory(f: Figures) -> list[str]:
    if not f.memory:
        return []
    m, a = f.memory, f.args
    samples = ", ".join(f"{k:,}: {v / 1024:.0f} MiB" for k, v in m["samples"])  # type: ignore[attr-defined]
    return [
        "### Memory",
        "",
        f"`op25b serve` after {m['subscribers']:,} distinct subscribers authenticated once ({m['in_db']:,} of them in the "
        f"database, {m['held']:,} of them held in memory as not decided by default, loaded in {m['load_s']:.2f} s): "
        f"**VmRSS {m['rss_kib'] / 1024:.0f} MiB**, VmHWM {m['hwm_kib'] / 1024:.0f} MiB. "  # type: ignore[operator]
        f"radclient -p {a.parallel}: {m['run'].summary()}.",  # type: ignore[attr-defined]
        "",
        "VmRSS by subscribers seen: " + samples,
        "",
    ]


def _storms(f: Figures) -> list[str]:
    if not f.storms:
        return []
    out = [
        "### Reconnect storm",
        "",
        "| radclient | requests | radclient Lost | accepted | seconds | req/s | radclient: reply verification failed / reply to a request it did not send "
        "| op25b replies | duplicates answered from cache | in-flight duplicates dropped | upstream timeouts | mean upstream RTT ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in f.storms:
        run, c = s.run, s.counters
        out.append(
            f"| `-p {s.parallel} -r 3 -t {f.args.storm_timeout:g}` | {run.requests:,} | **{run.lost:,}** | {run.accepted:,} | "
            f"{run.seconds:.1f} | {run.rate:,.0f} | {run.verify_failed:,} / {run.unmatched:,} | "
            f"{c['replies']:,.0f} | {c['duplicates answered from cache']:,.0f} | "
            f"{c['duplicates dropped in flight']:,.0f} | {c['upstream timeouts']:,.0f} | {c['mean upstream RTT ms']:,.0f} |"
        )
    return [*out, "", STORM_NOTE, ""]


def _table(header: str, rows: object, limit: int) -> list[str]:
    return [header, "|---|---|", *(f"| {v:.1f} | `{fn}` |" for fn, v in rows[:limit]), ""]  # type: ignore[index]


def _profiles(f: Figures) -> list[str]:
    out: list[str] = []
    for view, p in f.profile.items():
        what = (
            "every sampled thread that was not idle (a thread waiting for the GIL counts in the C call it waits in)"
            if view == "threads"
            else "only the thread holding the GIL (where the Python CPU time goes)"
        )
        out += [
            f"### Profile, py-spy `{view}` view ({f.args.profile_seconds:g} s under radclient -p {f.args.parallel} "
            f"with first-seen subscribers; {p['samples']:,} samples of {what})",
            "",
            "By thread: " + ", ".join(f"{t} {v:.1f}%" for t, v in p["threads"]),  # type: ignore[attr-defined]
            "",
            *_table("| self % | function (all threads) |", p["self"], 15),
            *_table("| inclusive % | function (all threads) |", p["inclusive"], 25),
            *_table("| self % | function (event loop thread only; % of all samples) |", p["main_self"], 10),
        ]
    return out


def markdown(f: Figures) -> str:
    a = f.args
    out = [
        f"## {f.started}: {a.subscribers:,} subscribers, {a.requests:,} requests, {a.pairs} pair(s)"
        + (" (--quick smoke run)" if getattr(a, "quick", False) else ""),
        "",
        f"Command: `{f.command}`",
        "",
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in f.facts.items())
        + f", load average 1/5/15 min at start {f.load_start}, at end {f.load_end}",
        "",
        f"Set-up: `op25b subscriber import` of {a.subscribers:,} rows {f.import_s:.1f} s; upstream FreeRADIUS with "
        f"{a.subscribers:,} `users` entries (+ DEFAULT) started in {f.upstream_start_s:.1f} s. "
        f"B: FreeRADIUS thread pool max {a.fr_threads}, rlm_sql pool max {a.fr_sql_pool}.",
        "",
    ]
    if f.pairs:
        out += _throughput(f)
    out += _latency(f) + _memory(f) + _storms(f) + _profiles(f)
    if f.notes:
        out += ["Notes: " + " ".join(f"{n}." for n in f.notes), ""]
    return "\n".join(out) + "\n"


def record(f: Figures) -> None:
    append_record(RESULTS, RESULTS_HEADER, markdown(f))
