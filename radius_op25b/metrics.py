"""Prometheus metrics of the proxy (`[metrics] listen`), on prometheus-client.

Counters are module-level, as prometheus-client intends; labelled children that the hot path
touches are cached in `Hot` so a packet costs an attribute lookup, not a label resolution.

With `serve --workers N` every worker writes its values to files in one private folder
(prometheus-client's multiprocess mode, switched on in each worker right after the fork) and the
parent process serves the configured port with their sum: one scrape shows the whole proxy.
Each gauge says how the workers' values combine (`multiprocess_mode`; `live*`: a worker that is
gone no longer counts). A single process keeps plain in-memory values.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, values
from prometheus_client.metrics import MetricWrapperBase

REQUESTS = Counter("op25b_requests", "RADIUS requests received from clients", ["client", "type"])
REPLIES = Counter("op25b_replies", "Replies sent to clients", ["client", "type"])
DROPS = Counter("op25b_drops", "Datagrams dropped, by cause", ["cause"])
UPSTREAM_REQUESTS = Counter("op25b_upstream_requests", "Requests sent to upstreams", ["upstream", "type"])
UPSTREAM_TIMEOUTS = Counter("op25b_upstream_timeouts", "Upstream requests that got no reply in the response window", ["upstream"])
UPSTREAM_UP = Gauge(
    "op25b_upstream_up",
    "1 alive, 0.5 zombie, 0 dead (several workers: the worst one's view)",
    ["upstream"],
    multiprocess_mode="livemin",
)
UPSTREAM_RTT = Histogram(
    "op25b_upstream_rtt_seconds",
    "Round trip to the upstream",
    ["upstream"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
GIVE_UPS = Counter("op25b_requests_abandoned", "Requests no upstream answered within the budget", ["type"])
DECISIONS = Counter("op25b_decisions", "OP25B decisions attached to Access-Accepts", ["class", "reason"])
SPECIAL_SUBSCRIBERS = Gauge(
    "op25b_policy_subscribers_held",
    "Subscribers held in memory because they are not decided by default (static, exempt, override, other realm)",
    multiprocess_mode="livemax",  # every worker holds the same set
)
DATABASE_ERRORS = Counter("op25b_database_errors", "Database operations that failed")
CACHED_REPLIES = Counter("op25b_duplicates_answered", "Retransmissions answered from the RFC 5080 reply cache")
IN_FLIGHT = Gauge("op25b_in_flight", "Requests waiting for an upstream", multiprocess_mode="livesum")

# Accounting (services/recorder.py): how far the sessions table is behind what the NASes were told.
SPOOL_DEPTH = Gauge(
    "op25b_accounting_spool_records", "Accounting records spooled, not yet in the database", multiprocess_mode="livesum"
)
SPOOL_BYTES = Gauge(
    "op25b_accounting_spool_bytes", "Bytes of spool segments not yet in the database", multiprocess_mode="livesum"
)
SPOOL_OLDEST = Gauge(
    "op25b_accounting_oldest_unapplied_seconds",
    "Age of the oldest spooled record not yet in the database (0: none waits)",
    multiprocess_mode="livemax",
)
RECORDED = Counter("op25b_accounting_recorded", "Accounting records written to the database")
DRAIN_RATE = Gauge(
    "op25b_accounting_drain_records_per_second",
    "Records written to the database per second, last 10 s",
    multiprocess_mode="livesum",
)
DRAIN_BATCH = Histogram(
    "op25b_accounting_drain_batch_seconds",
    "One batch of spooled records applied to the database (one transaction)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SPOOL_FAILURES = Counter(
    "op25b_accounting_spool_failures",
    "Accounting records that could not be spooled (full or I/O error): not answered, the NAS retries",
)
QUARANTINED = Counter("op25b_accounting_quarantined", "Spooled records the database refused: set aside in the quarantine")
DRAIN_ERRORS = Counter(
    "op25b_accounting_drain_errors", "Drain attempts that failed for another reason than the database being away"
)

DROP_CAUSES = (
    "unknown_client",
    "malformed",
    "bad_authenticator",
    "missing_message_authenticator",
    "proxy_state_without_message_authenticator",
    "unexpected_code",
    "duplicate_in_flight",
    "upstream_unmatched",
    "upstream_bad_authenticator",
    "upstream_missing_message_authenticator",
    "upstream_malformed",
    "upstream_unexpected_code",
    "no_upstream",
    "internal_error",
    "draining",
)


class Hot:
    """Pre-resolved children for the per-packet path."""

    def __init__(self) -> None:
        self.drops = {cause: DROPS.labels(cause) for cause in DROP_CAUSES}
        self.duplicate_resent = CACHED_REPLIES
        self._requests: dict[tuple[str, str], Counter] = {}
        self._replies: dict[tuple[str, str], Counter] = {}

    def request(self, client: str, kind: str) -> None:
        child = self._requests.get((client, kind))
        if child is None:
            child = self._requests[(client, kind)] = REQUESTS.labels(client, kind)
        child.inc()

    def reply(self, client: str, kind: str) -> None:
        child = self._replies.get((client, kind))
        if child is None:
            child = self._replies[(client, kind)] = REPLIES.labels(client, kind)
        child.inc()


def start_http(listen: tuple[str, int]) -> None:
    from prometheus_client import start_http_server

    start_http_server(listen[1], addr=listen[0])


# --- several workers: one scrape for all (prometheus-client's multiprocess mode) ------------------

_multiprocess_dir: Path | None = None


def multiprocess() -> bool:
    """True in a worker of `serve --workers N`: values live in files; a gauge read through a
    callback (`set_function`) is not seen by the scrape, so such gauges are set periodically."""
    return _multiprocess_dir is not None


def prepare_multiprocess(directory: str | os.PathLike[str]) -> Path:
    """Before the fork (parent): the workers' folder, emptied, readable by the service alone.
    Files left by an earlier run would add its counts (and its dead workers' gauges) to ours."""
    folder = Path(directory)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    return folder


def enable_multiprocess(directory: str | os.PathLike[str]) -> None:
    """In a worker, right after the fork and before it serves: every value, those of metrics
    made at import included, moves to this process's files in `directory`."""
    global _multiprocess_dir
    _multiprocess_dir = Path(directory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)  # read by the values as they open files
    values.ValueClass = values.MultiProcessValue()
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001  (no public list of them)
        if not isinstance(collector, MetricWrapperBase):
            continue
        children: list[Any] = list(collector._metrics.values()) if collector._labelnames else [collector]  # noqa: SLF001
        for metric in children:
            metric._metric_init()  # noqa: SLF001  (a new value of the class now in force, at zero)


def serve_multiprocess(listen: tuple[str, int], directory: str | os.PathLike[str]) -> None:
    """The parent's endpoint on the configured port: the sum over the workers' files."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    start_http_server(listen[1], addr=listen[0], registry=registry)


def worker_gone(pid: int, directory: str | os.PathLike[str]) -> None:
    """A worker exited: its live gauges stop counting (its counters stay in the sum)."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, str(directory))
