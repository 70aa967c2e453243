"""The support desk's daily work through `op25b` (issue 11), on SQLite and the real PostgreSQL:
time-boxed exemptions, the commands agents were missing, one static owner, readable output, and
two agents at once."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from radius_op25b.core.config import load_config
from radius_op25b.errors import Conflict
from radius_op25b.services.desk import Desk
from radius_op25b.store import db
from radius_op25b.store.models import AcctSession
from tests.support.cli import ALICE, NOW, Op25b

BOB = "bob@isp.example"


def open_session(
    url: str, username: str, *, nas: str = "bng1", address: str = "192.0.2.10", ip: str = "100.64.0.9", applied: str = "full"
) -> None:
    """An open accounting session, as `serve` records one (tests/cli/test_live_effect.py does it over the wire)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(AcctSession).values(
                nas_name=nas,
                nas_address=address,
                acct_session_id=f"sess-{username}",
                username=username,
                username_key=username.lower(),
                framed_ip=ip,
                class_applied=applied,
                started_at=NOW - timedelta(hours=1),
                updated_at=NOW - timedelta(hours=1),
                input_octets=0,
                output_octets=0,
            )
        )
    engine.dispose()


# --- 1. exemptions are time-boxed ----------------------------------------------------------------


def test_exempt_needs_an_end_and_reads_a_date_as_that_date(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE)
    before = op25b.snapshot()
    [line] = op25b("subscriber", "exempt", ALICE, "--reason", "own MTA", expect=2)
    assert "one of the arguments --until --for --permanent is required" in line
    assert op25b.snapshot() == before
    out = op25b("subscriber", "exempt", ALICE, "--reason", "own MTA", "--until", "2027-01-31")
    assert out[0] == f"{ALICE}: exempt until 2027-01-31, end of day UTC"
    shown = op25b("subscriber", "show", ALICE)[0]
    assert "exemption (active): until 2027-01-31, end of day UTC, by" in shown
    assert op25b.json("policy", "explain", ALICE, "--at", "2027-01-31T23:59")["class"] == "none"
    assert op25b.json("policy", "explain", ALICE, "--at", "2027-02-01T00:00")["class"] == "full"


def test_one_active_exemption_and_extend_is_audited(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE)
    op25b("subscriber", "exempt", ALICE, "--reason", "own MTA", "--for", "30d")
    before = op25b.snapshot()
    [line] = op25b("subscriber", "exempt", ALICE, "--reason", "again", "--for", "7d", expect=1)
    assert "is already exempt (until 2026-12-31 09:00 UTC" in line and "--extend" in line
    assert op25b.snapshot() == before
    out = op25b("subscriber", "exempt", ALICE, "--reason", "contract renewed", "--until", "2027-03-31", "--extend")
    assert out[0] == f"{ALICE}: exemption moved until 2027-03-31, end of day UTC"
    shown = op25b.json("subscriber", "show", ALICE)
    assert [ex["active"] for ex in shown["exemptions"]] == [True]
    [entry] = op25b.json("audit", "--action", "subscriber.exempt-extend")["entries"]
    assert entry["reason"] == "contract renewed"
    assert (entry["before"]["expires_at"], entry["after"]["expires_at"]) == (
        "2026-12-31T09:00:00+00:00",
        "2027-04-01T00:00:00+00:00",
    )
    text = op25b("audit", "--action", "subscriber.exempt-extend")[0]
    assert "contract renewed" in text and "expires_at: 2026-12-31T09:00:00+00:00 -> 2027-04-01T00:00:00+00:00" in text
    [line] = op25b("subscriber", "exempt", BOB, "--reason", "x", "--for", "1d", "--extend", expect=1)
    assert "no subscriber 'bob@isp.example'" in line


def test_max_exemption_caps_the_length_and_forbids_permanent(op25b: Op25b) -> None:
    op25b.config.write_text(
        op25b.config.read_text().replace('default_class = "full"', 'default_class = "full"\nmax_exemption = "90d"')
    )
    op25b("subscriber", "add", ALICE)
    before = op25b.snapshot()
    [line] = op25b("subscriber", "exempt", ALICE, "--reason", "x", "--permanent", expect=2)
    assert "policy.max_exemption is 90d: a permanent exemption is not allowed" in line
    [line] = op25b("subscriber", "exempt", ALICE, "--reason", "x", "--for", "91d", expect=2)
    assert "longer than policy.max_exemption (90d from now)" in line
    assert op25b.snapshot() == before
    op25b("subscriber", "exempt", ALICE, "--reason", "x", "--for", "90d")


def test_permanent_exemption_is_explicit(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE)
    out = op25b("subscriber", "exempt", ALICE, "--reason", "carrier's own relay", "--permanent")
    assert out[0] == f"{ALICE}: exempt permanent (no expiry)"
    listed = op25b("exemptions", "list")[0].splitlines()
    assert listed[0].split() == ["USERNAME", "ENDS", "GRANTED", "BY", "GRANTED", "REASON"]
    assert ALICE in listed[1] and "permanent (no expiry)" in listed[1]


def test_exemptions_list_expiring_within(op25b: Op25b) -> None:
    for user, length in ((ALICE, "3d"), (BOB, "30d"), ("carol@isp.example", "10d")):
        op25b("subscriber", "add", user)
        op25b("subscriber", "exempt", user, "--reason", f"for {length}", "--for", length)
    assert [e["username"] for e in op25b.json("exemptions", "list")["exemptions"]] == [ALICE, "carol@isp.example", BOB]
    soon = op25b.json("exemptions", "list", "--expiring-within", "14d")
    assert [e["username"] for e in soon["exemptions"]] == [ALICE, "carol@isp.example"]
    assert op25b("exemptions", "list", "--expiring-within", "1d") == ["(no exemptions ending within 1d)"]


# --- 2. live effect said out loud -----------------------------------------------------------------


def test_a_change_says_what_happens_to_live_sessions(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE)
    op25b("subscriber", "add", BOB)
    open_session(op25b.url, ALICE)  # bng1: juniper, CoA-capable
    open_session(op25b.url, BOB, nas="legacy", address="192.0.2.1", applied="none")  # generic, enforce = false
    out = op25b("subscriber", "set-class", ALICE, "mobile")
    assert out[1] == "1 live session on bng1 gets a CoA (the filter changes without a reconnect)"
    got = op25b.json("subscriber", "set-class", ALICE, "default")
    assert got["live_sessions"] == [{"nas": "bng1", "acct_session_id": f"sess-{ALICE}", "username": ALICE, "method": "coa"}]
    assert got["at_next_login"] is False
    # juniper's CoA cannot take a filter away: an exemption reaches the session by Disconnect
    out = op25b("subscriber", "exempt", ALICE, "--reason", "x", "--for", "1d")
    assert out[1].startswith("1 live session on bng1 will be DISCONNECTED (profile juniper has no CoA remove)")
    held = op25b.json("subscriber", "unexempt", ALICE, "--reason", "done", "--at-next-login")
    assert held["at_next_login"] is True and [p["method"] for p in held["live_sessions"]] == ["next-login"]
    assert op25b("subscriber", "set-note", ALICE, "called 12:03") == [f"{ALICE}: note 'called 12:03'"]
    assert op25b("subscriber", "set-note", BOB, "x")[1:] == []  # a note pushes nothing and says nothing of it
    # legacy does not enforce: BOB's class does not change (none), so nothing is sent
    out = op25b("subscriber", "exempt", BOB, "--reason", "x", "--for", "1d")
    assert out[1] == "1 live session on legacy needs no push (the filter stays as it is)"


def test_a_generic_nas_disconnects_and_says_so(op25b: Op25b) -> None:
    op25b.config.write_text(op25b.config.read_text().replace("enforce = false", "enforce = true"))
    op25b("subscriber", "add", BOB)
    open_session(op25b.url, BOB, nas="legacy", address="192.0.2.1")
    out = op25b("subscriber", "exempt", BOB, "--reason", "x", "--for", "1d")
    assert out[1] == (
        "1 live session on legacy will be DISCONNECTED (profile generic has no CoA remove): "
        "the customer reconnects and gets the new filter"
    )


# --- 3. the missing commands ----------------------------------------------------------------------


def test_delete_set_realm_and_realm_delete(op25b: Op25b) -> None:
    op25b("realm", "add", "isp-b.example", "--class", "mobile")
    op25b("subscriber", "add", ALICE, "--static", "192.0.2.50")
    op25b("subscriber", "set-realm", ALICE, "isp-b.example")
    assert op25b.json("policy", "explain", ALICE)["reason"] == "static subscriber (192.0.2.50)"
    before = op25b.snapshot()
    [line] = op25b("realm", "delete", "isp-b.example", expect=1)
    assert "realm 'isp-b.example' has 1 subscriber(s); move them first" in line
    assert op25b.snapshot() == before
    op25b("subscriber", "set-realm", ALICE, "default")
    assert op25b.json("subscriber", "show", ALICE)["realm"] == "isp.example"
    assert op25b("realm", "delete", "isp-b.example")[0] == "deleted realm isp-b.example"
    [line] = op25b("subscriber", "delete", ALICE, expect=2)
    assert "--reason" in line
    assert op25b("subscriber", "delete", ALICE, "--reason", "contract ended")[0] == f"deleted {ALICE}"
    op25b("subscriber", "show", ALICE, expect=1)
    [entry] = op25b.json("audit", "--action", "subscriber.delete")["entries"]
    assert entry["reason"] == "contract ended" and entry["before"]["static_addresses"] == ["192.0.2.50"]
    # the address is free again
    op25b("subscriber", "add", BOB, "--static", "192.0.2.50")


def test_revoke_msa_and_remove_mobile_mta(op25b: Op25b) -> None:
    op25b("realm", "add", "isp-b.example", "--model", "B")
    op25b("realm", "permit-msa", "isp-b.example", "198.51.100.0/24", "--until", "2027-03-31")
    op25b("mobile-mta", "add", "198.18.25.0/24", "--carrier", "mobile-x")
    [line] = op25b("realm", "revoke-msa", "isp-b.example", "198.51.101.0/24", expect=1)
    assert "no MSA(25) permit for 198.51.101.0/24 (permits: 198.51.100.0/24)" in line
    assert op25b("realm", "revoke-msa", "isp-b.example", "198.51.100.0/24")[0].endswith("198.51.100.0/24 revoked")
    assert op25b.json("realm", "show", "isp-b.example")["msa_permits"] == []
    assert op25b("mobile-mta", "remove", "198.18.25.0/24")[0] == "removed mobile MTA block 198.18.25.0/24 (mobile-x)"
    op25b("mobile-mta", "remove", "198.18.25.0/24", expect=1)
    assert op25b("mobile-mta", "list") == ["(no blocks)"]
    actions = [e["action"] for e in op25b.json("audit", "--since", "2026-12-01T00:00")["entries"]]
    assert actions == ["realm.add", "realm.permit-msa", "mobile-mta.add", "realm.revoke-msa", "mobile-mta.remove"]
    assert [e["action"] for e in op25b.json("audit", "--action", "realm")["entries"]][-1] == "realm.revoke-msa"
    [line] = op25b("audit", "--action", "subscriber.exmept", expect=2)
    assert "did you mean 'subscriber.exempt'?" in line


def test_find_by_ip_static_owner_open_and_last_session(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE, "--static", "203.0.113.7")
    open_session(op25b.url, BOB, ip="100.64.0.9")
    found = op25b.json("subscriber", "find", "--ip", "203.0.113.7")
    assert found["static_owner"] == ALICE and found["open_sessions"] == [] and found["last_session"] is None
    found = op25b.json("subscriber", "find", "--ip", "100.64.0.9")
    assert found["static_owner"] is None and [s["username"] for s in found["open_sessions"]] == [BOB]
    text = op25b("subscriber", "find", "--ip", "100.64.0.9")[0]
    assert f"open session: {BOB} on bng1/sess-{BOB}" in text and "static owner: nobody" in text
    [line] = op25b("subscriber", "find", "--ip", "100.64.0.999", expect=2)
    assert "is not an IP address" in line


def test_list_pages_and_says_how_many(op25b: Op25b) -> None:
    for i in range(12):
        op25b("subscriber", "add", f"u{i:02d}@isp.example")
    text = op25b("subscriber", "list", "--limit", "5", "--offset", "5")[0].splitlines()
    assert text[0].split() == ["USERNAME", "REALM", "IP", "TYPE", "CLASS", "EXEMPT"]
    assert [row.split()[0] for row in text[1:6]] == [f"u{i:02d}@isp.example" for i in range(5, 10)]
    assert text[-1] == "5 of 12 shown (6-10; next page: --offset 10)"
    assert op25b("subscriber", "list")[0].splitlines()[-1] == "12 of 12 shown"
    data = op25b.json("subscriber", "list", "--limit", "3")
    assert (len(data["subscribers"]), data["total"]) == (3, 12)
    for bad in ("0", "-1", "10000000000000000000000", "many"):
        op25b("subscriber", "list", "--limit", bad, expect=2)


# --- 5. one static address, one subscriber --------------------------------------------------------


def test_a_static_address_has_one_owner(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE, "--static", "203.0.113.7", "2001:db8::7")
    op25b("subscriber", "add", BOB)
    before = op25b.snapshot()
    [line] = op25b("subscriber", "set-static", BOB, "203.0.113.8", "203.0.113.7", expect=1)
    assert line == f"error: static address 203.0.113.7 already belongs to subscriber '{ALICE}'; one address, one subscriber"
    [line] = op25b("subscriber", "add", "carol@isp.example", "--static", "2001:DB8:0::7", expect=1)
    assert "static address 2001:db8::7 already belongs to subscriber" in line
    assert op25b.snapshot() == before
    op25b("subscriber", "set-static", ALICE, "203.0.113.7")  # its own address again: fine
    op25b("subscriber", "set-static", BOB, "2001:db8::7")  # freed by ALICE's change
    assert op25b.json("subscriber", "find", "--ip", "2001:db8::7")["static_owner"] == BOB


# --- 8. readable output, options anywhere ---------------------------------------------------------


def test_global_options_before_or_after_the_subcommand(op25b: Op25b, capsys: pytest.CaptureFixture[str]) -> None:
    from radius_op25b.cli import main

    out: list[str] = []
    assert (
        main(["subscriber", "add", ALICE, "-c", str(op25b.config), "--actor", "agent7", "--json"], now=NOW, out=out.append) == 0
    )
    assert '"username": "alice@isp.example"' in out[0]
    assert main(["--json", "audit", "--config", str(op25b.config)], now=NOW, out=out.append) == 0
    assert '"actor": "agent7"' in out[1]
    assert main(["subscriber", "-c", str(op25b.config), "show", ALICE], now=NOW, out=out.append) == 0
    assert out[2].startswith(ALICE)


def test_audit_text_has_reason_and_before_after(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE, "--actor", "agent7")
    op25b("subscriber", "set-static", ALICE, "203.0.113.9", "--actor", "agent8")
    op25b("subscriber", "exempt", ALICE, "--reason", "runs own MTA", "--for", "7d")
    lines = op25b("audit", "--user", ALICE)[0].splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "VIA", "ACTION", "TARGET", "REASON", "CHANGE"]
    assert "agent8" in lines[2] and "ip_type: dynamic -> static; static_addresses: [] -> [203.0.113.9]" in lines[2]
    assert "runs own MTA" in lines[3]
    assert "?" not in "\n".join(lines)
    assert len(op25b.json("audit", "--since", "2026-12-01T09:00")["entries"]) == 3
    assert op25b.json("audit", "--since", "2026-12-01T09:00:01")["entries"] == []


# --- 7. concurrent staff, one truth ------------------------------------------------------------------


def test_two_agents_revoking_at_once_one_wins(op25b: Op25b) -> None:
    """Agent A holds the subscriber locked mid-change while agent B tries: B waits, then is told
    it is already revoked; one audit row, and A's times are read after its lock."""
    op25b("subscriber", "add", ALICE)
    op25b("subscriber", "exempt", ALICE, "--reason", "x", "--for", "30d")
    config = load_config(str(op25b.config))
    locked, released = threading.Event(), threading.Event()
    calls = {"a": 0}
    change_time = NOW + timedelta(minutes=5)

    def clock_a() -> datetime:
        calls["a"] += 1
        if calls["a"] == 2:  # the read after the lock: hold the lock a while
            locked.set()
            time.sleep(0.6)
            return change_time
        return NOW

    errors: dict[str, Exception] = {}

    def agent(name: str, clock: object) -> None:
        engine = db.make_engine(config.database_url)
        try:
            Desk(config, engine, actor=name, clock=clock).unexempt(ALICE, reason=f"by {name}")  # type: ignore[arg-type]
        except Exception as exc:
            errors[name] = exc
        finally:
            engine.dispose()
            released.set()

    a = threading.Thread(target=agent, args=("agent-a", clock_a))
    a.start()
    assert locked.wait(10)
    b = threading.Thread(target=agent, args=("agent-b", lambda: NOW + timedelta(minutes=1)))
    b.start()
    a.join(15)
    b.join(15)
    assert "agent-a" not in errors, errors
    assert isinstance(errors.get("agent-b"), Conflict) and "already revoked" in str(errors["agent-b"])
    entries = op25b.json("audit", "--action", "subscriber.unexempt")["entries"]
    assert [(e["actor"], e["at"]) for e in entries] == [("agent-a", change_time.isoformat())]
    [ex] = op25b.json("subscriber", "show", ALICE)["exemptions"]
    assert (ex["revoked_by"], ex["revoked_at"]) == ("agent-a", change_time.isoformat())
    [line] = op25b("subscriber", "unexempt", ALICE, "--reason", "again", expect=1)
    assert "already revoked (at 2026-12-01 09:05:00 UTC by agent-a)" in line


def test_the_clock_is_read_when_the_change_is_made(op25b: Op25b) -> None:
    config = load_config(str(op25b.config))
    engine = db.make_engine(config.database_url)
    desk = Desk(config, engine, actor="agent")
    desk.add_subscriber(ALICE)
    start = datetime.now(UTC)
    time.sleep(0.05)
    result = desk.exempt(ALICE, reason="x", duration="1d")
    engine.dispose()
    assert datetime.fromisoformat(result.data["created_at"]) > start


# --- 4. CSV import a provisioning system can trust ---------------------------------------------------


def test_import_dry_run_update_stdin_and_audit_per_subscriber(
    op25b: Op25b, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    op25b("subscriber", "add", ALICE, "--note", "old")
    path = tmp_path / "prov.csv"
    path.write_text(f"note;username;class\nnew note;{ALICE};mobile\n;{BOB};\nx;carol@isp.example;partial\n")
    before = op25b.snapshot()
    out = op25b("subscriber", "import", str(path), "--dry-run", "--update")
    assert out[0].splitlines() == [
        f"line 3: add {BOB}",
        f"line 2: change {ALICE}: class_override: - -> mobile; note: old -> new note",
        "line 4: REFUSED carol@isp.example: unknown class 'partial' (choose full, mobile, none)",
        f"{path}: 1 to add, 1 to change, 0 unchanged, 1 refused (dry run: nothing written)",
    ]
    [line] = op25b("subscriber", "import", str(path), "--update", expect=2)
    assert "1 line(s) refused, nothing imported: line 4: unknown class 'partial'" in line
    assert op25b.snapshot() == before
    path.write_text(f"note;username;class\nnew note;{ALICE};mobile\n;{BOB};\n")
    [line] = op25b("subscriber", "import", str(path), expect=1)
    assert f"line 2: subscriber '{ALICE}' already exists (give --update to change it)" in line
    out = op25b("subscriber", "import", str(path), "--update")
    assert out[0] == f"imported {path}: 1 added, 1 changed, 0 unchanged"
    assert op25b.json("subscriber", "show", ALICE)["class_override"] == "mobile"
    [entry] = op25b.json("audit", "--user", BOB)["entries"]
    assert (entry["action"], entry["reason"]) == ("subscriber.import", str(path))
    assert op25b.json("audit", "--user", ALICE)["entries"][-1]["action"] == "subscriber.import-update"
    # standard input, with the documented order
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"dave@isp.example,,static,203.0.113.44,,\n")))
    assert op25b("subscriber", "import", "-", "--no-header")[0] == "imported -: 1 added, 0 changed, 0 unchanged"
    assert op25b.json("subscriber", "find", "--ip", "203.0.113.44")["static_owner"] == "dave@isp.example"
