"""Test helper: run real FreeRADIUS 3 instances as local *upstream* RADIUS servers.

Not a test module.  It renders the template configuration in ``deploy/freeradius/`` (see its
README.md) into a temporary directory, starts ``freeradius -f -d <copy>`` on the given
127.0.0.1 ports, waits until it answers Status-Server, and stops it again.  It also wraps
``radclient`` and computes MS-CHAPv2 requests (radclient itself only does MS-CHAPv1).

Typical use::

    from tests.freeradius import FreeRadiusInstance, free_udp_port, radclient, parse_reply

    with FreeRadiusInstance("upstream-a", free_udp_port(), free_udp_port(), "s3cret",
                            tmp_dir=tmp_path / "a") as fr:
        cp = radclient('User-Name = "alice@isp.example"\\nUser-Password = "alicepw"\\n',
                       f"127.0.0.1:{fr.auth_port}", fr.secret)
        assert parse_reply(cp.stdout).code == "Access-Accept"

Fixtures (import them into conftest.py): ``freeradius_factory`` (module scope; a callable that
starts instances and stops them all at teardown) and ``freeradius_upstream`` (module scope; one
started instance with the shipped users file).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import hmac
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = REPO_ROOT / "deploy" / "freeradius"
#: Files of TEMPLATE_DIR that are documentation/tools, not configuration.
_NOT_CONFIG = {"README.md", "run.sh"}

FREERADIUS = os.environ.get("OP25B_FREERADIUS_BIN") or shutil.which("freeradius") or shutil.which("radiusd")
RADCLIENT = shutil.which("radclient")
SETPRIV = shutil.which("setpriv")  # util-linux; optional
#: radclient's main dictionary directory on Debian (``-D``); ``-d`` gets TEMPLATE_DIR, whose
#: (comment-only) ``dictionary`` stands in for /etc/freeradius/3.0/dictionary.
DICT_DIR = "/usr/share/freeradius"

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


# Ports handed to test servers come from below the kernel's ephemeral range (32768-60999 on
# Debian), so that a socket bound to port 0 meanwhile (a proxy's upstream or CoA socket, a
# client) cannot take one between the choice and the server's bind.
_TEST_PORTS = range(20000, 32768)
_handed_out: set[int] = set()


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port on ``host`` that is free now and was not handed out before in this session."""
    for _ in range(1000):
        port = random.choice(_TEST_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_TEST_PORTS}")


def free_udp_port(host: str = "127.0.0.1") -> int:
    return free_port(socket.SOCK_DGRAM, host)


# --------------------------------------------------------------------------------------------
# FreeRADIUS instances
# --------------------------------------------------------------------------------------------

_LIVE: "weakref.WeakSet[FreeRadiusInstance]" = weakref.WeakSet()


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
            raise ValueError('a secret may not end in a backslash or have one before a quote: '
                             "FreeRADIUS' config syntax can't say that")
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
    def start(self) -> "FreeRadiusInstance":
        if FREERADIUS is None:
            raise FreeRadiusError("freeradius binary not found (apt-get install freeradius)")
        if self.running:
            raise FreeRadiusError(f"{self.name}: already running (pid {self.proc.pid})")
        self.render()
        # Fresh log each start, so "Ready to process requests" refers to this process.
        for p in (self.log_path, self.stdout_path):
            p.unlink(missing_ok=True)
        if self.debug:
            args = [FREERADIUS, "-X", "-d", str(self.conf_dir)]
            out = open(self.log_path, "ab")
        else:
            args = [FREERADIUS, "-f", "-d", str(self.conf_dir)]
            out = open(self.stdout_path, "ab")
        if SETPRIV:
            # Dies with us even if pytest is SIGKILLed (the parent-death signal fires when the
            # *thread* that started it ends: start instances from the main thread).
            args = [SETPRIV, "--pdeathsig", "TERM", "--", *args]
        t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
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
                if (status_server("127.0.0.1", self.auth_port, self.secret, timeout=0.3) is not None
                        and status_server("127.0.0.1", self.acct_port, self.secret, timeout=0.3) is not None
                        and self.proc.poll() is None):
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
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> "FreeRadiusInstance":
        self.stop()
        return self.start()

    def set_users(self, users_text: str, restart: bool = True) -> None:
        """Replace the users file (takes effect on restart)."""
        self.users_text = users_text
        if restart and self.running:
            self.restart()

    def __enter__(self) -> "FreeRadiusInstance":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}" if self.running else "stopped"
        return f"<FreeRadiusInstance {self.name} auth={self.auth_port} acct={self.acct_port} {state}>"

    # -- inspection ----------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

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
        return [ln for ln in self.log_text().splitlines()
                if ("Login OK" in ln or "Login incorrect" in ln) and "instance=" in ln]

    def detail_text(self) -> str:
        try:
            return self.detail_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

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
# Status-Server (RFC 5997) probe, in Python (no subprocess: used while polling start-up)
# --------------------------------------------------------------------------------------------


def status_server(host: str, port: int, secret: str, timeout: float = 1.0) -> int | None:
    """Send one Status-Server; return the reply code (2 on auth ports, 5 on acct ports) if a
    reply with a valid Response Authenticator for ``secret`` came back, else ``None``."""
    key = secret.encode()
    ident = os.urandom(1)[0]
    req_auth = os.urandom(16)
    attrs = bytes([80, 18]) + bytes(16)  # Message-Authenticator, zero for the HMAC
    length = 20 + len(attrs)
    pkt = struct.pack("!BBH", 12, ident, length) + req_auth + attrs
    mac = hmac.new(key, pkt, hashlib.md5).digest()
    pkt = pkt[:-16] + mac
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(pkt, (host, port))
            deadline = time.monotonic() + timeout
            while True:
                s.settimeout(max(0.001, deadline - time.monotonic()))
                data, _ = s.recvfrom(4096)
                if len(data) < 20 or data[1] != ident:
                    continue
                code, _, rlen = struct.unpack("!BBH", data[:4])
                data = data[:rlen]
                expect = hashlib.md5(data[:4] + req_auth + data[20:] + key).digest()
                if hmac.compare_digest(expect, data[4:20]):
                    return code
        except (socket.timeout, ConnectionRefusedError, OSError):
            return None


@dataclasses.dataclass
class RawReply:
    code: int
    attrs: list[tuple[int, bytes]]  # (type, value) in wire order
    message_authenticator_ok: bool | None  # None: the reply had no Message-Authenticator


def pap_request(host: str, port: int, secret: str, user: str, password: str,
                timeout: float = 1.0) -> RawReply | None:
    """One Access-Request (User-Name, User-Password, Message-Authenticator) built and checked
    in Python: returns the reply if its Response Authenticator is right for ``secret``
    (``None`` on timeout), with the reply's Message-Authenticator verified separately."""
    key = secret.encode()
    ident = os.urandom(1)[0]
    req_auth = os.urandom(16)
    pw = password.encode()
    pw = pw.ljust(max(16, (len(pw) + 15) // 16 * 16), b"\0")  # RFC 2865 5.2 padding
    hidden, prev = b"", req_auth
    for i in range(0, len(pw), 16):
        block = bytes(a ^ b for a, b in zip(pw[i:i + 16], hashlib.md5(key + prev).digest()))
        hidden, prev = hidden + block, block
    attrs = (bytes([1, 2 + len(user.encode())]) + user.encode()
             + bytes([2, 2 + len(hidden)]) + hidden + bytes([80, 18]) + bytes(16))
    pkt = struct.pack("!BBH", 1, ident, 20 + len(attrs)) + req_auth + attrs
    pkt = pkt[:-16] + hmac.new(key, pkt, hashlib.md5).digest()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(pkt, (host, port))
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data, _ = s.recvfrom(4096)
            except socket.timeout:
                return None
            if len(data) < 20 or data[1] != ident:
                continue
            code, _, rlen = struct.unpack("!BBH", data[:4])
            data = data[:rlen]
            if not hmac.compare_digest(hashlib.md5(data[:4] + req_auth + data[20:] + key).digest(), data[4:20]):
                continue
            out: list[tuple[int, bytes]] = []
            ma_ok: bool | None = None
            off = 20
            while off + 2 <= len(data):
                t, ln = data[off], data[off + 1]
                if ln < 2:
                    break
                out.append((t, data[off + 2:off + ln]))
                if t == 80 and ln == 18:
                    zeroed = data[:4] + req_auth + data[20:off + 2] + bytes(16) + data[off + 18:]
                    ma_ok = hmac.compare_digest(hmac.new(key, zeroed, hashlib.md5).digest(), data[off + 2:off + 18])
                off += ln
            return RawReply(code, out, ma_ok)


# --------------------------------------------------------------------------------------------
# radclient
# --------------------------------------------------------------------------------------------


def radclient(
    packet_text: str,
    server: str,
    secret: str,
    code: str = "auth",
    extra_args: Sequence[str] = (),
    *,
    timeout: float = 2.0,
    retries: int = 1,
) -> subprocess.CompletedProcess[str]:
    """Run ``radclient -x`` with ``packet_text`` (attribute lines, ``Attr = value``) on stdin.

    ``server`` is ``host:port``; ``code`` is auth/acct/status/coa/disconnect/auto.  radclient
    encrypts User-Password and computes CHAP-Password (and MS-CHAPv1 from MS-CHAP-Password)
    itself.  Returns the CompletedProcess (text); radclient exits 1 on Access-Reject or no
    reply.  Parse it with :func:`parse_reply`.
    """
    if RADCLIENT is None:
        raise FileNotFoundError("radclient not found (apt-get install freeradius-utils)")
    if not packet_text.endswith("\n"):
        packet_text += "\n"
    args = [RADCLIENT, "-x", "-D", DICT_DIR, "-d", str(TEMPLATE_DIR),
            "-t", str(timeout), "-r", str(retries), *extra_args, server, code, secret]
    return subprocess.run(args, input=packet_text, capture_output=True, text=True,
                          timeout=timeout * max(1, retries) + 10)


@dataclasses.dataclass
class Reply:
    code: str | None  # "Access-Accept", "Access-Reject", "Accounting-Response", ... or None
    attrs: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        for k, v in self.attrs:
            if k == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.attrs if k == name]

    def __contains__(self, name: str) -> bool:
        return any(k == name for k, _ in self.attrs)


_RECEIVED = re.compile(r"^Received (\S+) Id \d+ from ")


def parse_reply(radclient_stdout: str) -> Reply:
    """The last reply in ``radclient -x`` output: its code and attributes (values as printed:
    strings unquoted, octets as ``0x..``)."""
    code: str | None = None
    attrs: list[tuple[str, str]] = []
    in_reply = False
    for line in radclient_stdout.splitlines():
        m = _RECEIVED.match(line)
        if m:
            code, attrs, in_reply = m.group(1), [], True
            continue
        if line.startswith("Sent "):
            in_reply = False
            continue
        if in_reply and line.startswith(("\t", " ")) and " = " in line:
            k, v = line.strip().split(" = ", 1)
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1]
            attrs.append((k, v))
    return Reply(code, attrs)


def octets(value: str) -> bytes:
    """radclient's ``0x...`` rendering of an octets attribute, as bytes."""
    if not value.startswith("0x"):
        raise ValueError(f"not an octets value: {value!r}")
    return bytes.fromhex(value[2:])


# --------------------------------------------------------------------------------------------
# MS-CHAPv2 (RFC 2759) and MPPE keys (RFC 3079), with our own MD4 and DES because
# OpenSSL 3 has MD4/DES only in its legacy provider (hashlib.new("md4") fails here).
# --------------------------------------------------------------------------------------------


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320)."""
    def rol(x: int, n: int) -> int:
        x &= 0xFFFFFFFF
        return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF

    msg = bytearray(data)
    bit_len = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    msg.append(0x80)
    while len(msg) % 64 != 56:
        msg.append(0)
    msg += struct.pack("<Q", bit_len)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off:off + 64])
        aa, bb, cc, dd = a, b, c, d
        f = lambda x_, y, z: (x_ & y) | (~x_ & z)  # noqa: E731
        g = lambda x_, y, z: (x_ & y) | (x_ & z) | (y & z)  # noqa: E731
        h = lambda x_, y, z: x_ ^ y ^ z  # noqa: E731
        for i in (0, 4, 8, 12):
            a = rol(a + f(b, c, d) + x[i], 3)
            d = rol(d + f(a, b, c) + x[i + 1], 7)
            c = rol(c + f(d, a, b) + x[i + 2], 11)
            b = rol(b + f(c, d, a) + x[i + 3], 19)
        for i in (0, 1, 2, 3):
            a = rol(a + g(b, c, d) + x[i] + 0x5A827999, 3)
            d = rol(d + g(a, b, c) + x[i + 4] + 0x5A827999, 5)
            c = rol(c + g(d, a, b) + x[i + 8] + 0x5A827999, 9)
            b = rol(b + g(c, d, a) + x[i + 12] + 0x5A827999, 13)
        for i in (0, 2, 1, 3):
            a = rol(a + h(b, c, d) + x[i] + 0x6ED9EBA1, 3)
            d = rol(d + h(a, b, c) + x[i + 8] + 0x6ED9EBA1, 9)
            c = rol(c + h(d, a, b) + x[i + 4] + 0x6ED9EBA1, 11)
            b = rol(b + h(c, d, a) + x[i + 12] + 0x6ED9EBA1, 15)
        a, b, c, d = [(v + w) & 0xFFFFFFFF for v, w in ((a, aa), (b, bb), (c, cc), (d, dd))]
    return struct.pack("<4I", a, b, c, d)


# DES tables (FIPS 46-3), bit numbers counted from 1 = most significant bit.
_IP = (58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
       62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
       57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
       61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7)
_FP = (40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31,
       38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29,
       36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
       34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25)
_E = (32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
      16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1)
_P = (16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
      2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25)
_PC1 = (57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
        10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
        63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
        14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4)
_PC2 = (14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
        41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32)
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_SBOX = (
    (14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, 0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
     4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, 15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13),
    (15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, 3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
     0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, 13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9),
    (10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, 13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
     13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, 1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12),
    (7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, 13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
     10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, 3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14),
    (2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, 14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
     4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, 11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3),
    (12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, 10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
     9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, 4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13),
    (4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, 13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
     1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, 6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12),
    (13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, 1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
     7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, 2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11),
)


def _permute(value: int, table: Iterable[int], in_bits: int) -> int:
    out = 0
    for pos in table:
        out = (out << 1) | ((value >> (in_bits - pos)) & 1)
    return out


def des_encrypt_block(key8: bytes, block8: bytes) -> bytes:
    """Single-block DES-ECB encryption (parity bits of the key are ignored, as in DES)."""
    k = _permute(int.from_bytes(key8, "big"), _PC1, 64)
    c, d = k >> 28, k & 0xFFFFFFF
    subkeys = []
    for s in _SHIFTS:
        c = ((c << s) | (c >> (28 - s))) & 0xFFFFFFF
        d = ((d << s) | (d >> (28 - s))) & 0xFFFFFFF
        subkeys.append(_permute((c << 28) | d, _PC2, 56))
    b = _permute(int.from_bytes(block8, "big"), _IP, 64)
    left, right = b >> 32, b & 0xFFFFFFFF
    for sk in subkeys:
        x = _permute(right, _E, 32) ^ sk
        f = 0
        for i in range(8):
            six = (x >> (42 - 6 * i)) & 0x3F
            row = ((six & 0x20) >> 4) | (six & 1)
            f = (f << 4) | _SBOX[i][row * 16 + ((six >> 1) & 0xF)]
        left, right = right, left ^ _permute(f, _P, 32)
    return _permute((right << 32) | left, _FP, 64).to_bytes(8, "big")


def _des_key_from_7(key7: bytes) -> bytes:
    """Spread 56 key bits over 8 bytes (low bit of each byte = unused parity)."""
    n = int.from_bytes(key7, "big")
    return bytes((((n >> (49 - 7 * i)) & 0x7F) << 1) for i in range(8))


def nt_password_hash(password: str) -> bytes:
    return md4(password.encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: str) -> bytes:
    return hashlib.sha1(peer_challenge + authenticator_challenge + username.encode()).digest()[:8]


def challenge_response(challenge8: bytes, password_hash16: bytes) -> bytes:
    z = password_hash16 + bytes(5)
    return b"".join(des_encrypt_block(_des_key_from_7(z[i:i + 7]), challenge8) for i in (0, 7, 14))


_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = b"On the client side, this is the send key; on the server side, it is the receive key."
_MPPE_MAGIC3 = b"On the client side, this is the receive key; on the server side, it is the send key."


@dataclasses.dataclass
class MsChapV2:
    """One computed MS-CHAPv2 exchange: request attributes and what the server must answer."""
    username: str
    password: str
    authenticator_challenge: bytes
    peer_challenge: bytes
    ident: int = 0

    @property
    def password_hash(self) -> bytes:
        return nt_password_hash(self.password)

    @property
    def nt_response(self) -> bytes:
        ch = challenge_hash(self.peer_challenge, self.authenticator_challenge, self.username)
        return challenge_response(ch, self.password_hash)

    @property
    def response_attr(self) -> bytes:
        """MS-CHAP2-Response: Ident, Flags, Peer-Challenge, 8 reserved, NT-Response (50 bytes)."""
        return bytes([self.ident, 0]) + self.peer_challenge + bytes(8) + self.nt_response

    def authenticator_response(self) -> str:
        """The ``S=<40 hex>`` the server must put into MS-CHAP2-Success."""
        hh = md4(self.password_hash)
        digest = hashlib.sha1(hh + self.nt_response + _MAGIC1).digest()
        ch = challenge_hash(self.peer_challenge, self.authenticator_challenge, self.username)
        return "S=" + hashlib.sha1(digest + ch + _MAGIC2).hexdigest().upper()

    def master_key(self) -> bytes:
        return hashlib.sha1(md4(self.password_hash) + self.nt_response + _MPPE_MAGIC1).digest()[:16]

    def _start_key(self, magic: bytes) -> bytes:
        return hashlib.sha1(self.master_key() + bytes(40) + magic + b"\xf2" * 40).digest()[:16]

    def server_send_key(self) -> bytes:
        """MS-MPPE-Send-Key as the server sends it (RFC 3079, IsServer, IsSend)."""
        return self._start_key(_MPPE_MAGIC3)

    def server_recv_key(self) -> bytes:
        """MS-MPPE-Recv-Key as the server sends it."""
        return self._start_key(_MPPE_MAGIC2)

    def radclient_lines(self) -> str:
        """Attribute lines for radclient (User-Name plus the two MS-CHAP attributes)."""
        return (
            f'User-Name = "{self.username}"\n'
            f"MS-CHAP-Challenge = 0x{self.authenticator_challenge.hex()}\n"
            f"MS-CHAP2-Response = 0x{self.response_attr.hex()}\n"
        )


def mschapv2_request(username: str, password: str, *, ident: int | None = None) -> MsChapV2:
    """A fresh MS-CHAPv2 exchange with random challenges; ``.radclient_lines()`` is the request.

    The challenge hash uses ``username`` exactly as sent in User-Name (our mschap module does
    not strip ``@realm``; it only strips ``DOMAIN\\``)."""
    return MsChapV2(username, password, os.urandom(16), os.urandom(16),
                    os.urandom(1)[0] if ident is None else ident)


# --------------------------------------------------------------------------------------------
# pytest fixtures (import into conftest.py)
# --------------------------------------------------------------------------------------------

FactoryFn = Callable[..., FreeRadiusInstance]


@pytest.fixture(scope="module")
def freeradius_factory(tmp_path_factory: pytest.TempPathFactory):
    """``make(name, *, secret=DEFAULT_SECRET, users_text=None, auth_port=None, acct_port=None,
    start=True, **kw) -> FreeRadiusInstance``; ports default to free ones.  Every instance made
    is stopped when the module's tests are done (also on failures)."""
    require_freeradius()
    made: list[FreeRadiusInstance] = []

    def make(name: str, *, secret: str = DEFAULT_SECRET, users_text: str | None = None,
             auth_port: int | None = None, acct_port: int | None = None, start: bool = True,
             **kw) -> FreeRadiusInstance:
        auth_port = auth_port or free_udp_port()
        acct_port = acct_port or free_udp_port()
        while acct_port == auth_port:
            acct_port = free_udp_port()
        inst = FreeRadiusInstance(name, auth_port, acct_port, secret, users_text,
                                  tmp_path_factory.mktemp(f"fr-{name}"), **kw)
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
