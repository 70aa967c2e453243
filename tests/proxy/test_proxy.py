"""The relay on the wire: radclient (and a Python NAS where byte control is needed) -> `op25b serve`
-> real FreeRADIUS instances, all over UDP on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_REQUEST,
    MESSAGE_AUTHENTICATOR,
    USER_NAME,
    USER_PASSWORD,
    Packet,
    encrypt_user_password,
    new_request_authenticator,
    sign_access_request,
    verify_reply,
)
from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.mschap import mschapv2_request
from tests.support.radclient import octets, parse_reply, radclient
from tests.support.rawclient import pap_request
from tests.support.udp import Address, UdpResponder

NAS_SECRET = "nas-secret"
ALICE = 'User-Name = "alice@isp.example"\nUser-Password = "alicepw"\n'


def drops(proxy: ProxyProcess, cause: str) -> float:
    return proxy.metrics().get(f'op25b_drops_total{{cause="{cause}"}}', 0.0)


@pytest.fixture(scope="module")
def upstream_a(freeradius_factory):  # type: ignore[no-untyped-def]
    return freeradius_factory("upstream-a", secret="secret-a")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, upstream_a):  # type: ignore[no-untyped-def]
    body = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + upstream_block(
        "a", upstream_a, response_window=1.0
    )
    with ProxyProcess(tmp_path_factory.mktemp("proxy"), body) as p:
        yield p


def ask(proxy: ProxyProcess, text: str, code: str = "auth", **kw):  # type: ignore[no-untyped-def]
    return radclient(text, proxy.auth_addr if code == "auth" else proxy.acct_addr, NAS_SECRET, code, **kw)


# --- logins ---------------------------------------------------------------------------------------


def test_pap_accept_and_reject(proxy: ProxyProcess) -> None:
    ok = parse_reply(ask(proxy, ALICE).stdout)
    assert ok.code == "Access-Accept"
    assert ok.get("Framed-IP-Address") == "100.64.0.7" and ok.get("Session-Timeout") == "3600"
    assert octets(ok.get("Class") or "") == b"upstream-class-alice"
    bad = parse_reply(ask(proxy, 'User-Name = "alice@isp.example"\nUser-Password = "wrong"\n').stdout)
    assert bad.code == "Access-Reject"


def test_chap(proxy: ProxyProcess) -> None:
    # radclient puts the challenge in the Request Authenticator (no CHAP-Challenge): the proxy
    # must carry it over as CHAP-Challenge, or FreeRADIUS would check against our authenticator.
    ok = parse_reply(ask(proxy, 'User-Name = "alice@isp.example"\nCHAP-Password = "alicepw"\n').stdout)
    assert ok.code == "Access-Accept"
    bad = parse_reply(ask(proxy, 'User-Name = "alice@isp.example"\nCHAP-Password = "nope"\n').stdout)
    assert bad.code == "Access-Reject"


def test_mschapv2_keys_equal_those_from_the_upstream_directly(proxy: ProxyProcess, upstream_a) -> None:  # type: ignore[no-untyped-def]
    exchange = mschapv2_request("alice@isp.example", "alicepw")
    via_proxy = parse_reply(ask(proxy, exchange.radclient_lines()).stdout)
    direct = parse_reply(radclient(exchange.radclient_lines(), upstream_a.auth_addr, upstream_a.secret).stdout)
    assert via_proxy.code == direct.code == "Access-Accept"
    # radclient decrypts the keys with its own secret and Request Authenticator: equal
    # plaintexts mean the proxy re-salted them correctly for the NAS's hop.
    for key in ("MS-MPPE-Send-Key", "MS-MPPE-Recv-Key"):
        assert via_proxy.get(key) == direct.get(key)
    assert octets(via_proxy.get("MS-MPPE-Send-Key") or "") == exchange.server_send_key()
    assert octets(via_proxy.get("MS-MPPE-Recv-Key") or "") == exchange.server_recv_key()
    wrong = mschapv2_request("alice@isp.example", "wrongpw")
    assert parse_reply(ask(proxy, wrong.radclient_lines()).stdout).code == "Access-Reject"


def test_every_accept_and_reject_carries_message_authenticator_first(proxy: ProxyProcess) -> None:
    host, port = proxy.auth_addr.split(":")
    for password, code in (("alicepw", 2), ("wrong", 3)):
        reply = pap_request(host, int(port), NAS_SECRET, "alice@isp.example", password)
        assert reply is not None and reply.code == code
        assert reply.attrs[0][0] == MESSAGE_AUTHENTICATOR and reply.message_authenticator_ok is True


# --- accounting -----------------------------------------------------------------------------------


def test_accounting_start_interim_stop_recorded_once(proxy: ProxyProcess, upstream_a) -> None:  # type: ignore[no-untyped-def]
    session = f"acct-{os.getpid()}-{time.monotonic_ns()}"
    for status in ("Start", "Interim-Update", "Stop"):
        text = f'User-Name = "alice@isp.example"\nAcct-Status-Type = {status}\nAcct-Session-Id = "{session}"\nFramed-IP-Address = 100.64.0.7\n'
        assert parse_reply(ask(proxy, text, "acct").stdout).code == "Accounting-Response"
    records = [r for r in upstream_a.detail_records() if r.get("Acct-Session-Id") == session]
    assert [r["Acct-Status-Type"] for r in records] == ["Start", "Interim-Update", "Stop"]


# --- RFC 5080 duplicates ---------------------------------------------------------------------------


def _access_request(secret: bytes, user: str, password: str, identifier: int = 7) -> tuple[bytes, bytes]:
    auth = new_request_authenticator()
    attrs = ((USER_NAME, user.encode()), (USER_PASSWORD, encrypt_user_password(password.encode(), secret, auth)))
    return sign_access_request(Packet(ACCESS_REQUEST, identifier, auth, attrs), secret), auth


def test_retransmission_reaches_the_upstream_once_and_gets_the_same_reply(proxy: ProxyProcess, upstream_a) -> None:  # type: ignore[no-untyped-def]
    before = len(upstream_a.auth_log_lines())
    metrics_before = proxy.metrics()
    wire, auth = _access_request(NAS_SECRET.encode(), "alice@isp.example", "alicepw")
    host, port = proxy.auth_addr.split(":")

    def replies(nas: socket.socket, wait: float) -> list[bytes]:
        got, deadline = [], time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            nas.settimeout(left)
            try:
                got.append(nas.recv(4096))
            except TimeoutError:
                break
        return got

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.sendto(wire, (host, int(port)))
        # Straight after: still in flight (dropped) or, if the upstream was quicker, answered
        # from the reply cache - either way it must not reach the upstream again.
        nas.sendto(wire, (host, int(port)))
        early = replies(nas, 1.0)
        nas.sendto(wire, (host, int(port)))  # after the reply: the cached reply
        late = replies(nas, 1.0)
    assert 1 <= len(early) <= 2 and len(late) == 1
    assert len(set(early + late)) == 1  # byte-for-byte the same reply every time
    assert verify_reply(late[0], auth, NAS_SECRET.encode()) and late[0][0] == ACCESS_ACCEPT
    metrics_after = proxy.metrics()
    resent = metrics_after.get("op25b_duplicates_answered_total", 0) - metrics_before.get("op25b_duplicates_answered_total", 0)
    dropped = metrics_after.get('op25b_drops_total{cause="duplicate_in_flight"}', 0) - metrics_before.get(
        'op25b_drops_total{cause="duplicate_in_flight"}', 0
    )
    assert (resent, dropped) in ((1, 1), (2, 0))
    time.sleep(0.2)
    assert len(upstream_a.auth_log_lines()) - before == 1


# --- BlastRADIUS -----------------------------------------------------------------------------------


def test_client_that_requires_message_authenticator(tmp_path: Path, upstream_a) -> None:  # type: ignore[no-untyped-def]
    body = client_block("strict", "127.0.0.1", NAS_SECRET) + upstream_block("a", upstream_a)
    with ProxyProcess(tmp_path, body) as strict:
        silent = ask(strict, ALICE, timeout=0.5, retries=1)
        assert parse_reply(silent.stdout).code is None and "No reply" in silent.stderr + silent.stdout
        with_ma = parse_reply(ask(strict, ALICE + "Message-Authenticator = 0x00\n").stdout)
        assert with_ma.code == "Access-Accept"
        assert drops(strict, "missing_message_authenticator") == 1


def test_limit_proxy_state_drops_proxy_state_without_message_authenticator(tmp_path: Path, upstream_a) -> None:  # type: ignore[no-untyped-def]
    body = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + upstream_block("a", upstream_a)
    with ProxyProcess(tmp_path, body) as p:
        assert parse_reply(ask(p, ALICE + "Proxy-State = 0x01\n", timeout=0.5).stdout).code is None
        assert drops(p, "proxy_state_without_message_authenticator") == 1
        # with a Message-Authenticator the NAS's Proxy-State is relayed and comes back unmodified
        ok = parse_reply(ask(p, ALICE + "Proxy-State = 0x0102\nMessage-Authenticator = 0x00\n").stdout)
        assert ok.code == "Access-Accept" and ok.all("Proxy-State") == ["0x0102"]


class FakeUpstream(UdpResponder):
    """A garbage-speaking upstream: answers every request with a wrongly signed Accept."""

    def __init__(self) -> None:
        self.answered = 0
        super().__init__(self._forge)

    def _forge(self, data: bytes, addr: Address) -> bytes:
        self.answered += 1
        return bytes([ACCESS_ACCEPT, data[1], 0, 20]) + os.urandom(16)


def test_forged_upstream_reply_is_dropped_and_the_next_upstream_answers(tmp_path: Path, upstream_a) -> None:  # type: ignore[no-untyped-def]
    fake = FakeUpstream()
    try:
        body = (
            client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
            + f'[[upstreams]]\nname = "forger"\naddress = "127.0.0.1"\nauth_port = {fake.port}\nacct_port = {fake.port}\nsecret = "x"\nresponse_window = 0.5\n\n'
            + upstream_block("a", upstream_a, response_window=1.0)
            + '[[pools]]\nname = "main"\nupstreams = ["forger", "a"]\n'
        )
        with ProxyProcess(tmp_path, body) as p:
            reply = parse_reply(ask(p, ALICE, timeout=3).stdout)
            assert reply.code == "Access-Accept"  # from upstream a, after the forger's window
            assert fake.answered >= 1 and drops(p, "upstream_bad_authenticator") >= 1
    finally:
        fake.close()


# --- fail-over and routes ----------------------------------------------------------------------------


def test_fail_over_and_back(tmp_path: Path, freeradius_factory) -> None:  # type: ignore[no-untyped-def]
    first = freeradius_factory("first", secret="s1")
    second = freeradius_factory("second", secret="s2")
    body = (
        client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
        + upstream_block("first", first, response_window=0.5, status_interval=0.2, zombie_period=2.0)
        + upstream_block("second", second, response_window=0.5, status_interval=0.2, zombie_period=2.0)
        + '[[pools]]\nname = "main"\nstrategy = "fail-over"\nupstreams = ["first", "second"]\n'
    )
    with ProxyProcess(tmp_path, body) as p:
        codes = []
        for i in range(30):
            if i == 10:
                first.stop()
            codes.append(parse_reply(ask(p, ALICE, timeout=2, retries=3).stdout).code)
        assert codes == ["Access-Accept"] * 30
        assert len(first.auth_log_lines()) == 10 and len(second.auth_log_lines()) == 20
        p.wait_for_log("upstream first is now zombie")
        first.start()
        p.wait_for_log("upstream first is now alive (answered Status-Server)", timeout=10)
        for _ in range(5):
            assert parse_reply(ask(p, ALICE).stdout).code == "Access-Accept"
        assert len(first.auth_log_lines()) == 5 and len(second.auth_log_lines()) == 20


def test_load_balance_spreads_requests(tmp_path: Path, freeradius_factory) -> None:  # type: ignore[no-untyped-def]
    one, two = freeradius_factory("lb1", secret="l1"), freeradius_factory("lb2", secret="l2")
    body = (
        client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
        + upstream_block("one", one)
        + upstream_block("two", two)
        + '[[pools]]\nname = "main"\nstrategy = "load-balance"\nupstreams = ["one", "two"]\n'
    )
    with ProxyProcess(tmp_path, body) as p:
        for _ in range(20):
            assert parse_reply(ask(p, ALICE).stdout).code == "Access-Accept"
    assert len(one.auth_log_lines()) >= 3 and len(two.auth_log_lines()) >= 3
    assert len(one.auth_log_lines()) + len(two.auth_log_lines()) == 20


def test_realm_route_to_the_partner_upstream(tmp_path: Path, freeradius_factory) -> None:  # type: ignore[no-untyped-def]
    carrier, partner = freeradius_factory("carrier", secret="c1"), freeradius_factory("partner", secret="p1")
    body = (
        client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
        + upstream_block("carrier", carrier)
        + upstream_block("partner", partner)
        + '[[pools]]\nname = "main"\nupstreams = ["carrier"]\n\n'
        + '[[pools]]\nname = "partner-b"\nupstreams = ["partner"]\n\n'
        + '[[routes]]\nrealm = "isp-b.example"\npool = "partner-b"\n'
    )
    with ProxyProcess(tmp_path, body) as p:
        assert parse_reply(ask(p, ALICE).stdout).code == "Access-Accept"
        assert parse_reply(ask(p, 'User-Name = "dave@isp-b.example"\nUser-Password = "davepw"\n').stdout).code == "Access-Accept"
        acct = 'User-Name = "dave@isp-b.example"\nAcct-Status-Type = Start\nAcct-Session-Id = "route-1"\n'
        assert parse_reply(ask(p, acct, "acct").stdout).code == "Accounting-Response"
    assert all("alice@isp.example" in line for line in carrier.auth_log_lines()) and carrier.auth_log_lines()
    assert all("dave@isp-b.example" in line for line in partner.auth_log_lines()) and partner.auth_log_lines()
    assert [r["User-Name"] for r in partner.detail_records()] == ["dave@isp-b.example"] and carrier.detail_records() == []


# --- operations ---------------------------------------------------------------------------------------


def test_sighup_reloads_secrets_and_survives_a_broken_file(tmp_path: Path, freeradius_factory) -> None:  # type: ignore[no-untyped-def]
    up = freeradius_factory("reload", secret="old-secret")
    client = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
    with ProxyProcess(tmp_path, client + upstream_block("up", up, response_window=0.5)) as p:
        assert parse_reply(ask(p, ALICE).stdout).code == "Access-Accept"
        up.secret = "new-secret"
        up.restart()
        assert parse_reply(ask(p, ALICE, timeout=1).stdout).code is None  # old secret: dropped
        p.write_config(client + upstream_block("up", up, response_window=0.5))
        mark = len(p.log_text())
        p.signal(signal.SIGHUP)
        p.wait_for_log("reloaded", after=mark)
        assert parse_reply(ask(p, ALICE, timeout=2).stdout).code == "Access-Accept"
        p.config_path.write_text("[[clients]]\nname = \n")
        mark = len(p.log_text())
        p.signal(signal.SIGHUP)
        p.wait_for_log("reload failed, keeping the running configuration", after=mark)
        assert p.alive and parse_reply(ask(p, ALICE).stdout).code == "Access-Accept"
        assert "new-secret" not in p.log_text() and "old-secret" not in p.log_text()


def test_sigterm_drains_and_exits_cleanly(tmp_path: Path, upstream_a) -> None:  # type: ignore[no-untyped-def]
    p = ProxyProcess(
        tmp_path,
        client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + upstream_block("a", upstream_a),
    ).start()
    assert parse_reply(ask(p, ALICE).stdout).code == "Access-Accept"
    assert p.stop() == 0
    assert "draining" in p.log_text() and "stopped" in p.log_text()


def test_status_server_is_answered_locally(proxy: ProxyProcess, upstream_a) -> None:  # type: ignore[no-untyped-def]
    before = upstream_a.log_text().count("Status-Server")
    out = radclient("Message-Authenticator = 0x00\n", proxy.auth_addr, NAS_SECRET, "status")
    assert parse_reply(out.stdout).code == "Access-Accept"
    out = radclient("Message-Authenticator = 0x00\n", proxy.acct_addr, NAS_SECRET, "status")
    assert parse_reply(out.stdout).code == "Accounting-Response"
    assert upstream_a.log_text().count("Status-Server") == before


def test_workers_share_the_ports(tmp_path: Path, upstream_a) -> None:  # type: ignore[no-untyped-def]
    body = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + upstream_block("a", upstream_a)
    p = ProxyProcess(tmp_path, body, serve_args=("--workers", "2"))
    with p:
        p.wait_for_log("worker 1: serving auth on")
        p.wait_for_log("worker 0: serving auth on")
        host, port = p.auth_addr.split(":")
        for _ in range(40):  # each from a new source port: the kernel spreads them over both
            reply = pap_request(host, int(port), NAS_SECRET, "alice@isp.example", "alicepw")
            assert reply is not None and reply.code == 2
        # One scrape of the metrics port: both workers (tests/services/test_workers_metrics.py).
        assert p.metrics()['op25b_replies_total{client="nas",type="auth"}'] == 40
        mark = len(p.log_text())
        p.signal(signal.SIGHUP)
        p.wait_for_log("reloaded", after=mark)
    assert "worker" in p.log_text() and p.log_text().count("stopped") == 2
