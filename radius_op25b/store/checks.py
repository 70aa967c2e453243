"""Limits and validation of operator input, shared by the CLI, the web face and the CSV import.

The value checks themselves are core/inputs.py (pure); this module adds the store's own."""

from __future__ import annotations

from radius_op25b.core import decision as d
from radius_op25b.core.inputs import check_address, check_cidr, check_realm_name, check_username  # noqa: F401
from radius_op25b.errors import InvalidInput

IP_TYPES = ("dynamic", "static")
NOTIFY_CHANNEL = "op25b_policy"  # PostgreSQL LISTEN/NOTIFY channel of policy changes
CLASSES = tuple(c.value for c in d.FilterClass)


def realm_for(username: str, realm: str | None) -> str | None:
    """The realm given, else the one in `user@realm`; always lower-cased."""
    if realm is not None and realm.strip():
        return check_realm_name(realm)
    chosen = d.realm_of(username)
    return chosen.lower() if chosen else None


def check_class(text: str) -> str:
    if text not in CLASSES:
        raise InvalidInput(f"unknown class {text!r} (choose {', '.join(CLASSES)})")
    return text
