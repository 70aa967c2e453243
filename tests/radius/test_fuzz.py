"""Bounded fuzzing of the wire layer and the relay's datagram handler (tests/support/fuzz.py):
20,000 mutated packets, every entry point, only the project's own errors allowed. The longer
run is `python bench/fuzz_wire.py --minutes N`."""

from __future__ import annotations

from tests.support.fuzz import relay_entry_points, run


def test_the_wire_layer_refuses_mutated_packets_with_its_own_errors() -> None:
    report = run(20_000, seed=20261201, extra=relay_entry_points())
    assert report.inputs == 20_000
    assert report.refused > 10_000  # the mutations reach the checks
    assert dict(report.findings) == {}, {k: v.hex() for k, v in report.examples.items()}
