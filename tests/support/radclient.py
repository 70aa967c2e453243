"""``radclient`` (Debian's freeradius-utils) and a parser for its ``-x`` output."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Sequence

from tests.support.paths import TEMPLATE_DIR

RADCLIENT = shutil.which("radclient")
#: radclient's main dictionary directory on Debian (``-D``); ``-d`` gets TEMPLATE_DIR, whose
#: (comment-only) ``dictionary`` stands in for /etc/freeradius/3.0/dictionary.
DICT_DIR = "/usr/share/freeradius"


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
    args = [
        RADCLIENT,
        "-x",
        "-D",
        DICT_DIR,
        "-d",
        str(TEMPLATE_DIR),
        "-t",
        str(timeout),
        "-r",
        str(retries),
        *extra_args,
        server,
        code,
        secret,
    ]
    return subprocess.run(args, input=packet_text, capture_output=True, text=True, timeout=timeout * max(1, retries) + 10)


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
