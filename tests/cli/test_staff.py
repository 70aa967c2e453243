"""`op25b staff`: staff members with roles, their passwords (argon2id) and API tokens (printed once,
alone on stdout; only the SHA-256 stored); list, disable, revoke-tokens; an audit row for each.
Both backends, through `radius_op25b.cli.main`."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from radius_op25b.cli import main
from radius_op25b.services.staff import Member, StaffService
from radius_op25b.store import db
from radius_op25b.store.models import ApiToken, Staff
from tests.support.cli import NOW, Op25b

PASSWORD = "correct horse battery staple"
ACTOR = "root-operator"


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def add(op25b: Op25b, monkeypatch: pytest.MonkeyPatch, name: str, role: str = "agent", password: str | None = PASSWORD) -> Any:
    if password is None:
        return op25b.json("staff", "add", name, "--role", role, "--actor", ACTOR)
    stdin(monkeypatch, password + "\n")
    return op25b.json("staff", "add", name, "--role", role, "--password-stdin", "--actor", ACTOR)


def token_of(op25b: Op25b, name: str, *extra: str) -> str:
    lines = op25b("staff", "token", name, "--actor", ACTOR, *extra)
    assert len(lines) == 1, lines
    return lines[0]


def who(url: str, token: str) -> Member | None:
    engine = db.make_engine(url)
    try:
        return StaffService(engine, actor="test", clock=lambda: NOW).for_token(token)
    finally:
        engine.dispose()


def cells(snapshot: dict[str, list[tuple[Any, ...]]]) -> list[tuple[str, str]]:
    """(table, cell as text) for every cell of every table, JSON cells as their JSON text."""
    found = []
    for name, rows in snapshot.items():
        for row in rows:
            for value in row:
                text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
                found.append((name, text))
    return found


def staff_audit(op25b: Op25b) -> list[dict[str, Any]]:
    return op25b.json("audit", "--action", "staff")["entries"]


# --- add -------------------------------------------------------------------------------------------


def test_add_with_a_password_from_stdin(op25b: Op25b, monkeypatch: pytest.MonkeyPatch) -> None:
    stdin(monkeypatch, PASSWORD + "\n")
    assert op25b("staff", "add", "Ann", "--role", "agent", "--password-stdin") == ["added staff member ann (agent)"]
    data = add(op25b, monkeypatch, "viv", role="viewer", password=None)
    assert (data["name"], data["role"], data["has_password"], data["disabled_at"], data["tokens"]) == (
        "viv",
        "viewer",
        False,
        None,
        0,
    )
    stdin(monkeypatch, "")
    assert op25b("staff", "add", "bob", "--role", "admin") == ["added staff member bob (admin); no password: tokens only"]

    engine = create_engine(op25b.url)
    with engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(select(Staff)).all()}
    engine.dispose()
    assert set(rows) == {"ann", "viv", "bob"}
    assert rows["ann"].role == "agent" and rows["ann"].password_hash.startswith("$argon2id$")
    assert PASSWORD not in rows["ann"].password_hash
    assert rows["viv"].password_hash is None and rows["bob"].password_hash is None

    # the password signs in; another does not; a member without a password never signs in
    engine = db.make_engine(op25b.url)
    staff = StaffService(engine, actor="test", clock=lambda: NOW)
    assert staff.sign_in("ANN", PASSWORD) == Member("ann", "agent")
    assert staff.sign_in("ann", PASSWORD + "x") is None
    assert staff.sign_in("viv", PASSWORD) is None
    engine.dispose()


def test_add_refusals(op25b: Op25b, monkeypatch: pytest.MonkeyPatch) -> None:
    add(op25b, monkeypatch, "ann")
    before = op25b.snapshot()
    stdin(monkeypatch, "short\n")
    [line] = op25b("staff", "add", "carl", "--role", "agent", "--password-stdin", expect=2)
    assert "shorter than 12 characters" in line and "short" not in line.replace("shorter", "")
    stdin(monkeypatch, "\n")
    [line] = op25b("staff", "add", "carl", "--role", "agent", "--password-stdin", expect=2)
    assert "no password" in line
    stdin(monkeypatch, "x" * 1025 + "\n")
    op25b("staff", "add", "carl", "--role", "agent", "--password-stdin", expect=2)
    stdin(monkeypatch, PASSWORD + "\n")
    [line] = op25b("staff", "add", "ANN", "--role", "viewer", "--password-stdin", expect=1)  # names are case-insensitive
    assert "already exists" in line and PASSWORD not in line
    [line] = op25b("staff", "add", "carl", "--role", "root", expect=2)
    assert "root" in line
    op25b("staff", "add", "carl", expect=2)  # --role is required
    for bad in ("a b", "a/b", "a@b", "a:b", ""):
        op25b("staff", "add", bad, "--role", "viewer", expect=2)
    assert op25b.snapshot() == before


# --- tokens ------------------------------------------------------------------------------------------


def test_token_is_printed_once_alone_on_stdout_and_stored_as_its_sha256(
    op25b: Op25b, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add(op25b, monkeypatch, "ann")
    out: list[str] = []
    capsys.readouterr()
    code = main(["-c", str(op25b.config), "staff", "token", "ann", "--actor", ACTOR], now=NOW, out=out.append)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert len(out) == 1 and captured.out == "", (out, captured.out)
    token = out[0]
    assert token.startswith("op25b_") and len(token) >= 6 + 43 and token.strip() == token
    # stderr says what was issued, by its prefix only
    assert token not in captured.err and token[12:] not in captured.err
    assert captured.err.strip() == (
        f"token {token[:12]}... for ann, valid until 2027-03-01 09:00 UTC; it is shown only this once"
    ), captured.err

    snap = op25b.snapshot()
    engine = create_engine(op25b.url)
    with engine.connect() as conn:
        [row] = conn.execute(select(ApiToken)).all()
    engine.dispose()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() != token
    assert row.prefix == token[:12]
    assert row.expires_at == NOW + timedelta(days=90) and row.revoked_at is None
    # no table holds the token (nor its secret part) or the password
    for table, text in cells(snap):
        assert token not in text and token[12:] not in text, (table, text)
        assert PASSWORD not in text, (table, text)
    assert who(op25b.url, token) == Member("ann", "agent")
    assert who(op25b.url, token + "x") is None and who(op25b.url, token[:-1]) is None
    assert who(op25b.url, hashlib.sha256(token.encode()).hexdigest()) is None  # the stored hash is not a token


def test_token_validity(op25b: Op25b, monkeypatch: pytest.MonkeyPatch) -> None:
    add(op25b, monkeypatch, "ann", password=None)
    week = token_of(op25b, "ann", "--for", "7d")
    forever = token_of(op25b, "ann", "--no-expiry")
    data = op25b.json("staff", "token", "ann", "--for", "12h")  # --json: the token in the document, on stdout
    assert set(data) == {"name", "prefix", "expires_at", "valid_for", "token"}
    assert data["name"] == "ann" and data["token"].startswith(data["prefix"]) and data["valid_for"] == "12h"
    assert data["expires_at"] == (NOW + timedelta(hours=12)).isoformat()
    assert len({week, forever, data["token"]}) == 3
    engine = db.make_engine(op25b.url)
    later = StaffService(engine, actor="t", clock=lambda: NOW + timedelta(days=8))
    assert later.for_token(week) is None and later.for_token(data["token"]) is None
    assert later.for_token(forever) == Member("ann", "agent")
    engine.dispose()
    before = op25b.snapshot()
    op25b("staff", "token", "nobody", expect=1)
    op25b("staff", "token", "ann", "--for", "30 days", expect=2)
    op25b("staff", "token", "ann", "--for", "7d", "--no-expiry", expect=2)
    assert op25b.snapshot() == before


# --- list, disable, revoke-tokens ---------------------------------------------------------------------


def test_list_text_and_json(op25b: Op25b, monkeypatch: pytest.MonkeyPatch) -> None:
    assert op25b("staff", "list") == ["(no staff)"]
    assert op25b.json("staff", "list") == {"staff": []}
    add(op25b, monkeypatch, "ann")
    add(op25b, monkeypatch, "zed", role="admin", password=None)
    add(op25b, monkeypatch, "viv", role="viewer", password=None)
    token_of(op25b, "ann")
    token_of(op25b, "ann")
    op25b("staff", "disable", "viv")
    [text] = op25b("staff", "list")
    assert text.splitlines() == [
        "NAME  ROLE    STATE     TOKENS  PASSWORD",
        "ann   agent   active    2       yes",
        "viv   viewer  disabled  0       no",
        "zed   admin   active    0       no",
    ], text
    data = op25b.json("staff", "list")
    assert [(m["name"], m["role"], m["tokens"], m["has_password"], m["disabled_at"]) for m in data["staff"]] == [
        ("ann", "agent", 2, True, None),
        ("viv", "viewer", 0, False, NOW.isoformat()),
        ("zed", "admin", 0, False, None),
    ]
    assert all(set(m) == {"name", "role", "created_at", "disabled_at", "has_password", "tokens"} for m in data["staff"])


def test_disable_stops_the_tokens(op25b: Op25b, monkeypatch: pytest.MonkeyPatch) -> None:
    add(op25b, monkeypatch, "ann")
    add(op25b, monkeypatch, "bob", password=None)
    first, second = token_of(op25b, "ann"), token_of(op25b, "ann")
    other = token_of(op25b, "bob")
    assert who(op25b.url, first) == who(op25b.url, second) == Member("ann", "agent")
    assert op25b("staff", "disable", "ann") == ["disabled ann; their tokens are revoked"]
    assert who(op25b.url, first) is None and who(op25b.url, second) is None
    assert who(op25b.url, other) == Member("bob", "agent")  # others' tokens keep working
    engine = db.make_engine(op25b.url)
    assert StaffService(engine, actor="t", clock=lambda: NOW).sign_in("ann", PASSWORD) is None
    engine.dispose()
    before = op25b.snapshot()
    [line] = op25b("staff", "disable", "ann", expect=1)
    assert "already disabled" in line
    [line] = op25b("staff", "token", "ann", expect=1)
    assert "disabled" in line
    op25b("staff", "disable", "nobody", expect=1)
    assert op25b.snapshot() == before


def test_revoke_tokens(op25b: Op25b, monkeypatch: pytest.MonkeyPatch) -> None:
    add(op25b, monkeypatch, "ann")
    old = [token_of(op25b, "ann") for _ in range(3)]
    assert op25b("staff", "revoke-tokens", "ann") == ["revoked 3 token(s) of ann"]
    assert all(who(op25b.url, t) is None for t in old)
    assert op25b.json("staff", "revoke-tokens", "ann") == {"name": "ann", "revoked": 0}
    new = token_of(op25b, "ann")  # the member is not disabled: a new token works
    assert who(op25b.url, new) == Member("ann", "agent")
    assert all(who(op25b.url, t) is None for t in old)
    op25b("staff", "revoke-tokens", "nobody", expect=1)


# --- the audit log -------------------------------------------------------------------------------------


def test_every_staff_action_is_audited_without_secrets(op25b: Op25b, monkeypatch: pytest.MonkeyPatch) -> None:
    add(op25b, monkeypatch, "ann")
    token = token_of(op25b, "ann")
    op25b("staff", "revoke-tokens", "ann", "--actor", ACTOR)
    op25b("staff", "disable", "ann", "--actor", "other-root")
    entries = staff_audit(op25b)
    assert [(e["action"], e["target"], e["actor"], e["via"]) for e in entries] == [
        ("staff.add", "staff:ann", ACTOR, "cli"),
        ("staff.token", "staff:ann", ACTOR, "cli"),
        ("staff.revoke-tokens", "staff:ann", ACTOR, "cli"),
        ("staff.disable", "staff:ann", "other-root", "cli"),
    ], entries
    assert entries[0]["after"]["has_password"] is True and entries[0]["after"]["role"] == "agent"
    assert entries[1]["after"] == {"prefix": token[:12], "expires_at": (NOW + timedelta(days=90)).isoformat()}
    assert entries[2]["after"] == {"revoked": 1}
    assert entries[3]["before"]["disabled_at"] is None and entries[3]["after"]["disabled_at"] == NOW.isoformat()
    text = json.dumps(entries)
    assert token not in text and token[12:] not in text and PASSWORD not in text
    # refusals write no audit row
    op25b("staff", "disable", "ann", expect=1)
    op25b("staff", "token", "ann", expect=1)
    assert len(staff_audit(op25b)) == 4
