"""Side-by-side proxy benchmark: `op25b serve` (A) against FreeRADIUS 3.2 doing the same job (B).

    python bench/proxy_bench.py [--subscribers 100000] [--requests 20000] [--pairs 3]
    python bench/proxy_bench.py --quick                   # smoke run of every phase, ~1 min, not recorded
    python bench/proxy_bench.py --rmem-default 8388608    # B without kernel drops (see below)

Set-up: a scratch PostgreSQL database `op25b_perf` (127.0.0.1:5432, user postgres) filled with
`op25b subscriber import` (N subscribers; 80 % class full, 20 % mobile by override or realm
default), and one FreeRADIUS upstream (deploy/freeradius, PAP, one `users` entry with its own
password per subscriber plus a DEFAULT entry for everybody else; its per-request log line off).
Then, each step bounded in count and time, on 127.0.0.1 only:

1. throughput: `radclient -p 256 -f requests:expected -s` with R distinct subscribers, through
   A (`op25b serve`: one client 127.0.0.1, generic profile, metrics off) and through B
   (FreeRADIUS 3.2 proxying to the same upstream, one rlm_sql query on op25b's tables per
   Accept: deploy/freeradius-sql-proxy/), in pairs alternating AB, BA, ...; a freshly started
   proxy per run after a short warm-up on other subscribers.
   Requests/s from radclient's wall time, ratio A/B per pair and medians; correctness from
   radclient's summary (accepted / rejected / lost, and `Passed filter`: the Accept carries the
   expected Filter-Id and Class); CPU per request of the proxy and of its PostgreSQL backends;
   UDP receive-buffer drops (each costs radclient a 5 s retransmission wait).
2. latency: bench/radload.py sends at a fixed rate (--latency-rates) direct to the upstream
   and through a fresh `op25b serve`, in rounds with the order alternating; RTT p50/p99 and the
   difference per round (its median over rounds is the result; pooled figures beside it), for
   subscribers seen for the first time and for the first round's again (`op25b-again`).
3. memory: VmRSS of `op25b serve` after --memory-subscribers distinct subscribers
   authenticated once (imported into the database first unless --no-memory-import).
4. storm: --storm requests with `radclient -p P -r 3` per --storm-parallel value into a fresh
   `op25b serve` (metrics on, to report its reply and duplicate counters); radclient's lost.
5. profile: py-spy records `op25b serve` under radclient load twice (all threads; GIL holder)
   and the hot spots are tabulated (raw collapsed stacks in --profile-output.*.txt).

FreeRADIUS 3.2.1 cannot size the receive buffer of its sockets towards the home server; under
a burst they overflow at the kernel default (net.core.rmem_default, 208 KiB) and the dropped
replies cost radclient -t each. --rmem-default raises the default for the run and restores it.

Results are printed and appended as markdown to bench/RESULTS.md (unless --no-record). Every
process started is stopped; the scratch database is dropped unless --keep. Needs Debian's
freeradius, freeradius-utils and freeradius-postgresql, PostgreSQL, and py-spy for step 5.

The parts live in bench/proxy/ (one module per job, listed in its __init__); this file only puts
the repository on sys.path and runs bench.proxy.cli.main.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.proxy.cli import main  # noqa: E402 - after the path is set

if __name__ == "__main__":
    sys.exit(main())
