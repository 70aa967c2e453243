"""The OP25B filter in the Access-Accept, end to end: radclient (FreeRADIUS's dictionaries) ->
`op25b serve` -> FreeRADIUS, with the subscriber database on SQLite or PostgreSQL.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.postgres import PrivatePostgres
from tests.support.radclient import parse_reply, radclient

NAS_SECRET = "nas-secret"
USERS = """
alice@isp.example	Cleartext-Password := "alicepw"
	Framed-IP-Address = 100.64.0.7,
	Session-Timeout = 3600,
	Class = "upstream-class-alice",
	Cisco-AVPair = "subscriber:sub-qos-policy-in=GOLD",
	ERX-Egress-Policy-Name = "SHAPE-100M",
	Filter-Id = "UPSTREAM-FILTER"

bob@isp.example	Cleartext-Password := "bobpw"
	Framed-IP-Address = 203.0.113.25,
	Class = "upstream-class-bob"

carol@isp.example	Cleartext-Password := "carolpw"
	Framed-IP-Address = 100.64.0.8

dave@isp-m.example	Cleartext-Password := "davepw"
	Framed-IP-Address = 100.64.1.9
"""
POLICY = '[policy]\nstatic_pools = ["203.0.113.0/24"]\n\n'

# What radclient prints for each profile (values as FreeRADIUS's dictionaries decode them).
FULL = {
    "generic": [("Filter-Id", "OP25B-FULL")],
    "huawei": [("Filter-Id", "OP25B-FULL")],
    "rfc4849": [("NAS-Filter-Rule", "deny in 6 from any to any 25")],
    "accel-ppp": [("NAS-Filter-Rule", "deny in 6 from any to any 25")],
    "cisco-ios": [("Cisco-AVPair", "ip:inacl#1=deny tcp any any eq 25"), ("Cisco-AVPair", "ip:inacl#2=permit ip any any")],
    "cisco-xr": [("Cisco-AVPair", "ipv4:inacl=OP25B-FULL"), ("Cisco-AVPair", "ipv6:ipv6_inacl=OP25B-FULL-V6")],
    "juniper": [("ERX-Ingress-Policy-Name", "OP25B-FULL"), ("ERX-IPv6-Ingress-Policy-Name", "OP25B-FULL-V6")],
    "nokia-sr": [("Alc-Subscriber-Filter", "Ingr-v4:2501,Ingr-v6:2501")],
    "mikrotik": [("Mikrotik-Address-List", "OP25B-FULL")],
}
MOBILE = {
    "generic": [("Filter-Id", "OP25B-MOBILE")],
    "huawei": [("Filter-Id", "OP25B-MOBILE")],
    "rfc4849": [("NAS-Filter-Rule", "deny in 6 from any to 198.18.25.0/24 25")],
    "accel-ppp": [("NAS-Filter-Rule", "deny in 6 from any to 198.18.25.0/24 25")],
    "cisco-ios": [
        ("Cisco-AVPair", "ip:inacl#1=deny tcp any 198.18.25.0 0.0.0.255 eq 25"),
        ("Cisco-AVPair", "ip:inacl#2=permit ip any any"),
    ],
    "cisco-xr": [("Cisco-AVPair", "ipv4:inacl=OP25B-MOBILE"), ("Cisco-AVPair", "ipv6:ipv6_inacl=OP25B-MOBILE-V6")],
    "juniper": [("ERX-Ingress-Policy-Name", "OP25B-MOBILE"), ("ERX-IPv6-Ingress-Policy-Name", "OP25B-MOBILE-V6")],
    "nokia-sr": [("Alc-Subscriber-Filter", "Ingr-v4:2502,Ingr-v6:2502")],
    "mikrotik": [("Mikrotik-Address-List", "OP25B-MOBILE")],
}
FILTER_NAMES = {
    "Filter-Id",
    "NAS-Filter-Rule",
    "Cisco-AVPair",
    "ERX-Ingress-Policy-Name",
    "ERX-IPv6-Ingress-Policy-Name",
    "Alc-Subscriber-Filter",
    "Mikrotik-Address-List",
}
UPSTREAM_KEPT = [
    ("Framed-IP-Address", "100.64.0.7"),
    ("Session-Timeout", "3600"),
    ("Class", "0x" + b"upstream-class-alice".hex()),
]


def login(proxy: ProxyProcess, user: str, password: str):  # type: ignore[no-untyped-def]
    reply = parse_reply(radclient(f'User-Name = "{user}"\nUser-Password = "{password}"\n', proxy.auth_addr, NAS_SECRET).stdout)
    assert reply.code == "Access-Accept", reply
    return reply


def filters(reply) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """The filter attributes of an Accept, without the upstream's own that a profile leaves alone."""
    upstream_own = {("Cisco-AVPair", "subscriber:sub-qos-policy-in=GOLD"), ("Filter-Id", "UPSTREAM-FILTER")}
    return [(k, v) for k, v in reply.attrs if k in FILTER_NAMES and (k, v) not in upstream_own]


def op25b_tag(reply) -> str:  # type: ignore[no-untyped-def]
    tags = [bytes.fromhex(v[2:]).decode() for v in reply.all("Class") if bytes.fromhex(v[2:]).startswith(b"op25b:")]
    assert len(tags) == 1, reply.all("Class")
    return tags[0]


@pytest.fixture(scope="module")
def upstream(freeradius_factory):  # type: ignore[no-untyped-def]
    return freeradius_factory("policy-up", secret="up-secret", users_text=USERS)


def test_every_profile_on_the_wire(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    def body(profile: str) -> str:
        return (
            POLICY
            + client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False, profile=profile)
            + upstream_block("up", upstream)
        )

    p = ProxyProcess(tmp_path, body("generic"))
    for command in (
        ["subscriber", "add", "alice@isp.example"],
        ["subscriber", "add", "carol@isp.example"],
        ["subscriber", "exempt", "carol@isp.example", "--reason", "runs own MTA", "--for", "30d"],
        ["realm", "add", "isp-m.example", "--class", "mobile"],
        ["mobile-mta", "add", "198.18.25.0/24", "--carrier", "mobile-x"],
    ):
        p.op25b("db", "upgrade")
        done = p.op25b(*command)
        assert done.returncode == 0, done.stderr
    with p:
        for profile in FULL:
            p.write_config(body(profile))
            mark = len(p.log_text())
            p.signal(signal.SIGHUP)
            p.wait_for_log("reloaded", after=mark)
            alice = login(p, "alice@isp.example", "alicepw")
            assert filters(alice) == FULL[profile], profile
            assert op25b_tag(alice) == "op25b:full"
            for kept in UPSTREAM_KEPT:
                assert kept in alice.attrs, (profile, kept)
            # vendor attributes the profile does not own arrive unchanged
            assert ("ERX-Egress-Policy-Name", "SHAPE-100M") in alice.attrs
            assert ("Cisco-AVPair", "subscriber:sub-qos-policy-in=GOLD") in alice.attrs
            # the upstream's Filter-Id survives where Filter-Id is not the profile's filter
            assert (("Filter-Id", "UPSTREAM-FILTER") in alice.attrs) == (profile not in ("generic", "huawei")), profile
            bob = login(p, "bob@isp.example", "bobpw")  # Framed-IP in the static pool
            assert filters(bob) == [] and op25b_tag(bob) == "op25b:none"
            carol = login(p, "carol@isp.example", "carolpw")  # exempt
            assert filters(carol) == [] and op25b_tag(carol) == "op25b:none"
            dave = login(p, "dave@isp-m.example", "davepw")  # realm default mobile
            assert filters(dave) == MOBILE[profile] and op25b_tag(dave) == "op25b:mobile"


def _wait_for_class(p: ProxyProcess, user: str, password: str, wanted: str, within: float) -> float:
    start = time.monotonic()
    while True:
        tag = op25b_tag(login(p, user, password))
        if tag == wanted:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"{p.auth_addr}: still {tag} after {within}s"
        time.sleep(0.1)


def test_cli_changes_reach_two_instances_on_one_postgres(tmp_path: Path, upstream, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    body = (
        POLICY
        + client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
        + upstream_block("up", upstream)
    )
    one = ProxyProcess(tmp_path / "one", body, database_url=postgres_url)
    two = ProxyProcess(tmp_path / "two", body, database_url=postgres_url)
    user = "alice@isp.example"
    one.op25b("db", "upgrade")
    one.op25b("subscriber", "add", user)
    with one, two:
        held = {}  # other tests share this database: count relative to the start
        for p in (one, two):
            assert filters(login(p, user, "alicepw")) == FULL["generic"]  # alice is decided by default
            held[p] = p.metrics()["op25b_policy_subscribers_held"]
        done = one.op25b("subscriber", "exempt", user, "--reason", "runs own MTA", "--for", "1d")
        assert done.returncode == 0, done.stderr
        time.sleep(2.0)
        for p in (one, two):
            reply = login(p, user, "alicepw")
            assert filters(reply) == [] and op25b_tag(reply) == "op25b:none"
            assert p.metrics()["op25b_policy_subscribers_held"] == held[p] + 1  # now she is an exception
        assert two.op25b("subscriber", "unexempt", user, "--reason", "moved to 587").returncode == 0
        time.sleep(2.0)
        for p in (one, two):
            assert filters(login(p, user, "alicepw")) == FULL["generic"]
            assert p.metrics()["op25b_policy_subscribers_held"] == held[p]


def test_database_outage_keeps_logins_flowing(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    pg = PrivatePostgres()
    try:
        pg.start()
        body = (
            POLICY
            + client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
            + upstream_block("up", upstream)
        )
        p = ProxyProcess(tmp_path, body, database_url=pg.url)
        p.op25b("db", "upgrade")
        p.op25b("subscriber", "add", "carol@isp.example")
        p.op25b("subscriber", "exempt", "carol@isp.example", "--reason", "own MTA", "--for", "30d")
        with p:
            assert op25b_tag(login(p, "carol@isp.example", "carolpw")) == "op25b:none"
            pg.stop()
            for _ in range(5):
                # decided from what the proxy loaded: carol still exempt, alice by default (full)
                assert op25b_tag(login(p, "carol@isp.example", "carolpw")) == "op25b:none"
                assert op25b_tag(login(p, "alice@isp.example", "alicepw")) == "op25b:full"
            p.wait_for_log("database unavailable, deciding from the subscribers loaded before")
            assert p.metrics().get("op25b_database_errors_total", 0) >= 1
            pg.start()
            assert p.op25b("subscriber", "unexempt", "carol@isp.example", "--reason", "fixed").returncode == 0
            took = _wait_for_class(p, "carol@isp.example", "carolpw", "op25b:full", within=15)
            assert took < 15
            assert p.alive
    finally:
        pg.destroy()


def test_database_down_at_start(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    """`serve` starts without its database and relays with policy.on_database_error; once the
    database answers, the subscribers' own decisions apply, with no restart."""
    pg = PrivatePostgres()
    try:
        pg.start()
        body = (
            '[policy]\non_database_error = "none"\n\n'
            + client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
            + upstream_block("up", upstream)
        )
        p = ProxyProcess(tmp_path, body, database_url=pg.url)
        assert p.op25b("db", "upgrade").returncode == 0
        assert p.op25b("subscriber", "add", "carol@isp.example").returncode == 0
        assert p.op25b("subscriber", "exempt", "carol@isp.example", "--reason", "own MTA", "--for", "30d").returncode == 0
        pg.stop()
        p.start(upgrade=False)
        try:
            p.wait_for_log("serving with policy.on_database_error until it answers")
            for user, password in (("alice@isp.example", "alicepw"), ("carol@isp.example", "carolpw")):
                reply = login(p, user, password)  # relayed, never rejected
                assert filters(reply) == [] and op25b_tag(reply) == "op25b:none"
            assert p.metrics().get('op25b_decisions_total{class="none",reason="database-error"}') == 2
            pg.start()
            took = _wait_for_class(p, "alice@isp.example", "alicepw", "op25b:full", within=15)
            assert took < 15
            assert op25b_tag(login(p, "carol@isp.example", "carolpw")) == "op25b:none"  # exempt, from the load
            p.wait_for_log("database available again")
            assert p.metrics()["op25b_policy_subscribers_held"] == 1
        finally:
            p.stop()
    finally:
        pg.destroy()


def test_metrics_move(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    body = (
        POLICY
        + client_block("nas", "127.0.0.1", NAS_SECRET, require_message_authenticator=False)
        + upstream_block("up", upstream)
    )
    with ProxyProcess(tmp_path, body) as p:
        before = p.metrics()
        login(p, "alice@isp.example", "alicepw")
        login(p, "alice@isp.example", "alicepw")
        login(p, "bob@isp.example", "bobpw")
        after = p.metrics()

        def delta(name: str) -> float:
            return after.get(name, 0) - before.get(name, 0)

        assert delta('op25b_requests_total{client="nas",type="auth"}') == 3
        assert delta('op25b_replies_total{client="nas",type="auth"}') == 3
        assert delta('op25b_decisions_total{class="full",reason="default"}') == 2
        assert delta('op25b_decisions_total{class="none",reason="static-pool"}') == 1
        assert after.get("op25b_policy_subscribers_held") == 0  # nobody in this database
        assert after.get('op25b_upstream_up{upstream="up"}') == 1.0
        assert delta('op25b_upstream_rtt_seconds_count{upstream="up"}') == 3
