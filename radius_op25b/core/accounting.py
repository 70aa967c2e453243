"""Session records from relayed accounting: a pure extractor (packet -> record) and the one
validation (`clean_record`) every record passes before SQL. The spool that keeps them until the
database has them is `services/spool.py`."""

from __future__ import annotations

import functools
import ipaddress
import json
import math
from dataclasses import asdict, dataclass, replace

from radius_op25b.radius import (
    ACCT_DELAY_TIME,
    ACCT_INPUT_GIGAWORDS,
    ACCT_INPUT_OCTETS,
    ACCT_OUTPUT_GIGAWORDS,
    ACCT_OUTPUT_OCTETS,
    ACCT_SESSION_ID,
    ACCT_SESSION_TIME,
    ACCT_STATUS_ACCOUNTING_OFF,
    ACCT_STATUS_ACCOUNTING_ON,
    ACCT_STATUS_INTERIM_UPDATE,
    ACCT_STATUS_START,
    ACCT_STATUS_STOP,
    ACCT_STATUS_TYPE,
    ACCT_TERMINATE_CAUSE,
    CLASS,
    DELEGATED_IPV6_PREFIX,
    EVENT_TIMESTAMP,
    FRAMED_IP_ADDRESS,
    FRAMED_IPV6_PREFIX,
    NAS_IDENTIFIER,
    NAS_IP_ADDRESS,
    NAS_PORT_ID,
    USER_NAME,
    Attributes,
    decode_integer,
    decode_ipv6_prefix,
    get_all,
    get_first,
    ipv4_text,
)

STATUS_NAMES = {
    ACCT_STATUS_START: "start",
    ACCT_STATUS_STOP: "stop",
    ACCT_STATUS_INTERIM_UPDATE: "interim",
    ACCT_STATUS_ACCOUNTING_ON: "on",
    ACCT_STATUS_ACCOUNTING_OFF: "off",
}
# RFC 2866 §5.10 values, for readable session rows.
TERMINATE_CAUSES = {
    1: "User-Request",
    2: "Lost-Carrier",
    3: "Lost-Service",
    4: "Idle-Timeout",
    5: "Session-Timeout",
    6: "Admin-Reset",
    7: "Admin-Reboot",
    8: "Port-Error",
    9: "NAS-Error",
    10: "NAS-Request",
    11: "NAS-Reboot",
    12: "Port-Unneeded",
    13: "Port-Preempted",
    14: "Port-Suspended",
    15: "Service-Unavailable",
    16: "Callback",
    17: "User-Error",
    18: "Host-Request",
}


@dataclass(frozen=True, slots=True)
class AccountingRecord:
    status: str  # start | interim | stop | on | off
    event_time: float  # epoch seconds: Event-Timestamp, else arrival minus Acct-Delay-Time
    nas_name: str
    nas_address: str  # where the accounting came from: CoA goes back there
    acct_session_id: str
    username: str
    nas_ip_address: str | None = None
    nas_identifier: str | None = None
    nas_port_id: str | None = None
    framed_ip: str | None = None
    framed_ipv6_prefix: str | None = None
    delegated_ipv6_prefix: str | None = None
    class_applied: str | None = None
    session_time: int | None = None
    input_octets: int | None = None
    output_octets: int | None = None
    terminate_cause: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> AccountingRecord:
        return cls(**json.loads(line))


def _text(attributes: Attributes, attr_type: int) -> str | None:
    raw = get_first(attributes, attr_type)
    return raw.decode("utf-8", "replace") if raw is not None else None


def _integer(attributes: Attributes, attr_type: int) -> int | None:
    raw = get_first(attributes, attr_type)
    return decode_integer(raw) if raw is not None and len(raw) == 4 else None


def _octets(attributes: Attributes, low: int, high: int) -> int | None:
    return octets(_integer(attributes, low), _integer(attributes, high))


def event_time_of(stamp: int | None, delay: int | None, received: float) -> float:
    """When the event happened: Event-Timestamp (RFC 2869 §5.3), else its arrival minus
    Acct-Delay-Time (RFC 2866 §5.2)."""
    return float(stamp) if stamp else received - (delay or 0)


def octets(count: int | None, gigawords: int | None) -> int | None:
    """RFC 2869 §5.1: Gigawords count the times the 32-bit octet counter wrapped."""
    return None if count is None else ((gigawords or 0) << 32) + count


def _prefix(attributes: Attributes, attr_type: int) -> str | None:
    raw = get_first(attributes, attr_type)
    if raw is None:
        return None
    try:
        return str(decode_ipv6_prefix(raw))
    except (ValueError, Exception):
        return None


def record_from_request(attributes: Attributes, nas_name: str, nas_address: str, received: float) -> AccountingRecord | None:
    """The session facts of one Accounting-Request, or None for kinds we do not record."""
    status = STATUS_NAMES.get(_integer(attributes, ACCT_STATUS_TYPE) or 0)
    if status is None:
        return None
    stamp = _integer(attributes, EVENT_TIMESTAMP)
    event_time = event_time_of(stamp, _integer(attributes, ACCT_DELAY_TIME), received)
    framed = get_first(attributes, FRAMED_IP_ADDRESS)
    nas_ip = get_first(attributes, NAS_IP_ADDRESS)
    cause = _integer(attributes, ACCT_TERMINATE_CAUSE)
    tag = next((c[6:].decode("ascii", "replace") for c in get_all(attributes, CLASS) if c.startswith(b"op25b:")), None)
    return AccountingRecord(
        status=status,
        event_time=event_time,
        nas_name=nas_name,
        nas_address=nas_address,
        acct_session_id=_text(attributes, ACCT_SESSION_ID) or "",
        username=_text(attributes, USER_NAME) or "",
        nas_ip_address=ipv4_text(nas_ip) if nas_ip is not None and len(nas_ip) == 4 else None,
        nas_identifier=_text(attributes, NAS_IDENTIFIER),
        nas_port_id=_text(attributes, NAS_PORT_ID),
        framed_ip=ipv4_text(framed) if framed is not None and len(framed) == 4 else None,
        framed_ipv6_prefix=_prefix(attributes, FRAMED_IPV6_PREFIX),
        delegated_ipv6_prefix=_prefix(attributes, DELEGATED_IPV6_PREFIX),
        class_applied=tag,
        session_time=_integer(attributes, ACCT_SESSION_TIME),
        input_octets=_octets(attributes, ACCT_INPUT_OCTETS, ACCT_INPUT_GIGAWORDS),
        output_octets=_octets(attributes, ACCT_OUTPUT_OCTETS, ACCT_OUTPUT_GIGAWORDS),
        terminate_cause=TERMINATE_CAUSES.get(cause, str(cause)) if cause is not None else None,
    )


# --- validation before SQL ------------------------------------------------------------------------
#
# The widths are those of store/models.py AcctSession (String(n) counts characters on both
# backends); the same rules run for SQLite and PostgreSQL, so a record never reaches one backend
# in a shape the other would refuse. Text is clamped (a NAS's over-long Acct-Session-Id still
# makes a session); a value that cannot mean anything is dropped to None; a record that cannot
# be a session at all (no status, no NAS address) is refused: RecordRefused, and it is set aside.

TEXT_WIDTHS = {
    "nas_name": 100,
    "nas_address": 45,
    "acct_session_id": 253,
    "username": 253,
    "nas_ip_address": 45,
    "nas_identifier": 253,
    "nas_port_id": 253,
    "framed_ip": 45,
    "framed_ipv6_prefix": 49,
    "delegated_ipv6_prefix": 49,
    "class_applied": 8,
    "terminate_cause": 64,
}
USERNAME_KEY_WIDTH = 253
COUNTER_MAX = (1 << 63) - 1  # a signed 64-bit BIGINT
SESSION_TIME_MAX = 100 * 365 * 86400  # a century: any more is a broken NAS, and overflows timedelta
# RFC 2869 §5.3 Event-Timestamp is 32-bit seconds since 1970; anything outside that is not a time.
EVENT_TIME_MIN, EVENT_TIME_MAX = 0.0, float((1 << 32) - 1)


class RecordRefused(ValueError):
    """A record that cannot be a session row: set aside (quarantined), never retried."""


def _clean_text(value: object, width: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordRefused(f"text expected, got {type(value).__name__}")
    if "\x00" in value:
        value = value.replace("\x00", "")  # PostgreSQL text cannot hold NUL
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (from a spool line's \ud800): not UTF-8
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:width]


def _clean_int(value: object, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordRefused(f"integer expected, got {type(value).__name__}")
    return min(max(value, 0), high)


@functools.lru_cache(maxsize=65536)  # NAS addresses repeat in every record; ip_address is slow
def _clean_address(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


@functools.lru_cache(maxsize=16384)
def _clean_prefix(value: str | None) -> str | None:
    if not value:
        return None
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    # Stored normalized, as who_had's candidates are (store/sessions.py _prefix_candidates).
    return str(network) if network.version == 6 else None


def username_key_of(username: str) -> str:
    """The lower-cased lookup key, clamped: lowering can lengthen text ('İ' -> 'i̇')."""
    return username.strip().lower()[:USERNAME_KEY_WIDTH]


def clean_record(record: AccountingRecord) -> AccountingRecord:
    """The record as the sessions table can hold it on either backend; RecordRefused when it
    cannot be a session row at all."""
    if record.status not in STATUS_NAMES.values():
        raise RecordRefused(f"unknown status {record.status!r}")
    event_time = record.event_time
    if isinstance(event_time, bool) or not isinstance(event_time, int | float) or not math.isfinite(event_time):
        raise RecordRefused(f"event time {event_time!r} is not a time")
    changes: dict[str, object] = {"event_time": float(min(max(event_time, EVENT_TIME_MIN), EVENT_TIME_MAX))}
    for name, width in TEXT_WIDTHS.items():
        changes[name] = _clean_text(getattr(record, name), width)
    for name in ("acct_session_id", "username", "nas_name"):
        if changes[name] is None:
            changes[name] = ""
    nas_address = _clean_address(changes["nas_address"])
    if nas_address is None:
        raise RecordRefused(f"NAS address {record.nas_address!r} is not an address")  # CoA goes back there
    changes["nas_address"] = nas_address
    changes["nas_ip_address"] = _clean_address(changes["nas_ip_address"])
    changes["framed_ip"] = _clean_address(changes["framed_ip"])
    for name in ("framed_ipv6_prefix", "delegated_ipv6_prefix"):
        changes[name] = _clean_prefix(changes[name])
    changes["session_time"] = _clean_int(record.session_time, SESSION_TIME_MAX)
    for name in ("input_octets", "output_octets"):
        changes[name] = _clean_int(getattr(record, name), COUNTER_MAX)
    if all(value == getattr(record, name) for name, value in changes.items()) and type(record.event_time) is float:
        return record
    return replace(record, **changes)  # type: ignore[arg-type]
