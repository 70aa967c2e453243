"""Issue 14, item 4: `op25b serve --workers 2` answers one scrape of the configured metrics port
with the sum over its workers: radclient processes (each its own source port, so SO_REUSEPORT
spreads them over both workers) -> `op25b serve --workers 2` -> FreeRADIUS.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.paths import TEMPLATE_DIR
from tests.support.processes import wait_until
from tests.support.radclient import DICT_DIR, RADCLIENT

NAS_SECRET = "nas-secret"
NASES = 16  # radclient processes: the chance that all hash to one worker is 2 / 2**16
PER_NAS = 25


@pytest.fixture(scope="module")
def upstream(freeradius_factory):  # type: ignore[no-untyped-def]
    return freeradius_factory("workers-up", secret="up-secret")


def _send(proxy: ProxyProcess, tmp: Path, prefix: str) -> int:
    """NASES radclient processes at once, PER_NAS Accounting Starts each; the number acknowledged."""
    assert RADCLIENT is not None
    runs = []
    for nas in range(NASES):
        load = tmp / f"{prefix}-{nas}.txt"
        load.write_text(
            "\n".join(
                f'User-Name = "u{nas}-{i}@isp.example"\nAcct-Status-Type = Start\nAcct-Session-Id = "{prefix}-{nas}-{i}"\n'
                f"NAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 100.64.{nas}.{i + 1}\n"
                for i in range(PER_NAS)
            )
        )
        args = [RADCLIENT, "-q", "-s", "-D", DICT_DIR, "-d", str(TEMPLATE_DIR), "-p", "8", "-r", "3", "-t", "3"]
        runs.append(
            subprocess.Popen([*args, "-f", str(load), proxy.acct_addr, "acct", NAS_SECRET], stdout=subprocess.PIPE, text=True)
        )
    acked = 0
    for run in runs:
        out, _ = run.communicate(timeout=60)
        acked += int(next(line for line in out.splitlines() if "Accepted" in line).rsplit(":", 1)[1])
    return acked


def _per_worker(folder: Path, sample: str) -> dict[str, float]:
    """`sample`'s value in each worker's own file (counter_<pid>.db): who did the work."""
    found = {}
    for path in sorted(folder.glob("counter_*.db")):
        for family in MultiProcessCollector.merge([str(path)], accumulate=True):
            for s in family.samples:
                if s.name + _labels(s.labels) == sample:
                    found[path.stem.split("_", 1)[1]] = s.value
    return found


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def test_one_scrape_of_the_metrics_port_sums_every_worker(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    body = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + upstream_block("up", upstream)
    p = ProxyProcess(tmp_path / "proxy", body, serve_args=("--workers", "2"))
    requests = 'op25b_requests_total{client="nas",type="acct"}'
    folder = tmp_path / "proxy" / "op25b-spool" / "metrics"
    with p:
        p.wait_for_log("worker 0: serving auth on")
        p.wait_for_log("worker 1: serving auth on")
        acked = _send(p, tmp_path, "W")
        assert acked == NASES * PER_NAS
        m = wait_until(lambda: (m := p.metrics()).get("op25b_accounting_recorded_total") == acked and m, 30, 0.2)
        assert m, p.metrics()
        assert m[requests] == acked  # one scrape: both workers' requests
        assert m['op25b_replies_total{client="nas",type="acct"}'] == acked
        assert m['op25b_upstream_requests_total{type="acct",upstream="up"}'] == acked
        assert m['op25b_upstream_rtt_seconds_count{upstream="up"}'] == acked  # histograms too
        assert m["op25b_accounting_spool_records"] == 0 and m["op25b_accounting_spool_bytes"] == 0
        assert wait_until(lambda: p.metrics()["op25b_accounting_oldest_unapplied_seconds"] == 0, 5, 0.1)
        assert m['op25b_upstream_up{upstream="up"}'] == 1
        assert not [name for name in m if "pid=" in name]  # every gauge combines: no per-process series
        # Each worker's own file holds a part of it, and the parts add up: the sum is real.
        parts = _per_worker(folder, requests)
        assert len(parts) == 2 and min(parts.values()) > 0 and sum(parts.values()) == acked, parts
        assert p.op25b("sessions", "active", "--limit", "1000", "--json").stdout.count('"W-') == acked
    assert p.log_text().count("stopped") == 2
    # A restart starts from zero: the folder of the last run is emptied, not added to.
    with p:
        p.wait_for_log("worker 1: serving auth on")
        assert p.metrics().get(requests, 0) == 0
        assert _send(p, tmp_path, "X") == NASES * PER_NAS
        assert p.metrics()[requests] == NASES * PER_NAS


def test_a_single_worker_serves_its_own_metrics_in_memory(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    body = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + upstream_block("up", upstream)
    with ProxyProcess(tmp_path / "proxy", body) as p:
        assert _send(p, tmp_path, "S") == NASES * PER_NAS
        assert p.metrics()['op25b_requests_total{client="nas",type="acct"}'] == NASES * PER_NAS
        assert "process_cpu_seconds_total" in p.metrics()  # the default registry, as before
    assert not (tmp_path / "proxy" / "op25b-spool" / "metrics").exists()
