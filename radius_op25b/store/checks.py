"""Limits and validation of operator input, shared by the CLI and the CSV import."""

from __future__ import annotations

import ipaddress

from radius_op25b.core import decision as d
from radius_op25b.errors import InvalidInput

IP_TYPES = ("dynamic", "static")
NOTIFY_CHANNEL = "op25b_policy"  # PostgreSQL LISTEN/NOTIFY channel of policy changes
CLASSES = tuple(c.value for c in d.FilterClass)


def realm_for(username: str, realm: str | None) -> str | None:
    """The realm given, else the one in `user@realm`; always lower-cased."""
    chosen = (realm or "").strip() or d.realm_of(username)
    return chosen.lower() if chosen else None


# --- validation of operator input (shared by CLI and CSV import) --------------------------------


def check_username(username: str) -> str:
    name = username.strip()
    if not name:
        raise InvalidInput("username is empty")
    if len(name.encode()) > 253:
        raise InvalidInput(f"username {name[:40]!r}... is longer than 253 octets (RFC 2865 §5.1)")
    if any(ord(ch) < 32 for ch in name):
        raise InvalidInput(f"username {name!r} contains control characters")
    return name


def check_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise InvalidInput(f"{text!r} is not an IP address") from None


def check_cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True))
    except ValueError as exc:
        raise InvalidInput(f"{text!r} is not a CIDR block ({exc})") from None


def check_class(text: str) -> str:
    if text not in CLASSES:
        raise InvalidInput(f"unknown class {text!r} (choose {', '.join(CLASSES)})")
    return text
