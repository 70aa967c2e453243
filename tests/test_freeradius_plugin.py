"""The shipped FreeRADIUS plugin (deploy/freeradius-plugin/, issue 17 item 2) in a real FreeRADIUS
3.2 with Debian's rlm_rest, against a real `op25b web` with the decide endpoint, both backends.

FreeRADIUS is the test upstream of tests/support/freeradius.py (users file, PAP) with the three
operator lines of deploy/freeradius-plugin/README.md added to its rendered copy: the module, the
policy file, and `op25b_post_auth` in post-auth. radclient is the NAS.

- a dynamic subscriber gets Filter-Id OP25B-FULL and the Class op25b:full (beside the upstream's);
- a Framed-IP-Address (from the users file reply) in a static pool: no filter, no tag;
- an exemption made with the CLI applies within 2 s;
- op25b web stopped: the fail-safe (OP25B_FAILSAFE_FILTER) and still an Access-Accept; with
  no fail-safe configured, an Accept with nothing added; a bad token is a fail-safe too;
- accounting (op25b_accounting in `accounting`): a Start makes the session in op25b's table with
  its Class tag, `who-had` finds it, an exemption made with the CLI reaches the NAS as a
  Disconnect-Request sent by `op25b web` ([web] push_changes), the Stop closes it; with op25b
  down the NAS's accounting is still answered;
- what the module sends: the six fields, never User-Password (a capturing HTTP server), and the
  accounting fields with the Class in hex and Event-Timestamp in epoch seconds.
"""

from __future__ import annotations

import json
import os
import socket
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import radius_op25b
from radius_op25b.radius import ACCT_SESSION_ID, DISCONNECT_REQUEST, USER_NAME, get_first
from radius_op25b.web.accounting import AccountingBody
from tests.support.freeradius import FreeRadiusInstance, require_freeradius
from tests.support.harness import client_block
from tests.support.nas import NasStandIn
from tests.support.plugin import install_plugin, install_python_plugin
from tests.support.ports import free_tcp_port, free_udp_port
from tests.support.processes import wait_until
from tests.support.radclient import Reply, parse_reply, radclient
from tests.support.web import Cli, WebProcess
from tests.web.test_decide import CLIENTS, config_text

pytestmark = pytest.mark.freeradius

SECRET = "nas-secret"
USERS = {"alice@isp.example": "alicepw", "bob@isp.example": "bobpw", "mallory@isp.example": "mallorypw"}
PROPAGATION = 2.0
REPORT: list[str] = []


def require_rlm_rest() -> None:
    require_freeradius()
    if not any(Path(d, "rlm_rest.so").exists() for d in ("/usr/lib/freeradius", "/usr/lib/x86_64-linux-gnu/freeradius")):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("needs Debian's freeradius-rest - CI must install it")
        pytest.skip("needs Debian's freeradius-rest (rlm_rest)")


class PluginFreeRadius(FreeRadiusInstance):
    """The test upstream with the plugin installed the way README.md tells an operator to."""

    def render(self) -> Path:
        conf = super().render()
        install_plugin(conf)
        return conf


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    for line in REPORT:
        print(line)


class Env:
    """Sets FreeRADIUS's environment (it inherits ours at start) and restores ours afterwards."""

    def __init__(self, **values: str | None) -> None:
        self.values, self.saved = values, {k: os.environ.get(k) for k in values}

    def __enter__(self) -> None:
        for k, v in self.values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_freeradius(tmp: Path, *, url: str, token: str, failsafe: str | None) -> PluginFreeRadius:
    fr = PluginFreeRadius("plugin", free_udp_port(), free_udp_port(), SECRET, tmp_dir=tmp)
    with Env(OP25B_URL=url, OP25B_TOKEN=token, OP25B_FAILSAFE_FILTER=failsafe):
        fr.start()
    return fr


def login(fr: FreeRadiusInstance, user: str, timeout: str = "2", **extra: str) -> Reply:
    text = f'User-Name = "{user}"\nUser-Password = "{USERS[user]}"\nNAS-IP-Address = 127.0.0.1\n'
    text += "".join(f"{k} = {v}\n" for k, v in extra.items())
    reply = parse_reply(radclient(text, fr.auth_addr, SECRET, timeout=float(timeout), retries=1).stdout)
    assert reply.code == "Access-Accept", (user, reply, fr.log_tail())
    return reply


def op25b_tags(reply: Reply) -> list[str]:
    values = [bytes.fromhex(v[2:]).decode() if v.startswith("0x") else v for v in reply.all("Class")]
    return [v for v in values if v.startswith("op25b:")]


@dataclass
class Stack:
    fr: PluginFreeRadius
    web: WebProcess
    cli: Cli
    nas: NasStandIn


@pytest.fixture
def stack(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Stack]:
    require_rlm_rest()
    config_path = tmp_path / "op25b.toml"
    nas = NasStandIn(SECRET.encode())  # the NAS's CoA port: FreeRADIUS has no sessions to change
    clients = client_block("bng-generic", "127.0.0.1", SECRET, profile="generic", coa_port=nas.port) + CLIENTS.split("\n\n", 1)[1]
    config_path.write_text(config_text(database_url, clients) + "[web]\npush_changes = true\n")
    web = WebProcess(config_path, tmp_path / "web.log", port=free_tcp_port())
    cli = Cli(config_path, capsys)
    cli("staff", "add", "radius", "--role", "agent", "--actor", "root")  # accounting needs an agent
    token = cli.token("radius", "--actor", "root")
    fr: PluginFreeRadius | None = None
    try:
        web.start()
        fr = start_freeradius(tmp_path / "fr", url=web.base_url, token=token, failsafe="OP25B-FULL")
        yield Stack(fr, web, cli, nas)
    finally:
        if fr is not None:
            fr.stop()
        web.stop()
        nas.close()
    assert token not in web.log_text()


def test_dynamic_gets_the_filter_static_pool_none(stack: Stack) -> None:
    alice = login(stack.fr, "alice@isp.example")
    assert alice.get("Filter-Id") == "OP25B-FULL", alice
    assert op25b_tags(alice) == ["op25b:full"]
    assert len(alice.all("Class")) == 2, alice  # the upstream's Class stays
    assert alice.get("Framed-IP-Address") == "100.64.0.7"
    bob = login(stack.fr, "bob@isp.example")  # the users file gives him 203.0.113.25, a static pool
    assert "Filter-Id" not in bob and op25b_tags(bob) == [], bob
    # the NAS by NAS-Identifier: cisco-xr, a multi-valued attribute (rlm_rest's "+=" with a list)
    xr = login(stack.fr, "alice@isp.example", **{"NAS-Identifier": '"bng-xr"'})
    assert xr.all("Cisco-AVPair") == ["ipv4:inacl=OP25B-FULL", "ipv6:ipv6_inacl=OP25B-FULL-V6"], xr
    assert "Filter-Id" not in xr and op25b_tags(xr) == ["op25b:full"], xr
    off = login(stack.fr, "alice@isp.example", **{"NAS-Identifier": '"bng-off"'})  # enforcement off
    assert "Filter-Id" not in off and op25b_tags(off) == [], off
    # added latency: the same Access-Request 300 times, one at a time, plain FreeRADIUS vs with the plugin
    plain = FreeRadiusInstance("plain", free_udp_port(), free_udp_port(), SECRET, tmp_dir=stack.fr.run_dir.parent / "plain")
    with plain:
        per_login = {name: timed_logins(fr) for name, fr in (("plain", plain), ("plugin", stack.fr), ("plain again", plain))}
    REPORT.append(
        "plugin: 300 sequential Access-Requests (radclient -c 300), per login: "
        + ", ".join(f"{name} {ms:.3f} ms" for name, ms in per_login.items())
        + f"; added by the plugin {per_login['plugin'] - min(per_login['plain'], per_login['plain again']):.3f} ms"
    )


def timed_logins(fr: FreeRadiusInstance, n: int = 300) -> float:
    text = 'User-Name = "alice@isp.example"\nUser-Password = "alicepw"\nNAS-IP-Address = 127.0.0.1\n'
    radclient(text, fr.auth_addr, SECRET, extra_args=("-p", "1", "-c", "20"))  # warm up
    t0 = time.perf_counter()
    done = radclient(text, fr.auth_addr, SECRET, extra_args=("-p", "1", "-c", str(n)))
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0 and done.stdout.count("Received Access-Accept") == n, done.stdout[-2000:]
    return elapsed / n * 1e3


def test_cli_exemption_applies_within_2s(stack: Stack) -> None:
    user = "mallory@isp.example"
    stack.cli("subscriber", "add", user, "--actor", "root")
    assert login(stack.fr, user).get("Filter-Id") == "OP25B-FULL"
    stack.cli("subscriber", "exempt", user, "--reason", "own MTA", "--for", "30d", "--actor", "root")
    t0 = time.monotonic()
    assert wait_until(lambda: "Filter-Id" not in login(stack.fr, user), PROPAGATION), "exemption not applied within 2 s"
    REPORT.append(f"plugin: CLI exemption seen by FreeRADIUS after {time.monotonic() - t0:.3f}s")
    assert op25b_tags(login(stack.fr, user)) == []


def account(fr: FreeRadiusInstance, user: str, status: str, sid: str, **extra: str) -> Reply:
    text = f'User-Name = "{user}"\nAcct-Status-Type = {status}\nAcct-Session-Id = "{sid}"\nNAS-IP-Address = 127.0.0.1\n'
    extra.setdefault("Event-Timestamp", str(int(time.time())))
    text += "".join(f"{k} = {v}\n" for k, v in extra.items())
    reply = parse_reply(radclient(text, fr.acct_addr, SECRET, "acct", timeout=3.0, retries=1).stdout)
    assert reply.code == "Accounting-Response", (user, status, reply, fr.log_tail())
    return reply


def sessions_json(cli: Cli, *args: str) -> dict[str, object]:
    return json.loads("\n".join(cli("--json", "sessions", *args)))


def open_sessions(cli: Cli) -> dict[str, dict[str, object]]:
    return {str(s["username"]): s for s in sessions_json(cli, "active")["sessions"]}  # type: ignore[attr-defined]


def test_accounting_records_plugin_sessions_and_live_changes_reach_them(stack: Stack) -> None:
    user = "alice@isp.example"
    stack.cli("subscriber", "add", user, "--actor", "root")
    accept = login(stack.fr, user)
    [tag] = [v for v in accept.all("Class") if bytes.fromhex(v[2:]).startswith(b"op25b:")]
    t0 = time.monotonic()
    began = int(time.time()) - 30
    start = {"Framed-IP-Address": "100.64.0.7", "Class": tag, "NAS-Port-Id": '"eth0/1"', "Event-Timestamp": str(began)}
    account(stack.fr, user, "Start", "P-1", **start)
    found = wait_until(lambda: open_sessions(stack.cli).get(user), 5)
    REPORT.append(f"plugin: Accounting-Request Start in op25b's sessions after {time.monotonic() - t0:.3f}s")
    assert found, stack.web.log_text()[-2000:]
    assert (found["nas"], found["acct_session_id"], found["class_applied"], found["framed_ip"]) == (
        "bng-generic",
        "P-1",
        "full",
        "100.64.0.7",
    ), found
    had = sessions_json(stack.cli, "who-had", "100.64.0.7")
    assert [s["username"] for s in had["sessions"]] == [user], had  # type: ignore[index]
    assert stack.nas.received == []

    # a live change made with the CLI reaches the plugin session: `op25b web` (push_changes) sends it
    text = stack.cli("subscriber", "exempt", user, "--reason", "own MTA", "--for", "30d", "--actor", "root")
    assert any("disconnect" in line.lower() for line in text), text  # the CLI says the customer is cut off
    got = stack.nas.wait_for(1, 10)
    assert got, f"no Disconnect-Request reached the NAS:\n{stack.web.log_text()[-2000:]}"
    [(_, packet, authentic)] = got
    assert packet.code == DISCONNECT_REQUEST and authentic, packet
    assert (get_first(packet.attributes, USER_NAME), get_first(packet.attributes, ACCT_SESSION_ID)) == (user.encode(), b"P-1")
    REPORT.append(f"plugin: CLI exemption to Disconnect-Request at the NAS in {got[0][0] - t0:.3f}s after the Start")

    # the Stop closes it (octets with their Gigawords, the cause by name)
    account(
        stack.fr,
        user,
        "Stop",
        "P-1",
        **{
            "Acct-Session-Time": "60",
            "Acct-Input-Octets": "5",
            "Acct-Input-Gigawords": "1",
            "Acct-Terminate-Cause": "Admin-Reset",
        },
    )
    assert wait_until(lambda: user not in open_sessions(stack.cli), 5), open_sessions(stack.cli)
    at = datetime.fromtimestamp(began + 10, UTC).isoformat()
    [closed] = sessions_json(stack.cli, "who-had", "100.64.0.7", "--at", at)["sessions"]  # type: ignore[misc]
    assert (closed["terminate_cause"], closed["input_octets"], closed["class_applied"]) == (
        "Admin-Reset",
        2**32 + 5,
        "none",
    )  # the push made it none
    assert closed["stopped_at"] is not None, closed


def test_op25b_down_gives_the_failsafe_and_an_accept(stack: Stack) -> None:
    stack.web.stop()
    t0 = time.perf_counter()
    alice = login(stack.fr, "alice@isp.example")
    elapsed = time.perf_counter() - t0
    assert alice.get("Filter-Id") == "OP25B-FULL" and op25b_tags(alice) == ["op25b:failsafe"], alice
    bob = login(stack.fr, "bob@isp.example")
    assert bob.get("Filter-Id") == "OP25B-FULL", bob  # the fail-safe knows no pools
    REPORT.append(f"plugin: op25b down, fail-safe Accept in {elapsed * 1e3:.0f} ms")
    account(stack.fr, "alice@isp.example", "Start", "DOWN-1")  # the NAS's accounting is answered all the same
    stack.web.start()  # back: decisions again, with no FreeRADIUS restart
    assert wait_until(lambda: op25b_tags(login(stack.fr, "alice@isp.example")) == ["op25b:full"], 5)


@pytest.mark.parametrize("failsafe", [None, ""], ids=["unset", "empty"])
def test_no_failsafe_configured(tmp_path: Path, failsafe: str | None) -> None:
    require_rlm_rest()
    port = free_tcp_port()  # nothing listens there
    fr = start_freeradius(tmp_path / "fr", url=f"http://127.0.0.1:{port}", token="op25b_x", failsafe=failsafe)
    try:
        alice = login(fr, "alice@isp.example")
        assert "Filter-Id" not in alice and op25b_tags(alice) == [], alice
        assert alice.get("Class") is not None  # the upstream's reply is intact
    finally:
        fr.stop()


def test_a_hung_op25b_gives_the_failsafe_after_the_timeout(tmp_path: Path) -> None:
    require_rlm_rest()
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # connects, never answers
    fr = start_freeradius(
        tmp_path / "fr", url=f"http://127.0.0.1:{hung.getsockname()[1]}", token="op25b_x", failsafe="OP25B-FULL"
    )
    try:
        t0 = time.monotonic()
        alice = login(fr, "alice@isp.example", timeout="5")
        elapsed = time.monotonic() - t0
    finally:
        fr.stop()
        hung.close()
    assert alice.get("Filter-Id") == "OP25B-FULL" and op25b_tags(alice) == ["op25b:failsafe"], alice
    assert 1.5 < elapsed < 3.5, elapsed  # the module's timeout = 2.0
    REPORT.append(f"plugin: op25b hung, fail-safe Accept after {elapsed:.2f}s")


def test_a_refused_token_gives_the_failsafe(stack: Stack, tmp_path: Path) -> None:
    fr = start_freeradius(tmp_path / "fr-bad-token", url=stack.web.base_url, token="op25b_wrong", failsafe="OP25B-FULL")
    try:
        alice = login(fr, "alice@isp.example")  # op25b answers 401: rlm_rest's "invalid"
        assert alice.get("Filter-Id") == "OP25B-FULL" and op25b_tags(alice) == ["op25b:failsafe"], alice
    finally:
        fr.stop()
    assert op25b_tags(login(stack.fr, "alice@isp.example")) == ["op25b:full"]  # the right token still works


class Capture(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        Capture.seen.append((self.path, dict(self.headers), body))
        self.send_response(401 if self.headers.get("authorization") != "Bearer op25b_test" else 204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_module_sends_only_the_decision_fields(tmp_path: Path) -> None:
    require_rlm_rest()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fr = start_freeradius(tmp_path / "fr", url=f"http://127.0.0.1:{server.server_address[1]}", token="op25b_test", failsafe="F")
    try:
        Capture.seen.clear()
        reply = login(fr, "alice@isp.example", **{"NAS-Identifier": '"bng a&b=c"'})
        assert "Filter-Id" not in reply  # 204: nothing added, no fail-safe
        account(
            fr,
            "alice@isp.example",
            "Interim-Update",
            "S&1=2",
            **{"Class": "0x6f703235623a66756c6c", "Framed-IP-Address": "100.64.0.7", "Acct-Output-Gigawords": "2"},
        )
    finally:
        fr.stop()
        server.shutdown()
    (path, headers, body), (acct_path, _, acct_body), *_ = Capture.seen
    assert acct_path == "/api/v1/accounting"
    acct = dict(parse_qsl(acct_body.decode(), keep_blank_values=True, strict_parsing=True))
    assert {k: v for k, v in acct.items() if v} == {
        "acct_status_type": "Interim-Update",
        "acct_session_id": "S&1=2",
        "user_name": "alice@isp.example",
        "nas_address": "127.0.0.1",
        "nas_ip_address": "127.0.0.1",
        "framed_ip_address": "100.64.0.7",
        "class": "0x6f703235623a66756c6c",
        "acct_output_gigawords": "2",
        "event_timestamp": acct["event_timestamp"],
    }, acct_body
    assert acct["event_timestamp"].isdigit() and abs(int(acct["event_timestamp"]) - time.time()) < 60, acct
    assert set(acct) == set(AccountingBody.model_fields) - {"class_"} | {"class"}, sorted(acct)
    assert path == "/api/v1/decide"
    assert headers["Content-Type"].startswith("application/x-www-form-urlencoded"), headers
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
    assert fields == {
        "user_name": "alice@isp.example",
        "framed_ip_address": "100.64.0.7",
        "framed_ipv6_prefix": "",
        "delegated_ipv6_prefix": "",
        "nas_ip_address": "127.0.0.1",
        "nas_identifier": "bng a&b=c",
    }, body
    assert b"alicepw" not in body and b"Password" not in body


# --- the rlm_python3 variant (mods-available/op25b_python3, python3/op25b_rlm.py) ---------------


class PythonFreeRadius(FreeRadiusInstance):
    def render(self) -> Path:
        conf = super().render()
        install_python_plugin(conf)
        return conf


def test_python3_module_decides_in_freeradius_and_follows_changes(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require_freeradius()
    if not any(Path(d, "rlm_python3.so").exists() for d in ("/usr/lib/freeradius", "/usr/lib/x86_64-linux-gnu/freeradius")):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("needs Debian's freeradius-python3 - CI must install it")
        pytest.skip("needs Debian's freeradius-python3 (rlm_python3)")
    config_path = tmp_path / "op25b.toml"
    config_path.write_text(config_text(database_url, CLIENTS))
    cli = Cli(config_path, capsys)
    cli("subscriber", "add", "mallory@isp.example", "--actor", "root")
    # The package as this interpreter has it (its site-packages, and the checkout for an editable install).
    path = ":".join([sysconfig.get_paths()["purelib"], str(Path(radius_op25b.__file__).parent.parent)])
    fr = PythonFreeRadius("python3", free_udp_port(), free_udp_port(), SECRET, tmp_dir=tmp_path / "fr")
    with Env(OP25B_CONFIG=str(config_path), OP25B_PYTHONPATH=path, OP25B_FAILSAFE_FILTER="OP25B-FULL"):
        fr.start()
    try:
        alice = login(fr, "alice@isp.example")
        assert alice.get("Filter-Id") == "OP25B-FULL" and op25b_tags(alice) == ["op25b:full"], alice
        assert len(alice.all("Class")) == 2, alice  # the upstream's Class stays
        bob = login(fr, "bob@isp.example")  # 203.0.113.25 from the users file: a static pool
        assert "Filter-Id" not in bob and op25b_tags(bob) == [], bob
        xr = login(fr, "alice@isp.example", **{"NAS-Identifier": '"bng-xr"'})
        assert xr.all("Cisco-AVPair") == ["ipv4:inacl=OP25B-FULL", "ipv6:ipv6_inacl=OP25B-FULL-V6"], xr
        assert login(fr, "mallory@isp.example").get("Filter-Id") == "OP25B-FULL"
        cli("subscriber", "exempt", "mallory@isp.example", "--reason", "own MTA", "--for", "30d", "--actor", "root")
        t0 = time.monotonic()
        # the held set inside FreeRADIUS follows the database (its watcher thread runs there)
        assert wait_until(lambda: "Filter-Id" not in login(fr, "mallory@isp.example"), PROPAGATION), (
            "exemption not applied within 2 s"
        )
        REPORT.append(f"plugin (rlm_python3): CLI exemption seen by FreeRADIUS after {time.monotonic() - t0:.3f}s")
        assert "op25b: holding the policy set" in fr.log_text()
    finally:
        fr.stop()
