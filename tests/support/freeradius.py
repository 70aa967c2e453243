"""Real FreeRADIUS 3 instances as local *upstream* RADIUS servers, and their pytest fixtures.

It renders the template configuration in ``deploy/freeradius/`` (see its README.md) into a
temporary directory, starts ``freeradius -f -d <copy>`` on the given 127.0.0.1 ports, waits
until it answers Status-Server, and stops it again by its PID.

Typical use::

    from tests.support.freeradius import FreeRadiusInstance
    from tests.support.ports import free_udp_port
    from tests.support.radclient import parse_reply, radclient

    with FreeRadiusInstance("upstream-a", free_udp_port(), free_udp_port(), "s3cret",
                            tmp_dir=tmp_path / "a") as fr:
        cp = radclient('User-Name = "alice@isp.example"\\nUser-Password = "alicepw"\\n',
                       f"127.0.0.1:{fr.auth_port}", fr.secret)
        assert parse_reply(cp.stdout).code == "Access-Accept"

Fixtures (tests/conftest.py imports them): ``freeradius_factory`` (module scope; a callable
that starts instances and stops them all at teardown) and ``freeradius_upstream`` (module
scope; one started instance with the shipped users file).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.paths import TEMPLATE_DIR
from tests.support.ports import free_udp_port
from tests.support.radclient import RADCLIENT
from tests.support.rawclient import status_server

#: Files of TEMPLATE_DIR that are documentation/tools, not configuration.
_NOT_CONFIG = {"README.md", "run.sh"}

FREERADIUS = os.environ.get("OP25B_FREERADIUS_BIN") or shutil.which("freeradius") or shutil.which("radiusd")

DEFAULT_SECRET = "upstream-secret"

#: Characters a placeholder value may not contain (they would break the config syntax or be
#: taken for ``${...}`` / ``%{...}`` expansions).
_BAD_IN_PATH = re.compile(r'["\\$%{}\n\r\t\']')


def require_freeradius() -> None:
    """Skip the calling test when FreeRADIUS is not installed (fail instead under CI=true)."""
    if FREERADIUS and RADCLIENT:
        return
    msg = "needs Debian's freeradius and freeradius-utils packages (freeradius, radclient)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + " - CI must install them")
    pytest.skip(msg)


_LIVE: weakref.WeakSet[FreeRadiusInstance] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:  # last line of defence: never leave FreeRADIUS running
    for inst in list(_LIVE):
        try:
            inst.stop(timeout=2)
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class FreeRadiusError(RuntimeError):
    pass


class FreeRadiusInstance:
    """One FreeRADIUS process rendered from ``deploy/freeradius`` into ``tmp_dir``.

    Layout of ``tmp_dir``: ``raddb/`` (the rendered config, ``-d``), ``radius.log`` (log with
    one ``Auth:`` line per Access-Request ending in ``instance=<name>``), ``detail`` (every
    Accounting-Request), ``radiusd.out`` (the process' stdout/stderr).
    """

    def __init__(
        self,
        name: str,
        auth_port: int,
        acct_port: int,
        secret: str = DEFAULT_SECRET,
        users_text: str | None = None,
        tmp_dir: str | os.PathLike[str] | None = None,
        *,
        debug: bool | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ValueError(f"instance name must match [A-Za-z0-9._-]+: {name!r}")
        if any(ord(c) < 0x20 or c == "\x7f" for c in secret) or not secret:
            raise ValueError("secret must be non-empty printable text")
        if secret.endswith("\\") or '\\"' in secret:
            raise ValueError(
                "a secret may not end in a backslash or have one before a quote: FreeRADIUS' config syntax can't say that"
            )
        self.name = name
        self.auth_port = int(auth_port)
        self.acct_port = int(acct_port)
        self.secret = secret
        self.users_text = users_text
        if tmp_dir is None:
            tmp_dir = tempfile.mkdtemp(prefix=f"freeradius-{name}-")
        self.run_dir = Path(tmp_dir).resolve()
        if _BAD_IN_PATH.search(str(self.run_dir)):
            raise ValueError(f"run directory path has characters FreeRADIUS config can't take: {self.run_dir}")
        if debug is None:
            debug = os.environ.get("OP25B_FREERADIUS_DEBUG", "") not in ("", "0", "no", "false")
        self.debug = debug
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    # -- paths ---------------------------------------------------------------------------
    @property
    def conf_dir(self) -> Path:
        return self.run_dir / "raddb"

    @property
    def users_path(self) -> Path:
        return self.conf_dir / "users"

    @property
    def log_path(self) -> Path:
        """FreeRADIUS' log (``-X`` debug output too when ``debug`` is on)."""
        return self.run_dir / "radius.log"

    @property
    def detail_path(self) -> Path:
        return self.run_dir / "detail"

    @property
    def stdout_path(self) -> Path:
        return self.run_dir / "radiusd.out"

    @property
    def auth_addr(self) -> str:
        return f"127.0.0.1:{self.auth_port}"

    @property
    def acct_addr(self) -> str:
        return f"127.0.0.1:{self.acct_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- rendering -----------------------------------------------------------------------
    def render(self) -> Path:
        """(Re)write ``raddb/`` from the template; returns the config directory."""
        conf = self.conf_dir
        if conf.exists():
            shutil.rmtree(conf)
        conf.mkdir(parents=True)
        os.chmod(self.run_dir, 0o700)  # FreeRADIUS refuses world-writable config
        # FreeRADIUS 3 keeps backslashes in "..." verbatim and only turns \" into " (see
        # deploy/freeradius/README.md), so quotes are the only thing to escape.
        escaped_secret = self.secret.replace('"', '\\"')
        values = {
            "@NAME@": self.name,
            "@CONFDIR@": str(conf),
            "@RUNDIR@": str(self.run_dir),
            "@AUTH_PORT@": str(self.auth_port),
            "@ACCT_PORT@": str(self.acct_port),
            "@SECRET@": escaped_secret,
            "@USERS_FILE@": str(self.users_path),
        }
        pattern = re.compile("|".join(re.escape(k) for k in values))
        for src in sorted(TEMPLATE_DIR.rglob("*")):
            rel = src.relative_to(TEMPLATE_DIR)
            if rel.name in _NOT_CONFIG or "__pycache__" in rel.parts:
                continue
            dst = conf / rel
            if src.is_dir():
                dst.mkdir(exist_ok=True)
                continue
            text = src.read_text()
            if rel.as_posix() != "users":  # the users file is data, never templated
                text = pattern.sub(lambda m: values[m.group(0)], text)
            dst.write_text(text)
            os.chmod(dst, 0o640)
        if self.users_text is not None:
            self.users_path.write_text(self.users_text)
        return conf

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FreeRadiusInstance:
        if FREERADIUS is None:
            raise FreeRadiusError("freeradius binary not found (apt-get install freeradius)")
        if self.running:
            raise FreeRadiusError(f"{self.name}: already running (pid {self.proc.pid})")
        self.render()
        # Fresh log each start, so "Ready to process requests" refers to this process.
        for p in (self.log_path, self.stdout_path):
            p.unlink(missing_ok=True)
        mode, output = ("-X", self.log_path) if self.debug else ("-f", self.stdout_path)
        t0 = time.monotonic()
        # SIGTERM reaches it even if pytest is SIGKILLed (see processes.spawn).
        self.proc = processes.spawn([FREERADIUS, mode, "-d", str(self.conf_dir)], output, new_session=True)
        _LIVE.add(self)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.start_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise FreeRadiusError(f"{self.name}: freeradius exited with {rc} during start-up\n{self.log_tail()}")
            # Our own process must say it is ready (another server on a clashing port could
            # otherwise answer the probe), then it must answer Status-Server with our secret.
            if self._log_says_ready():
                if (
                    status_server("127.0.0.1", self.auth_port, self.secret, timeout=0.3) is not None
                    and status_server("127.0.0.1", self.acct_port, self.secret, timeout=0.3) is not None
                    and self.proc.poll() is None
                ):
                    return
                if "Shared secret is incorrect" in self.log_text():
                    raise FreeRadiusError(
                        f"{self.name}: rejects our Status-Server probe: the secret did not reach "
                        f"clients.conf intact\n{self.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise FreeRadiusError(
                    f"{self.name}: not answering Status-Server on {self.auth_addr}/{self.acct_port} "
                    f"after {self.start_timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _log_says_ready(self) -> bool:
        for p in (self.log_path, self.stdout_path):
            try:
                if b"Ready to process requests" in p.read_bytes():
                    return True
            except FileNotFoundError:
                pass
        return False

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        processes.stop(proc, timeout)

    def restart(self) -> FreeRadiusInstance:
        self.stop()
        return self.start()

    def set_users(self, users_text: str, restart: bool = True) -> None:
        """Replace the users file (takes effect on restart)."""
        self.users_text = users_text
        if restart and self.running:
            self.restart()

    def __enter__(self) -> FreeRadiusInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}" if self.running else "stopped"
        return f"<FreeRadiusInstance {self.name} auth={self.auth_port} acct={self.acct_port} {state}>"

    # -- inspection ----------------------------------------------------------------------
    def log_text(self) -> str:
        return processes.read_text(self.log_path)

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for p in (self.stdout_path, self.log_path):
            if p.exists():
                tail = p.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {p} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no output in {self.run_dir})"

    def auth_log_lines(self) -> list[str]:
        """The ``Login OK: ...`` / ``Login incorrect ...`` lines so far, each ending in
        ``instance=<name>`` (prefixed ``<date> : Auth: (n)`` with -f, just ``(n)`` with -X)."""
        return [ln for ln in self.log_text().splitlines() if ("Login OK" in ln or "Login incorrect" in ln) and "instance=" in ln]

    def detail_text(self) -> str:
        return processes.read_text(self.detail_path)

    def detail_records(self) -> list[dict[str, str]]:
        """The detail file as one dict per Accounting-Request (values as FreeRADIUS wrote them;
        strings keep their double quotes stripped).  The header timestamp is under ``""``."""
        records: list[dict[str, str]] = []
        cur: dict[str, str] | None = None
        for line in self.detail_text().splitlines():
            if not line.strip():
                cur = None
                continue
            if not line[0].isspace():
                cur = {"": line.strip()}
                records.append(cur)
                continue
            if cur is not None and " = " in line:
                k, v = line.strip().split(" = ", 1)
                if len(v) >= 2 and v[0] == v[-1] == '"':
                    v = v[1:-1]
                cur[k] = v
        return records


# --------------------------------------------------------------------------------------------
# pytest fixtures (imported into tests/conftest.py)
# --------------------------------------------------------------------------------------------

FactoryFn = Callable[..., FreeRadiusInstance]


@pytest.fixture(scope="module")
def freeradius_factory(tmp_path_factory: pytest.TempPathFactory):
    """``make(name, *, secret=DEFAULT_SECRET, users_text=None, auth_port=None, acct_port=None,
    start=True, **kw) -> FreeRadiusInstance``; ports default to free ones.  Every instance made
    is stopped when the module's tests are done (also on failures)."""
    require_freeradius()
    made: list[FreeRadiusInstance] = []

    def make(
        name: str,
        *,
        secret: str = DEFAULT_SECRET,
        users_text: str | None = None,
        auth_port: int | None = None,
        acct_port: int | None = None,
        start: bool = True,
        **kw,
    ) -> FreeRadiusInstance:
        auth_port = auth_port or free_udp_port()
        acct_port = acct_port or free_udp_port()
        while acct_port == auth_port:
            acct_port = free_udp_port()
        inst = FreeRadiusInstance(name, auth_port, acct_port, secret, users_text, tmp_path_factory.mktemp(f"fr-{name}"), **kw)
        made.append(inst)
        if start:
            inst.start()
        return inst

    try:
        yield make
    finally:
        for inst in made:
            inst.stop()


@pytest.fixture(scope="module")
def freeradius_upstream(freeradius_factory: FactoryFn) -> FreeRadiusInstance:
    """One running upstream named ``upstream`` with deploy/freeradius/users and DEFAULT_SECRET."""
    return freeradius_factory("upstream")
