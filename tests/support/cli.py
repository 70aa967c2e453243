"""Running `op25b` in-process for tests: the config template, the injected clock, and a runner
that checks the one-line error contract and snapshots every table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from radius_op25b.cli import main
from radius_op25b.store.models import Base

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALICE = "alice@isp.example"


class Op25b:
    """Runs the CLI with a config pointing at the test database and an injected clock."""

    def __init__(self, config: Path, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.config, self.url, self.capsys = config, url, capsys

    def __call__(self, *args: str, now: datetime = NOW, expect: int = 0) -> list[str]:
        out: list[str] = []
        self.capsys.readouterr()
        code = main(["-c", str(self.config), *args], now=now, out=out.append)
        err = self.capsys.readouterr().err
        assert code == expect, f"exit {code}, stderr: {err}"
        if expect:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), err
            return lines
        return out

    def json(self, *args: str, now: datetime = NOW) -> Any:
        return json.loads(self(*args, "--json", now=now)[0])

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        engine = create_engine(self.url)
        with engine.connect() as conn:
            data = {t.name: sorted(map(tuple, conn.execute(select(t)).all()), key=repr) for t in Base.metadata.sorted_tables}
        engine.dispose()
        return data


CONFIG = """
[database]
url = "{url}"

[policy]
default_class = "full"
static_pools = ["203.0.113.0/24"]

[[clients]]
name = "bng1"
address = "192.0.2.10"
secret = "s3cret"
profile = "juniper"

[[clients]]
name = "legacy"
address = "192.0.2.0/28"
secret = "s3cret"
profile = "generic"
enforce = false

[[upstreams]]
name = "aaa1"
address = "127.0.0.1"
secret = "up"
"""
