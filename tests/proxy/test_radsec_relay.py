"""RadSec's pure parts and the relay's TLS rules in memory: stream framing (RFC 6613 §2.6.4),
ALPN version choice and the RADIUS/1.1 packet form (RFC 9765), no retransmission over one TLS
connection (RFC 6613 §2.6.1), 256 outstanding per 1.0 connection, and a closed connection's
requests going over the next. The real peers are in test_radsec.py.
"""

from __future__ import annotations

import pytest

from radius_op25b.core.config import parse_config, resolve_secrets
from radius_op25b.errors import ConfigError, MalformedPacket
from radius_op25b.proxy.relay import ACCT, AUTH, Relay
from radius_op25b.radius import (
    ACCESS_ACCEPT,
    ACCESS_REQUEST,
    CHAP_CHALLENGE,
    CHAP_PASSWORD,
    MESSAGE_AUTHENTICATOR,
    TUNNEL_PASSWORD,
    USER_NAME,
    USER_PASSWORD,
    Packet,
    decrypt_user_password,
    encrypt_user_password,
    get_first,
    parse_packet,
    sign_reply,
)
from radius_op25b.radius.stream import (
    V10,
    V11,
    StreamFramer,
    VersionRefused,
    alpn_offer,
    encode_v11,
    hide_request_attributes,
    negotiated_version,
    reveal_request_attributes,
    stream_packet_length,
    token_of,
)
from tests.proxy.test_relay import NAS, ManualClock, Wire, access_request

UP_SECRET = b"radsec"


# --- framing and versions ----------------------------------------------------------------------


def test_the_framer_cuts_packets_at_their_length_across_reads() -> None:
    one = access_request(1)
    two = access_request(2)
    framer = StreamFramer()
    stream = one + two
    assert framer.feed(stream[:3]) == []
    assert framer.feed(stream[3 : len(one) + 5]) == [one]
    assert framer.pending == 5
    assert framer.feed(stream[len(one) + 5 :]) == [two]
    assert framer.pending == 0


@pytest.mark.parametrize("length", [0, 19, 4097, 65535])
def test_a_length_outside_20_to_4096_breaks_the_stream_for_good(length: int) -> None:
    header = bytes((1, 1)) + length.to_bytes(2, "big")
    with pytest.raises(MalformedPacket):
        stream_packet_length(header)
    framer = StreamFramer()
    with pytest.raises(MalformedPacket):
        framer.feed(header + bytes(40))
    with pytest.raises(MalformedPacket):  # nothing after it can be framed
        framer.feed(access_request())
    assert stream_packet_length(b"\x01\x01\x10\x00") == 4096


@pytest.mark.parametrize(
    "selected,mode,version",
    [
        ("radius/1.1", "allow", V11),
        ("radius/1.0", "allow", V10),
        (None, "allow", V10),
        ("radius/1.1", "require", V11),
        (None, "off", V10),
    ],
)
def test_the_version_follows_alpn(selected: str | None, mode: str, version: str) -> None:
    assert negotiated_version(selected, mode) == version


@pytest.mark.parametrize("selected", [None, "radius/1.0", "http/1.1"])
def test_require_closes_a_connection_without_1_1(selected: str | None) -> None:
    with pytest.raises(VersionRefused):
        negotiated_version(selected, "require")
    with pytest.raises(VersionRefused):  # nothing we offered
        negotiated_version("http/1.1", "allow")


def test_the_alpn_offer_per_mode() -> None:
    assert alpn_offer("allow") == ["radius/1.1", "radius/1.0"]
    assert alpn_offer("require") == ["radius/1.1"]
    assert alpn_offer("off") == []


def test_a_1_1_packet_has_the_token_zeros_and_no_message_authenticator() -> None:
    wire = encode_v11(ACCESS_ACCEPT, b"\x01\x02\x03\x04", [(MESSAGE_AUTHENTICATOR, bytes(16)), (USER_NAME, b"a")])
    assert wire == bytes((2, 0, 0, 23)) + b"\x01\x02\x03\x04" + bytes(12) + bytes((USER_NAME, 3)) + b"a"
    assert token_of(wire) == token_of(parse_packet(wire)) == b"\x01\x02\x03\x04"


def test_passwords_cross_between_1_0_and_1_1_and_chap_gets_its_challenge() -> None:
    auth = bytes(range(16))
    hidden = encrypt_user_password(b"alicepw", b"nas", auth)
    clear = reveal_request_attributes(
        [(USER_NAME, b"a"), (USER_PASSWORD, hidden), (MESSAGE_AUTHENTICATOR, bytes(16))], b"nas", auth
    )
    assert clear == ((USER_NAME, b"a"), (USER_PASSWORD, b"alicepw"))
    again = hide_request_attributes(clear, b"up", bytes(16))
    assert decrypt_user_password(get_first(again, USER_PASSWORD) or b"", b"up", bytes(16)) == b"alicepw"
    chap = reveal_request_attributes([(CHAP_PASSWORD, bytes(17))], b"nas", auth)
    assert get_first(chap, CHAP_CHALLENGE) == auth  # RFC 9765: no authenticator to stand in
    with pytest.raises(MalformedPacket):
        reveal_request_attributes([(TUNNEL_PASSWORD, bytes(19))], b"nas", auth)


def test_radsec_config_needs_tls_and_defaults_the_secret() -> None:
    with pytest.raises(ConfigError, match="radsec_listen: needs"):
        parse_config({"server": {"radsec_listen": "127.0.0.1:2083"}})
    with pytest.raises(ConfigError, match="upstreams\\[0\\].transport: radsec needs"):
        parse_config({"upstreams": [{"name": "u", "address": "127.0.0.1", "transport": "radsec"}]})
    with pytest.raises(ConfigError, match="tls.radius_v11: must be one of"):
        parse_config({"tls": {"radius_v11": "maybe"}})
    config = resolve_secrets(parse_config(_tls_config(), "/etc/op25b/op25b.toml"))
    (client,) = config.clients
    assert client.transport == "radsec" and client.secret.reveal() == b"radsec"  # RFC 6614 §2.3
    assert config.tls.ca_file == "/etc/op25b/ca.pem"  # relative to the config file
    assert config.upstreams[0].radsec_port == 2083
    assert config.upstreams[0].tls is None  # the [tls] identity
    # A per-upstream identity: its own files, the rest from [tls].
    data = _tls_config()
    data["upstreams"][0].update(certificate_file="aaa/op25b.pem", private_key_file="/keys/op25b.key", radsec_port=12083)
    own = parse_config(data, "/etc/op25b/op25b.toml").upstreams[0]
    assert own.tls is not None and own.radsec_port == 12083
    assert (own.tls.certificate_file, own.tls.private_key_file, own.tls.ca_file) == (
        "/etc/op25b/aaa/op25b.pem",
        "/keys/op25b.key",
        "/etc/op25b/ca.pem",
    )


# --- the relay over TLS connections ----------------------------------------------------------


def _tls_config() -> dict:  # type: ignore[type-arg]
    return {
        "server": {"radsec_listen": "127.0.0.1:2083", "max_request_time": 10},
        "tls": {"certificate_file": "op25b.pem", "private_key_file": "op25b.key", "ca_file": "ca.pem"},
        "clients": [{"name": "nas", "address": "127.0.0.1", "transport": "radsec", "require_message_authenticator": False}],
        "upstreams": [{"name": "tls", "address": "127.0.0.2", "transport": "radsec", "response_window": 2, "zombie_period": 4}],
    }


@pytest.fixture
def tls_relay() -> tuple[Relay, ManualClock, Wire]:
    clock = ManualClock()
    relay = Relay(resolve_secrets(parse_config(_tls_config(), "test.toml")), clock)  # type: ignore[arg-type]
    relay.nas_transports = {AUTH: Wire(), ACCT: Wire()}
    return relay, clock, Wire()


def _request(identifier: int) -> bytes:
    from radius_op25b.radius import new_request_authenticator, sign_access_request

    authenticator = new_request_authenticator()
    attrs = ((USER_NAME, b"alice"), (USER_PASSWORD, encrypt_user_password(b"pw", UP_SECRET, authenticator)))
    return sign_access_request(Packet(ACCESS_REQUEST, identifier, authenticator, attrs), UP_SECRET)


def test_a_request_is_never_sent_twice_over_one_connection(tls_relay) -> None:  # type: ignore[no-untyped-def]
    relay, clock, nas = tls_relay
    client = relay.config.clients[0]
    first = Wire()
    index = relay.add_upstream_transport(first, 4, owner="tls", version=V10)
    wire = _request(1)
    relay.packet_from_stream(nas, client, V10, wire, NAS)
    assert len(first.take()) == 1
    clock.advance(2.5)  # the response window passes with budget left, but this connection carried it
    clock.advance(5.0)
    assert first.take() == []  # RFC 6613 §2.6.1: the transport retries, not we
    assert relay.pending == {}  # abandoned: the NAS's own retry decides
    # Over a new connection the NAS's retry goes out again, and the answer reaches the NAS.
    relay.upstream_link_lost(index)
    second = Wire()
    relay.add_upstream_transport(second, 4, owner="tls", version=V10)
    relay.packet_from_stream(nas, client, V10, wire, NAS)
    ((sent, _),) = second.take()
    request = parse_packet(sent)
    assert decrypt_user_password(get_first(request.attributes, USER_PASSWORD) or b"", UP_SECRET, request.authenticator) == b"pw"
    states = ((33, get_first(request.attributes, 33) or b""),)
    reply = sign_reply(
        Packet(ACCESS_ACCEPT, request.identifier, request.authenticator, states), request.authenticator, UP_SECRET, False
    )
    relay.datagram_from_upstream(index + 1, reply, ("127.0.0.2", 2083))
    ((answer, to),) = nas.take()
    assert to == NAS and answer[0] == ACCESS_ACCEPT and answer[20] == MESSAGE_AUTHENTICATOR  # MA first to the NAS


def test_a_closed_connection_leaves_nothing_waiting_on_it(tls_relay) -> None:  # type: ignore[no-untyped-def]
    relay, clock, nas = tls_relay
    first = Wire()
    index = relay.add_upstream_transport(first, 4, owner="tls", version=V10)
    relay.packet_from_stream(nas, relay.config.clients[0], V10, _request(3), NAS)
    assert len(first.take()) == 1 and len(relay.pending) == 1
    relay.upstream_link_lost(index)
    assert relay.pending == {} and relay.upstream_version("tls") is None
    second = Wire()
    relay.add_upstream_transport(second, 4, owner="tls", version=V11)
    assert relay.upstream_version("tls") == V11
    relay.packet_from_stream(nas, relay.config.clients[0], V10, _request(4), NAS)
    ((sent, _),) = second.take()
    # Over RADIUS/1.1 the password travels in the clear and nothing is signed (RFC 9765, attribute handling).
    assert sent[1] == 0 and sent[8:20] == bytes(12)
    assert get_first(parse_packet(sent).attributes, USER_PASSWORD) == b"pw"
    assert get_first(parse_packet(sent).attributes, MESSAGE_AUTHENTICATOR) is None
    clock.advance(0.1)
    states = ((33, get_first(parse_packet(sent).attributes, 33) or b""),)
    relay.datagram_from_upstream(index + 1, encode_v11(ACCESS_ACCEPT, token_of(sent), states), ("127.0.0.2", 2083))
    ((answer, _),) = nas.take()
    assert answer[0] == ACCESS_ACCEPT and answer[20] == MESSAGE_AUTHENTICATOR  # 1.0 to the NAS: signed, MA first
    # A reply with a Token we did not send is dropped.
    relay.packet_from_stream(nas, relay.config.clients[0], V10, _request(5), NAS)
    ((sent, _),) = second.take()
    forged = bytes((token_of(sent)[0] ^ 0xFF,)) + token_of(sent)[1:]  # the slot is right, the Token not
    relay.datagram_from_upstream(index + 1, encode_v11(ACCESS_ACCEPT, forged, ()), ("127.0.0.2", 2083))
    assert nas.take() == []


def test_at_most_256_outstanding_on_one_1_0_connection(tls_relay) -> None:  # type: ignore[no-untyped-def]
    relay, _, nas = tls_relay
    link = Wire()
    relay.add_upstream_transport(link, 4, owner="tls", version=V10)
    client = relay.config.clients[0]
    for n in range(257):
        relay.packet_from_stream(nas, client, V10, _request(n % 256), ("127.0.0.1", 40000 + n // 256))
    sent = link.take()
    assert len(sent) == 256
    assert len({data[1] for data, _ in sent}) == 256  # every identifier once
    # and a UDP socket is never used for a RadSec upstream
    udp = Wire()
    relay.add_upstream_transport(udp, 4)
    relay.packet_from_stream(nas, client, V10, _request(9), ("127.0.0.1", 41000))
    assert udp.take() == []


def test_the_readme_radsec_example_parses() -> None:
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## RadSec (RADIUS over TLS", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```toml\n(.*?)```", section, re.S)
    config = parse_config(tomllib.loads(example), "/etc/op25b/op25b.toml")
    assert config.radsec_listen == ("0.0.0.0", 2083)
    assert [(c.name, c.transport, c.certificate_name) for c in config.clients] == [
        ("bng1", "radsec", "bng1.example.net"),
        ("lns1", "udp", None),
    ]
    assert config.upstreams[0].transport == "radsec" and config.tls.certificate_file == "/etc/op25b/tls/op25b.pem"


def test_a_1_1_connection_carries_more_than_256_at_once(tls_relay) -> None:  # type: ignore[no-untyped-def]
    relay, _, nas = tls_relay
    link = Wire()
    index = relay.add_upstream_transport(link, 4, owner="tls", version=V11)
    client = relay.config.clients[0]
    for n in range(300):
        relay.packet_from_stream(nas, client, V10, _request(n % 256), ("127.0.0.1", 40000 + n // 256))
    sent = link.take()
    assert len(sent) == 300 and len({token_of(data) for data, _ in sent}) == 300
    # Each reply finds its request by the Token, whatever the order.
    for data, _ in reversed(sent):
        states = ((33, get_first(parse_packet(data).attributes, 33) or b""),)
        relay.datagram_from_upstream(index, encode_v11(ACCESS_ACCEPT, token_of(data), states), ("127.0.0.2", 2083))
    assert len(nas.take()) == 300 and relay.pending == {}
