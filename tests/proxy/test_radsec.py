"""RadSec (RFC 6614) end to end with real peers: FreeRADIUS 3.2 as the TLS upstream, radsecproxy
(UDP in, TLS out) as the NAS side, radclient as the NAS; certificates made here with openssl.
A raw TLS client (tests/support/radsec.py) makes the faults no real peer makes.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.certs import Leaf, TestCA
from tests.support.freeradius import require_freeradius
from tests.support.harness import client_block, upstream_block
from tests.support.ports import free_tcp_port, free_udp_port
from tests.support.radclient import parse_reply, radclient
from tests.support.radsec import (
    Op25bProcess,
    RadSecFreeRadius,
    RadSecProxy,
    accounting_packet,
    answer,
    attributes,
    client_context,
    connect,
    exchange,
    pap_packet,
    read_packet,
    request_ok,
    require_radsecproxy,
    response_ok,
    v11_packet,
)

pytestmark = pytest.mark.freeradius

NAS_SECRET = "nas-secret"
ALICE = 'User-Name = "alice@isp.example"\nUser-Password = "alicepw"\n'
FILTER_ID = 11


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Leaf]:
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA(folder / "ca", "op25b test CA")
    other = TestCA(folder / "other", "some other CA")
    return {
        "op25b": ca.issue("op25b", dns=["op25b.test"]),
        "freeradius": ca.issue("freeradius", dns=["aaa.test"]),
        "nas": ca.issue("nas1", dns=["nas1.test"]),
        "stranger": other.issue("nas1", dns=["nas1.test"]),
        "wrong-name": ca.issue("nas2", dns=["nas2.test"]),
    }


@pytest.fixture(scope="module")
def radsec_upstream(pki: dict[str, Leaf], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    require_freeradius()
    fr = RadSecFreeRadius("radsec-upstream", free_tcp_port(), pki["freeradius"], tmp_path_factory.mktemp("fr-tls"))
    with fr:
        yield fr


def radsec_upstream_block(fr: RadSecFreeRadius, **extra: object) -> str:
    lines = ["[[upstreams]]", 'name = "aaa-tls"', 'address = "127.0.0.1"', 'transport = "radsec"', f"radsec_port = {fr.tls_port}"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


def _filter_ids(reply) -> list[str]:  # type: ignore[no-untyped-def]
    return reply.all("Filter-Id")


def test_a_nas_over_radsec_and_a_nas_over_udp_authenticate_through_op25b_to_freeradius_over_tls(
    pki: dict[str, Leaf], radsec_upstream: RadSecFreeRadius, tmp_path: Path
) -> None:
    require_radsecproxy()
    body = (
        client_block("udp-nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
        # radsecproxy 1.9.2 (Debian 12) sends no Message-Authenticator of its own.
        + client_block(
            "tls-nas",
            "127.0.0.1",
            "radsec",
            transport="radsec",
            certificate_name="nas1.test",
            require_message_authenticator=False,
        )
        + radsec_upstream_block(radsec_upstream)
    )
    with Op25bProcess(tmp_path / "op25b", body, pki["op25b"]) as proxy:
        proxy.wait_for_log("RadSec upstream aaa-tls connected")
        # RFC 9765 (ALPN configuration): FreeRADIUS 3.2 offers no ALPN, so the connection is RADIUS/1.0.
        assert "RADIUS/1.0" in proxy.log_text().split("RadSec upstream aaa-tls connected", 1)[1].splitlines()[0]

        # The NAS over UDP: radclient -> op25b (UDP) -> FreeRADIUS (TLS).
        cp = radclient(ALICE, proxy.auth_addr, NAS_SECRET)
        reply = parse_reply(cp.stdout)
        assert reply.code == "Access-Accept", cp.stdout + cp.stderr + proxy.log_text()[-2000:]
        assert reply.get("Framed-IP-Address") == "100.64.0.7"
        assert _filter_ids(reply) == ["OP25B-FULL"]

        # The NAS over RadSec: radclient -> radsecproxy (UDP in, TLS out) -> op25b -> FreeRADIUS.
        with RadSecProxy(tmp_path / "radsecproxy", pki["nas"], proxy.radsec_port, NAS_SECRET) as rsp:
            cp = radclient(ALICE, rsp.addr, NAS_SECRET, timeout=5, retries=2)
            reply = parse_reply(cp.stdout)
            assert reply.code == "Access-Accept", cp.stdout + cp.stderr + rsp.log_text()[-2000:] + proxy.log_text()[-2000:]
            assert _filter_ids(reply) == ["OP25B-FULL"]
            assert reply.get("Framed-IP-Address") == "100.64.0.7"
            # A wrong password is rejected the same way, over the same connection.
            cp = radclient('User-Name = "alice@isp.example"\nUser-Password = "nope"\n', rsp.addr, NAS_SECRET, timeout=5)
            assert parse_reply(cp.stdout).code == "Access-Reject"
            rsp_log = rsp.log_text()
        metrics = proxy.metrics()
        log = proxy.log_text()

    # radsecproxy's own log: it reached op25b over TLS, checked op25b's certificate, and had
    # the answers back over that connection.
    assert f"tlsconnect: TLS connection to op25b (127.0.0.1 port {proxy.radsec_port}), subject CN=op25b up" in rsp_log
    assert "certnamecheck: Found subjectaltname matching address 127.0.0.1" in rsp_log
    assert "Access-Accept for user alice@isp.example from op25b to nas (127.0.0.1)" in rsp_log
    assert "Access-Reject for user alice@isp.example from op25b to nas (127.0.0.1)" in rsp_log
    # FreeRADIUS's: the TLS handshake with op25b's client certificate.
    fr_log = radsec_upstream.log_text()
    assert "(TLS) Connection Established" in fr_log and "subject name /CN=op25b" in fr_log
    assert 'TLS-Session-Version = "TLS 1.' in fr_log
    assert "RadSec client tls-nas connected from 127.0.0.1" in log and "RADIUS/1.0" in log
    assert metrics['op25b_requests_total{client="tls-nas",type="auth"}'] == 2
    assert metrics['op25b_requests_total{client="udp-nas",type="auth"}'] == 1
    assert metrics['op25b_radsec_connections{peer="aaa-tls",side="upstream",version="1.0"}'] == 1
    # FreeRADIUS saw all three over its TLS listener (client "tlsnas"), none over UDP.
    lines = radsec_upstream.auth_log_lines()
    assert sum("Login OK: [alice@isp.example/alicepw] (from client tlsnas" in ln for ln in lines) >= 2, lines
    assert not any("from client loopback" in ln for ln in lines), lines


# --------------------------------------------------------------- who gets in, and framing --


@pytest.fixture(scope="module")
def radsec_front(pki: dict[str, Leaf], freeradius_upstream, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """op25b with a RadSec listener for one client (certificate name nas1.test), UDP upstream."""
    body = client_block("tls-nas", "127.0.0.1", "radsec", transport="radsec", certificate_name="nas1.test") + upstream_block(
        "aaa", freeradius_upstream
    )
    with Op25bProcess(tmp_path_factory.mktemp("op25b-front"), body, pki["op25b"]) as proxy:
        yield proxy


def _closed(proxy: Op25bProcess, cause: str) -> float:
    return proxy.metrics().get(f'op25b_radsec_closed_total{{cause="{cause}",side="nas"}}', 0.0)


def test_a_nas_with_the_right_certificate_gets_the_filter_and_message_authenticator_first(
    pki: dict[str, Leaf], radsec_front: Op25bProcess
) -> None:
    packet, req_auth = pap_packet(b"radsec", "alice@isp.example", "alicepw")
    reply = exchange(radsec_front.radsec_port, client_context(pki["nas"], pki["nas"].ca), packet)
    assert reply is not None and reply[0] == 2, radsec_front.log_text()[-2000:]
    # RFC 6614 §2.3: the secret is "radsec"; BlastRADIUS: Message-Authenticator first.
    assert response_ok(reply, req_auth, b"radsec")
    attrs = attributes(reply)
    assert attrs[0][0] == 80
    assert (FILTER_ID, b"OP25B-FULL") in attrs


@pytest.mark.parametrize(
    "who,source",
    [
        ("no certificate", "127.0.0.1"),
        ("another CA", "127.0.0.1"),
        ("a wrong name", "127.0.0.1"),
        ("another address", "127.0.0.3"),
    ],
)
def test_a_nas_that_is_not_the_configured_one_gets_no_answer(
    pki: dict[str, Leaf], radsec_front: Op25bProcess, who: str, source: str
) -> None:
    leaf = {"no certificate": None, "another CA": pki["stranger"], "a wrong name": pki["wrong-name"]}.get(who, pki["nas"])
    cause = {"a wrong name": "certificate_name", "another address": "unknown_client"}.get(who, "handshake_failed")
    before = _closed(radsec_front, cause)
    packet, _ = pap_packet(b"radsec", "alice@isp.example", "alicepw")
    assert exchange(radsec_front.radsec_port, client_context(leaf, pki["nas"].ca), packet, source=source) is None
    assert processes.wait_until(lambda: _closed(radsec_front, cause) == before + 1, 5), radsec_front.log_text()[-2000:]
    # And the listener still serves the right NAS afterwards.
    packet, _ = pap_packet(b"radsec", "alice@isp.example", "alicepw")
    reply = exchange(radsec_front.radsec_port, client_context(pki["nas"], pki["nas"].ca), packet)
    assert reply is not None and reply[0] == 2


@pytest.mark.parametrize("header", [b"\x01\x07\x13\x88", b"\x01\x07\x00\x05"], ids=["over 4096", "under 20"])
def test_a_bad_length_closes_that_connection_only_and_the_next_one_works(
    pki: dict[str, Leaf], radsec_front: Op25bProcess, header: bytes
) -> None:
    ctx = client_context(pki["nas"], pki["nas"].ca)
    before = _closed(radsec_front, "bad_length")
    with connect(radsec_front.radsec_port, ctx) as other:  # a second connection, open throughout
        with connect(radsec_front.radsec_port, ctx) as sock:
            sock.sendall(header + bytes(60))
            assert read_packet(sock) is None  # closed, no answer
        assert _closed(radsec_front, "bad_length") == before + 1
        packet, req_auth = pap_packet(b"radsec", "alice@isp.example", "alicepw", ident=9)
        other.sendall(packet)
        reply = read_packet(other)
        assert reply is not None and reply[0] == 2 and response_ok(reply, req_auth, b"radsec")
    packet, _ = pap_packet(b"radsec", "alice@isp.example", "alicepw")
    reply = exchange(radsec_front.radsec_port, ctx, packet)
    assert reply is not None and reply[0] == 2


def test_a_client_gets_at_most_its_connections_and_silent_ones_are_closed(
    pki: dict[str, Leaf],
    freeradius_upstream,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    body = client_block("tls-nas", "127.0.0.1", "radsec", transport="radsec") + upstream_block("aaa", freeradius_upstream)
    server = "radsec_max_connections = 2\nradsec_idle_timeout = 2.5\n"
    ctx = client_context(pki["nas"], pki["nas"].ca)
    with Op25bProcess(tmp_path / "op25b", body, pki["op25b"], server=server) as proxy:
        with connect(proxy.radsec_port, ctx) as one, connect(proxy.radsec_port, ctx) as two:
            time.sleep(0.2)
            packet, _ = pap_packet(b"radsec", "alice@isp.example", "alicepw")
            assert exchange(proxy.radsec_port, ctx, packet) is None  # a third: closed unanswered
            assert _closed(proxy, "too_many_connections") == 1
            packet, _ = pap_packet(b"radsec", "alice@isp.example", "alicepw", ident=3)
            one.sendall(packet)
            reply = read_packet(one)
            assert reply is not None and reply[0] == 2
            # Silent for radsec_idle_timeout: both are closed by op25b.
            assert read_packet(two, timeout=5) is None and read_packet(one, timeout=5) is None
            assert processes.wait_until(lambda: _closed(proxy, "idle") == 2, 5)
        packet, _ = pap_packet(b"radsec", "alice@isp.example", "alicepw")
        reply = exchange(proxy.radsec_port, ctx, packet)  # the slots are free again
        assert reply is not None and reply[0] == 2


# ------------------------------------------------------------------------ RADIUS/1.1 --


def test_radius_1_1_between_two_op25b_instances(pki: dict[str, Leaf], freeradius_upstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """radclient -> op25b "edge" (UDP) -> op25b "core" (RadSec, ALPN radius/1.1) -> FreeRADIUS (UDP)."""
    core_body = client_block("edge", "127.0.0.1", "radsec", transport="radsec") + upstream_block("aaa", freeradius_upstream)
    with Op25bProcess(tmp_path / "core", core_body, pki["op25b"]) as core:
        edge_body = (
            client_block("udp-nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
            + f'[[upstreams]]\nname = "core"\naddress = "127.0.0.1"\ntransport = "radsec"\nradsec_port = {core.radsec_port}\n\n'
        )
        with Op25bProcess(tmp_path / "edge", edge_body, pki["nas"], listen=False) as edge:
            edge.wait_for_log("RadSec upstream core connected")
            assert "RADIUS/1.1" in edge.log_text().split("RadSec upstream core connected", 1)[1].splitlines()[0]
            # PAP: the password crosses the 1.1 hop in the clear (inside TLS) and is hidden
            # again under FreeRADIUS's secret; the Accept gets one filter (the edge's).
            cp = radclient(ALICE, edge.auth_addr, NAS_SECRET)
            reply = parse_reply(cp.stdout)
            assert reply.code == "Access-Accept", cp.stdout + edge.log_text()[-2000:] + core.log_text()[-2000:]
            assert reply.all("Filter-Id") == ["OP25B-FULL"]
            assert reply.get("Framed-IP-Address") == "100.64.0.7"
            # CHAP: with no Request Authenticator in 1.1, the challenge travels as CHAP-Challenge.
            cp = radclient('User-Name = "alice@isp.example"\nCHAP-Password = "alicepw"\n', edge.auth_addr, NAS_SECRET)
            assert parse_reply(cp.stdout).code == "Access-Accept", cp.stdout + edge.log_text()[-2000:]
            cp = radclient('User-Name = "alice@isp.example"\nUser-Password = "wrong"\n', edge.auth_addr, NAS_SECRET)
            assert parse_reply(cp.stdout).code == "Access-Reject"
            # Accounting crosses the same connection and reaches FreeRADIUS.
            session = f"radsec-v11-{time.monotonic_ns()}"
            cp = radclient(
                f'User-Name = "alice@isp.example"\nAcct-Status-Type = Start\nAcct-Session-Id = "{session}"\n'
                "Framed-IP-Address = 100.64.0.7\n",
                edge.acct_addr,
                NAS_SECRET,
                "acct",
            )
            assert parse_reply(cp.stdout).code == "Accounting-Response", cp.stdout + edge.log_text()[-2000:]
            edge_metrics, core_metrics = edge.metrics(), core.metrics()
        core_log = core.log_text()
    assert "RadSec client edge connected from 127.0.0.1" in core_log and "RADIUS/1.1" in core_log
    assert edge_metrics['op25b_radsec_connections{peer="core",side="upstream",version="1.1"}'] == 1
    assert core_metrics['op25b_radsec_connections{peer="edge",side="nas",version="1.1"}'] == 1
    assert core_metrics['op25b_requests_total{client="edge",type="auth"}'] == 3
    assert any(r.get("Acct-Session-Id") == session for r in freeradius_upstream.detail_records())


def test_a_raw_radius_1_1_request_gets_a_token_matched_reply_without_md5(
    pki: dict[str, Leaf], radsec_front: Op25bProcess
) -> None:
    token = b"\x00\xab\xcd\xef"
    packet = v11_packet(1, token, [(1, b"alice@isp.example"), (2, b"alicepw")])  # User-Password in the clear
    ctx = client_context(pki["nas"], pki["nas"].ca, alpn=["radius/1.1"])
    with connect(radsec_front.radsec_port, ctx) as sock:
        assert sock.selected_alpn_protocol() == "radius/1.1"
        sock.sendall(packet)
        reply = read_packet(sock)
        assert reply is not None and reply[0] == 2, radsec_front.log_text()[-2000:]
        # RFC 9765 (packet format): Reserved-1 zero, the request's Token back, Reserved-2 zero; no MA.
        assert reply[1] == 0 and reply[4:8] == token and reply[8:20] == bytes(12)
        attrs = attributes(reply)
        assert 80 not in [t for t, _ in attrs]
        assert (FILTER_ID, b"OP25B-FULL") in attrs
        sock.sendall(v11_packet(1, b"\x00\x00\x00\x01", [(1, b"alice@isp.example"), (2, b"wrong")]))
        reject = read_packet(sock)
        assert reject is not None and reject[0] == 3 and reject[4:8] == b"\x00\x00\x00\x01"
    # Offering only radius/1.0 (or nothing) gets RADIUS/1.0 from the same listener.
    with connect(radsec_front.radsec_port, client_context(pki["nas"], pki["nas"].ca, alpn=["radius/1.0"])) as sock:
        assert sock.selected_alpn_protocol() == "radius/1.0"


def test_radius_1_1_required_against_freeradius_3_2_which_does_not_offer_it(
    pki: dict[str, Leaf], radsec_upstream: RadSecFreeRadius, tmp_path: Path
) -> None:
    body = client_block("udp-nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + radsec_upstream_block(
        radsec_upstream
    )
    with Op25bProcess(tmp_path / "op25b", body, pki["op25b"], radius_v11="require", listen=False) as proxy:
        proxy.wait_for_log("does not speak radius/1.1")
        cp = radclient(ALICE, proxy.auth_addr, NAS_SECRET, timeout=1, retries=1)
        assert parse_reply(cp.stdout).code is None  # no connection it may use: no answer
        assert proxy.metrics()['op25b_radsec_closed_total{cause="version",side="upstream"}'] >= 1


# ---------------------------------------------------------------------------- reload --


def test_sighup_serves_a_renewed_certificate_to_new_connections_and_keeps_the_open_ones(
    pki: dict[str, Leaf],
    freeradius_upstream,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    ca = TestCA(tmp_path / "ca", "reload CA")
    first = ca.issue("op25b", folder=tmp_path / "first")
    nas = ca.issue("nas1", folder=tmp_path / "nas")
    live = Leaf("op25b", tmp_path / "live.pem", tmp_path / "live.key", ca.cert)
    live.cert.write_bytes(first.cert.read_bytes())
    live.key.write_bytes(first.key.read_bytes())
    body = client_block("tls-nas", "127.0.0.1", "radsec", transport="radsec") + upstream_block("aaa", freeradius_upstream)
    ctx = client_context(nas, ca.cert)

    def serial(sock) -> str:  # type: ignore[no-untyped-def]
        return sock.getpeercert()["serialNumber"].lower()

    with Op25bProcess(tmp_path / "op25b", body, live) as proxy, connect(proxy.radsec_port, ctx) as old:
        assert serial(old).lstrip("0") == first.serial().lstrip("0")
        renewed = ca.issue("op25b", folder=tmp_path / "renewed")
        assert renewed.serial() != first.serial()
        live.cert.write_bytes(renewed.cert.read_bytes())
        live.key.write_bytes(renewed.key.read_bytes())
        offset = len(proxy.log_text())
        proxy.signal(signal.SIGHUP)
        proxy.wait_for_log("reloaded", after=offset)
        with connect(proxy.radsec_port, ctx) as new:
            assert serial(new).lstrip("0") == renewed.serial().lstrip("0")
            packet, _ = pap_packet(b"radsec", "alice@isp.example", "alicepw", ident=1)
            new.sendall(packet)
            reply = read_packet(new)
            assert reply is not None and reply[0] == 2
        # The connection made before the reload was not dropped and still answers.
        packet, req_auth = pap_packet(b"radsec", "alice@isp.example", "alicepw", ident=2)
        old.sendall(packet)
        reply = read_packet(old)
        assert reply is not None and reply[0] == 2 and response_ok(reply, req_auth, b"radsec")
        # A broken certificate file on reload: logged, and the running one kept.
        live.cert.write_text("not a certificate\n")
        offset = len(proxy.log_text())
        proxy.signal(signal.SIGHUP)
        proxy.wait_for_log("RadSec kept its running certificates", after=offset)
        with connect(proxy.radsec_port, ctx) as again:
            assert serial(again).lstrip("0") == renewed.serial().lstrip("0")


# ----------------------------------------------------------- accounting and CoA tunnel --


def test_accounting_over_radsec_is_recorded_and_a_disconnect_goes_back_over_the_nas_connection(
    pki: dict[str, Leaf],
    freeradius_upstream,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    coa_port = free_udp_port()
    body = client_block("tls-nas", "127.0.0.1", "radsec", transport="radsec", coa_port=coa_port) + upstream_block(
        "aaa", freeradius_upstream
    )
    session = f"radsec-coa-{time.monotonic_ns()}"
    start = accounting_packet(
        b"radsec",
        [(1, b"alice@isp.example"), (40, (1).to_bytes(4, "big")), (44, session.encode()), (4, bytes([127, 0, 0, 1])),
         (8, bytes([100, 64, 0, 7]))],
    )  # fmt: skip
    ctx = client_context(pki["nas"], pki["nas"].ca)
    with Op25bProcess(tmp_path / "op25b", body, pki["op25b"]) as proxy:
        assert proxy.op25b("subscriber", "add", "alice@isp.example").returncode == 0
        with connect(proxy.radsec_port, ctx) as sock:
            sock.sendall(start)
            ack = read_packet(sock)
            assert ack is not None and ack[0] == 5 and response_ok(ack, start[4:20], b"radsec")
            # Recorded as over UDP: the session is live in op25b's database.
            active = proxy.op25b("--json", "sessions", "active", "--user", "alice@isp.example")
            assert session in active.stdout, active.stdout + active.stderr
            assert any(r.get("Acct-Session-Id") == session for r in freeradius_upstream.detail_records())

            done = proxy.op25b("subscriber", "exempt", "alice@isp.example", "--reason", "runs own MTA", "--for", "30d")
            assert done.returncode == 0, done.stderr
            request = read_packet(sock, timeout=15)
            assert request is not None and request[0] == 40, proxy.log_text()[-2000:]  # Disconnect-Request
            assert request_ok(request, b"radsec")
            assert (44, session.encode()) in attributes(request)
            sock.sendall(answer(request, 41, b"radsec"))  # Disconnect-ACK
            proxy.wait_for_log("push disconnect to alice@isp.example session " + session)
            assert (
                "ack" in proxy.log_text().split("push disconnect to alice@isp.example session " + session, 1)[1].splitlines()[0]
            )
        # With no connection open, the next one goes over UDP to coa_port.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
            nas.bind(("127.0.0.1", coa_port))
            nas.settimeout(15)
            done = proxy.op25b("subscriber", "unexempt", "alice@isp.example", "--reason", "test")
            assert done.returncode == 0, done.stderr
            request, source = nas.recvfrom(4096)
            # The filter comes back by CoA-Request (generic: Filter-Id), signed with the secret.
            assert request[0] == 43 and request_ok(request, b"radsec")
            assert (FILTER_ID, b"OP25B-FULL") in attributes(request)
            nas.sendto(answer(request, 44, b"radsec"), source)  # CoA-ACK
            proxy.wait_for_log("push coa to alice@isp.example session " + session)


def test_op25b_reconnects_to_a_restarted_radsec_upstream_and_fails_over_meanwhile(
    pki: dict[str, Leaf],
    freeradius_upstream,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    require_freeradius()
    fr = RadSecFreeRadius("radsec-restart", free_tcp_port(), pki["freeradius"], tmp_path / "fr")
    body = (
        client_block("udp-nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
        + radsec_upstream_block(fr, response_window=1)
        + upstream_block("udp-backup", freeradius_upstream)
        + '[[pools]]\nname = "main"\nupstreams = ["aaa-tls", "udp-backup"]\n\n'
    )
    with fr, Op25bProcess(tmp_path / "op25b", body, pki["op25b"], listen=False) as proxy:
        proxy.wait_for_log("RadSec upstream aaa-tls connected")
        assert parse_reply(radclient(ALICE, proxy.auth_addr, NAS_SECRET).stdout).code == "Access-Accept"
        assert "from client tlsnas" in "\n".join(fr.auth_log_lines())
        fr.stop()
        proxy.wait_for_log("RadSec upstream aaa-tls disconnected")
        # Meanwhile the next server of the pool answers (no TLS connection to send over).
        cp = radclient(ALICE, proxy.auth_addr, NAS_SECRET, timeout=3)
        assert parse_reply(cp.stdout).code == "Access-Accept", cp.stdout + proxy.log_text()[-2000:]
        assert any("instance=upstream" in ln for ln in freeradius_upstream.auth_log_lines())
        offset = len(proxy.log_text())
        fr.start()
        proxy.wait_for_log("RadSec upstream aaa-tls connected", timeout=40, after=offset)
        deadline = time.monotonic() + 20
        while "from client tlsnas" not in "\n".join(fr.auth_log_lines()) and time.monotonic() < deadline:
            radclient(ALICE, proxy.auth_addr, NAS_SECRET)  # fail-over goes back to the first once it is alive
            time.sleep(0.5)
        assert "from client tlsnas" in "\n".join(fr.auth_log_lines()), proxy.log_text()[-3000:]


def test_the_upstream_certificate_must_carry_the_configured_name_and_idle_links_get_status_server(
    pki: dict[str, Leaf], radsec_upstream: RadSecFreeRadius, tmp_path: Path
) -> None:
    nas = client_block("udp-nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
    wrong = nas + radsec_upstream_block(radsec_upstream, certificate_name="other.test")
    with Op25bProcess(tmp_path / "wrong", wrong, pki["op25b"], listen=False) as proxy:
        proxy.wait_for_log("RadSec upstream aaa-tls (127.0.0.1:")  # the failed attempt, logged
        assert "certificate is not valid for 'other.test'" in proxy.log_text()
        assert parse_reply(radclient(ALICE, proxy.auth_addr, NAS_SECRET, timeout=1).stdout).code is None
        assert proxy.metrics()['op25b_radsec_closed_total{cause="connect_failed",side="upstream"}'] >= 1
    right = nas + radsec_upstream_block(radsec_upstream, certificate_name="aaa.test", keepalive=0.5)
    before = radsec_upstream.log_text().count("Status-Server packet from host")
    with Op25bProcess(tmp_path / "right", right, pki["op25b"], listen=False) as proxy:
        proxy.wait_for_log("RadSec upstream aaa-tls connected")
        assert parse_reply(radclient(ALICE, proxy.auth_addr, NAS_SECRET).stdout).code == "Access-Accept"
        # RFC 6613 §2.6: an idle connection is kept alive (and checked) with Status-Server.
        assert processes.wait_until(
            lambda: radsec_upstream.log_text().count("Status-Server packet from host") >= before + 2, 10
        ), radsec_upstream.log_text()[-3000:]
        assert proxy.metrics()['op25b_upstream_up{upstream="aaa-tls"}'] == 1


def test_a_disconnect_goes_over_a_radius_1_1_connection_with_a_token(
    pki: dict[str, Leaf],
    freeradius_upstream,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    body = client_block("tls-nas", "127.0.0.1", "radsec", transport="radsec") + upstream_block("aaa", freeradius_upstream)
    session = f"radsec-v11-coa-{time.monotonic_ns()}"
    start = v11_packet(
        4,
        b"\x00\x00\x10\x01",
        [(1, b"alice@isp.example"), (40, (1).to_bytes(4, "big")), (44, session.encode()), (4, bytes([127, 0, 0, 1]))],
    )
    with Op25bProcess(tmp_path / "op25b", body, pki["op25b"]) as proxy:
        assert proxy.op25b("subscriber", "add", "alice@isp.example").returncode == 0
        with connect(proxy.radsec_port, client_context(pki["nas"], pki["nas"].ca, alpn=["radius/1.1"])) as sock:
            sock.sendall(start)
            ack = read_packet(sock)
            assert ack is not None and ack[0] == 5 and ack[4:8] == b"\x00\x00\x10\x01"  # Accounting-Response, its Token
            assert proxy.op25b("subscriber", "exempt", "alice@isp.example", "--reason", "MTA", "--for", "1d").returncode == 0
            request = read_packet(sock, timeout=15)
            assert request is not None and request[0] == 40, proxy.log_text()[-2000:]
            # RFC 9765 (packet format): Reserved-1 and Reserved-2 zero, no Message-Authenticator.
            assert request[1] == 0 and request[8:20] == bytes(12)
            assert 80 not in [t for t, _ in attributes(request)] and (44, session.encode()) in attributes(request)
            sock.sendall(v11_packet(41, request[4:8], []))  # Disconnect-ACK with the request's Token
            proxy.wait_for_log("push disconnect to alice@isp.example session " + session)
            line = proxy.log_text().split("push disconnect to alice@isp.example session " + session, 1)[1].splitlines()[0]
            assert line.endswith(": ack"), line


def test_several_workers_share_the_radsec_port(pki: dict[str, Leaf], freeradius_upstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = client_block("tls-nas", "127.0.0.1", "radsec", transport="radsec") + upstream_block("aaa", freeradius_upstream)
    proxy = Op25bProcess(tmp_path / "op25b", body, pki["op25b"])
    proxy.serve_args = ("--workers", "2")
    ctx = client_context(pki["nas"], pki["nas"].ca)
    with proxy:
        for worker in (0, 1):  # each logs its RadSec listener before it says it serves
            proxy.wait_for_log(f"worker {worker}: serving auth on")
        assert proxy.log_text().count("RadSec on 127.0.0.1:") == 2  # each worker listens (SO_REUSEPORT)
        for n in range(6):
            packet, req_auth = pap_packet(b"radsec", "alice@isp.example", "alicepw", ident=n)
            reply = exchange(proxy.radsec_port, ctx, packet)
            assert reply is not None and reply[0] == 2 and response_ok(reply, req_auth, b"radsec")
