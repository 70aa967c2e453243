"""The `op25b` runner fixture of the CLI tests (tests/support/cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import CONFIG, Op25b


@pytest.fixture
def op25b(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> Op25b:
    config = tmp_path / "op25b.toml"
    config.write_text(CONFIG.format(url=database_url))
    return Op25b(config, database_url, capsys)
