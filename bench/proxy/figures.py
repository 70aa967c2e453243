"""What a run measured, phase by phase: filled by the phases, read by bench.proxy.report."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from bench import radload
from bench.proxy.radclient import RadclientRun


@dataclass
class Pair:
    """One throughput pair: A and B on the same requests, in `order`."""

    order: str
    a: RadclientRun
    b: RadclientRun
    a_cached: RadclientRun | None = None  # A again on the same process (information only)

    @property
    def ratio(self) -> float:
        return self.a.rate / self.b.rate if self.b.rate else float("inf")


@dataclass
class Latency:
    """The latency probe at one rate."""

    phases: dict[str, radload.Phase]  # target -> all rounds merged
    distinct: int  # distinct subscribers proxied
    proxied: int  # requests proxied
    per_round: list[dict[str, tuple[float, float]]]  # per round: target -> (added p50 ms, added p99 ms)


@dataclass
class Storm:
    parallel: int
    run: RadclientRun
    counters: dict[str, float]  # from op25b's metrics


@dataclass
class Figures:
    command: str
    args: argparse.Namespace
    facts: dict[str, str] = field(default_factory=dict)
    load_start: str = ""
    load_end: str = ""
    started: str = ""
    import_s: float = 0.0
    upstream_start_s: float = 0.0
    direct: RadclientRun | None = None
    pairs: list[Pair] = field(default_factory=list)
    latency: dict[float, Latency] = field(default_factory=dict)
    memory: dict[str, object] = field(default_factory=dict)
    storms: list[Storm] = field(default_factory=list)
    radsec: list[RadclientRun] = field(default_factory=list)  # A with the NAS over RadSec, one per pair
    profile: dict[str, dict[str, object]] = field(default_factory=dict)  # view (threads, gil) -> summary
    notes: list[str] = field(default_factory=list)
