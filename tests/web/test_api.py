"""The HTTP API of `op25b web` (issue 12), as real processes on both backends: radclient (the NAS)
-> `op25b serve` -> FreeRADIUS, a NAS stand-in on the client's CoA port, and `op25b web` on the same
config and database; staff and tokens made with the CLI, the API driven with httpx.

- 401 (no or bad token, with WWW-Authenticate: Bearer), 403 (role), 404, 422 and 409 as
  `{"error": ...}`, and a refused request changes nothing;
- an exemption made through the API reaches the running `serve` (NOTIFY on PostgreSQL, the audit
  log read twice a second on SQLite): the next Access-Accept has no filter, within 2 s;
- the audit log names the staff member, via api (and via cli for a CLI change);
- the reads: search by prefix and by address, who-had, expiring exemptions, explain, openapi.json;
- no token reaches the logs of either process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from radius_op25b.radius import ACCT_SESSION_ID, DISCONNECT_REQUEST, USER_NAME, get_first
from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.nas import NasStandIn
from tests.support.ports import free_tcp_port
from tests.support.processes import wait_until
from tests.support.radclient import Reply, parse_reply, radclient
from tests.support.web import Cli, WebProcess, snapshot

NAS_SECRET = "nas-secret"
ALICE = "alice@isp.example"
USERS = {  # the shipped FreeRADIUS users file (deploy/freeradius/users)
    "alice@isp.example": ("alicepw", "100.64.0.7"),
    "mallory@isp.example": ("mallorypw", "100.64.0.66"),
}
PROPAGATION = 2.0  # issue 12: changes through `op25b web` reach running `serve` instances within 2 s
DELAYS: list[str] = []  # measured exemption -> Accept delays, printed at the end of the module (-s)


@pytest.fixture(scope="module")
def upstream(freeradius_factory):  # type: ignore[no-untyped-def]
    return freeradius_factory("web-api-up", secret="up-secret")


@pytest.fixture(scope="module", autouse=True)
def report_delays() -> Iterator[None]:
    yield
    for line in DELAYS:
        print(line)


@dataclass
class Stack:
    proxy: ProxyProcess
    web: WebProcess
    cli: Cli
    nas: NasStandIn
    url: str
    tokens: dict[str, str] = field(default_factory=dict)  # staff name -> API token

    @property
    def backend(self) -> str:
        return self.url.partition(":")[0].partition("+")[0]

    def api(self, who: str | None) -> httpx.Client:
        return self.web.client(self.tokens[who] if who is not None else None)

    def login(self, user: str) -> Reply:
        password, _ = USERS[user]
        text = f'User-Name = "{user}"\nUser-Password = "{password}"\n'
        reply = parse_reply(radclient(text, self.proxy.auth_addr, NAS_SECRET).stdout)
        assert reply.code == "Access-Accept", (user, reply)
        return reply

    def start_session(self, user: str, sid: str) -> Reply:
        accept = self.login(user)
        tag = next(v for v in accept.all("Class") if bytes.fromhex(v[2:]).startswith(b"op25b:"))
        text = (
            f'User-Name = "{user}"\nAcct-Status-Type = Start\nAcct-Session-Id = "{sid}"\n'
            f"NAS-IP-Address = 127.0.0.1\nFramed-IP-Address = {USERS[user][1]}\nClass = {tag}\n"
        )
        assert parse_reply(radclient(text, self.proxy.acct_addr, NAS_SECRET, "acct").stdout).code == "Accounting-Response"
        assert wait_until(lambda: any(s["acct_session_id"] == sid for s in self.cli_json("sessions", "active")["sessions"]), 10)
        return accept

    def cli_json(self, *args: str) -> Any:
        return json.loads("\n".join(self.cli(*args, "--json")))

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return snapshot(self.url)


def op25b_tag(reply: Reply) -> str:
    tags = [bytes.fromhex(v[2:]).decode() for v in reply.all("Class") if bytes.fromhex(v[2:]).startswith(b"op25b:")]
    assert len(tags) == 1, reply.all("Class")
    return tags[0]


@pytest.fixture
def stack(tmp_path: Path, upstream, database_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    nas = NasStandIn(NAS_SECRET.encode())
    web_port = free_tcp_port()
    body = (
        f'[web]\nlisten = "127.0.0.1:{web_port}"\n\n'
        '[policy]\ndefault_class = "full"\nstatic_pools = ["203.0.113.0/24"]\n\n'
        + client_block(
            "bng-generic", "127.0.0.1", NAS_SECRET, require_message_authenticator=False, profile="generic", coa_port=nas.port
        )
        + upstream_block("up", upstream)
    )
    proxy = ProxyProcess(tmp_path / "serve", body, database_url=database_url)
    web = WebProcess(proxy.config_path, tmp_path / "web.log", port=web_port, listen_option=False)  # [web] listen
    try:
        proxy.start()
        cli = Cli(proxy.config_path, capsys)
        s = Stack(proxy, web, cli, nas, database_url)
        for name, role in (("adam", "admin"), ("ann", "agent"), ("vic", "viewer")):
            cli("staff", "add", name, "--role", role, "--actor", "root")
            s.tokens[name] = cli.token(name, "--actor", "root")
        web.start()
        yield s
        assert web.alive, f"op25b web died:\n{web.log_text()[-3000:]}"
    finally:
        web.stop()
        proxy.stop()
        nas.close()
    log, serve_log = web.log_text(), proxy.log_text()
    assert "Uvicorn running on" in log or "Application startup complete" in log, log  # the log is the one written
    for name, token in s.tokens.items():
        for where, text in (("web", log), ("serve", serve_log), ("cli stderr", "".join(cli.errors))):
            assert token not in text and token[12:] not in text, f"{name}'s token in the {where} log"


def error_of(response: httpx.Response, status: int, what: object = None) -> str:
    assert response.status_code == status, (
        what,
        response.request.method,
        response.request.url,
        response.status_code,
        response.text,
    )
    assert response.headers["content-type"].startswith("application/json"), response.headers
    data = response.json()
    assert set(data) == {"error"} and isinstance(data["error"], str) and data["error"], data
    return str(data["error"])


# --- refusals ------------------------------------------------------------------------------------------


def test_no_or_bad_token_is_401_with_www_authenticate(stack: Stack) -> None:
    stack.cli("subscriber", "add", ALICE)
    path = f"/api/v1/subscribers/{ALICE}"
    real = stack.tokens["ann"]
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer op25b_not-a-real-token"},
        {"Authorization": "Bearer not-even-the-prefix"},
        {"Authorization": f"Bearer {real}x"},
        {"Authorization": f"Bearer {real[:-1]}"},
        {"Authorization": f"Basic {real}"},
        {"Authorization": real},
        {"Authorization": "Bearer " + "op25b_" + "A" * 5000},
    ]
    with httpx.Client(base_url=stack.web.base_url, timeout=30) as http:
        for headers in bad_headers:
            for method, url, body in (
                ("GET", path, None),
                ("POST", f"{path}/exemptions", {"reason": "own MTA", "for": "30d"}),
                ("GET", "/api/v1/audit", None),
            ):
                response = http.request(method, url, headers=headers, json=body)
                message = error_of(response, 401)
                assert response.headers.get("www-authenticate") == "Bearer", (headers, response.headers)
                assert real not in message and real not in response.text
        # the scheme is case-insensitive (RFC 7235); the token is the credential
        assert http.get(path, headers={"Authorization": f"bearer {real}"}).status_code == 200
        assert http.get(path, headers={"Authorization": f"Bearer {real}"}).status_code == 200
    assert stack.cli_json("audit", "--user", ALICE)["entries"][-1]["action"] == "subscriber.add"  # nothing changed


def test_wrong_role_is_403_and_changes_nothing(stack: Stack) -> None:
    stack.cli("subscriber", "add", ALICE)
    before = stack.snapshot()
    with stack.api("vic") as viewer, stack.api("ann") as agent:
        assert viewer.get(f"/api/v1/subscribers/{ALICE}").status_code == 200  # a viewer reads
        for client, method, url, body in (
            (viewer, "POST", f"/api/v1/subscribers/{ALICE}/exemptions", {"reason": "own MTA", "for": "30d"}),
            (viewer, "POST", f"/api/v1/subscribers/{ALICE}/unexempt", {"reason": "done"}),
            (viewer, "PUT", f"/api/v1/subscribers/{ALICE}/static", {"addresses": ["203.0.113.9"]}),
            (viewer, "DELETE", f"/api/v1/subscribers/{ALICE}/static", None),
            (viewer, "PUT", f"/api/v1/subscribers/{ALICE}/class", {"class": "none"}),
            (viewer, "PUT", f"/api/v1/subscribers/{ALICE}/note", {"note": "x"}),
            (agent, "POST", "/api/v1/subscribers", {"username": "new@isp.example"}),  # provisioning: admin
            (agent, "DELETE", f"/api/v1/subscribers/{ALICE}?reason=gone", None),
        ):
            message = error_of(client.request(method, url, json=body), 403)
            assert "role" in message, message
        response = agent.post("/api/v1/import", content=b"username\nnew@isp.example\n", headers={"Content-Type": "text/csv"})
        error_of(response, 403)
    assert stack.snapshot() == before


def test_unknown_subscriber_is_404(stack: Stack) -> None:
    before = stack.snapshot()
    with stack.api("ann") as agent:
        for method, url, body in (
            ("GET", "/api/v1/subscribers/nobody@isp.example", None),
            ("POST", "/api/v1/subscribers/nobody@isp.example/exemptions", {"reason": "own MTA", "for": "30d"}),
            ("POST", "/api/v1/subscribers/nobody@isp.example/unexempt", {"reason": "done"}),
            ("PUT", "/api/v1/subscribers/nobody@isp.example/class", {"class": "none"}),
            ("PUT", "/api/v1/subscribers/nobody@isp.example/note", {"note": "x"}),
            ("GET", "/api/v1/subscribers/alice@isp.example/explain?nas=no-such-nas", None),
        ):
            message = error_of(agent.request(method, url, json=body), 404)
            assert "nobody" in message or "no-such-nas" in message, message
        assert agent.get("/api/v1/no-such-thing").status_code == 404
    assert stack.snapshot() == before


def test_malformed_bodies_are_422_and_change_nothing(stack: Stack) -> None:
    stack.cli("subscriber", "add", ALICE)
    url = f"/api/v1/subscribers/{ALICE}/exemptions"
    before = stack.snapshot()
    bodies: list[Any] = [
        {"reason": "own MTA", "for": "30 days"},  # a bad duration
        {"reason": "own MTA", "for": "-3d"},
        {"reason": "own MTA", "for": "30d", "colour": "red"},  # an unknown field
        {"for": "30d"},  # no reason
        {"reason": "", "for": "30d"},
        {"reason": 5, "for": "30d"},  # wrong types
        {"reason": "own MTA", "for": 30},
        {"reason": ["own MTA"], "for": "30d"},
        {"reason": "own MTA", "permanent": "sometimes"},
        {"reason": "own MTA", "for": "30d", "at_next_login": "maybe"},
        {"reason": "own MTA"},  # neither for, until nor permanent
        {"reason": "own MTA", "for": "30d", "until": "2027-01-31"},  # two of them
        {"reason": "own MTA", "until": "next tuesday"},
        {"reason": "x" * 2001, "for": "30d"},
        ["own MTA", "30d"],
        "own MTA",
        None,
    ]
    with stack.api("ann") as agent:
        for body in bodies:
            message = error_of(agent.post(url, json=body), 422, body)
            assert len(message) < 2000, message
        for raw in (b"{", b"reason=own+MTA", b"\xff\xfe", b""):
            error_of(agent.post(url, content=raw, headers={"Content-Type": "application/json"}), 422)
        error_of(agent.post(f"/api/v1/subscribers/{ALICE}/unexempt", json={}), 422)
        error_of(agent.put(f"/api/v1/subscribers/{ALICE}/class", json={"class": "purple"}), 422)
        error_of(agent.put(f"/api/v1/subscribers/{ALICE}/static", json={"addresses": []}), 422)
        error_of(agent.put(f"/api/v1/subscribers/{ALICE}/static", json={"addresses": ["not-an-ip"]}), 422)
        error_of(agent.get("/api/v1/exemptions", params={"expiring_within": "a week"}), 422)
        error_of(agent.get("/api/v1/sessions/who-had/not-an-address"), 422)
        error_of(agent.get("/api/v1/audit", params={"since": "yesterday"}), 422)
        error_of(agent.get("/api/v1/audit", params={"limit": "0"}), 422)
        error_of(agent.get("/api/v1/subscribers", params={"q": ""}), 422)
        error_of(agent.get(f"/api/v1/subscribers/{ALICE}/explain", params={"framed_ip": "300.1.2.3"}), 422)
    assert stack.snapshot() == before


def test_python_field_names_are_not_fields(stack: Stack) -> None:
    """`for_` and `class_` (the models' Python names for `for` and `class`) are unknown fields."""
    stack.cli("subscriber", "add", ALICE)
    before = stack.snapshot()
    with stack.api("ann") as agent:
        error_of(agent.put(f"/api/v1/subscribers/{ALICE}/class", json={"class_": "none"}), 422)
        error_of(agent.put(f"/api/v1/subscribers/{ALICE}/class", json={"class": "none", "class_": "none"}), 422)
        error_of(agent.post(f"/api/v1/subscribers/{ALICE}/exemptions", json={"reason": "own MTA", "for_": "30d"}), 422)
    with stack.api("adam") as admin:
        error_of(admin.post("/api/v1/subscribers", json={"username": "new@isp.example", "class_": "none"}), 422)
    assert stack.snapshot() == before


def test_exemption_is_201_with_its_live_effect_and_a_second_is_409(stack: Stack) -> None:
    stack.cli("subscriber", "add", ALICE)
    stack.cli("subscriber", "add", "mallory@isp.example")
    stack.start_session(ALICE, "W-1")
    url = f"/api/v1/subscribers/{ALICE}/exemptions"
    with stack.api("ann") as agent:
        sent = datetime.now(UTC)
        response = agent.post(url, json={"reason": "own MTA", "for": "30d"})
        assert response.status_code == 201, response.text
        data = response.json()
        assert data["username"] == ALICE and data["reason"] == "own MTA" and data["actor"] == "ann"
        assert data["active"] is True and data["extended"] is False and data["revoked_at"] is None
        expires = datetime.fromisoformat(data["expires_at"])
        assert sent + timedelta(days=30) - timedelta(seconds=5) <= expires <= datetime.now(UTC) + timedelta(days=30)
        # generic has no CoA remove: the open session is disconnected, and the API says so
        assert data["live_sessions"] == [
            {"nas": "bng-generic", "acct_session_id": "W-1", "username": ALICE, "method": "disconnect"}
        ]
        assert data["at_next_login"] is False

        # the Disconnect is sent and its job done: from here on nothing else changes the tables
        assert stack.nas.wait_for(1, 15), "no Disconnect-Request within 15 s"
        assert wait_until(
            lambda: stack.cli_json("subscriber", "show", ALICE)["sessions"][0].get("last_push", {}).get("status") == "done", 10
        )
        before = stack.snapshot()
        message = error_of(agent.post(url, json={"reason": "again", "for": "7d"}), 409)
        assert "exempt" in message, message
        assert stack.snapshot() == before

        # extend moves the end; at_next_login holds the push (the session is listed as next-login)
        moved = agent.post(url, json={"reason": "longer", "for": "60d", "extend": True})
        assert moved.status_code == 201 and moved.json()["extended"] is True, moved.text
        held = agent.post(
            "/api/v1/subscribers/mallory@isp.example/exemptions",
            json={"reason": "own MTA", "permanent": True, "at_next_login": True},
        )
        assert held.status_code == 201, held.text
        assert held.json()["expires_at"] is None and held.json()["at_next_login"] is True
    got = stack.nas.wait_for(1, 15)
    assert [(p.code, get_first(p.attributes, USER_NAME), get_first(p.attributes, ACCT_SESSION_ID)) for _, p, _ in got] == [
        (DISCONNECT_REQUEST, ALICE.encode(), b"W-1")
    ]
    show = stack.cli_json("subscriber", "show", ALICE)
    assert [(e["reason"], e["actor"], e["active"]) for e in show["exemptions"]] == [("longer", "ann", True)] or [
        (e["actor"], e["active"]) for e in show["exemptions"]
    ] == [("ann", True)], show["exemptions"]


def test_disabled_staff_and_revoked_tokens_are_401(stack: Stack) -> None:
    stack.cli("subscriber", "add", ALICE)
    path = f"/api/v1/subscribers/{ALICE}"
    with stack.api("ann") as agent, stack.api("vic") as viewer:
        assert agent.get(path).status_code == viewer.get(path).status_code == 200
        stack.cli("staff", "disable", "ann")
        stack.cli("staff", "revoke-tokens", "vic")
        error_of(agent.get(path), 401)
        error_of(viewer.get(path), 401)
        error_of(agent.post(f"{path}/exemptions", json={"reason": "own MTA", "for": "30d"}), 401)
    stack.tokens["vic2"] = stack.cli.token("vic")
    with stack.api("vic2") as viewer:
        assert viewer.get(path).status_code == 200


# --- THE live effect: an exemption through the API changes the next Accept of the running serve -----------


def accept_without_filter(stack: Stack, user: str, deadline: float) -> tuple[Reply | None, int]:
    """Logins until one comes without a filter (or the deadline); the Accept and how many were sent."""
    sent = 0
    while True:
        reply = stack.login(user)
        sent += 1
        if reply.all("Filter-Id") == [] and op25b_tag(reply) == "op25b:none":
            return reply, sent
        if time.monotonic() > deadline:
            return None, sent
        time.sleep(0.02)


def test_exemption_through_the_api_changes_the_next_accept(stack: Stack) -> None:
    stack.cli("subscriber", "add", ALICE)
    before = stack.login(ALICE)
    assert before.all("Filter-Id") == ["OP25B-FULL"] and op25b_tag(before) == "op25b:full", before
    with stack.api("ann") as agent:
        t0 = time.monotonic()
        response = agent.post(f"/api/v1/subscribers/{ALICE}/exemptions", json={"reason": "own MTA", "for": "30d"})
        t1 = time.monotonic()
        assert response.status_code == 201, response.text
        assert response.json()["live_sessions"] == [] and response.json()["at_next_login"] is False
        accept, logins = accept_without_filter(stack, ALICE, t1 + 5)
        t2 = time.monotonic()
        assert accept is not None, f"still filtered {t2 - t1:.2f}s after the 201 ({logins} logins)"
        exempt_delay = t2 - t1
        assert exempt_delay <= PROPAGATION, f"{stack.backend}: the exemption reached serve after {exempt_delay:.2f}s"

        # and back: unexempt through the API, and the filter returns
        u0 = time.monotonic()
        response = agent.post(f"/api/v1/subscribers/{ALICE}/unexempt", json={"reason": "MTA gone"})
        u1 = time.monotonic()
        assert response.status_code == 200, response.text
        while (reply := stack.login(ALICE)).all("Filter-Id") != ["OP25B-FULL"] and time.monotonic() < u1 + 5:
            time.sleep(0.02)
        u2 = time.monotonic()
        assert reply.all("Filter-Id") == ["OP25B-FULL"] and op25b_tag(reply) == "op25b:full", reply
        unexempt_delay = u2 - u1
        assert unexempt_delay <= PROPAGATION, f"{stack.backend}: the unexempt reached serve after {unexempt_delay:.2f}s"
    DELAYS.append(
        f"[{stack.backend}] exemption via API -> first Accept without filter: {exempt_delay * 1000:.0f} ms after the 201 "
        f"(request {1000 * (t1 - t0):.0f} ms, {logins} logins); unexempt -> filter back: {unexempt_delay * 1000:.0f} ms "
        f"(request {1000 * (u1 - u0):.0f} ms)"
    )


# --- the audit log names the staff member, and where they acted from -------------------------------------


def test_audit_names_the_staff_member_via_api_and_cli(stack: Stack) -> None:
    stack.cli("subscriber", "add", ALICE, "--actor", "provisioner")
    with stack.api("ann") as agent, stack.api("vic") as viewer:
        assert agent.post(f"/api/v1/subscribers/{ALICE}/exemptions", json={"reason": "own MTA", "for": "30d"}).status_code == 201
        assert agent.put(f"/api/v1/subscribers/{ALICE}/note", json={"note": "called 2026-12-02"}).status_code == 200
        stack.cli("subscriber", "unexempt", ALICE, "--reason", "customer asked", "--actor", "night-shift")
        response = viewer.get("/api/v1/audit", params={"user": ALICE})
        assert response.status_code == 200, response.text
        entries = response.json()["entries"]
        assert [(e["action"], e["actor"], e["via"], e["target"]) for e in entries] == [
            ("subscriber.add", "provisioner", "cli", ALICE),
            ("subscriber.exempt", "ann", "api", ALICE),
            ("subscriber.set-note", "ann", "api", ALICE),
            ("subscriber.unexempt", "night-shift", "cli", ALICE),
        ], entries
        assert entries[1]["reason"] == "own MTA" and entries[3]["reason"] == "customer asked"
        # the CLI sees the same rows
        assert stack.cli_json("audit", "--user", ALICE)["entries"] == entries
        # filters: since, action; a user of no change has none
        first = datetime.fromisoformat(entries[1]["at"])
        since = viewer.get("/api/v1/audit", params={"user": ALICE, "since": first.isoformat()}).json()["entries"]
        assert [e["action"] for e in since] == ["subscriber.exempt", "subscriber.set-note", "subscriber.unexempt"]
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        assert viewer.get("/api/v1/audit", params={"user": ALICE, "since": future}).json() == {"entries": []}
        only = viewer.get("/api/v1/audit", params={"action": "subscriber.exempt"}).json()["entries"]
        assert [(e["actor"], e["via"]) for e in only] == [("ann", "api")]
        assert viewer.get("/api/v1/audit", params={"user": "nobody@isp.example"}).json() == {"entries": []}
        staff = viewer.get("/api/v1/audit", params={"action": "staff"}).json()["entries"]
        assert {(e["action"], e["via"]) for e in staff} == {("staff.add", "cli"), ("staff.token", "cli")}


# --- reads -------------------------------------------------------------------------------------------------


def test_reads_search_who_had_expiring_explain_openapi(stack: Stack) -> None:
    for user in (ALICE, "alice2@isp.example", "bob@isp.example"):
        stack.cli("subscriber", "add", user)
    stack.cli("subscriber", "add", "carol-static@isp.example", "--static", "203.0.113.7")
    stack.cli("subscriber", "exempt", "alice2@isp.example", "--reason", "trial", "--for", "3d")
    stack.cli("subscriber", "exempt", "bob@isp.example", "--reason", "own MTA", "--for", "30d")
    stack.start_session(ALICE, "R-1")
    started = datetime.now(UTC)
    with stack.api("vic") as viewer:
        # search: a username prefix (case-insensitive), an address (static owner, open sessions)
        found = viewer.get("/api/v1/subscribers", params={"q": "alice"}).json()
        assert found["kind"] == "username" and found["total"] == 2
        assert [s["username"] for s in found["subscribers"]] == ["alice2@isp.example", ALICE]  # by name: "2" < "@"
        assert [s["username"] for s in viewer.get("/api/v1/subscribers", params={"q": "ALICE2"}).json()["subscribers"]] == [
            "alice2@isp.example"
        ]
        assert viewer.get("/api/v1/subscribers", params={"q": "zz"}).json()["subscribers"] == []
        one = viewer.get("/api/v1/subscribers", params={"q": "alice", "limit": 1}).json()
        assert len(one["subscribers"]) == 1 and one["total"] == 2
        static = viewer.get("/api/v1/subscribers", params={"q": "203.0.113.7"}).json()
        assert static["kind"] == "address" and static["static_owner"] == "carol-static@isp.example"
        assert static["open_sessions"] == []
        dynamic = viewer.get("/api/v1/subscribers", params={"q": "100.64.0.7"}).json()
        assert dynamic["static_owner"] is None
        assert [(s["username"], s["acct_session_id"]) for s in dynamic["open_sessions"]] == [(ALICE, "R-1")]
        assert dynamic["last_session"]["username"] == ALICE

        # who had an address, now and before the session began
        who = viewer.get("/api/v1/sessions/who-had/100.64.0.7").json()
        assert who["address"] == "100.64.0.7" and [(s["username"], s["nas"]) for s in who["sessions"]] == [(ALICE, "bng-generic")]
        earlier = (started - timedelta(hours=1)).isoformat()
        assert viewer.get("/api/v1/sessions/who-had/100.64.0.7", params={"at": earlier}).json()["sessions"] == []
        assert viewer.get("/api/v1/sessions/who-had/100.64.0.99").json()["sessions"] == []

        # exemptions, soonest end first; expiring within 7 days
        every = viewer.get("/api/v1/exemptions").json()
        assert [e["username"] for e in every["exemptions"]] == ["alice2@isp.example", "bob@isp.example"]
        soon = viewer.get("/api/v1/exemptions", params={"expiring_within": "7d"}).json()
        assert soon["expiring_within"] == "1w" and [(e["username"], e["reason"]) for e in soon["exemptions"]] == [
            ("alice2@isp.example", "trial")
        ]

        # one subscriber and its decision: the CLI's JSON shapes
        shown = viewer.get(f"/api/v1/subscribers/{ALICE}").json()
        assert shown == stack.cli_json("subscriber", "show", ALICE)
        assert [s["acct_session_id"] for s in shown["sessions"]] == ["R-1"]
        explained = viewer.get(f"/api/v1/subscribers/{ALICE}/explain", params={"nas": "bng-generic"}).json()
        cli = stack.cli_json("policy", "explain", ALICE, "--nas", "bng-generic")
        assert {k: v for k, v in explained.items() if k != "at"} == {k: v for k, v in cli.items() if k != "at"}
        assert explained["class"] == "full" and {"name": "Filter-Id", "value": "OP25B-FULL"} in explained["attributes"]
        bob = viewer.get("/api/v1/subscribers/bob@isp.example/explain").json()
        assert bob["class"] == "none" and bob["known_subscriber"] is True
        static_ip = viewer.get(f"/api/v1/subscribers/{ALICE}/explain", params={"framed_ip": "203.0.113.50"}).json()
        assert static_ip["class"] == "none", static_ip  # an address of the static pools is never filtered
        unknown = viewer.get("/api/v1/subscribers/stranger@isp.example/explain").json()
        assert unknown["known_subscriber"] is False and unknown["class"] == "full"

    # the OpenAPI document: valid JSON with the /api/v1 paths, no auth needed
    response = httpx.get(f"{stack.web.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    doc = json.loads(response.text)
    assert doc["openapi"].startswith("3.") and doc["info"]["title"]
    for path in (
        "/api/v1/subscribers",
        "/api/v1/subscribers/{username}",
        "/api/v1/subscribers/{username}/explain",
        "/api/v1/subscribers/{username}/exemptions",
        "/api/v1/subscribers/{username}/unexempt",
        "/api/v1/subscribers/{username}/static",
        "/api/v1/subscribers/{username}/class",
        "/api/v1/subscribers/{username}/note",
        "/api/v1/sessions/who-had/{address}",
        "/api/v1/exemptions",
        "/api/v1/audit",
    ):
        assert path in doc["paths"], (path, sorted(doc["paths"]))
    assert "post" in doc["paths"]["/api/v1/subscribers/{username}/exemptions"]


def test_changes_return_their_live_effect(stack: Stack) -> None:
    stack.cli("subscriber", "add", ALICE)
    stack.start_session(ALICE, "C-1")
    with stack.api("ann") as agent, stack.api("adam") as admin:
        note = agent.put(f"/api/v1/subscribers/{ALICE}/note", json={"note": "VIP"})
        assert note.status_code == 200 and note.json()["note"] == "VIP" and "live_sessions" not in note.json(), note.text
        held = agent.put(f"/api/v1/subscribers/{ALICE}/class", json={"class": "mobile", "at_next_login": True})
        assert held.status_code == 200, held.text
        assert held.json()["at_next_login"] is True
        assert [s["method"] for s in held.json()["live_sessions"]] == ["next-login"]
        back = agent.put(f"/api/v1/subscribers/{ALICE}/class", json={"class": "default", "at_next_login": True})
        assert back.status_code == 200, back.text
        static = agent.put(f"/api/v1/subscribers/{ALICE}/static", json={"addresses": ["203.0.113.30"], "at_next_login": True})
        assert static.status_code == 200, static.text
        assert [(s["acct_session_id"], s["method"]) for s in static.json()["live_sessions"]] == [("C-1", "next-login")]
        dynamic = agent.delete(f"/api/v1/subscribers/{ALICE}/static", params={"at_next_login": "true"})
        assert dynamic.status_code == 200 and dynamic.json()["live_sessions"][0]["method"] == "next-login", dynamic.text

        added = admin.post("/api/v1/subscribers", json={"username": "New@isp.example", "class": "none"})
        assert added.status_code == 201, added.text
        assert added.json()["live_sessions"] == [] and added.json()["username"].lower() == "new@isp.example"
        error_of(admin.post("/api/v1/subscribers", json={"username": "new@isp.example"}), 409)
        imported = admin.post(
            "/api/v1/import",
            params={"source": "crm.csv"},
            content=b"username,class\nbulk1@isp.example,full\nbulk2@isp.example,none\n",
            headers={"Content-Type": "text/csv"},
        )
        assert imported.status_code == 200, imported.text
        assert [a["username"] for a in imported.json()["added"]] == ["bulk1@isp.example", "bulk2@isp.example"]
        gone = admin.delete("/api/v1/subscribers/bulk1@isp.example", params={"reason": "churned"})
        assert gone.status_code == 200, gone.text
        error_of(admin.get("/api/v1/subscribers/bulk1@isp.example"), 404)
    assert stack.nas.received == []  # everything was held for the next login (or had no session)
    entries = stack.cli_json("audit", "--user", ALICE)["entries"]
    assert {(e["actor"], e["via"]) for e in entries[1:]} == {("ann", "api")}, entries


def test_no_token_in_the_log_even_at_debug(stack: Stack, tmp_path: Path) -> None:
    """Tokens in the header, and pasted where they do not belong (query, path, body): the log of a
    debug-level `op25b web` holds none of them (the stack's info-level logs are checked at teardown)."""
    stack.cli("subscriber", "add", ALICE)
    debug = WebProcess(stack.proxy.config_path, tmp_path / "web-debug.log", extra_args=("--log-level", "debug")).start()
    try:
        with debug.client(stack.tokens["ann"]) as agent:
            token = stack.tokens["ann"]
            assert agent.get("/api/v1/subscribers", params={"q": token}).status_code == 200
            assert agent.get(f"/api/v1/subscribers/{token}").status_code == 404
            assert agent.post(f"/api/v1/subscribers/{ALICE}/exemptions", json={"reason": token}).status_code == 422
            assert agent.get("/api/v1/audit", params={"since": token}).status_code == 422
        with debug.client(stack.tokens["ann"] + "x") as wrong:
            assert wrong.get(f"/api/v1/subscribers/{ALICE}").status_code == 401
        with debug.client(stack.tokens["vic"]) as viewer:
            assert viewer.post(f"/api/v1/subscribers/{ALICE}/exemptions", json={"reason": "r", "for": "1d"}).status_code == 403
    finally:
        debug.stop()
    log = debug.log_text()
    assert "Application startup complete" in log, log
    for name, token in stack.tokens.items():
        assert token[12:] not in log, f"{name}'s token in the debug log:\n{log[-2000:]}"
