"""deploy/op25b.service with deploy/op25b.toml, run as systemd would run them, without systemd.

The unit's ExecStart (the venv's `op25b` for /opt/op25b/venv/bin/op25b) runs as an unprivileged
user (uid/gid 65534, no groups, no new privileges) under the unit's UMask and, when the unit
says MemoryDenyWriteExecute=yes, under the kernel's same rule (prctl PR_SET_MDWE, Linux 6.3+);
its EnvironmentFile is deploy/op25b.env.example; the config directory is read-only. Only the
paths /etc/op25b and /var/lib/op25b are moved to temporary ones, the listeners to free loopback
ports, the first client to 127.0.0.1 and the first upstream to a FreeRADIUS instance. Then
`db upgrade` and `serve`: Status-Server, an Access-Request and an Accounting-Request answered,
and nothing it wrote readable by others.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.freeradius import FreeRadiusInstance
from tests.support.ports import free_tcp_port, free_udp_port
from tests.support.processes import SETPRIV, read_text, stop, wait_until
from tests.support.radclient import parse_reply, radclient
from tests.support.rawclient import status_server

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "op25b.service"
NOBODY = 65534
BNG_SECRET = "bng1-shared-secret"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not SETPRIV, reason="needs root and setpriv to run the unit's user")


def unit_settings(path: Path) -> dict[str, list[str]]:
    """[Service] key -> values in order (systemd allows a key many times)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


class Sandbox:
    """The temporary /etc/op25b and /var/lib/op25b, and the unit's command line for them."""

    def __init__(self, root: Path, upstream: FreeRadiusInstance) -> None:
        self.root = root
        self.etc, self.state = root / "etc-op25b", root / "var-lib-op25b"
        self.settings = unit_settings(UNIT)
        self.auth_port, self.acct_port, self.metrics_port = free_udp_port(), free_udp_port(), free_tcp_port()
        self.etc.mkdir()
        text = self.moved((REPO / "deploy" / "op25b.toml").read_text())
        text = text.replace('auth_listen = "0.0.0.0:1812"', f'auth_listen = "127.0.0.1:{self.auth_port}"')
        text = text.replace('acct_listen = "0.0.0.0:1813"', f'acct_listen = "127.0.0.1:{self.acct_port}"')
        text = text.replace('listen = "127.0.0.1:9812"', f'listen = "127.0.0.1:{self.metrics_port}"')
        text = text.replace('address = "192.0.2.10"', 'address = "127.0.0.1"', 1)  # bng1
        text = text.replace(
            'address = "10.0.0.10"',
            f'address = "127.0.0.1"\nauth_port = {upstream.auth_port}\nacct_port = {upstream.acct_port}',
            1,
        )  # aaa1
        assert text.count("127.0.0.1") >= 4, "deploy/op25b.toml changed shape: fix the test's rewrites"
        (self.etc / "op25b.toml").write_text(text)
        (self.etc / "bng1.secret").write_text(BNG_SECRET + "\n")
        (self.etc / "aaa.secret").write_text(upstream.secret + "\n")
        (self.etc / "partner-b.secret").write_text("partner-b-secret\n")
        (envfile,) = self.settings["EnvironmentFile"]
        self.env_path = Path(self.moved(envfile.lstrip("-")))
        shutil.copy(REPO / "deploy" / "op25b.env.example", self.env_path)
        for f in self.etc.iterdir():
            f.chmod(0o444)
        self.etc.chmod(0o555)
        # StateDirectory=op25b: systemd makes /var/lib/op25b, owned by User=, StateDirectoryMode.
        assert self.settings["StateDirectory"] == ["op25b"]
        self.state.mkdir(mode=int(self.settings.get("StateDirectoryMode", ["0755"])[-1], 8))
        os.chown(self.state, NOBODY, NOBODY)
        (exec_start,) = self.settings["ExecStart"]
        argv = shlex.split(self.moved(exec_start))
        assert argv[0] == "/opt/op25b/venv/bin/op25b"
        argv[0] = str(Path(sys.executable).parent / "op25b")
        self.argv = argv
        self.log = root / "serve.log"

    def moved(self, text: str) -> str:
        return text.replace("/etc/op25b", str(self.etc)).replace("/var/lib/op25b", str(self.state))

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OP25B_") and k not in ("LNS_SECRET",)}
        for line in self.settings.get("Environment", []):
            for item in shlex.split(self.moved(line)):
                key, _, value = item.partition("=")
                env[key] = value
        env.update(env_file(self.env_path))
        env["HOME"] = str(self.state)
        return env

    def preexec(self) -> None:
        """In the child, before setpriv drops to the unit's user: the unit's UMask and W^X rule."""
        os.umask(int(self.settings["UMask"][-1], 8))
        if self.settings.get("MemoryDenyWriteExecute", ["no"])[-1] in ("yes", "true", "1"):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (kept across exec)
                os.write(2, b"PR_SET_MDWE failed\n")
                os._exit(97)

    def command(self, *replace_serve: str) -> list[str]:
        argv = list(self.argv)
        if replace_serve:
            argv[argv.index("serve") :] = replace_serve
        nnp = ["--no-new-privs"] if self.settings.get("NoNewPrivileges", ["no"])[-1] == "yes" else []
        return [SETPRIV, "--pdeathsig", "KILL", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *nnp, "--", *argv]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            env=self.environment(),
            cwd="/",
            preexec_fn=self.preexec,
            timeout=120,
        )

    def spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            return subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd="/",
                preexec_fn=self.preexec,
            )


@pytest.fixture
def sandbox(freeradius_upstream: FreeRadiusInstance) -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix="op25b-unit-"))
    root.chmod(0o755)  # the unit's user must reach its directories (pytest's tmp_path is root's only)
    try:
        yield Sandbox(root, freeradius_upstream)
    finally:
        for path in (root / "etc-op25b",):
            if path.exists():
                path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def _world_or_group_access(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode) & 0o077


def test_the_unit_serves_with_the_shipped_config_as_an_unprivileged_user(sandbox: Sandbox) -> None:
    settings = sandbox.settings
    assert settings["User"] == ["op25b"] and settings["CapabilityBoundingSet"] == [""]
    assert "AF_UNIX" in settings["RestrictAddressFamilies"][-1] and "AF_INET6" in settings["RestrictAddressFamilies"][-1]

    upgraded = sandbox.run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr

    proc = sandbox.spawn()
    try:
        deadline = time.monotonic() + 20
        while "serving auth on" not in read_text(sandbox.log):
            assert proc.poll() is None and time.monotonic() < deadline, read_text(sandbox.log)[-3000:]
            time.sleep(0.05)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{NOBODY}\s+{NOBODY}\s+{NOBODY}\s+{NOBODY}$", status, re.M), status
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)

        # Status-Server from bng1 is answered locally; a wrong secret gets silence (the check can fail).
        assert status_server("127.0.0.1", sandbox.auth_port, BNG_SECRET, timeout=2) == 2
        assert status_server("127.0.0.1", sandbox.auth_port, "not-the-secret", timeout=1) is None

        # An Access-Request relayed to FreeRADIUS (aaa1, secret from /etc/op25b/aaa.secret) and back.
        auth = radclient(
            'User-Name = "alice@isp.example"\nUser-Password = "alicepw"\nMessage-Authenticator = 0x00',
            f"127.0.0.1:{sandbox.auth_port}",
            BNG_SECRET,
            timeout=3,
            retries=2,
        )
        reply = parse_reply(auth.stdout)
        assert reply.code == "Access-Accept", auth.stdout + auth.stderr + read_text(sandbox.log)[-2000:]
        assert reply.get("Class") is not None

        # Accounting: acknowledged only once the proxy has it in its database or its spool.
        acct = radclient(
            'Acct-Status-Type = Start\nAcct-Session-Id = "unit-1"\nUser-Name = "alice@isp.example"\n'
            "Framed-IP-Address = 100.64.0.7\nNAS-IP-Address = 127.0.0.1",
            f"127.0.0.1:{sandbox.acct_port}",
            BNG_SECRET,
            code="acct",
            timeout=3,
            retries=2,
        )
        assert parse_reply(acct.stdout).code == "Accounting-Response", acct.stdout + acct.stderr
        assert proc.poll() is None
    finally:
        code = stop(proc, timeout=10)
    assert code == 0, read_text(sandbox.log)[-3000:]
    assert "Traceback" not in read_text(sandbox.log)

    # What it wrote is the unit user's alone: the state folder, the spool, the database.
    made = [sandbox.state, *sandbox.state.rglob("*")]
    assert (sandbox.state / "op25b.db").exists() and (sandbox.state / "spool").is_dir(), made
    open_to_others = [f"{p} {stat.filemode(p.lstat().st_mode)}" for p in made if _world_or_group_access(p)]
    assert open_to_others == []
    assert {p.lstat().st_uid for p in made} == {NOBODY}


def test_the_web_unit_serves_the_desk_as_the_same_unprivileged_user(sandbox: Sandbox) -> None:
    """deploy/op25b-web.service: the same user, config and state as op25b.service; its ExecStart
    (`op25b web`) answers HTTP with the shipped config, and refuses an API call without a token."""
    web = unit_settings(REPO / "deploy" / "op25b-web.service")
    for key in ("User", "Group", "EnvironmentFile", "StateDirectory", "UMask", "NoNewPrivileges", "MemoryDenyWriteExecute"):
        assert web[key] == sandbox.settings[key], key
    (exec_start,) = web["ExecStart"]
    assert exec_start == "/opt/op25b/venv/bin/op25b -c /etc/op25b/op25b.toml web"
    done = sandbox.run("db", "upgrade")
    assert done.returncode == 0, done.stderr
    port = free_tcp_port()
    sandbox.argv[sandbox.argv.index("serve") :] = ["web", "--listen", f"127.0.0.1:{port}"]
    proc = sandbox.spawn()
    try:

        def answer() -> int | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/exemptions", timeout=1) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return None

        assert wait_until(lambda: answer() is not None, 20), sandbox.log.read_text()[-2000:]
        assert answer() == 401
    finally:
        stop(proc)


def test_every_unit_file_points_at_the_shipped_paths() -> None:
    purge = unit_settings(REPO / "deploy" / "op25b-purge.service")
    assert purge["ExecStart"] == ["/opt/op25b/venv/bin/op25b -c /etc/op25b/op25b.toml sessions purge --older-than 180d"]
    assert purge["User"] == unit_settings(UNIT)["User"] and purge["StateDirectory"] == ["op25b"]
    timer = (REPO / "deploy" / "op25b-purge.timer").read_text()
    assert "OnCalendar=daily" in timer and "Persistent=true" in timer
    assert re.search(r"^u op25b - ", (REPO / "deploy" / "op25b.sysusers").read_text(), re.M)
