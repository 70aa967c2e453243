"""Sessions from accounting, "who had this IP?", and live changes by CoA/Disconnect: radclient
(the NAS's accounting) -> `op25b serve` -> FreeRADIUS, a NAS stand-in on the CoA port.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from radius_op25b import store
from radius_op25b.core.accounting import AccountingRecord
from radius_op25b.radius import (
    ACCT_SESSION_ID,
    COA_REQUEST,
    DISCONNECT_REQUEST,
    EVENT_TIMESTAMP,
    FRAMED_IP_ADDRESS,
    MESSAGE_AUTHENTICATOR,
    NAS_FILTER_RULE,
    NAS_IP_ADDRESS,
    USER_NAME,
    Packet,
    get_first,
    iter_vsas,
    sign_accounting_request,
    verify_reply,
)
from radius_op25b.store import db
from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.nas import NasStandIn
from tests.support.paths import TEMPLATE_DIR
from tests.support.postgres import PrivatePostgres
from tests.support.processes import wait_until
from tests.support.radclient import DICT_DIR, RADCLIENT, parse_reply, radclient

NAS_SECRET = "nas-secret"
T0 = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def rec(status: str, minutes: float, sid: str = "s1", **kw) -> AccountingRecord:  # type: ignore[no-untyped-def]
    base = {"nas_name": "bng1", "nas_address": "192.0.2.10", "acct_session_id": sid, "username": "alice@isp.example"}
    return AccountingRecord(status=status, event_time=(T0 + timedelta(minutes=minutes)).timestamp(), **{**base, **kw})


# --- the store, on SQLite and PostgreSQL ---------------------------------------------------------------


def test_start_interim_stop_make_one_row_and_replay_changes_nothing(database_url: str) -> None:
    engine = db.make_engine(database_url)
    records = [
        rec("start", 0, framed_ip="100.64.0.7", delegated_ipv6_prefix="2001:db8:1200::/56", class_applied="full"),
        rec("interim", 5, input_octets=(2 << 32) + 10, output_octets=500),
        rec("stop", 10, input_octets=(2 << 32) + 99, output_octets=900, terminate_cause="User-Request"),
    ]
    for _ in range(2):  # the second pass is a replay (NAS retransmission or spool replay)
        with db.transaction(engine) as session:
            store.apply_accounting(session, records)
    with db.transaction(engine) as session:
        [row] = store.who_had(session, "100.64.0.7", T0 + timedelta(minutes=3))
        assert (row.started_at, row.stopped_at, row.terminate_cause) == (T0, T0 + timedelta(minutes=10), "User-Request")
        assert (row.input_octets, row.output_octets, row.class_applied) == ((2 << 32) + 99, 900, "full")
        assert store.who_had(session, "100.64.0.7", T0 + timedelta(minutes=11)) == []
        assert store.who_had(session, "100.64.0.7", T0 - timedelta(seconds=1)) == []
        assert [
            r.username for r in store.who_had(session, "2001:db8:12ab::7", T0 + timedelta(minutes=1))
        ] == []  # outside the /56
        assert [r.username for r in store.who_had(session, "2001:db8:1200:ff::7", T0 + timedelta(minutes=1))] == [
            "alice@isp.example"
        ]
        assert store.active_sessions(session) == []
    engine.dispose()


def test_accounting_on_closes_the_nas_sessions_and_reuse_keeps_history(database_url: str) -> None:
    engine = db.make_engine(database_url)
    with db.transaction(engine) as session:
        store.apply_accounting(
            session, [rec("start", 0, "a"), rec("start", 1, "b"), rec("start", 1, "c", nas_address="192.0.2.99")]
        )
        store.apply_accounting(session, [rec("on", 30)])
    with db.transaction(engine) as session:
        assert [r.acct_session_id for r in store.active_sessions(session)] == ["c"]
        store.apply_accounting(session, [rec("start", 40, "a", framed_ip="100.64.0.9")])  # the NAS reuses "a"
    with db.transaction(engine) as session:
        rows = store.who_had(session, "100.64.0.9", T0 + timedelta(minutes=41))
        assert [r.acct_session_id for r in rows] == ["a"]
        assert len(store.active_sessions(session)) == 2
        deleted = store.purge_sessions(session, T0 + timedelta(minutes=35), actor="t", now=T0)
        assert deleted == 2  # the old "a" and "b", closed by Accounting-On
    engine.dispose()


def test_interim_without_start_opens_the_session_at_its_start_time(database_url: str) -> None:
    engine = db.make_engine(database_url)
    with db.transaction(engine) as session:
        store.apply_accounting(session, [rec("interim", 10, session_time=600, framed_ip="100.64.0.8")])
        [row] = store.who_had(session, "100.64.0.8", T0 + timedelta(minutes=1))
        assert row.started_at == T0 and row.stopped_at is None
    engine.dispose()


# --- through the proxy ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(freeradius_factory):  # type: ignore[no-untyped-def]
    return freeradius_factory("sessions-up", secret="up-secret")


def acct(proxy: ProxyProcess, status: str, sid: str, user: str = "alice@isp.example", extra: str = "") -> str | None:
    text = (
        f'User-Name = "{user}"\nAcct-Status-Type = {status}\nAcct-Session-Id = "{sid}"\n'
        f"NAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 100.64.0.7\n{extra}"
    )
    return parse_reply(radclient(text, proxy.acct_addr, NAS_SECRET, "acct").stdout).code


def cli_json(proxy: ProxyProcess, *args: str):  # type: ignore[no-untyped-def]
    done = proxy.op25b(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_accounting_through_the_proxy_makes_sessions(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    body = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + upstream_block("up", upstream)
    with ProxyProcess(tmp_path, body) as p:
        login = parse_reply(
            radclient('User-Name = "alice@isp.example"\nUser-Password = "alicepw"\n', p.auth_addr, NAS_SECRET).stdout
        )
        tag = next(v for k, v in login.attrs if k == "Class" and bytes.fromhex(v[2:]).startswith(b"op25b:"))
        before = datetime.now(UTC)
        assert (
            acct(p, "Start", "S-1", extra=f"Class = {tag}\nDelegated-IPv6-Prefix = 2001:db8:1200::/56\n") == "Accounting-Response"
        )
        assert (
            acct(
                p, "Interim-Update", "S-1", extra="Acct-Input-Octets = 1000\nAcct-Input-Gigawords = 1\nAcct-Output-Octets = 20\n"
            )
            == "Accounting-Response"
        )
        during = datetime.now(UTC)
        assert (
            acct(
                p,
                "Stop",
                "S-1",
                extra="Acct-Input-Octets = 2000\nAcct-Input-Gigawords = 1\nAcct-Output-Octets = 30\nAcct-Terminate-Cause = User-Request\n",
            )
            == "Accounting-Response"
        )
        after = datetime.now(UTC)
        found = wait_until(lambda: cli_json(p, "sessions", "who-had", "100.64.0.7", "--at", during.isoformat())["sessions"], 5)
        [s] = found
        assert s["username"] == "alice@isp.example" and s["class_applied"] == "full" and s["nas"] == "nas"
        assert s["input_octets"] == (1 << 32) + 2000 and s["output_octets"] == 30 and s["terminate_cause"] == "User-Request"
        assert before - timedelta(seconds=1) <= datetime.fromisoformat(s["started_at"]) <= during
        assert during <= datetime.fromisoformat(s["stopped_at"]) <= after + timedelta(seconds=1)
        later = (after + timedelta(seconds=5)).isoformat()
        assert cli_json(p, "sessions", "who-had", "100.64.0.7", "--at", later)["sessions"] == []
        v6 = cli_json(p, "sessions", "who-had", "2001:db8:1200:42::1", "--at", during.isoformat())["sessions"]
        assert [x["acct_session_id"] for x in v6] == ["S-1"]
        # Accounting-On: the NAS rebooted, its open sessions are over
        assert acct(p, "Start", "S-2") == "Accounting-Response" and acct(p, "Start", "S-3") == "Accounting-Response"
        assert wait_until(lambda: len(cli_json(p, "sessions", "active")["sessions"]) == 2, 5)
        assert acct(p, "Accounting-On", "") == "Accounting-Response"
        assert wait_until(lambda: cli_json(p, "sessions", "active")["sessions"] == [], 5)


def test_exempt_pushes_a_coa_and_unexempt_brings_the_filter_back(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    nas = NasStandIn(NAS_SECRET.encode())
    try:
        body = client_block(
            "nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False, profile="nokia-sr", coa_port=nas.port
        ) + upstream_block("up", upstream)
        with ProxyProcess(tmp_path, body) as p:
            p.op25b("subscriber", "add", "alice@isp.example")
            assert acct(p, "Start", "C-1", extra='Class = "op25b:full"\n') == "Accounting-Response"
            assert wait_until(lambda: cli_json(p, "sessions", "active")["sessions"], 5)
            assert p.op25b("subscriber", "exempt", "alice@isp.example", "--reason", "own MTA", "--for", "7d").returncode == 0
            changed = time.monotonic()  # the change is committed when the command returns
            [(at, coa, ok)] = nas.wait_for(1, 5)
            assert at - changed < 2.0 and coa.code == COA_REQUEST and ok  # authenticator verified with the NAS secret
            assert coa.attributes[0][0] == MESSAGE_AUTHENTICATOR
            assert get_first(coa.attributes, USER_NAME) == b"alice@isp.example"
            assert get_first(coa.attributes, ACCT_SESSION_ID) == b"C-1"
            assert get_first(coa.attributes, NAS_IP_ADDRESS) == bytes([127, 0, 0, 1])
            assert get_first(coa.attributes, FRAMED_IP_ADDRESS) == bytes([100, 64, 0, 7])
            assert get_first(coa.attributes, EVENT_TIMESTAMP) is not None
            vsas = [v for t, val in coa.attributes if t == 26 for v in iter_vsas((t, val))]
            assert [(vendor, vtype, value) for vendor, vtype, value in vsas] == [(6527, 134, b"Ingr-v4:-2,Ingr-v6:-2")]
            assert get_first(coa.attributes, NAS_FILTER_RULE) == b" "
            shown = wait_until(
                lambda: (
                    cli_json(p, "subscriber", "show", "alice@isp.example")["sessions"][0].get("last_push", {}).get("result")
                    == "ack"
                ),
                5,
            )
            assert shown
            assert p.op25b("subscriber", "unexempt", "alice@isp.example", "--reason", "moved to 587").returncode == 0
            received = nas.wait_for(2, 5)
            vsas = [v for t, val in received[1][1].attributes if t == 26 for v in iter_vsas((t, val))]
            assert vsas == [(6527, 134, b"Ingr-v4:2501,Ingr-v6:2501")]
    finally:
        nas.close()


def test_nak_falls_back_to_disconnect_and_silence_is_retried_then_reported(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    nas = NasStandIn(NAS_SECRET.encode(), coa="nak", disconnect="ack")
    try:
        body = client_block(
            "nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False, profile="accel-ppp", coa_port=nas.port
        ) + upstream_block("up", upstream)
        with ProxyProcess(tmp_path, body) as p:
            p.op25b("subscriber", "add", "alice@isp.example")
            assert acct(p, "Start", "N-1", extra='Class = "op25b:full"\n') == "Accounting-Response"
            assert wait_until(lambda: cli_json(p, "sessions", "active")["sessions"], 5)
            p.op25b("subscriber", "set-class", "alice@isp.example", "mobile")
            got = nas.wait_for(2, 8)
            assert [packet.code for _, packet, _ in got[:2]] == [COA_REQUEST, DISCONNECT_REQUEST]
            push = wait_until(lambda: cli_json(p, "subscriber", "show", "alice@isp.example")["sessions"][0].get("last_push"), 5)
            push = wait_until(
                lambda: (
                    (x := cli_json(p, "subscriber", "show", "alice@isp.example")["sessions"][0]["last_push"])
                    and x["status"] == "done"
                    and x
                ),
                5,
            )
            assert push["method"] == "coa-nak+disconnect" and push["result"] == "ack"
            # now the NAS goes silent: three sends of the same request, then "timeout" on record
            nas.coa = nas.disconnect = "silent"
            count = len(nas.received)
            p.op25b("subscriber", "set-class", "alice@isp.example", "full")
            got = nas.wait_for(count + 3, 10)[count:]
            assert len(got) >= 3 and len({packet for _, packet, _ in got[:3]}) == 1  # retransmissions: identical
            push = wait_until(
                lambda: (
                    (x := cli_json(p, "subscriber", "show", "alice@isp.example")["sessions"][0]["last_push"])
                    and x["result"] == "timeout"
                    and x
                ),
                10,
            )
            assert push["status"] == "pending" and push["attempts"] == 1  # to be retried with backoff
    finally:
        nas.close()


def test_two_instances_send_exactly_one_coa_per_change(tmp_path: Path, upstream, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    nas = NasStandIn(NAS_SECRET.encode())
    try:
        body = client_block(
            "nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False, profile="juniper", coa_port=nas.port
        ) + upstream_block("up", upstream)
        one = ProxyProcess(tmp_path / "one", body, database_url=postgres_url)
        two = ProxyProcess(tmp_path / "two", body, database_url=postgres_url)
        one.op25b("db", "upgrade")
        one.op25b("subscriber", "add", "bob@isp.example")
        with one, two:
            for i in range(3):
                assert (
                    acct(one if i % 2 else two, "Start", f"T-{i}", user="bob@isp.example", extra='Class = "op25b:full"\n')
                    == "Accounting-Response"
                )
            assert wait_until(lambda: len(cli_json(one, "sessions", "active", "--user", "bob@isp.example")["sessions"]) == 3, 10)
            one.op25b("subscriber", "set-class", "bob@isp.example", "mobile")
            nas.wait_for(3, 5)
            time.sleep(2.0)  # anything more would be a double send
            assert len(nas.received) == 3
            assert sorted(get_first(packet.attributes, ACCT_SESSION_ID) for _, packet, _ in nas.received) == [
                b"T-0",
                b"T-1",
                b"T-2",
            ]
    finally:
        nas.close()


def _radclient_file(path: Path, count: int, prefix: str) -> None:
    packets = [
        f'User-Name = "user{i}@isp.example"\nAcct-Status-Type = Start\nAcct-Session-Id = "{prefix}-{i}"\n'
        f"NAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}\n"
        for i in range(count)
    ]
    path.write_text("\n".join(packets))


def _flood(proxy: ProxyProcess, path: Path, retries: int = 3) -> subprocess.CompletedProcess[str]:
    assert RADCLIENT is not None
    return subprocess.run(
        [
            RADCLIENT,
            "-q",
            "-s",
            "-D",
            DICT_DIR,
            "-d",
            str(TEMPLATE_DIR),
            "-p",
            "64",
            "-r",
            str(retries),
            "-t",
            "3",
            "-f",
            str(path),
            proxy.acct_addr,
            "acct",
            NAS_SECRET,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _summary(out: str, name: str) -> int:
    for line in out.splitlines():
        if name in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise AssertionError(f"{name!r} not in radclient's summary:\n{out}")


class AcctSender:
    """A NAS sending Accounting-Requests and noting which ones were acknowledged."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
        for sock in self.socks:
            sock.setblocking(False)
        self.sent: dict[tuple[int, int], tuple[str, bytes]] = {}
        self.acked: set[str] = set()

    def _collect(self) -> None:
        for index, sock in enumerate(self.socks):
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                entry = self.sent.get((index, data[1]))
                if entry is not None and verify_reply(data, entry[1], NAS_SECRET.encode()):
                    self.acked.add(entry[0])

    def send(self, count: int, prefix: str, gap: float) -> None:
        for i in range(count):
            index, identifier = i % 16, (i // 16) % 256
            sid = f"{prefix}-{i}"
            attrs = ((USER_NAME, f"user{i}@isp.example".encode()), (40, (1).to_bytes(4, "big")), (ACCT_SESSION_ID, sid.encode()))
            wire = sign_accounting_request(Packet(4, identifier, bytes(16), attrs), NAS_SECRET.encode())
            self.sent[(index, identifier)] = (sid, wire[4:20])
            self.socks[index].sendto(wire, ("127.0.0.1", self.port))
            self._collect()
            time.sleep(gap)

    def finish(self, wait: float = 3.0) -> set[str]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self._collect()
            time.sleep(0.05)
        for sock in self.socks:
            sock.close()
        return self.acked


def test_no_accounting_lost_across_database_outage_and_sigkill(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    pg = PrivatePostgres()
    try:
        pg.start()
        body = client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False) + upstream_block("up", upstream)
        p = ProxyProcess(tmp_path / "proxy", body, database_url=pg.url)
        with p:
            pg.stop()
            _radclient_file(tmp_path / "outage.txt", 10_000, "O")
            done = _flood(p, tmp_path / "outage.txt")
            assert _summary(done.stdout, "Accepted") == 10_000 and _summary(done.stdout, "Lost") == 0, done.stdout + done.stderr
            assert p.metrics()["op25b_accounting_spool_records"] == 10_000
            pg.start()
            assert wait_until(lambda: p.metrics()["op25b_accounting_spool_records"] == 0, 120, 0.5)
            p.wait_for_log("database available again")
        counts = cli_json(p, "sessions", "active", "--limit", "20000")["sessions"]
        assert len(counts) == 10_000

        # SIGKILL mid-run: every record the NAS saw acknowledged must be in the table after a
        # restart. A Python NAS here, because it must know exactly which ones were acknowledged.
        p.start()
        nas = AcctSender(p.acct_port)
        sender = threading.Thread(target=nas.send, args=(3_000, "K", 0.0005))
        sender.start()
        time.sleep(0.6)
        p.signal(signal.SIGKILL)  # mid-run: records in flight, in the spool, half-drained
        p.proc.wait(5)  # type: ignore[union-attr]
        p.proc = None
        with p:  # the same ports: the rest of the NAS's requests reach the new process
            sender.join(120)
            acked = nas.finish()
            assert 0 < len(acked) < 3_000, len(acked)  # the kill really was mid-run

            def recorded() -> set[str]:
                rows = cli_json(p, "sessions", "active", "--limit", "20000")["sessions"]
                return {r["acct_session_id"] for r in rows if r["acct_session_id"].startswith("K-")}

            assert wait_until(lambda: acked <= recorded(), 60, 0.5), len(acked - recorded())
    finally:
        pg.destroy()


# --- what queues a push, and claiming (store level, both backends) ----------------------------------


def _jobs(engine) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from radius_op25b.store.models import CoaJob

    with db.transaction(engine) as session:
        return [(j.username_key, j.cause) for j in session.scalars(select(CoaJob).order_by(CoaJob.id))]


def _work_due(engine, at: datetime) -> bool:  # type: ignore[no-untyped-def]
    with db.reading(engine) as session:
        return store.push_work_due(session, at)


def test_every_policy_change_queues_pushes_for_open_sessions(database_url: str) -> None:
    engine = db.make_engine(database_url)
    now = datetime.now(UTC)
    assert not _work_due(engine, now)
    with db.transaction(engine) as session:
        store.apply_accounting(
            session,
            [
                rec("start", 0, "a", username="alice@isp.example"),
                rec("start", 0, "d", username="dave@isp-b.example", class_applied="mobile"),
                rec("start", 0, "x", username="gone@isp.example"),
                rec("stop", 1, "x", username="gone@isp.example"),
            ],
        )
    with db.transaction(engine) as session:
        store.add_subscriber(session, "alice@isp.example", actor="t", now=now)
        store.exempt(session, "alice@isp.example", reason="r", until=now + timedelta(seconds=1), actor="t", now=now)
        store.set_class(session, "alice@isp.example", "mobile", actor="t", now=now)
        store.add_subscriber(session, "gone@isp.example", actor="t", now=now)  # no open session: nothing
        store.add_realm(session, "isp-b.example", default_class="none", actor="t", now=now)
        store.permit_msa(session, "isp-b.example", "198.51.100.0/24", until=now + timedelta(days=1), actor="t", now=now)
        store.add_mobile_mta_block(session, "198.18.25.0/24", carrier="m", actor="t", now=now)
    assert _jobs(engine) == [
        ("alice@isp.example", "subscriber.add"),
        ("alice@isp.example", "subscriber.exempt"),
        ("alice@isp.example", "subscriber.set-class"),
        ("dave@isp-b.example", "realm.add"),
        ("dave@isp-b.example", "realm.permit-msa"),
        ("dave@isp-b.example", "mobile-mta.add"),
    ]
    later = now + timedelta(days=2)
    with db.transaction(engine) as session:
        assert store.queue_expired(session, later) == 2  # the exemption and the permit, once each
        assert store.queue_expired(session, later) == 0
    assert _jobs(engine)[-2:] == [("alice@isp.example", "exemption.expired"), ("dave@isp-b.example", "msa-permit.expired")]
    with db.transaction(engine) as session:
        first = store.claim_pushes(session, later)
    with db.transaction(engine) as session:
        second = store.claim_pushes(session, later)
    assert len(first) == 8 and second == []  # claimed jobs are not handed out twice
    assert not _work_due(engine, later)  # all leased, nothing expired unswept: the worker's cheap probe
    with db.transaction(engine) as session:  # an exemption that expires is work, until swept
        store.add_subscriber(session, "carol@isp.example", actor="t", now=later)
        store.exempt(session, "carol@isp.example", reason="r", until=later + timedelta(seconds=1), actor="t", now=later)
    assert not _work_due(engine, later) and _work_due(engine, later + timedelta(seconds=2))
    with db.transaction(engine) as session:
        store.queue_expired(session, later + timedelta(seconds=2))
    assert not _work_due(engine, later + timedelta(seconds=2))
    assert _work_due(engine, later + timedelta(minutes=2))  # the leases have run out
    with db.transaction(engine) as session:
        assert len(store.claim_pushes(session, later + timedelta(minutes=2))) == 8  # an expired lease is taken again
    engine.dispose()


def test_sessions_purge_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radius_op25b.cli import main

    url = f"sqlite:///{tmp_path / 'op25b.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    old = datetime.now(UTC) - timedelta(days=200)
    with db.transaction(engine) as session:
        store.apply_accounting(
            session,
            [
                AccountingRecord("start", old.timestamp(), "n", "192.0.2.1", "old", "u@x"),
                AccountingRecord("stop", old.timestamp() + 60, "n", "192.0.2.1", "old", "u@x"),
                AccountingRecord("start", old.timestamp(), "n", "192.0.2.1", "open", "u@x"),
            ],
        )
    config = tmp_path / "op25b.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    out: list[str] = []
    assert main(["-c", str(config), "sessions", "purge", "--older-than", "180d", "--json"], out=out.append) == 0
    assert json.loads(out[0])["deleted"] == 1  # the open one stays, however old
    assert main(["-c", str(config), "sessions", "who-had", "not-an-ip"]) == 2  # a malformed value
    assert "is not an IP address" in capsys.readouterr().err
    engine.dispose()
