"""A seeded mutator for the wire layer, used by the bounded fuzz test in the suite
(tests/radius/test_fuzz.py) and by the longer run in bench/fuzz_wire.py.

Each input starts from a valid packet (signed with the right secret, so that the checks past the
authenticator are reached too) and gets a few mutations: flipped bits, a changed length or
attribute length, inserted or removed octets, truncation, duplicated attributes. Every entry
point of the wire layer, and the relay's datagram handler, is then called with it. The only
exceptions allowed are the project's own (radius_op25b.errors.Op25bError); anything else is a
finding.
"""

from __future__ import annotations

import logging
import random
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from radius_op25b.core.accounting import record_from_request
from radius_op25b.errors import Op25bError
from radius_op25b.logs import RateLimitedLog
from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCT_STATUS_START,
    ACCT_STATUS_TYPE,
    CHAP_PASSWORD,
    FRAMED_IP_ADDRESS,
    MS_MPPE_RECV_KEY,
    TUNNEL_PASSWORD,
    USER_NAME,
    USER_PASSWORD,
    VENDOR_MICROSOFT,
    VENDOR_SPECIFIC,
    Packet,
    encode_integer,
    new_request_authenticator,
    parse_packet,
    reencrypt_reply_attributes,
    reencrypt_request_attributes,
    sign_access_request,
    sign_accounting_request,
    sign_reply,
    verify_accounting_request,
    verify_message_authenticator,
    verify_reply,
)
from radius_op25b.radius.crypto import encrypt_user_password

SECRET, OTHER = b"fuzz-secret", b"other-secret"


def seeds(rng: random.Random) -> list[bytes]:
    auth = new_request_authenticator()
    pw = encrypt_user_password(b"password", SECRET, auth)
    request = sign_access_request(
        Packet(ACCESS_REQUEST, 1, auth, ((USER_NAME, b"alice@isp.example"), (USER_PASSWORD, pw), (CHAP_PASSWORD, bytes(17)))),
        SECRET,
    )
    mppe = struct.pack("!IBB", VENDOR_MICROSOFT, MS_MPPE_RECV_KEY, 2 + 34) + bytes(34)
    accept = sign_reply(
        Packet(
            ACCESS_ACCEPT,
            1,
            auth,
            ((TUNNEL_PASSWORD, b"\x01\x80\x01" + bytes(16)), (VENDOR_SPECIFIC, mppe), (FRAMED_IP_ADDRESS, bytes(4))),
        ),
        auth,
        SECRET,
        True,
    )
    acct = sign_accounting_request(
        Packet(
            ACCOUNTING_REQUEST,
            2,
            bytes(16),
            ((USER_NAME, b"bob"), (ACCT_STATUS_TYPE, encode_integer(ACCT_STATUS_START)), (44, b"s1")),
        ),
        SECRET,
    )
    return [request, accept, acct]


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        if kind == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and len(buf) >= 4:  # the packet's Length field
            struct.pack_into(
                "!H", buf, 2, rng.choice([0, 1, 19, 20, len(buf) - 1, len(buf) + 1, 4096, 4097, 65535, rng.randrange(65536)])
            )
        elif kind == 2 and len(buf) > 21:  # an attribute's length octet
            buf[rng.randrange(21, len(buf))] = rng.choice([0, 1, 2, 3, 255, rng.randrange(256)])
        elif kind == 3:  # insert octets
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        elif kind == 4 and buf:  # cut
            del buf[rng.randrange(len(buf)) :]
        elif kind == 5 and len(buf) > 20:  # repeat the attributes
            buf += buf[20:]
        elif kind == 6 and buf:  # the code
            buf[0] = rng.randrange(256)
    return bytes(buf)


def entry_points() -> list[tuple[str, Callable[[bytes], object]]]:
    """Every function of the wire layer that takes octets from the network."""

    def reencrypt(data: bytes) -> object:
        packet = parse_packet(data)
        a = packet.authenticator
        reencrypt_request_attributes(packet.attributes, SECRET, a, OTHER, a)
        return reencrypt_reply_attributes(packet.attributes, SECRET, a, OTHER, a)

    return [
        ("parse_packet", parse_packet),
        ("verify_reply", lambda d: verify_reply(d, bytes(16), SECRET)),
        ("verify_accounting_request", lambda d: verify_accounting_request(d, SECRET)),
        # a reply's check needs its request's authenticator: the relay always has it
        ("verify_message_authenticator", lambda d: verify_message_authenticator(d, SECRET, bytes(16))),
        ("reencrypt", reencrypt),
        ("record_from_request", lambda d: record_from_request(parse_packet(d).attributes, "nas", "127.0.0.1", 0.0)),
    ]


def relay_entry_points() -> list[tuple[str, Callable[[bytes], object]]]:
    """The relay's handlers for a datagram from a NAS and from an upstream, without the
    catch-all that counts a bug as internal_error (so that a bug shows here)."""
    from radius_op25b.core.config import parse_config, resolve_secrets
    from radius_op25b.proxy.relay import ACCT, AUTH, Relay

    class Sink:
        def sendto(self, data: bytes, addr: object = None) -> None:
            pass

    class Clock:
        def time(self) -> float:
            return 0.0

        def call_later(self, delay: float, callback: object, *args: object) -> object:
            return type("T", (), {"cancel": lambda self: None})()

    config = parse_config(
        {
            "clients": [
                {"name": "nas", "address": "127.0.0.1", "secret": SECRET.decode(), "require_message_authenticator": False}
            ],
            "upstreams": [{"name": "up", "address": "127.0.0.2", "secret": SECRET.decode()}],
        },
        "fuzz.toml",
    )
    relay = Relay(resolve_secrets(config), Clock())  # type: ignore[arg-type]
    relay.nas_transports = {AUTH: Sink(), ACCT: Sink()}
    relay.add_upstream_transport(Sink())
    quiet = logging.getLogger("op25b.fuzz")  # drops are expected: keep them out of the log
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    relay.limited = RateLimitedLog(quiet)
    nas = ("127.0.0.1", 5000)

    def both(data: bytes) -> None:
        relay._from_nas(AUTH, data, nas)  # noqa: SLF001
        relay._from_nas(ACCT, data, nas)  # noqa: SLF001
        relay._from_upstream(0, data, ("127.0.0.2", 1812))  # noqa: SLF001

    return [("relay", both)]


@dataclass
class Report:
    inputs: int = 0
    refused: int = 0  # the project's own error: a clean refusal
    findings: Counter[str] = field(default_factory=Counter)  # other exception types, by entry point
    examples: dict[str, bytes] = field(default_factory=dict)


def run(inputs: int, seed: int, *, extra: list[tuple[str, Callable[[bytes], object]]] | None = None) -> Report:
    rng = random.Random(seed)
    pool = seeds(rng)
    points = entry_points() + (extra or [])
    report = Report()
    for _ in range(inputs):
        data = mutate(rng.choice(pool), rng)
        report.inputs += 1
        for name, call in points:
            try:
                call(data)
            except Op25bError:
                report.refused += 1
            except Exception as exc:  # a finding: the wire layer must refuse with its own errors
                key = f"{name}: {type(exc).__name__}"
                report.findings[key] += 1
                report.examples.setdefault(key, data)
    return report
