"""RadSec peers for the tests: FreeRADIUS 3 with a TLS listener (an upstream), radsecproxy
(Debian's; a NAS-side stand-in: UDP in, TLS out), and a raw TLS RADIUS client for the faults no
real peer makes. Processes are started so that they die with pytest and are stopped by PID.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.certs import Leaf
from tests.support.freeradius import FreeRadiusInstance
from tests.support.harness import ProxyProcess
from tests.support.ports import free_tcp_port, free_udp_port

RADSECPROXY = shutil.which("radsecproxy") or ("/usr/sbin/radsecproxy" if Path("/usr/sbin/radsecproxy").exists() else None)
MESSAGE_AUTHENTICATOR = 80


def require_radsecproxy() -> None:
    if RADSECPROXY:
        return
    msg = "needs Debian's radsecproxy package (tests/run.sh installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + " - CI must install it")
    pytest.skip(msg)


class RadSecFreeRadius(FreeRadiusInstance):
    """FreeRADIUS with its usual UDP ports plus a RadSec listener on `tls_port` (127.0.0.1):
    clients from 127.0.0.1 with a certificate from `leaf.ca`, secret `radsec` (RFC 6614 §2.3).
    FreeRADIUS refuses TLS sockets without threads, so never in -X debug mode."""

    def __init__(self, name: str, tls_port: int, leaf: Leaf, tmp_dir: Path, **kw: object) -> None:
        super().__init__(name, free_udp_port(), free_udp_port(), tmp_dir=tmp_dir, debug=False, **kw)  # type: ignore[arg-type]
        self.tls_port, self.leaf = tls_port, leaf

    def render(self) -> Path:
        conf = super().render()
        with open(conf / "radiusd.conf", "a") as out:
            # debug_level 2 logs each TLS handshake ("(TLS) Connection Established") and the
            # version, with threads on (what -X would turn off).
            out.write(f"""
debug_level = 2
clients radsec {{
	client tlsnas {{
		ipaddr = 127.0.0.1
		proto = tls
		secret = radsec
		shortname = tlsnas
	}}
}}
listen {{
	ipaddr = 127.0.0.1
	port = {self.tls_port}
	type = auth+acct
	proto = tcp
	virtual_server = default
	clients = radsec
	tls {{
		private_key_file = {self.leaf.key}
		certificate_file = {self.leaf.cert}
		ca_file = {self.leaf.ca}
		require_client_cert = yes
		cipher_list = "DEFAULT"
		tls_min_version = "1.2"
		tls_max_version = "1.3"
	}}
}}
""")
        return conf


class RadSecProxy:
    """radsecproxy: UDP on `udp_port` from 127.0.0.1 (secret `secret`), everything on to one
    TLS server (op25b) with `leaf` as its client certificate. Logs at level 5 to `log_path`."""

    def __init__(
        self, folder: Path, leaf: Leaf, server_port: int, secret: str, server_secret: str = "radsec", log_level: int = 5
    ) -> None:
        self.log_level = log_level  # 5 (everything) for the tests; the benchmark wants less
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.udp_port = free_udp_port()
        self.conf = self.folder / "radsecproxy.conf"
        self.log_path = self.folder / "radsecproxy.log"
        self.conf.write_text(f"""ListenUDP 127.0.0.1:{self.udp_port}
LogLevel {log_level}
tls default {{
	CACertificateFile {leaf.ca}
	CertificateFile {leaf.cert}
	CertificateKeyFile {leaf.key}
}}
client nas {{
	host 127.0.0.1
	type udp
	secret {secret}
}}
server op25b {{
	host 127.0.0.1
	port {server_port}
	type tls
	secret {server_secret}
}}
realm * {{
	server op25b
	accountingServer op25b
}}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.udp_port}"

    def start(self) -> RadSecProxy:
        require_radsecproxy()
        assert RADSECPROXY is not None
        self.proc = processes.spawn([RADSECPROXY, "-f", "-d", str(self.log_level), "-c", str(self.conf)], self.log_path)
        ready = processes.wait_until(lambda: self._listening() or self.proc.poll() is not None, 10)  # type: ignore[union-attr]
        if not ready or self.proc.poll() is not None:
            raise RuntimeError(f"radsecproxy did not start:\n{self.log_text()[-2000:]}")
        return self

    def _listening(self) -> bool:
        if "listening for udp on" in self.log_text():
            return True
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # quieter log levels: is the port taken?
            try:
                probe.bind(("127.0.0.1", self.udp_port))
            except OSError:
                return True
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        processes.stop(proc)

    def log_text(self) -> str:
        return processes.read_text(self.log_path)

    def __enter__(self) -> RadSecProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- a raw RadSec client: requests built here, independent of the package ----------------------


def client_context(leaf: Leaf | None, ca: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    if leaf is not None:
        ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def connect(port: int, ctx: ssl.SSLContext, timeout: float = 3.0, source: str = "127.0.0.1") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def exchange(port: int, ctx: ssl.SSLContext, packet: bytes, source: str = "127.0.0.1", timeout: float = 3.0) -> bytes | None:
    """Connect, send one packet, return the answer; None when there is none (refused
    handshake, closed connection, silence)."""
    try:
        with connect(port, ctx, timeout, source) as sock:
            sock.sendall(packet)
            return read_packet(sock, timeout)
    except (ssl.SSLError, OSError):
        return None


def v11_packet(code: int, token: bytes, attrs: list[tuple[int, bytes]]) -> bytes:
    """A RADIUS/1.1 packet (RFC 9765 §4): Reserved-1 zero, the Token, twelve zero octets."""
    body = b"".join(bytes([t, 2 + len(v)]) + v for t, v in attrs)
    return struct.pack("!BBH", code, 0, 20 + len(body)) + token + bytes(12) + body


def pap_packet(secret: bytes, user: str, password: str, ident: int = 1) -> tuple[bytes, bytes]:
    """(wire, request authenticator) of an Access-Request with a Message-Authenticator."""
    req_auth = os.urandom(16)
    pw = password.encode().ljust(max(16, (len(password) + 15) // 16 * 16), b"\0")  # RFC 2865 §5.2
    hidden, prev = b"", req_auth
    for i in range(0, len(pw), 16):
        block = bytes(a ^ b for a, b in zip(pw[i : i + 16], hashlib.md5(secret + prev).digest(), strict=True))
        hidden, prev = hidden + block, block
    name = user.encode()
    attrs = (
        bytes([1, 2 + len(name)]) + name + bytes([2, 2 + len(hidden)]) + hidden + bytes([MESSAGE_AUTHENTICATOR, 18]) + bytes(16)
    )
    pkt = struct.pack("!BBH", 1, ident, 20 + len(attrs)) + req_auth + attrs
    return pkt[:-16] + hmac.new(secret, pkt, hashlib.md5).digest(), req_auth


def read_packet(sock: ssl.SSLSocket, timeout: float = 3.0) -> bytes | None:
    """The next whole packet, or None when the connection closed (or failed) first."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < 4 or len(data) < struct.unpack("!H", data[2:4])[0]:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
    except (ssl.SSLError, OSError):
        return None
    return data


def attributes(packet: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 20
    while off + 2 <= len(packet):
        t, ln = packet[off], packet[off + 1]
        out.append((t, packet[off + 2 : off + ln]))
        off += max(ln, 2)
    return out


def response_ok(reply: bytes, req_auth: bytes, secret: bytes) -> bool:
    return hmac.compare_digest(hashlib.md5(reply[:4] + req_auth + reply[20:] + secret).digest(), reply[4:20])


def wait_for(text: str, read, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while text not in read():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged within {timeout}s:\n{read()[-3000:]}")
        time.sleep(0.05)


class Op25bProcess(ProxyProcess):
    """`op25b serve` (tests/support/harness.py) with a RadSec listener on `radsec_port` and a
    [tls] identity: `body` holds the rest (clients, upstreams)."""

    def __init__(
        self, tmp_dir: Path, body: str, leaf: Leaf, *, radius_v11: str = "allow", listen: bool = True, server: str = ""
    ) -> None:
        self.radsec_port = free_tcp_port() if listen else 0
        self.leaf, self.radius_v11 = leaf, radius_v11
        self.server_extra = server or "radsec_idle_timeout = 20\n"
        super().__init__(tmp_dir, body)

    def write_config(self, body: str) -> None:
        super().write_config(body)
        text = self.config_path.read_text()
        server = f'acct_listen = "127.0.0.1:{self.acct_port}"\n'
        extra = f'radsec_listen = "127.0.0.1:{self.radsec_port}"\n{self.server_extra}' if self.radsec_port else ""
        tls = (
            f'[tls]\ncertificate_file = "{self.leaf.cert}"\nprivate_key_file = "{self.leaf.key}"\n'
            f'ca_file = "{self.leaf.ca}"\nradius_v11 = "{self.radius_v11}"\n\n'
        )
        self.config_path.write_text(text.replace(server, server + extra, 1) + tls)


def accounting_packet(secret: bytes, attrs: list[tuple[int, bytes]], ident: int = 1, code: int = 4) -> bytes:
    """An Accounting-Request (or CoA/Disconnect-Request): RFC 2866 §3's authenticator."""
    body = b"".join(bytes([t, 2 + len(v)]) + v for t, v in attrs)
    head = struct.pack("!BBH", code, ident, 20 + len(body))
    return head + hashlib.md5(head + bytes(16) + body + secret).digest() + body


def request_ok(packet: bytes, secret: bytes) -> bool:
    """Whether a CoA/Disconnect/Accounting-Request's authenticator is right for `secret`."""
    return hmac.compare_digest(hashlib.md5(packet[:4] + bytes(16) + packet[20:] + secret).digest(), packet[4:20])


def answer(request: bytes, code: int, secret: bytes) -> bytes:
    """A reply with no attributes to `request` (e.g. a Disconnect-ACK), signed for `secret`."""
    head = struct.pack("!BBH", code, request[1], 20)
    return head + hashlib.md5(head + request[4:20] + secret).digest()
