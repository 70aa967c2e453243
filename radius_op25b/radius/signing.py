"""Request/Response Authenticators (RFC 2865, 2866, 5176) and Message-Authenticator (RFC 3579).
Signing frames the packet once and patches digests in place; verifying reads the received bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius.attributes import Attribute
from radius_op25b.radius.constants import (
    ACCESS_ACCEPT,
    ACCESS_CHALLENGE,
    ACCESS_REJECT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCOUNTING_RESPONSE,
    AUTHENTICATOR_LENGTH,
    COA_ACK,
    COA_NAK,
    COA_REQUEST,
    DISCONNECT_ACK,
    DISCONNECT_NAK,
    DISCONNECT_REQUEST,
    HEADER_LENGTH,
    MESSAGE_AUTHENTICATOR,
    MESSAGE_AUTHENTICATOR_LENGTH,
    STATUS_SERVER,
)
from radius_op25b.radius.packet import Packet, frame, packet_length

ZERO_AUTHENTICATOR = bytes(AUTHENTICATOR_LENGTH)

_AUTHENTICATOR = slice(4, HEADER_LENGTH)
# Signing always puts Message-Authenticator first: Type at 20, Length at 21, value 22..37.
_FIRST_MA_VALUE = slice(HEADER_LENGTH + 2, HEADER_LENGTH + MESSAGE_AUTHENTICATOR_LENGTH)
_MA_PLACEHOLDER: Attribute = (MESSAGE_AUTHENTICATOR, ZERO_AUTHENTICATOR)

_RANDOM_AUTHENTICATOR_CODES = frozenset({ACCESS_REQUEST, STATUS_SERVER})
_ZEROED_AUTHENTICATOR_CODES = frozenset({ACCOUNTING_REQUEST, COA_REQUEST, DISCONNECT_REQUEST})
_ACCESS_REPLY_CODES = frozenset({ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE})
# Replies whose Message-Authenticator implementations compute differently: RFC 5176 §3.4 and
# pyrad use the Request Authenticator, FreeRADIUS 3.2 signs these with sixteen zeros.
_AMBIGUOUS_REPLY_CODES = frozenset({ACCOUNTING_RESPONSE, COA_ACK, COA_NAK, DISCONNECT_ACK, DISCONNECT_NAK})


def new_request_authenticator() -> bytes:
    """A fresh Request Authenticator for an Access-Request or Status-Server we originate."""
    # RFC 2865 §3: "The value SHOULD be unpredictable and unique over the lifetime of a
    # secret" -- so a CSPRNG, never a counter.
    return secrets.token_bytes(AUTHENTICATOR_LENGTH)


def _md5(buffer: bytes | bytearray, secret: bytes) -> bytes:
    digest = hashlib.md5(buffer)
    digest.update(secret)
    return digest.digest()


def _hmac_md5(secret: bytes, buffer: bytes | bytearray) -> bytes:
    return hmac.digest(secret, buffer, "md5")


def _ma_first(attributes: Iterable[Attribute]) -> list[Attribute]:
    """A zeroed Message-Authenticator first, any old one dropped: it is stale at this hop."""
    # RFC 3579 §3.2: "When the checksum is calculated the signature string should be
    # considered to be sixteen octets of zero."
    return [_MA_PLACEHOLDER, *(a for a in attributes if a[0] != MESSAGE_AUTHENTICATOR)]


def _has_message_authenticator(attributes: Sequence[Attribute]) -> bool:
    return any(attr_type == MESSAGE_AUTHENTICATOR for attr_type, _ in attributes)


def sign_access_request(packet: Packet, secret: bytes) -> bytes:
    """Wire bytes of an Access-Request or Status-Server, Message-Authenticator first and always.

    `packet.authenticator` is used as the Request Authenticator: pick it (with
    `new_request_authenticator`) before hiding User-Password, which depends on it.
    """
    if packet.code not in _RANDOM_AUTHENTICATOR_CODES:
        raise ValueError(f"code {packet.code} is not signed like an Access-Request")
    # draft-ietf-radext-deprecating-radius (BlastRADIUS): clients always add it, first;
    # RFC 5997 §3: Status-Server packets MUST carry a Message-Authenticator.
    buffer = frame(packet.code, packet.identifier, packet.authenticator, _ma_first(packet.attributes))
    buffer[_FIRST_MA_VALUE] = _hmac_md5(secret, buffer)
    return bytes(buffer)


def sign_accounting_request(packet: Packet, secret: bytes, add_message_authenticator: bool = False) -> bytes:
    """Wire bytes of an Accounting-, CoA- or Disconnect-Request; `packet.authenticator` is ignored.

    A Message-Authenticator is added if asked, and recomputed (moved first) if already there.
    """
    if packet.code not in _ZEROED_AUTHENTICATOR_CODES:
        raise ValueError(f"code {packet.code} is not signed like an Accounting-Request")
    with_ma = add_message_authenticator or _has_message_authenticator(packet.attributes)
    attributes = _ma_first(packet.attributes) if with_ma else packet.attributes
    buffer = frame(packet.code, packet.identifier, ZERO_AUTHENTICATOR, attributes)
    if with_ma:
        # RFC 5176 §3.4: "The Message-Authenticator Attribute is calculated and inserted in
        # the packet before the Request Authenticator is calculated."
        buffer[_FIRST_MA_VALUE] = _hmac_md5(secret, buffer)
    # RFC 2866 §3: "Code + Identifier + Length + 16 zero octets + request attributes +
    # shared secret"; RFC 5176 §2.3: CoA/Disconnect are "calculated the same way".
    buffer[_AUTHENTICATOR] = _md5(buffer, secret)
    return bytes(buffer)


def sign_reply(
    packet: Packet,
    request_authenticator: bytes,
    secret: bytes,
    add_message_authenticator: bool,
    *,
    request_code: int | None = None,
) -> bytes:
    """Wire bytes of a reply to the request that carried `request_authenticator`.

    `packet.authenticator` is ignored. A Message-Authenticator is added if asked, and
    recomputed if already there; either way it goes first. `request_code` matters only for
    an Accounting-Response, whose Message-Authenticator covers the Request Authenticator
    when it answers a Status-Server (RFC 5997 §3) and sixteen zeros otherwise.
    """
    with_ma = add_message_authenticator or _has_message_authenticator(packet.attributes)
    attributes = _ma_first(packet.attributes) if with_ma else packet.attributes
    buffer = frame(packet.code, packet.identifier, request_authenticator, attributes)
    if with_ma:
        # RFC 3579 §3.2: for Access-Challenge, Access-Accept and Access-Reject it is computed
        # "using the Request-Authenticator from the Access-Request this packet is in reply to".
        if packet.code == ACCOUNTING_RESPONSE and request_code != STATUS_SERVER:
            buffer[_AUTHENTICATOR] = ZERO_AUTHENTICATOR  # as FreeRADIUS and pyrad do
        buffer[_FIRST_MA_VALUE] = _hmac_md5(secret, buffer)
        buffer[_AUTHENTICATOR] = request_authenticator
    # RFC 2865 §3: "ResponseAuth = MD5(Code+ID+Length+RequestAuth+Attributes+Secret)"
    buffer[_AUTHENTICATOR] = _md5(buffer, secret)
    return bytes(buffer)


def verify_reply(reply: bytes, request_authenticator: bytes, secret: bytes) -> bool:
    """True if the Response Authenticator, and the Message-Authenticator when present, verify.

    Whether a missing Message-Authenticator is acceptable is the caller's policy: ask
    `verify_message_authenticator(...) is None`.
    """
    data = reply[: packet_length(reply)]
    expected = hashlib.md5(data[:4])
    expected.update(request_authenticator)
    expected.update(data[HEADER_LENGTH:])
    expected.update(secret)
    if not hmac.compare_digest(expected.digest(), data[_AUTHENTICATOR]):
        return False
    return verify_message_authenticator(data, secret, request_authenticator) is not False


def verify_accounting_request(request: bytes, secret: bytes) -> bool:
    """Whether an Accounting-, CoA- or Disconnect-Request's authenticator (and MA) verify."""
    data = request[: packet_length(request)]
    expected = hashlib.md5(data[:4])
    expected.update(ZERO_AUTHENTICATOR)
    expected.update(data[HEADER_LENGTH:])
    expected.update(secret)
    # RFC 2866 §3: the Request Authenticator is an MD5 over "Code + Identifier + Length +
    # 16 zero octets + request attributes + shared secret".  All-zero authenticators from
    # pre-RFC 2866 clients (which FreeRADIUS still accepts) fail here on purpose.
    if not hmac.compare_digest(expected.digest(), data[_AUTHENTICATOR]):
        return False
    return verify_message_authenticator(data, secret) is not False


def verify_message_authenticator(packet: bytes, secret: bytes, request_authenticator: bytes | None = None) -> bool | None:
    """None if the packet has no Message-Authenticator, else whether it verifies.

    A reply needs `request_authenticator` (that of the request it answers).
    """
    data = packet[: packet_length(packet)]
    positions = _message_authenticator_positions(data)
    if not positions:
        return None
    # RFC 3579 §3.2 defines one Message-Authenticator of "Length 18"; with two, which one
    # covers the packet is ambiguous, so such a packet fails (FreeRADIUS does the same).
    if len(positions) > 1 or data[positions[0] + 1] != MESSAGE_AUTHENTICATOR_LENGTH:
        return False
    value = slice(positions[0] + 2, positions[0] + MESSAGE_AUTHENTICATOR_LENGTH)
    received = data[value]
    buffer = bytearray(data)
    buffer[value] = ZERO_AUTHENTICATOR
    for vector in _ma_vectors(data[0], data[_AUTHENTICATOR], request_authenticator):
        buffer[_AUTHENTICATOR] = vector
        if hmac.compare_digest(_hmac_md5(secret, buffer), received):
            return True
    return False


def _ma_vectors(code: int, own_authenticator: bytes, request_authenticator: bytes | None) -> tuple[bytes, ...]:
    """The authenticator field value(s) the Message-Authenticator of `code` may cover."""
    if code in _RANDOM_AUTHENTICATOR_CODES:
        # RFC 3579 §3.2: "Message-Authenticator = HMAC-MD5 (Type, Identifier, Length,
        # Request Authenticator, Attributes)"
        return (own_authenticator,)
    if code in _ZEROED_AUTHENTICATOR_CODES:
        # RFC 5176 §3.4: "The Request Authenticator is taken to be sixteen octets of zero."
        # (It is not known yet when the Message-Authenticator is computed.)
        return (ZERO_AUTHENTICATOR,)
    if request_authenticator is None:
        if code in _ACCESS_REPLY_CODES or code in _AMBIGUOUS_REPLY_CODES:
            raise ValueError("a reply's Message-Authenticator needs the request's authenticator")
        return (own_authenticator,)
    if code in _AMBIGUOUS_REPLY_CODES:
        # Both are HMACs under the shared secret, so accepting either opens nothing to a
        # forger; refusing one would drop genuine replies from half the implementations.
        return (request_authenticator, ZERO_AUTHENTICATOR)
    return (request_authenticator,)


def _message_authenticator_positions(data: bytes) -> list[int]:
    """Offsets of every Message-Authenticator in a length-checked packet."""
    positions: list[int] = []
    offset = HEADER_LENGTH
    end = len(data)
    while offset < end:
        if offset + 2 > end:
            raise MalformedPacket("attribute overruns packet")
        attr_length = data[offset + 1]
        if attr_length < 2:
            raise MalformedPacket(f"attribute {data[offset]} length {attr_length}")
        if offset + attr_length > end:
            raise MalformedPacket("attribute overruns packet")
        if data[offset] == MESSAGE_AUTHENTICATOR:
            positions.append(offset)
        offset += attr_length
    return positions
