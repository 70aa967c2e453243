"""`op25b web` as a real process on a free 127.0.0.1 port with a given config; started so it dies
with pytest, ready once it answers HTTP, stopped by its PID. Also: a table snapshot that tells
whether a refused request changed anything, and `op25b` run in this process with the real clock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from radius_op25b.cli import main
from radius_op25b.store.models import Base
from tests.support import processes
from tests.support.ports import free_tcp_port

#: Bookkeeping an authenticated request writes whatever its outcome (when a token was last used).
BOOKKEEPING = {"api_tokens": {"last_used_at"}}


class WebProcess:
    """`python -m radius_op25b -c CONFIG web [--listen 127.0.0.1:PORT]`, its stdout and stderr in `log_path`."""

    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        *,
        port: int | None = None,
        listen_option: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """`listen_option=False`: no --listen, the config's [web] listen must name 127.0.0.1:`port`;
        `extra_args` follow `web` (e.g. --log-level debug)."""
        self.config_path, self.log_path = Path(config_path), Path(log_path)
        self.port = port or free_tcp_port()
        self.listen_option, self.extra_args = listen_option, extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> WebProcess:
        args = [sys.executable, "-m", "radius_op25b", "-c", str(self.config_path), "web"]
        if self.listen_option:
            args += ["--listen", f"127.0.0.1:{self.port}"]
        args += self.extra_args
        self.proc = processes.spawn(args, self.log_path, death_signal="KILL")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"op25b web exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/openapi.json", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"op25b web did not answer within {timeout}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        return processes.stop(proc, timeout=10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return processes.read_text(self.log_path)

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=kw.pop("timeout", 30.0), **kw)

    def __enter__(self) -> WebProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def snapshot(url: str, *, ignore: dict[str, set[str]] = BOOKKEEPING) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (sorted), without the `ignore`d columns."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            data = {}
            for table in Base.metadata.sorted_tables:
                columns = [c for c in table.columns if c.name not in ignore.get(table.name, set())]
                data[table.name] = sorted(map(tuple, conn.execute(select(*columns)).all()), key=repr)
            return data
    finally:
        engine.dispose()


class Cli:
    """`op25b -c CONFIG ...` in this process (`main`) with the real clock; its stdout lines."""

    def __init__(self, config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config_path, self.capsys = Path(config_path), capsys
        self.errors: list[str] = []  # every stderr text seen, for "no secret on stderr" checks

    def __call__(self, *args: str, expect: int = 0) -> list[str]:
        out: list[str] = []
        self.capsys.readouterr()
        code = main(["-c", str(self.config_path), *args], out=out.append)
        captured = self.capsys.readouterr()
        self.errors.append(captured.err)
        assert code == expect, f"exit {code}, stderr: {captured.err}"
        return out + captured.out.splitlines()

    def token(self, name: str, *extra: str) -> str:
        lines = self("staff", "token", name, *extra)
        assert len(lines) == 1 and lines[0].startswith("op25b_"), lines
        return lines[0]
