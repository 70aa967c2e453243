"""schemathesis against the `/openapi.json` of a real `op25b web` process (issue 12): no generated
request, valid or not, gets a 5xx. Requests carry an admin token, so they reach the handlers; the
database holds a few subscribers, an exemption and an open session, and a share of the generated
requests name them, so the handlers work on data and not only on 404s.

One run per backend; hypothesis is derandomized (the same requests every run), at most
MAX_EXAMPLES a mode (positive, negative) and an operation; reads first, DELETE last. The summary
line (requests, statuses, 5xx) is printed (`pytest -s`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from radius_op25b import store
from radius_op25b.core.accounting import AccountingRecord
from radius_op25b.store import db
from tests.support.cli import CONFIG
from tests.support.ports import free_tcp_port
from tests.support.web import Cli, WebProcess

MAX_EXAMPLES = 30
SEEDED = ["alice@isp.example", "bob@isp.example", "carol@isp.example", "dave@isp-b.example"]
ADDRESSES = ["100.64.0.7", "203.0.113.25", "2001:db8:1200::7"]
# Requests that are valid in meaning too (a duration, an address, a CSV), so that handlers change data
# and not only refuse it: each with every seeded name (or address) the path takes.
MEANINGFUL: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", "/api/v1/subscribers"): [
        {"query": {"q": q}} for q in ("alice", "b", "100.64.0.7", "203.0.113.25", "2001:db8:1200::9")
    ],
    ("GET", "/api/v1/subscribers/{username}/explain"): [
        {"query": {"nas": "bng1", "framed_ip": "100.64.0.7"}},
        {"query": {"nas": "legacy", "at": "2027-01-01T00:00:00Z"}},
        {"query": {"framed_ip": "203.0.113.99"}},
    ],
    ("GET", "/api/v1/sessions/who-had/{address}"): [{"query": {}}, {"query": {"at": "2026-01-01"}}],
    ("GET", "/api/v1/exemptions"): [{"query": {"expiring_within": w}} for w in ("7d", "12h", "2w", "1d")],
    ("GET", "/api/v1/audit"): [
        {"query": {"user": "alice@isp.example"}},
        {"query": {"since": "2026-01-01", "action": "subscriber"}},
        {"query": {"action": "staff.add", "limit": 5}},
    ],
    ("POST", "/api/v1/subscribers/{username}/exemptions"): [
        {"body": {"reason": "own MTA", "for": "30d"}},
        {"body": {"reason": "longer", "for": "60d", "extend": True}},
        {"body": {"reason": "forever", "permanent": True, "at_next_login": True}},
        {"body": {"reason": "to a date", "until": "2027-01-31"}},
    ],
    ("POST", "/api/v1/subscribers/{username}/unexempt"): [
        {"body": {"reason": "done"}},
        {"body": {"reason": "x", "at_next_login": True}},
    ],
    ("PUT", "/api/v1/subscribers/{username}/static"): [
        {"body": {"addresses": ["203.0.113.40"]}},
        {"body": {"addresses": ["203.0.113.25"]}},  # bob's
        {"body": {"addresses": ["203.0.113.41", "2001:db8:ff::1"], "at_next_login": True}},
    ],
    ("PUT", "/api/v1/subscribers/{username}/class"): [{"body": {"class": c}} for c in ("full", "mobile", "none", "default")],
    ("PUT", "/api/v1/subscribers/{username}/note"): [{"body": {"note": n}} for n in ("", "called today", "\u65e5\u672c\u8a9e")],
    ("POST", "/api/v1/subscribers"): [
        {"body": {"username": "new1@isp.example"}},
        {"body": {"username": "new2@isp.example", "static": ["203.0.113.50"], "class": "mobile", "note": "n"}},
        {"body": {"username": "new3@elsewhere.example", "realm": "elsewhere.example"}},
        {"body": {"username": "alice@isp.example"}},  # exists
    ],
    ("POST", "/api/v1/import"): [
        {"body": "username,class\nimp1@isp.example,full\nimp2@isp.example,none\n", "query": {"source": "crm.csv"}},
        {"body": "username,static\nimp3@isp.example,203.0.113.60\n", "query": {"dry_run": True}},
        {"body": "username,class\nimp1@isp.example,mobile\n", "query": {"update": True}},
        {"body": "imp4@isp.example\n", "query": {"no_header": True}},
        {"body": "username;class\nimp5@isp.example;nonsense\n"},
    ],
    ("DELETE", "/api/v1/subscribers/{username}/static"): [{"query": {}}, {"query": {"at_next_login": True}}],
    ("DELETE", "/api/v1/subscribers/{username}"): [{"query": {"reason": "churned"}}],
}
METHOD_ORDER = {"GET": 0, "PUT": 1, "POST": 2, "DELETE": 3}

schemathesis.serializer.alias("text/csv", "text/plain")  # POST /api/v1/import takes the CSV text


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)  # (operation, mode) hypothesis could not generate

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.transport_errors)


def seed(cli: Cli, url: str) -> None:
    cli("subscriber", "add", "alice@isp.example")
    cli("subscriber", "add", "bob@isp.example", "--static", "203.0.113.25")
    cli("subscriber", "add", "carol@isp.example", "--class", "mobile")
    cli("subscriber", "add", "dave@isp-b.example")
    cli("subscriber", "exempt", "carol@isp.example", "--reason", "own MTA", "--for", "5d")
    cli("subscriber", "set-note", "alice@isp.example", "VIP customer")
    engine = db.make_engine(url)
    start = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    with db.transaction(engine) as session:
        store.apply_accounting(
            session,
            [
                AccountingRecord(
                    status="start",
                    event_time=start,
                    nas_name="bng1",
                    nas_address="192.0.2.10",
                    acct_session_id="S-1",
                    username="alice@isp.example",
                    framed_ip="100.64.0.7",
                    delegated_ipv6_prefix="2001:db8:1200::/56",
                    class_applied="full",
                )
            ],
        )
    engine.dispose()


@pytest.fixture
def web(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[WebProcess, str, Cli]]:
    config = tmp_path / "op25b.toml"
    config.write_text(CONFIG.format(url=database_url))
    cli = Cli(config, capsys)
    cli("staff", "add", "fuzz-admin", "--role", "admin", "--actor", "root")
    token = cli.token("fuzz-admin", "--actor", "root")
    seed(cli, database_url)
    process = WebProcess(config, tmp_path / "web.log", port=free_tcp_port())
    try:
        yield process.start(), token, cli
        assert process.alive, f"op25b web died:\n{process.log_text()[-3000:]}"
    finally:
        process.stop()
    log = process.log_text()
    assert token not in log and token[12:] not in log, "the admin token is in the web log"


def strategies(operation: Any) -> list[tuple[str, Any]]:
    """(label, strategy): generated as the schema says, generated to break it, and on seeded data."""
    found = [("positive", operation.as_strategy(GenerationMode.POSITIVE))]
    try:
        found.append(("negative", operation.as_strategy(GenerationMode.NEGATIVE)))
    except Exception as exc:  # an operation with nothing to negate
        found.append((f"no negative ({type(exc).__name__})", None))
    names = {p.name for p in operation.path_parameters}
    seeded = []
    for value in SEEDED if "username" in names else ADDRESSES if "address" in names else ():
        key = "username" if "username" in names else "address"
        seeded.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={key: value}))
    if seeded:
        found.append(("seeded", st.one_of(seeded)))
    meaningful = []
    key = "username" if "username" in names else "address" if "address" in names else None
    for fixed in MEANINGFUL.get((operation.method.upper(), operation.path), []):
        for value in (SEEDED if key == "username" else ADDRESSES) if key else [None]:
            kw = {"path_parameters": {key: value}} if key else {}
            meaningful.append(operation.as_strategy(GenerationMode.POSITIVE, **kw, **fixed))
    if meaningful:
        found.append(("meaningful", st.one_of(meaningful)))
    return [(label, s) for label, s in found if s is not None]


def describe(case: Any) -> str:
    body = getattr(case, "body", None)
    return f"{case.method} {case.formatted_path} query={case.query!r} body={body!r:.500}"


def test_no_generated_request_gets_a_5xx(web: tuple[WebProcess, str, Cli], database_url: str) -> None:
    process, token, cli = web
    schema = schemathesis.openapi.from_url(f"{process.base_url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    operations.sort(key=lambda op: (METHOD_ORDER.get(op.method.upper(), 9), op.path))
    assert len(operations) >= 14, [f"{op.method} {op.path}" for op in operations]
    tally = Tally()
    http = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    began = time.monotonic()

    def fuzz(label: str, strategy: Any) -> None:
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            try:
                response = case.call(base_url=process.base_url, session=http, headers=headers, timeout=30)
            except requests.RequestException as exc:
                tally.transport_errors.append(f"{describe(case)} -> {type(exc).__name__}: {exc}")
                return
            tally.statuses[response.status_code] += 1
            tally.by_operation[label] += 1
            if response.status_code >= 500:
                tally.server_errors.append(f"{describe(case)} -> {response.status_code} {response.text[:300]}")

        try:
            run()
        except Unsatisfiable:  # e.g. negative data for an operation whose every input is a free string
            tally.unsatisfiable.append(label)

    for operation in operations:
        for mode, strategy in strategies(operation):
            fuzz(f"{operation.method.upper()} {operation.path} [{mode}]", strategy)

    elapsed = time.monotonic() - began
    backend = database_url.partition(":")[0].partition("+")[0]
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(tally.statuses.items()))
    print(
        f"\nschemathesis [{backend}]: {tally.requests} requests over {len(operations)} operations in {elapsed:.1f}s; "
        f"statuses {{{statuses}}}; 5xx: {len(tally.server_errors)}; transport errors: {len(tally.transport_errors)}"
    )
    if tally.unsatisfiable:
        print("   not generated:", "; ".join(tally.unsatisfiable))
    for line in tally.server_errors[:20] + tally.transport_errors[:20]:
        print("  ", line)
    assert tally.requests >= 10 * len(operations), tally.by_operation
    assert sum(n for code, n in tally.statuses.items() if code < 300) > 0, "no request reached a handler and succeeded"
    assert not tally.server_errors, "\n".join(tally.server_errors[:20])
    assert not tally.transport_errors, "\n".join(tally.transport_errors[:20])
    # the web process still answers, and the seeded data is still readable
    with process.client(token) as client:
        assert client.get("/api/v1/exemptions").status_code == 200
