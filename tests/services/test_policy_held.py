"""What `op25b serve` holds in memory instead of asking the database per Access-Accept: exactly
the subscribers not decided like an unknown one, kept current by the watcher. Each test runs on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from radius_op25b import store
from radius_op25b.core import decision as d
from radius_op25b.core.config import ClientConfig, Config, Secret
from radius_op25b.radius import CLASS, FRAMED_IP_ADDRESS
from radius_op25b.services.policy import PolicyService
from radius_op25b.store import db
from tests.support.processes import wait_until

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

# username -> (what is done to it, held in memory?)
CASES: dict[str, tuple[dict[str, object], bool]] = {
    "plain@isp.example": ({}, False),
    "Mixed.Case@ISP.Example": ({}, False),
    "norealm": ({}, False),
    "moved@isp.example": ({"realm": "partner.example"}, True),
    "same@isp.example": ({"realm": "ISP.example"}, False),  # stored lower-cased: its own realm
    "wild@ispxb.example": ({"realm": "isp_b.example"}, True),  # '_' must not act as a wildcard
    "deep@a@b.example": ({"realm": "a.b.example"}, True),  # the name's realm is b.example
    "bare": ({"realm": "isp.example"}, True),
    "static@isp.example": ({"static": ["198.51.100.7"]}, True),
    "override@isp.example": ({"class": "mobile"}, True),
    "exempt@isp.example": ({"exempt_for": timedelta(days=30)}, True),
    "forever@isp.example": ({"exempt_for": None}, True),
    "twice@isp.example": ({"exempt_for": timedelta(days=30), "again_for": timedelta(days=60)}, True),
    "expired@isp.example": ({"exempt_for": timedelta(minutes=30)}, False),  # held only until expiry
    "revoked@isp.example": ({"exempt_for": timedelta(days=30), "unexempt": True}, False),
}


def _populate(engine, now: datetime) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        store.add_realm(s, "isp.example", actor="t", now=now, default_class="full")
        store.add_realm(s, "partner.example", actor="t", now=now, default_class="mobile")
        store.permit_msa(s, "isp.example", "192.0.2.25/32", until=now + timedelta(days=60), actor="t", now=now)
        for name, (what, _) in CASES.items():
            store.add_subscriber(
                s,
                name,
                actor="t",
                now=now,
                realm=what.get("realm"),
                static_addresses=what.get("static", ()),
                class_override=what.get("class"),
            )  # type: ignore[arg-type]
            if "exempt_for" in what:
                span = what["exempt_for"]
                store.exempt(s, name, reason="own MTA", until=now + span if span else None, actor="t", now=now)  # type: ignore[operator]
            if "again_for" in what:
                store.exempt(s, name, reason="still own MTA", until=now + what["again_for"], actor="t", now=now, extend=True)  # type: ignore[operator]
            if what.get("unexempt"):
                store.unexempt(s, name, reason="done", actor="t", now=now)


def test_held_subscribers_are_exactly_those_not_decided_by_default(database_url: str) -> None:
    engine = db.make_engine(database_url)
    _populate(engine, NOW)
    later = NOW + timedelta(hours=1)  # the short exemption has expired by then
    with db.reading(engine) as s:
        held = store.special_subscriber_views(s, later)
        realms = store.realm_views(s)
    assert sorted(held) == sorted(store.username_key(n) for n, (_, h) in CASES.items() if h)
    # one active exemption: the second grant moved the end of the first (--extend)
    [twice] = held["twice@isp.example"].exemptions
    assert (twice.reason, twice.expires_at) == ("own MTA", NOW + timedelta(days=60))

    # The proof that matters: for every subscriber, deciding from what is held (None for the
    # rest) gives the same class, kind and partner permits as deciding from the full record.
    # Held at `later`, or loaded at NOW and decided an hour later (the short exemption expired
    # in between, while held).
    with db.reading(engine) as s:
        held_earlier = store.special_subscriber_views(s, NOW)
    settings = d.Settings()
    for name in CASES:
        key = store.username_key(name)
        with db.transaction(engine) as s:
            full_view, realm = store.policy_inputs(s, name)
        request = d.Request(name, ipaddress.ip_address("100.64.0.1"))
        a = d.decide(request, full_view, realm, settings, later)
        for source in (held, held_earlier):
            mine = source.get(key)
            realm_name = d.realm_name(mine, key)
            b = d.decide(request, mine, realms.get(realm_name) if realm_name else None, settings, later)
            assert (a.filter_class, a.reason_kind, a.realm, a.msa_permits) == (
                b.filter_class,
                b.reason_kind,
                b.realm,
                b.msa_permits,
            ), name
    engine.dispose()


# --- the watcher, in process --------------------------------------------------------------------


def _job(username: str) -> SimpleNamespace:
    client = ClientConfig("nas", ipaddress.ip_network("127.0.0.1/32"), Secret("s"))
    return SimpleNamespace(username=username, client=client)


def _tag(service: PolicyService, username: str) -> str:
    attrs = service.rewrite_accept(_job(username), ((FRAMED_IP_ADDRESS, bytes([100, 64, 0, 1])),))
    return next(v.decode() for t, v in attrs if t == CLASS)


@pytest.fixture
def service(database_url: str) -> Iterator[tuple[PolicyService, object]]:
    engine = db.make_engine(database_url)
    now = datetime.now(UTC)
    _populate(engine, now)
    policy = PolicyService(Config(database_url=database_url), engine)
    policy.start()
    yield policy, engine
    policy.close()
    engine.dispose()


def test_loaded_at_start_then_each_change_is_followed(service) -> None:  # type: ignore[no-untyped-def]
    policy, engine = service
    assert policy.loaded
    expected = {store.username_key(n) for n, (_, h) in CASES.items() if h} | {"expired@isp.example"}  # not yet
    assert sorted(policy.special) == sorted(expected)
    assert _tag(policy, "plain@isp.example") == "op25b:full"
    assert _tag(policy, "moved@isp.example") == "op25b:mobile"  # partner.example's default
    assert _tag(policy, "static@isp.example") == "op25b:none"
    assert _tag(policy, "nobody@isp.example") == "op25b:full"

    now = datetime.now(UTC)
    with db.transaction(engine) as s:
        store.exempt(s, "plain@isp.example", reason="own MTA", until=None, actor="t", now=now)
        store.set_dynamic(s, "static@isp.example", actor="t", now=now)
    assert wait_until(
        lambda: _tag(policy, "plain@isp.example") == "op25b:none" and _tag(policy, "static@isp.example") == "op25b:full", 5
    )
    assert "plain@isp.example" in policy.special and "static@isp.example" not in policy.special

    with db.transaction(engine) as s:
        store.unexempt(s, "plain@isp.example", reason="done", actor="t", now=now)
    assert wait_until(lambda: "plain@isp.example" not in policy.special, 5)
    assert _tag(policy, "plain@isp.example") == "op25b:full"


def test_bulk_changes_reload_everything(service) -> None:  # type: ignore[no-untyped-def]
    policy, engine = service
    now = datetime.now(UTC)
    parsed = store.parse_import("new1@isp.example,,static,198.51.100.9,,\nnew2@isp.example,,dynamic,,,\n", "t.csv", header=False)
    with db.transaction(engine) as s:
        store.apply_import(s, store.plan_import(s, parsed), actor="t", now=now)
    assert wait_until(lambda: "new1@isp.example" in policy.special, 5)
    assert "new2@isp.example" not in policy.special  # imported, but decided by default
    assert _tag(policy, "new1@isp.example") == "op25b:none"

    with db.transaction(engine) as s:  # a realm's default changes everyone in it
        store.add_realm(s, "isp-m.example", actor="t", now=now, default_class="mobile")
    assert wait_until(lambda: _tag(policy, "someone@isp-m.example") == "op25b:mobile", 5)


def test_a_change_notified_during_the_heartbeat_is_applied(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a NOTIFY that arrives while the watcher's SELECT 1 runs is read by that
    query; it must be applied then, not wait for some later, unrelated notification."""
    import select as real

    from radius_op25b.store import notify

    engine = db.make_engine(postgres_url)
    user = f"beat-{time.monotonic_ns()}@isp.example"
    with db.transaction(engine) as s:
        store.add_subscriber(s, user, actor="t", now=datetime.now(UTC))
    changed = threading.Event()

    def select_then_change(r, w, x, timeout):  # type: ignore[no-untyped-def]
        ready = real.select(r, w, x, timeout)
        if ready == ([], [], []) and not changed.is_set():
            changed.set()  # committed after select() gave up, before the heartbeat query
            with db.transaction(engine) as s:
                store.exempt(s, user, reason="own MTA", until=None, actor="t", now=datetime.now(UTC))
            time.sleep(0.2)  # the notification is in the socket now: SELECT 1 will read it
        return ready

    monkeypatch.setattr(notify, "select", SimpleNamespace(select=select_then_change))
    monkeypatch.setattr(notify, "HEARTBEAT", 0.05)
    policy = PolicyService(Config(database_url=postgres_url), engine)
    policy.start()
    try:
        assert changed.wait(5)
        assert wait_until(lambda: store.username_key(user) in policy.special, 3)
    finally:
        policy.close()
        with db.transaction(engine) as s:
            store.unexempt(s, user, reason="done", actor="t", now=datetime.now(UTC))
        engine.dispose()


def test_started_before_the_schema_exists_then_loads_once_upgraded(tmp_path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'late.db'}"
    engine = db.make_engine(url)
    policy = PolicyService(Config(database_url=url), engine)
    with caplog.at_level("ERROR", logger="op25b.policy"):
        policy.start()
        try:
            assert not policy.loaded
            assert _tag(policy, "anyone@isp.example") == "op25b:full"  # on_database_error = default
            assert "cannot load the policy (SchemaOutOfDate)" in caplog.text and "op25b db upgrade" in caplog.text
            db.upgrade(engine)
            assert wait_until(lambda: policy.loaded, 5)
        finally:
            policy.close()
            engine.dispose()
