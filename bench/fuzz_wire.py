"""The longer fuzz run of the wire layer and the relay's handlers (the suite runs 20,000 inputs).

    python bench/fuzz_wire.py --minutes 5 [--seed N]

Prints the inputs tried, the seconds, the clean refusals (the project's own errors) and every
other exception by entry point and type, with one example input in hex; exits 1 if there was
any such finding.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, from a checkout

from tests.support.fuzz import relay_entry_points, run  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    p.add_argument("--seed", type=int, default=int(time.time()), help="first seed (default: the time)")
    p.add_argument("--batch", type=int, default=20_000, help="inputs per seed")
    a = p.parse_args()
    started, seed = time.monotonic(), a.seed
    inputs = refused = 0
    findings: dict[str, int] = {}
    examples: dict[str, bytes] = {}
    extra = relay_entry_points()
    while time.monotonic() - started < a.minutes * 60:
        report = run(a.batch, seed, extra=extra)
        inputs, refused = inputs + report.inputs, refused + report.refused
        for key, n in report.findings.items():
            findings[key] = findings.get(key, 0) + n
            examples.setdefault(key, report.examples[key])
        seed += 1
    seconds = time.monotonic() - started
    print(f"inputs tried: {inputs:,} in {seconds:.0f} s (seeds {a.seed}..{seed - 1}), each through every entry point")
    print(f"refused with the project's own errors: {refused:,}")
    print(f"other exceptions: {sum(findings.values())}")
    for key, n in sorted(findings.items()):
        print(f"  {key}: {n} (e.g. {examples[key].hex()})")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
