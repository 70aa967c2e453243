"""The house rules a reader expects, run with the suite: ruff (lint and format) over the tree,
mypy --strict over the wire and core layers (both configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint() -> None:
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr


def test_ruff_format() -> None:
    done = _run("ruff", "format", "--no-cache", "--check", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr


def test_mypy_on_the_wire_and_core_layers() -> None:
    done = _run("mypy", "--no-incremental")
    assert done.returncode == 0 and "Success" in done.stdout, done.stdout[-4000:] + done.stderr
