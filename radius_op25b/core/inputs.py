"""Values an operator types: parsed and limited here, before anything reaches a database.

The limits are the same on SQLite and PostgreSQL (SQLite would store an over-long or NUL-bearing
value that PostgreSQL refuses), so both backends accept and refuse the same commands. Every
refusal is an InvalidInput whose message names the value and the rule; nothing here raises
anything else, whatever the text.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta

from radius_op25b.errors import InvalidInput

# Lengths in characters; the columns are at least this wide (store/models.py).
MAX_ACTOR = 100
MAX_REASON = 1000
MAX_NOTE = 2000
MAX_CARRIER = 100
MAX_FILTER_NAME = 100
MAX_REALM = 253
MAX_USERNAME_OCTETS = 253  # RFC 2865 §5.1: User-Name is at most 253 octets
MAX_DURATION = timedelta(days=36525)  # a hundred years: longer is a typo, not a policy
# The latest expiry anyone may give: far enough for any contract, and datetime arithmetic on
# it (end of day, a duration added) stays inside datetime's range.
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_ROWS = 1_000_000  # --limit
MAX_OFFSET = 1_000_000_000  # --offset


def check_text(value: str, what: str, max_length: int, *, required: bool = True, multiline: bool = False) -> str:
    """`value` stripped; refused when empty (if required), too long, not encodable as UTF-8, or
    holding control characters (NUL, which PostgreSQL refuses, among them)."""
    text = value.strip()
    if required and not text:
        raise InvalidInput(f"{what} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid UTF-8 text") from None
    allowed = "\n\t" if multiline else ""
    bad = next((ch for ch in text if (ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0) and ch not in allowed), None)
    if bad is not None:
        raise InvalidInput(f"{what} contains the control character {bad!r}")
    if len(text) > max_length:
        raise InvalidInput(f"{what} is {len(text)} characters long; at most {max_length}")
    return text


def check_username(username: str) -> str:
    name = check_text(username, "username", MAX_USERNAME_OCTETS)
    if len(name.encode()) > MAX_USERNAME_OCTETS:
        raise InvalidInput(f"username {name[:40]!r}... is longer than 253 octets (RFC 2865 §5.1)")
    if len(name.lower()) > MAX_USERNAME_OCTETS:  # lower() can lengthen a name ('İ' -> 'i̇'): the key must fit too
        raise InvalidInput(f"username {name[:40]!r}... is longer than 253 characters once lower-cased")
    return name


def check_realm_name(name: str) -> str:
    """A realm as stored: lower-cased, no spaces, no '@'."""
    key = check_text(name, "realm", MAX_REALM).lower()
    if len(key) > MAX_REALM:  # lower() can lengthen a name
        raise InvalidInput(f"realm {name[:40]!r}... is longer than {MAX_REALM} characters once lower-cased")
    if any(ch.isspace() or ch == "@" for ch in key):
        raise InvalidInput(f"{_show(name)} is not a realm name (no spaces, no '@')")
    return key


def check_address(text: str) -> str:
    """An IPv4 or IPv6 address, in ipaddress' canonical text (no IPv6 zone: a subscriber's address
    is global, and the columns hold 45 characters)."""
    raw = check_text(text, "address", 64)
    if "%" in raw:
        raise InvalidInput(f"{_show(raw)} has an IPv6 zone ('%'); give the address alone")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise InvalidInput(f"{_show(raw)} is not an IP address") from None


def check_cidr(text: str) -> str:
    raw = check_text(text, "CIDR block", 64)
    if "%" in raw:
        raise InvalidInput(f"{_show(raw)} has an IPv6 zone ('%'); give the block alone")
    try:
        return str(ipaddress.ip_network(raw, strict=True))
    except ValueError as exc:
        raise InvalidInput(f"{_show(raw)} is not a CIDR block ({exc})") from None


def _show(value: str, limit: int = 80) -> str:
    """A value quoted for a message, shortened: an error line stays one readable line."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """ISO date or date-time, UTC unless the text carries an offset. A bare date means the end of
    that day (the first instant of the next) when `end_of_day`, its start otherwise."""
    raw = check_text(text, "time", 64)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{_show(text)} is not an ISO date or date-time (e.g. 2027-01-31 or 2027-01-31T14:03)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"{text!r} is outside the supported range of times") from None
    if value >= LATEST:
        raise InvalidInput(f"{text!r} is later than {LATEST:%Y-%m-%d}")
    if value.year < 1970:
        raise InvalidInput(f"{text!r} is before 1970")
    if end_of_day and is_date_only(raw):
        value += timedelta(days=1)
    return value


def is_date_only(text: str) -> bool:
    return len(text.strip()) == 10


_DURATION = re.compile(r"^(\d{1,9})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """90m, 12h, 30d or 2w: positive, and at most MAX_DURATION."""
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidInput(f"{_show(text)} is not a duration like 90m, 12h, 30d or 2w")
    n = int(match.group(1))
    if n <= 0:
        raise InvalidInput(f"duration {_show(text)} must be positive")
    try:
        value = timedelta(**{_UNITS[match.group(2)]: n})
    except OverflowError:
        value = timedelta.max
    if value > MAX_DURATION:
        raise InvalidInput(f"duration {_show(text)} is longer than {MAX_DURATION.days} days")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest of 2w, 30d, 12h, 90m that says `value` exactly (as parse_duration reads it)."""
    minutes = int(value.total_seconds() // 60)
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def check_count(value: int, what: str, *, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidInput(f"{what} {value} is outside {low}..{high:,}")
    return value


def format_expiry(value: datetime | None) -> str:
    """How an expiry reads: a date given as a date ("until 2027-01-31, end of day UTC") reads as
    that date; an exact time as itself; None as permanent."""
    if value is None:
        return "permanent (no expiry)"
    value = value.astimezone(UTC)
    if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
        return f"until {(value - timedelta(days=1)):%Y-%m-%d}, end of day UTC"
    return f"until {value:%Y-%m-%d %H:%M} UTC"
