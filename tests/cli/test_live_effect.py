"""What `op25b subscriber exempt` says it will do to a live session, and what the running proxy then
really does (issue 11): radclient (the NAS's logins and accounting) -> `op25b serve` -> FreeRADIUS,
the CLI run as `main([...])` against the same config, a NAS stand-in on the client's CoA port.

- profile generic has no CoA remove: going to class none needs a Disconnect, and the CLI says so;
- `--at-next-login`: nothing reaches the NAS, and the next Access-Accept comes without the filter;
- profile nokia-sr can remove the filter by CoA: the CLI says "gets a CoA", and a CoA arrives.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from radius_op25b.cli import main
from radius_op25b.radius import ACCT_SESSION_ID, COA_REQUEST, DISCONNECT_REQUEST, USER_NAME, Packet, get_first, iter_vsas
from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.nas import NasStandIn
from tests.support.processes import wait_until
from tests.support.radclient import Reply, parse_reply, radclient

NAS_SECRET = "nas-secret"
REASON = "runs own MTA"
# users of the shipped FreeRADIUS users file (deploy/freeradius/users), and the address each
# session gets in its Accounting-Request Start
USERS = {
    "alice@isp.example": ("alicepw", "100.64.0.7"),
    "bob@isp.example": ("bobpw", "100.64.0.20"),
    "carol@isp.example": ("carolpw", "100.64.0.8"),
    "mallory@isp.example": ("mallorypw", "100.64.0.66"),
}
GRACE = 5.0  # the push worker polls every second and is woken on changes: anything later is not coming


@pytest.fixture(scope="module")
def upstream(freeradius_factory):  # type: ignore[no-untyped-def]
    return freeradius_factory("live-effect-up", secret="up-secret")


def login(proxy: ProxyProcess, user: str) -> Reply:
    password, _ = USERS[user]
    reply = parse_reply(radclient(f'User-Name = "{user}"\nUser-Password = "{password}"\n', proxy.auth_addr, NAS_SECRET).stdout)
    assert reply.code == "Access-Accept", (user, reply)
    return reply


def op25b_tag(reply: Reply) -> str:
    tags = [bytes.fromhex(v[2:]).decode() for v in reply.all("Class") if bytes.fromhex(v[2:]).startswith(b"op25b:")]
    assert len(tags) == 1, reply.all("Class")
    return tags[0]


def start_session(proxy: ProxyProcess, user: str, sid: str) -> Reply:
    """The NAS logs the user in through the proxy and sends the Accounting-Request Start; the Accept."""
    accept = login(proxy, user)
    tag = next(v for v in accept.all("Class") if bytes.fromhex(v[2:]).startswith(b"op25b:"))
    text = (
        f'User-Name = "{user}"\nAcct-Status-Type = Start\nAcct-Session-Id = "{sid}"\n'
        f"NAS-IP-Address = 127.0.0.1\nFramed-IP-Address = {USERS[user][1]}\nClass = {tag}\n"
    )
    assert parse_reply(radclient(text, proxy.acct_addr, NAS_SECRET, "acct").stdout).code == "Accounting-Response"
    return accept


class Cli:
    """`op25b -c CONFIG ...` in this process (`main`), its output captured."""

    def __init__(self, proxy: ProxyProcess, capsys: pytest.CaptureFixture[str]) -> None:
        self.proxy, self.capsys = proxy, capsys

    def __call__(self, *args: str) -> str:
        out: list[str] = []
        self.capsys.readouterr()
        code = main(["-c", str(self.proxy.config_path), *args], out=out.append)
        assert code == 0, f"exit {code}: {self.capsys.readouterr().err}"
        return "\n".join(out)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))


def open_sessions(cli: Cli) -> dict[str, dict[str, Any]]:
    return {s["username"]: s for s in cli.json("sessions", "active")["sessions"]}


def identity(packet: Packet) -> tuple[bytes | None, bytes | None]:
    return get_first(packet.attributes, USER_NAME), get_first(packet.attributes, ACCT_SESSION_ID)


def proxy_for(tmp_path: Path, upstream, database_url: str, nas: NasStandIn, name: str, profile: str) -> ProxyProcess:  # type: ignore[no-untyped-def]
    body = client_block(
        name, "127.0.0.1", NAS_SECRET, require_message_authenticator=False, profile=profile, coa_port=nas.port
    ) + upstream_block("up", upstream)
    return ProxyProcess(tmp_path, body, database_url=database_url)


def test_generic_nas_exempt_disconnects_and_at_next_login_waits(tmp_path: Path, upstream, database_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    nas = NasStandIn(NAS_SECRET.encode())
    try:
        with proxy_for(tmp_path, upstream, database_url, nas, "bng-generic", "generic") as p:
            cli = Cli(p, capsys)
            sids = {
                "alice@isp.example": "G-1",
                "mallory@isp.example": "G-2",
                "carol@isp.example": "G-3",
                "bob@isp.example": "G-4",
            }
            for user in sids:
                cli("subscriber", "add", user)
            for user, sid in sids.items():
                accept = start_session(p, user, sid)
                assert accept.all("Filter-Id") == ["OP25B-FULL"], (user, accept)  # before the exemption: filtered
            found = wait_until(lambda: (rows := open_sessions(cli)) and len(rows) == 4 and rows, 10)
            assert found and {u: (s["nas"], s["acct_session_id"], s["class_applied"]) for u, s in found.items()} == {
                u: ("bng-generic", sid, "full") for u, sid in sids.items()
            }
            assert nas.received == []

            # 1. a plain exempt: generic has no CoA remove, so the session is disconnected, and the CLI says so
            text = cli("subscriber", "exempt", "alice@isp.example", "--reason", REASON, "--for", "30d")
            assert text.splitlines()[0].startswith("alice@isp.example: exempt "), text
            assert text.splitlines()[1:] == [
                "1 live session on bng-generic will be DISCONNECTED (profile generic has no CoA remove): "
                "the customer reconnects and gets the new filter"
            ], text
            data = cli.json("subscriber", "exempt", "mallory@isp.example", "--reason", REASON, "--for", "30d")
            assert data["live_sessions"] == [
                {"nas": "bng-generic", "acct_session_id": "G-2", "username": "mallory@isp.example", "method": "disconnect"}
            ]
            assert data["at_next_login"] is False

            # 2. --at-next-login: the sessions keep their filter, and the CLI says so
            text = cli("subscriber", "exempt", "carol@isp.example", "--reason", REASON, "--for", "30d", "--at-next-login")
            assert text.splitlines()[1:] == [
                "1 live session on bng-generic keeps its current filter until the next login (--at-next-login)"
            ], text
            data = cli.json("subscriber", "exempt", "bob@isp.example", "--reason", REASON, "--for", "30d", "--at-next-login")
            assert data["live_sessions"] == [
                {"nas": "bng-generic", "acct_session_id": "G-4", "username": "bob@isp.example", "method": "next-login"}
            ]
            assert data["at_next_login"] is True
            held_at = time.monotonic()

            # what reached the NAS: one Disconnect-Request for each of alice's and mallory's sessions
            got = nas.wait_for(2, 15)
            assert len(got) >= 2, got
            time.sleep(max(0.0, GRACE - (time.monotonic() - held_at)))  # a second send, or a push for carol/bob, would be here
            received = [(packet.code, identity(packet), ok) for _, packet, ok in nas.received]
            assert sorted(received) == [
                (DISCONNECT_REQUEST, (b"alice@isp.example", b"G-1"), True),
                (DISCONNECT_REQUEST, (b"mallory@isp.example", b"G-2"), True),
            ], received
            push = wait_until(
                lambda: (
                    (x := cli.json("subscriber", "show", "alice@isp.example")["sessions"][0].get("last_push", {}))
                    and x["status"] == "done"
                    and x
                ),
                5,
            )
            assert push and (push["method"], push["result"], push["status"]) == ("disconnect", "ack", "done"), push

            # the next login of each gets the new decision: no filter, class none
            for user in sids:
                accept = wait_until(lambda u=user: op25b_tag(r := login(p, u)) == "op25b:none" and r, 5)
                assert accept, f"{user}: still {op25b_tag(login(p, user))} after the exemption"
                assert accept.all("Filter-Id") == [], (user, accept)
            assert [packet.code for _, packet, _ in nas.received] == [DISCONNECT_REQUEST] * 2
            assert "last_push" not in cli.json("subscriber", "show", "carol@isp.example")["sessions"][0]
    finally:
        nas.close()


def test_coa_capable_nas_exempt_gets_a_coa(tmp_path: Path, upstream, database_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    nas = NasStandIn(NAS_SECRET.encode())
    try:
        with proxy_for(tmp_path, upstream, database_url, nas, "bng-nokia", "nokia-sr") as p:
            cli = Cli(p, capsys)
            cli("subscriber", "add", "alice@isp.example")
            start_session(p, "alice@isp.example", "N-1")
            assert wait_until(lambda: open_sessions(cli), 10)
            # held changes first: were either pushed, a CoA for each would arrive below
            data = cli.json("subscriber", "exempt", "alice@isp.example", "--reason", REASON, "--for", "30d", "--at-next-login")
            assert [s["method"] for s in data["live_sessions"]] == ["next-login"] and data["at_next_login"] is True
            cli("subscriber", "unexempt", "alice@isp.example", "--reason", "test", "--at-next-login")
            text = cli("subscriber", "exempt", "alice@isp.example", "--reason", REASON, "--for", "30d")
            assert text.splitlines()[1:] == ["1 live session on bng-nokia gets a CoA (the filter changes without a reconnect)"], (
                text
            )
            sent = time.monotonic()
            got = nas.wait_for(1, 15)
            assert got, "no CoA-Request within 15 s"
            time.sleep(max(0.0, 2.0 - (time.monotonic() - sent)))
            [(_, coa, ok)] = nas.received
            assert coa.code == COA_REQUEST and ok and identity(coa) == (b"alice@isp.example", b"N-1")
            vsas = [v for t, val in coa.attributes if t == 26 for v in iter_vsas((t, val))]
            assert vsas == [(6527, 134, b"Ingr-v4:-2,Ingr-v6:-2")]  # nokia-sr's CoA remove
    finally:
        nas.close()
