"""A database URL in an error names no fragment of its password, whatever the password holds."""

from __future__ import annotations

import pytest

from radius_op25b.cli import main

PASSWORDS = ["p@ss:w0rdX", "s3cr@t:xyzQ", "s3cr@tQQ", "pa:ss/wordZ", "a@b@c@dddd"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("rest", ["db.example/x", "127.0.0.1:1/x", "127.0.0.1:99999/x"])
def test_no_password_fragment_in_the_error(password: str, rest: str, monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OP25B_CONFIG", raising=False)
    monkeypatch.setenv("OP25B_DATABASE_URL", f"postgresql+psycopg2://op25b:{password}@{rest}")
    assert main(["subscriber", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    fragments = {password[i : i + 4] for i in range(len(password) - 3)}
    assert not [f for f in fragments if f in err], err
