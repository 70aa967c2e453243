"""Run `op25b serve` as a real process on 127.0.0.1 with a config the test writes.

The proxy listens on free ports, logs to a file, and is stopped by its PID (SIGTERM,
then SIGKILL) at teardown; `metrics()` scrapes its Prometheus endpoint.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import processes
from tests.support.ports import free_tcp_port, free_udp_port


class ProxyProcess:
    def __init__(self, tmp_dir: Path, body: str, *, database_url: str | None = None, serve_args: tuple[str, ...] = ()) -> None:
        self.serve_args = serve_args
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.auth_port, self.acct_port = free_udp_port(), free_udp_port()
        self.metrics_port = free_tcp_port()
        self.database_url = database_url or f"sqlite:///{self.dir / 'op25b.db'}"
        self.config_path = self.dir / "op25b.toml"
        self.log_path = self.dir / "op25b.log"
        self.write_config(body)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def auth_addr(self) -> str:
        return f"127.0.0.1:{self.auth_port}"

    @property
    def acct_addr(self) -> str:
        return f"127.0.0.1:{self.acct_port}"

    def write_config(self, body: str) -> None:
        head = (
            f'[database]\nurl = "{self.database_url}"\n\n'
            f'[server]\nauth_listen = "127.0.0.1:{self.auth_port}"\nacct_listen = "127.0.0.1:{self.acct_port}"\n\n'
            f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n\n'
        )
        self.config_path.write_text(head + body)

    def op25b(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "radius_op25b", "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, timeout: float = 15.0, upgrade: bool = True) -> ProxyProcess:
        if upgrade:
            done = self.op25b("db", "upgrade")
            assert done.returncode == 0, done.stderr
        args = [
            sys.executable,
            "-m",
            "radius_op25b",
            "-c",
            str(self.config_path),
            "serve",
            "--log-level",
            "info",
            *self.serve_args,
        ]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = processes.spawn(args, self.log_path, death_signal="KILL")
        deadline = time.monotonic() + timeout
        while "serving auth on" not in self.log_text()[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"op25b serve did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        return processes.stop(proc, timeout=10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return processes.read_text(self.log_path)

    def wait_for_log(self, text: str, timeout: float = 10.0, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text()[after:]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def rss_kib(self) -> int:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]

    def metrics(self) -> dict[str, float]:
        """Sample name with labels -> value, e.g. 'op25b_drops_total{cause="malformed"}'."""
        return self.metrics_of(0)

    def metrics_of(self, worker: int) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port + worker}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def upstream_block(name: str, fr, **extra: object) -> str:  # type: ignore[no-untyped-def]
    lines = [
        "[[upstreams]]",
        f'name = "{name}"',
        'address = "127.0.0.1"',
        f"auth_port = {fr.auth_port}",
        f"acct_port = {fr.acct_port}",
        f'secret = "{fr.secret}"',
    ]
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


def client_block(name: str, address: str, secret: str, **extra: object) -> str:
    lines = ["[[clients]]", f'name = "{name}"', f'address = "{address}"', f'secret = "{secret}"']
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)
