"""The benchmark's subscribers and the files describing them.

Subscriber i: u<i>@isp.example, every tenth in mvno.example (realm default: mobile); every tenth
(i % 10 == 4) has a class override `mobile`; everybody else is `full` (policy default).  All are
dynamic, so every Accept gets a Filter-Id.  The upstream knows subscribers below --subscribers by
their own password and everybody else by its DEFAULT entry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

NAS_SECRET = "nas-secret"
UPSTREAM_SECRET = "upstream-secret"
DEFAULT_PASSWORD = "anyone"  # the upstream's DEFAULT entry: subscribers without their own entry
REALMS = (("isp.example", None), ("mvno.example", "mobile"))
FILTERS = {"full": "OP25B-FULL", "mobile": "OP25B-MOBILE"}


def username(i: int) -> str:
    return f"u{i:07d}@{'mvno.example' if i % 10 == 9 else 'isp.example'}"


def expected_class(i: int) -> str:
    return "mobile" if i % 10 in (4, 9) else "full"


def password(i: int, known: int) -> str:
    return f"pw{i}" if i < known else DEFAULT_PASSWORD


def credentials(indices: Iterable[int], known: int) -> list[tuple[str, str]]:
    """(User-Name, password) pairs for the load generator."""
    return [(username(i), password(i, known)) for i in indices]


def write_import_csv(path: Path, start: int, stop: int) -> None:
    """Rows for `op25b subscriber import`."""
    with path.open("w") as fh:
        fh.write("username,realm,ip_type,static_addresses,class,note\n")
        for i in range(start, stop):
            fh.write(f"{username(i)},,dynamic,,{'mobile' if i % 10 == 4 else ''},\n")


def upstream_users(n: int) -> str:
    """The upstream FreeRADIUS' `users` file: one entry per subscriber below n, then DEFAULT."""
    parts = [
        f'{username(i)}\tCleartext-Password := "pw{i}"\n'
        f"\tFramed-IP-Address = 100.{64 + (i >> 16) % 64}.{(i >> 8) & 255}.{i & 255},\n"
        f"\tSession-Timeout = 3600\n\n"
        for i in range(n)
    ]
    parts.append(
        f'DEFAULT\tCleartext-Password := "{DEFAULT_PASSWORD}"\n\tFramed-IP-Address = 100.127.0.1,\n\tSession-Timeout = 3600\n'
    )
    return "".join(parts)


# radclient's filter (-f requests:expected) must name every attribute of the reply (else "Attribute
# ... not found in filter"); `=* ANY` only asks for presence.  Filter-Id and our Class are checked.
EXPECT = """Response-Packet-Type == Access-Accept
Message-Authenticator =* ANY
Framed-IP-Address =* ANY
Session-Timeout =* ANY
Filter-Id == "{filter}"
Class == 0x{tag}

"""


def write_requests(path: Path, indices: Iterable[int], known: int, expect: Path | None = None) -> int:
    """radclient -f file (packets separated by blank lines) and, optionally, its filter file."""
    count = 0
    with path.open("w") as req, expect.open("w") if expect else open(os.devnull, "w") as exp:
        for i in indices:
            req.write(f'User-Name = "{username(i)}"\nUser-Password = "{password(i, known)}"\n\n')
            cls = expected_class(i)
            exp.write(EXPECT.format(filter=FILTERS[cls], tag=f"op25b:{cls}".encode().hex()))
            count += 1
    return count
