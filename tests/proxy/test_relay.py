"""The relay, the duplicate cache and upstream health in memory: datagrams in, datagrams out,
a clock the test turns by hand (as h11 tests its connection). No socket, no sleep; the real
FreeRADIUS end-to-end tests are beside these (test_proxy.py, test_freeradius_upstream.py).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from radius_op25b.core.config import parse_config, resolve_secrets
from radius_op25b.proxy.relay import ACCT, AUTH, Relay
from radius_op25b.proxy.upstreams import Health
from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCOUNTING_RESPONSE,
    ACCT_SESSION_ID,
    ACCT_STATUS_START,
    ACCT_STATUS_TYPE,
    CLASS,
    FILTER_ID,
    STATUS_SERVER,
    USER_NAME,
    USER_PASSWORD,
    Packet,
    encode_integer,
    get_all,
    get_first,
    new_request_authenticator,
    parse_packet,
    sign_access_request,
    sign_accounting_request,
    sign_reply,
    verify_reply,
)
from radius_op25b.radius.crypto import decrypt_user_password, encrypt_user_password

NAS = ("127.0.0.1", 40000)
NAS_SECRET, UP_SECRET = b"nas-secret", b"upstream-secret"


class Timer:
    def __init__(self, clock: ManualClock, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.clock, self.when, self.callback, self.args, self.cancelled = clock, when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """time() and call_later() for the relay; `advance` runs the timers that fall due, in order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(self, self.now + delay, callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback(*timer.args)
        self.now = end


class Wire:
    """A transport that keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: Any = None, /) -> None:
        self.sent.append((data, addr))

    def take(self) -> list[tuple[bytes, tuple[str, int]]]:
        out, self.sent = self.sent, []
        return out


CONFIG = {
    "server": {"max_request_time": 10},
    "clients": [{"name": "bng1", "address": "127.0.0.1", "secret": NAS_SECRET.decode(), "require_message_authenticator": True}],
    "upstreams": [
        {"name": "a", "address": "127.0.0.2", "secret": UP_SECRET.decode(), "response_window": 2, "zombie_period": 4},
        {"name": "b", "address": "127.0.0.3", "secret": UP_SECRET.decode(), "response_window": 2, "zombie_period": 4},
    ],
}


def _config():  # type: ignore[no-untyped-def]
    return resolve_secrets(parse_config(CONFIG, "test.toml"))  # as serve does: the secrets read


@pytest.fixture
def relay() -> tuple[Relay, ManualClock, Wire, Wire, list[Wire]]:
    clock = ManualClock()
    tagged: list[str] = []

    def accept_hook(job, attributes):  # type: ignore[no-untyped-def]
        tagged.append(job.username)
        return tuple(attributes) + ((FILTER_ID, b"OP25B-FULL"), (CLASS, b"op25b:full"))

    relay = Relay(_config(), clock, accept_hook)  # type: ignore[arg-type]
    auth, acct = Wire(), Wire()
    relay.nas_transports = {AUTH: auth, ACCT: acct}
    upstream = Wire()
    relay.add_upstream_transport(upstream)
    return relay, clock, auth, acct, [upstream]


def access_request(identifier: int = 7, user: bytes = b"alice@isp.example", password: bytes = b"pw") -> bytes:
    authenticator = new_request_authenticator()
    attrs = ((USER_NAME, user), (USER_PASSWORD, encrypt_user_password(password, NAS_SECRET, authenticator)))
    return sign_access_request(Packet(ACCESS_REQUEST, identifier, authenticator, attrs), NAS_SECRET)


def answer(request_wire: bytes, code: int = ACCESS_ACCEPT, extra: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    request = parse_packet(request_wire)
    # an upstream echoes the Proxy-State it got (RFC 2865 §5.33)
    states = tuple((33, v) for v in get_all(request.attributes, 33))
    return sign_reply(
        Packet(code, request.identifier, request.authenticator, extra + states), request.authenticator, UP_SECRET, True
    )


def test_an_accept_goes_back_with_the_filter_and_the_password_re_encrypted(relay) -> None:  # type: ignore[no-untyped-def]
    r, clock, auth, _, (up,) = relay
    wire = access_request()
    r.datagram_from_nas(AUTH, wire, NAS)
    ((sent, addr),) = up.take()
    assert addr == ("127.0.0.2", 1812)
    forwarded = parse_packet(sent)
    hidden = get_first(forwarded.attributes, USER_PASSWORD)
    assert decrypt_user_password(hidden, UP_SECRET, forwarded.authenticator) == b"pw"
    clock.advance(0.01)
    r.datagram_from_upstream(0, answer(sent), addr)
    ((reply, to),) = auth.take()
    assert to == NAS
    assert verify_reply(reply, parse_packet(wire).authenticator, NAS_SECRET)
    got = parse_packet(reply)
    assert got.code == ACCESS_ACCEPT and got.attributes[0][0] == 80  # Message-Authenticator first
    assert get_first(got.attributes, FILTER_ID) == b"OP25B-FULL"
    assert get_first(got.attributes, 33) is None  # our Proxy-State is stripped


def test_a_retransmission_in_flight_is_dropped_and_one_answered_gets_the_cached_reply(relay) -> None:  # type: ignore[no-untyped-def]
    r, clock, auth, _, (up,) = relay
    wire = access_request()
    r.datagram_from_nas(AUTH, wire, NAS)
    r.datagram_from_nas(AUTH, wire, NAS)  # RFC 5080 §2.2.2: same source, id and authenticator
    assert len(up.sent) == 1
    ((sent, addr),) = up.take()
    r.datagram_from_upstream(0, answer(sent), addr)
    first = auth.take()
    clock.advance(1.0)
    r.datagram_from_nas(AUTH, wire, NAS)
    assert auth.take() == first and up.take() == []  # answered from the cache, not relayed again
    clock.advance(11.0)
    r.housekeeping()  # past the hold time the cache forgets it: a new request
    r.datagram_from_nas(AUTH, wire, NAS)
    assert len(up.take()) == 1


def test_a_silent_upstream_fails_over_and_turns_zombie_then_dead(relay) -> None:  # type: ignore[no-untyped-def]
    r, clock, auth, _, (up,) = relay
    r.datagram_from_nas(AUTH, access_request(), NAS)
    ((_, first),) = up.take()
    assert first[0] == "127.0.0.2"
    clock.advance(2.0)  # response_window of a: no reply
    ((sent, second),) = up.take()
    assert second[0] == "127.0.0.3"  # the next in the fail-over pool, the same request
    assert r.router.upstreams["a"].health is Health.ZOMBIE
    r.datagram_from_upstream(0, answer(sent), second)
    assert len(auth.take()) == 1
    clock.advance(4.5)
    r.housekeeping()
    assert r.router.upstreams["a"].health is Health.DEAD


def test_a_forged_or_misaddressed_upstream_reply_is_refused(relay) -> None:  # type: ignore[no-untyped-def]
    r, clock, auth, _, (up,) = relay
    r.datagram_from_nas(AUTH, access_request(), NAS)
    ((sent, addr),) = up.take()
    forged = bytearray(answer(sent))
    forged[-1] ^= 1
    r.datagram_from_upstream(0, bytes(forged), addr)
    r.datagram_from_upstream(0, answer(sent), ("127.0.0.9", 1812))
    assert auth.take() == []
    assert r.hot.drops["upstream_bad_authenticator"]._value.get() >= 1  # noqa: SLF001
    r.datagram_from_upstream(0, answer(sent), addr)  # the real one still counts
    assert len(auth.take()) == 1


def test_no_upstream_within_the_budget_means_no_answer(relay) -> None:  # type: ignore[no-untyped-def]
    r, clock, auth, _, (up,) = relay
    r.datagram_from_nas(AUTH, access_request(), NAS)
    for _ in range(10):
        clock.advance(2.0)
    assert auth.take() == []  # never an invented Reject: the NAS retries
    assert 4 <= len(up.take()) <= 6  # a, b, a, b ... within max_request_time 10 s


def test_a_request_without_message_authenticator_is_dropped(relay) -> None:  # type: ignore[no-untyped-def]
    r, _, auth, _, (up,) = relay
    authenticator = new_request_authenticator()
    bare = Packet(ACCESS_REQUEST, 1, authenticator, ((USER_NAME, b"bob"),))
    from radius_op25b.radius.packet import encode_packet

    r.datagram_from_nas(AUTH, encode_packet(bare), NAS)
    assert up.take() == [] and auth.take() == []


def test_status_server_is_answered_here(relay) -> None:  # type: ignore[no-untyped-def]
    r, _, auth, _, (up,) = relay
    authenticator = new_request_authenticator()
    r.datagram_from_nas(AUTH, sign_access_request(Packet(STATUS_SERVER, 9, authenticator, ()), NAS_SECRET), NAS)
    ((reply, _),) = auth.take()
    assert parse_packet(reply).code == ACCESS_ACCEPT and up.take() == []


def test_accounting_is_answered_when_the_record_is_durable(relay) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    r, _, _, acct, (up,) = relay
    loop = asyncio.new_event_loop()
    durable: list[asyncio.Future[None]] = []

    def hook(job):  # type: ignore[no-untyped-def]
        durable.append(loop.create_future())
        return durable[-1]

    r.accounting_hook = hook
    attrs = ((USER_NAME, b"alice"), (ACCT_STATUS_TYPE, encode_integer(ACCT_STATUS_START)), (ACCT_SESSION_ID, b"s1"))
    wire = sign_accounting_request(Packet(ACCOUNTING_REQUEST, 3, bytes(16), attrs), NAS_SECRET)
    r.datagram_from_nas(ACCT, wire, NAS)
    ((sent, addr),) = up.take()
    assert addr == ("127.0.0.2", 1813)
    request = parse_packet(sent)
    states = tuple((33, v) for v in get_all(request.attributes, 33))
    reply = sign_reply(
        Packet(ACCOUNTING_RESPONSE, request.identifier, request.authenticator, states), request.authenticator, UP_SECRET, False
    )
    r.datagram_from_upstream(0, reply, addr)
    assert acct.take() == []  # not before the spool has it
    durable[0].set_result(None)
    loop.run_until_complete(asyncio.sleep(0))
    ((answer_wire, to),) = acct.take()
    assert to == NAS and parse_packet(answer_wire).code == ACCOUNTING_RESPONSE
    loop.close()


def test_a_reply_that_cannot_be_re_encrypted_counts_as_no_reply_and_the_next_upstream_answers(relay) -> None:  # type: ignore[no-untyped-def]
    from radius_op25b.radius import TUNNEL_PASSWORD

    r, clock, auth, _, (up,) = relay
    r.datagram_from_nas(AUTH, access_request(), NAS)
    ((sent, addr),) = up.take()
    before = r.hot.drops["upstream_malformed"]._value.get()  # noqa: SLF001
    # tag + salt and no encrypted part: RFC 2868 §3.5 wants at least one 16-octet block
    r.datagram_from_upstream(0, answer(sent, extra=((TUNNEL_PASSWORD, b"\x01\x80\x01"),)), addr)
    assert auth.take() == []
    assert r.hot.drops["upstream_malformed"]._value.get() == before + 1  # noqa: SLF001
    ((again, second),) = up.take()  # at once, not after the response window
    assert second[0] == "127.0.0.3"
    r.datagram_from_upstream(0, answer(again), second)
    ((reply, _),) = auth.take()
    assert parse_packet(reply).code == ACCESS_ACCEPT
    assert r.pending == {}


def test_requests_leave_from_the_listeners_address_unless_told_otherwise() -> None:
    from radius_op25b.proxy.server import source_address

    def with_listen(host: str):  # type: ignore[no-untyped-def]
        return parse_config({**CONFIG, "server": {"auth_listen": f"{host}:1812"}}, "test.toml")

    assert source_address(with_listen("192.0.2.10"), 4) == "192.0.2.10"
    assert source_address(with_listen("192.0.2.10"), 6) == "::"
    assert source_address(with_listen("0.0.0.0"), 4) == "0.0.0.0"
    assert source_address(with_listen("2001:db8::5"), 6) == "2001:db8::5"


def test_source_address_from_the_config_wins() -> None:
    from radius_op25b.proxy.server import source_address

    config = parse_config({**CONFIG, "server": {"auth_listen": "0.0.0.0:1812", "source_address": "192.0.2.7"}}, "test.toml")
    assert source_address(config, 4) == "192.0.2.7"
    with pytest.raises(Exception, match="server.source_address: 'bng' is not an IP address"):
        parse_config({**CONFIG, "server": {"source_address": "bng"}}, "test.toml")


def test_an_ipv6_upstream_gets_an_ipv6_socket() -> None:
    config = parse_config(
        {
            "clients": CONFIG["clients"],
            "upstreams": [{"name": "v6", "address": "::1", "secret": UP_SECRET.decode()}],
        },
        "test.toml",
    )
    clock = ManualClock()
    r = Relay(resolve_secrets(config), clock)  # type: ignore[arg-type]
    v4, v6, auth = Wire(), Wire(), Wire()
    r.nas_transports = {AUTH: auth, ACCT: Wire()}
    r.add_upstream_transport(v4, 4)
    r.add_upstream_transport(v6, 6)
    r.datagram_from_nas(AUTH, access_request(), NAS)
    assert v4.take() == []
    ((_, addr),) = v6.take()
    assert addr == ("::1", 1812)
