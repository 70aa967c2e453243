"""The local upstream FreeRADIUS (deploy/freeradius) answered directly with radclient."""

from __future__ import annotations

import uuid

import pytest

from tests.support.freeradius import DEFAULT_SECRET, FreeRadiusError, FreeRadiusInstance, require_freeradius
from tests.support.mschap import MsChapV2, challenge_hash, des_encrypt_block, md4, mschapv2_request
from tests.support.ports import free_udp_port
from tests.support.radclient import octets, parse_reply, radclient
from tests.support.rawclient import pap_request, status_server

pytestmark = pytest.mark.freeradius


def _auth(inst: FreeRadiusInstance, lines: str, secret: str | None = None):
    cp = radclient(lines, inst.auth_addr, secret or inst.secret, "auth")
    return cp, parse_reply(cp.stdout)


def _pap(user: str, password: str) -> str:
    return f'User-Name = "{user}"\nUser-Password = "{password}"\n'


# ---------------------------------------------------------------------------- pure Python --


def test_md4_des_and_mschapv2_match_the_rfc_vectors():
    assert md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    assert md4(b"message digest").hex() == "d9130a8164549fe818874806e1c7014b"
    assert md4(b"1234567890" * 8).hex() == "e33b4ddc9c38f2199c3e7b164fcc0536"
    assert des_encrypt_block(bytes.fromhex("133457799BBCDFF1"), bytes.fromhex("0123456789ABCDEF")).hex() == "85e813540f0ab405"
    # RFC 2759 section 9.2 and RFC 3079 section 3.5.3
    m = MsChapV2(
        "User", "clientPass", bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628"), bytes.fromhex("21402324255E262A28295F2B3A337C7E")
    )
    assert challenge_hash(m.peer_challenge, m.authenticator_challenge, "User").hex() == "d02e4386bce91226"
    assert m.password_hash.hex() == "44ebba8d5312b8d611474411f56989ae"
    assert md4(m.password_hash).hex() == "41c00c584bd2d91c4017a2a12fa59f3f"
    assert m.nt_response.hex() == "82309ecd8d708b5ea08faa3981cd83544233114a3d85d6df"
    assert m.authenticator_response() == "S=407A5589115FD0D6209F510FE9C04566932CDA56"
    assert m.master_key().hex() == "fdece3717a8c838cb388e527ae3cdd31"
    assert m.server_send_key().hex() == "8b7cdc149b993a1ba118cb153f56dccb"


# ------------------------------------------------------------------------------------ PAP --


def test_pap_accept_returns_the_users_file_reply_attributes(freeradius_upstream):
    cp, reply = _auth(freeradius_upstream, _pap("alice@isp.example", "alicepw"))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert reply.code == "Access-Accept"
    assert reply.get("Framed-IP-Address") == "100.64.0.7"
    assert reply.get("Session-Timeout") == "3600"
    assert octets(reply.get("Class")) == b"upstream-class-alice"
    # The instance that answered is named in its own log.
    assert any(
        "Login OK: [alice@isp.example/" in ln and ln.endswith("instance=upstream") for ln in freeradius_upstream.auth_log_lines()
    )


@pytest.mark.parametrize(
    "user,password,framed_ip,klass",
    [
        ("bob@isp.example", "bobpw", "203.0.113.25", b"upstream-class-bob"),
        ("carol@isp.example", "carolpw", None, b"upstream-class-carol"),
        ("dave@isp-b.example", "davepw", "100.64.1.9", b"upstream-class-dave"),
        ("mallory@isp.example", "mallorypw", "100.64.0.66", b"upstream-class-mallory"),
    ],
)
def test_shipped_sample_subscribers(freeradius_upstream, user, password, framed_ip, klass):
    cp, reply = _auth(freeradius_upstream, _pap(user, password))
    assert reply.code == "Access-Accept", cp.stdout + cp.stderr
    assert reply.get("Framed-IP-Address") == framed_ip
    assert octets(reply.get("Class")) == klass


def test_wrong_password_and_unknown_user_are_rejected_without_reply_attributes(freeradius_upstream):
    for lines in (
        _pap("alice@isp.example", "wrong"),
        _pap("nobody@isp.example", "alicepw"),
        _pap("alice@isp-b.example", "alicepw"),
    ):
        cp, reply = _auth(freeradius_upstream, lines)
        assert cp.returncode == 1
        assert reply.code == "Access-Reject", cp.stdout + cp.stderr
        assert [k for k, _ in reply.attrs] == ["Message-Authenticator"]
    assert any(
        "Login incorrect" in ln and "[alice@isp.example/wrong]" in ln and ln.endswith("instance=upstream")
        for ln in freeradius_upstream.auth_log_lines()
    )


def test_replies_carry_a_valid_message_authenticator_first(freeradius_upstream):
    fr = freeradius_upstream
    accept = pap_request("127.0.0.1", fr.auth_port, fr.secret, "alice@isp.example", "alicepw")
    assert accept is not None and accept.code == 2
    assert accept.attrs[0][0] == 80 and accept.message_authenticator_ok is True
    assert (8, bytes([100, 64, 0, 7])) in accept.attrs  # Framed-IP-Address
    reject = pap_request("127.0.0.1", fr.auth_port, fr.secret, "alice@isp.example", "x" * 20)
    assert reject is not None and reject.code == 3
    assert [t for t, _ in reject.attrs] == [80] and reject.message_authenticator_ok is True
    # A wrong secret gets no answer that verifies.
    assert pap_request("127.0.0.1", fr.auth_port, "not-the-secret", "alice@isp.example", "alicepw", timeout=0.3) is None


# ----------------------------------------------------------------------------------- CHAP --


def test_chap_accept_and_reject(freeradius_upstream):
    # radclient turns the cleartext CHAP-Password into CHAP-Id + MD5 response itself.
    cp, reply = _auth(freeradius_upstream, 'User-Name = "alice@isp.example"\nCHAP-Password = "alicepw"\n')
    assert reply.code == "Access-Accept", cp.stdout + cp.stderr
    assert "CHAP-Password = 0x" in cp.stdout  # really sent as CHAP
    assert reply.get("Framed-IP-Address") == "100.64.0.7"
    assert octets(reply.get("Class")) == b"upstream-class-alice"

    cp, reply = _auth(freeradius_upstream, 'User-Name = "alice@isp.example"\nCHAP-Password = "nope"\n')
    assert reply.code == "Access-Reject"


# ------------------------------------------------------------------------------ MS-CHAPv2 --


def test_mschapv2_accept_with_mppe_keys(freeradius_upstream):
    m = mschapv2_request("alice@isp.example", "alicepw")
    cp, reply = _auth(freeradius_upstream, m.radclient_lines())
    assert reply.code == "Access-Accept", cp.stdout + cp.stderr
    assert reply.get("Framed-IP-Address") == "100.64.0.7"
    assert reply.get("Session-Timeout") == "3600"
    assert octets(reply.get("Class")) == b"upstream-class-alice"
    # MS-CHAP2-Success = Ident + "S=<authenticator response>" (RFC 2548 / 2759)
    success = octets(reply.get("MS-CHAP2-Success"))
    assert success[0] == m.ident
    assert success[1:].decode() == m.authenticator_response()
    # radclient decrypts the salt-encrypted MPPE keys with the secret; they are RFC 3079's.
    assert octets(reply.get("MS-MPPE-Send-Key")) == m.server_send_key()
    assert octets(reply.get("MS-MPPE-Recv-Key")) == m.server_recv_key()
    assert reply.get("MS-MPPE-Encryption-Policy") == "Encryption-Allowed"


def test_mschapv2_wrong_password_is_rejected(freeradius_upstream):
    m = mschapv2_request("alice@isp.example", "not-alicepw")
    cp, reply = _auth(freeradius_upstream, m.radclient_lines())
    assert reply.code == "Access-Reject", cp.stdout + cp.stderr
    assert "MS-MPPE-Send-Key" not in reply


def test_mschapv1_via_radclient(freeradius_upstream):
    # radclient computes MS-CHAP (v1) from MS-CHAP-Password on its own.
    cp, reply = _auth(freeradius_upstream, 'User-Name = "bob@isp.example"\nMS-CHAP-Password = "bobpw"\n')
    assert reply.code == "Access-Accept", cp.stdout + cp.stderr
    assert reply.get("Framed-IP-Address") == "203.0.113.25"
    assert "MS-CHAP-MPPE-Keys" in reply


# ----------------------------------------------------------------------------- accounting --


def test_accounting_start_is_answered_and_written_to_detail_once(freeradius_upstream):
    session = uuid.uuid4().hex
    lines = (
        'User-Name = "alice@isp.example"\n'
        "Acct-Status-Type = Start\n"
        f'Acct-Session-Id = "{session}"\n'
        "NAS-IP-Address = 192.0.2.1\n"
        "Framed-IP-Address = 100.64.0.7\n"
    )
    cp = radclient(lines, freeradius_upstream.acct_addr, freeradius_upstream.secret, "acct")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert parse_reply(cp.stdout).code == "Accounting-Response"
    records = [r for r in freeradius_upstream.detail_records() if r.get("Acct-Session-Id") == session]
    assert len(records) == 1
    rec = records[0]
    assert rec["User-Name"] == "alice@isp.example"
    assert rec["Acct-Status-Type"] == "Start"
    assert rec["Framed-IP-Address"] == "100.64.0.7"
    assert freeradius_upstream.detail_text().count(session) == 1


# -------------------------------------------------------------------------- Status-Server --


def test_status_server_on_auth_and_acct_ports(freeradius_upstream):
    fr = freeradius_upstream
    cp = radclient("Message-Authenticator = 0x00\n", fr.auth_addr, fr.secret, "status")
    assert parse_reply(cp.stdout).code == "Access-Accept", cp.stdout + cp.stderr
    cp = radclient("Message-Authenticator = 0x00\n", fr.acct_addr, fr.secret, "status")
    assert parse_reply(cp.stdout).code == "Accounting-Response", cp.stdout + cp.stderr
    assert status_server("127.0.0.1", fr.auth_port, fr.secret) == 2
    assert status_server("127.0.0.1", fr.acct_port, fr.secret) == 5
    # A wrong secret gets no (verifiable) answer.
    assert status_server("127.0.0.1", fr.auth_port, "wrong-secret", timeout=0.3) is None


# ------------------------------------------------------------------------ more instances --


def test_two_instances_at_once_with_their_own_users_and_logs(freeradius_factory):
    a = freeradius_factory(
        "upstream-a", users_text='erin@isp.example Cleartext-Password := "erinpw"\n\tFramed-IP-Address = 100.64.9.1\n'
    )
    b = freeradius_factory(
        "upstream-b",
        secret='b-"sec\\ret',
        users_text='erin@isp.example Cleartext-Password := "erinpw-b"\n\tFramed-IP-Address = 100.64.9.2\n',
    )
    assert a.running and b.running
    assert len({a.auth_port, a.acct_port, b.auth_port, b.acct_port}) == 4

    _, ra = _auth(a, _pap("erin@isp.example", "erinpw"))
    _, rb = _auth(b, _pap("erin@isp.example", "erinpw-b"))
    assert (ra.code, ra.get("Framed-IP-Address")) == ("Access-Accept", "100.64.9.1")
    assert (rb.code, rb.get("Framed-IP-Address")) == ("Access-Accept", "100.64.9.2")
    assert _auth(a, _pap("erin@isp.example", "erinpw-b"))[1].code == "Access-Reject"
    # Each log names only its own instance.
    assert a.auth_log_lines() and all(ln.endswith("instance=upstream-a") for ln in a.auth_log_lines())
    assert b.auth_log_lines() and all(ln.endswith("instance=upstream-b") for ln in b.auth_log_lines())
    # The secret with a quote and a backslash reached clients.conf intact.
    assert status_server("127.0.0.1", b.auth_port, 'b-"sec\\ret') == 2
    assert status_server("127.0.0.1", b.auth_port, DEFAULT_SECRET, timeout=0.3) is None

    # Fail-over style: stop one, the other keeps answering; restart brings it back on its ports.
    a.stop()
    assert not a.running
    assert status_server("127.0.0.1", a.auth_port, a.secret, timeout=0.3) is None
    assert status_server("127.0.0.1", b.auth_port, b.secret) == 2
    a.restart()
    assert status_server("127.0.0.1", a.auth_port, a.secret) == 2
    assert a.startup_seconds < 2.0


def test_set_users_restarts_with_the_new_users_file(freeradius_factory):
    fr = freeradius_factory("upstream-users", users_text='zed@isp.example Cleartext-Password := "one"\n')
    assert _auth(fr, _pap("zed@isp.example", "one"))[1].code == "Access-Accept"
    fr.set_users('zed@isp.example Cleartext-Password := "two"\n')
    assert _auth(fr, _pap("zed@isp.example", "one"))[1].code == "Access-Reject"
    assert _auth(fr, _pap("zed@isp.example", "two"))[1].code == "Access-Accept"


def test_port_clash_fails_start_clearly_and_leaves_nothing_running(freeradius_upstream, tmp_path):
    require_freeradius()
    clash = FreeRadiusInstance(
        "clash", freeradius_upstream.auth_port, free_udp_port(), tmp_dir=tmp_path / "clash", start_timeout=5
    )
    with pytest.raises(FreeRadiusError, match="exited") as exc:
        clash.start()
    assert "Address already in use" in str(exc.value)
    assert not clash.running
    # The real instance is unaffected.
    assert status_server("127.0.0.1", freeradius_upstream.auth_port, freeradius_upstream.secret) == 2


def test_startup_is_fast(freeradius_upstream):
    assert freeradius_upstream.startup_seconds is not None
    assert freeradius_upstream.startup_seconds < 2.0
