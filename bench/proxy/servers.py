"""The servers a run starts: the upstream FreeRADIUS, B (FreeRADIUS proxying with one rlm_sql
query per Accept, deploy/freeradius-sql-proxy/) and A (`op25b serve`).  Every server started is
in LIVE until stopped; `stop_all` is the run's last line of defence."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Protocol

from bench.common import REPO_ROOT, op25b_command
from bench.proxy.subscribers import NAS_SECRET
from tests.support import processes
from tests.support.freeradius import FreeRadiusInstance
from tests.support.ports import free_tcp_port, free_udp_port

SQL_PROXY_TEMPLATE = REPO_ROOT / "deploy" / "freeradius-sql-proxy"


class Stoppable(Protocol):
    def stop(self) -> None: ...


LIVE: list[Stoppable] = []


def stop_all() -> None:
    """Stop every server still running, newest first."""
    while LIVE:
        LIVE.pop().stop()


def recv_buffer() -> int:
    """UDP receive buffer for FreeRADIUS' listen sockets: 8 MiB like op25b's, capped by rmem_max
    (FreeRADIUS uses plain SO_RCVBUF, which the kernel silently caps there)."""
    try:
        return min(8 * 1024 * 1024, int(Path("/proc/sys/net/core/rmem_max").read_text()))
    except (OSError, ValueError):
        return 8 * 1024 * 1024


def udp_ports() -> tuple[int, int]:
    """Two distinct free UDP ports (auth, acct)."""
    auth, acct = free_udp_port(), free_udp_port()
    while acct == auth:
        acct = free_udp_port()
    return auth, acct


class FreeRadius(FreeRadiusInstance):
    """A FreeRADIUS process of the tests' harness, kept in LIVE while it runs."""

    def start(self) -> FreeRadius:
        super().start()
        LIVE.append(self)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self in LIVE:
            LIVE.remove(self)
        super().stop(timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Upstream(FreeRadius):
    """deploy/freeradius (the tests' upstream), rendered as is, then in the copy: no per-request
    auth log line, and a large UDP receive buffer (so bursts are not dropped by the kernel)."""

    def render(self) -> Path:
        conf = super().render()
        radiusd = conf / "radiusd.conf"
        body = radiusd.read_text()
        for key in ("auth", "auth_badpass", "auth_goodpass"):
            body = re.sub(rf"(?m)^(\s*{key}\s*=\s*)yes", r"\1no", body)
        radiusd.write_text(body)
        site = conf / "sites" / "default"
        body, count = re.subn(r"(?m)^(\s*)proto = udp$", rf"\g<0>\n\1recv_buff = {recv_buffer()}", site.read_text())
        if count != 2:
            raise RuntimeError(f"{site}: expected 2 listen sections with proto = udp, found {count}")
        site.write_text(body)
        return conf


class SqlProxy(FreeRadius):
    """B: deploy/freeradius-sql-proxy rendered into run_dir/raddb (see its README.md)."""

    def __init__(self, tmp_dir: Path, *, upstream: FreeRadiusInstance, database: str, threads: int, sql_pool: int) -> None:
        auth_port, acct_port = udp_ports()
        super().__init__("sqlproxy", auth_port, acct_port, NAS_SECRET, None, tmp_dir, start_timeout=20.0)
        self.values = {
            "@CONFDIR@": str(self.conf_dir),
            "@RUNDIR@": str(self.run_dir),
            "@AUTH_PORT@": str(auth_port),
            "@ACCT_PORT@": str(acct_port),
            "@SECRET@": NAS_SECRET,
            "@UPSTREAM_ADDR@": "127.0.0.1",
            "@UPSTREAM_AUTH_PORT@": str(upstream.auth_port),
            "@UPSTREAM_ACCT_PORT@": str(upstream.acct_port),
            "@UPSTREAM_SECRET@": upstream.secret,
            "@SQL_SERVER@": "127.0.0.1",
            "@SQL_PORT@": "5432",
            "@SQL_LOGIN@": "postgres",
            "@SQL_PASSWORD@": "",
            "@SQL_DB@": database,
            "@THREADS@": str(threads),
            "@THREADS_START@": str(max(1, threads // 2)),
            "@SQL_POOL@": str(sql_pool),
            "@SQL_POOL_START@": str(max(1, sql_pool // 2)),
            "@RECV_BUFF@": str(recv_buffer()),
        }

    def render(self) -> Path:
        conf = self.conf_dir
        if conf.exists():
            shutil.rmtree(conf)
        conf.mkdir(parents=True)
        os.chmod(self.run_dir, 0o700)
        pattern = re.compile("|".join(re.escape(k) for k in self.values))
        for src in sorted(SQL_PROXY_TEMPLATE.rglob("*")):
            rel = src.relative_to(SQL_PROXY_TEMPLATE)
            if rel.name == "README.md":
                continue
            dst = conf / rel
            if src.is_dir():
                dst.mkdir(exist_ok=True)
                continue
            dst.write_text(pattern.sub(lambda m: self.values[m.group(0)], src.read_text()))
            os.chmod(dst, 0o640)
        return conf


class Op25bServe:
    """A: `op25b serve` with a config of our own (one client 127.0.0.1, generic, metrics off)."""

    def __init__(
        self,
        run_dir: Path,
        database_url: str,
        upstream: FreeRadiusInstance,
        metrics: bool = False,
        workers: int = 1,
    ) -> None:
        self.dir = run_dir
        self.workers = workers
        run_dir.mkdir(parents=True, exist_ok=True)
        self.auth_port, self.acct_port = udp_ports()
        self.config = run_dir / "op25b.toml"
        self.log = run_dir / "op25b.log"
        self.metrics_port = free_tcp_port() if metrics else None
        metrics_section = f'\n[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n' if self.metrics_port else ""
        self.config.write_text(
            f'[database]\nurl = "{database_url}"\n\n'
            f'[server]\nauth_listen = "127.0.0.1:{self.auth_port}"\nacct_listen = "127.0.0.1:{self.acct_port}"\n'
            f"{metrics_section}\n"
            f'[[clients]]\nname = "bench"\naddress = "127.0.0.1"\nsecret = "{NAS_SECRET}"\nprofile = "generic"\n'
            f"require_message_authenticator = false\n\n"
            f'[[upstreams]]\nname = "upstream"\naddress = "127.0.0.1"\nauth_port = {upstream.auth_port}\n'
            f'acct_port = {upstream.acct_port}\nsecret = "{upstream.secret}"\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def auth_addr(self) -> str:
        return f"127.0.0.1:{self.auth_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Op25bServe:
        args = [*op25b_command(), "-c", str(self.config), "serve"]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = processes.spawn(args, self.log, new_session=True)
        LIVE.append(self)
        deadline = time.monotonic() + timeout
        while "serving auth on" not in self.log.read_text(errors="replace")[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"op25b serve did not start:\n{tail}")
            time.sleep(0.05)
        return self

    def metrics(self) -> dict[str, float]:
        """Prometheus samples (name with labels -> value); {} when metrics are off."""
        if not self.metrics_port:
            return {}
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        body = urllib.request.urlopen(url, timeout=10).read().decode()
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if self in LIVE:
            LIVE.remove(self)
        processes.stop(proc, timeout=15)
