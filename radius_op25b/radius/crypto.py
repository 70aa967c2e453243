"""Attribute hiding that depends on the shared secret and Request Authenticator, redone per hop.
User-Password (RFC 2865 §5.2), salted values (RFC 2868 §3.5, RFC 2548 §2.4), and the CHAP challenge.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence, Set

from radius_op25b.errors import MalformedPacket
from radius_op25b.radius.attributes import Attribute, Attributes, join_vsa, split_vsa, vsa_vendor
from radius_op25b.radius.constants import (
    CHAP_CHALLENGE,
    CHAP_PASSWORD,
    MS_CHAP_MPPE_KEYS,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    TUNNEL_PASSWORD,
    USER_PASSWORD,
    VENDOR_MICROSOFT,
    VENDOR_SPECIFIC,
)

# Vendor attributes hidden with the RFC 2868 §3.5 salt scheme ("encrypt=2" in FreeRADIUS's
# dictionaries). Callers may pass more, e.g. Juniper ERX-LI-* (4874/58-61) on a BNG.
SALTED_VSAS: frozenset[tuple[int, int]] = frozenset({(VENDOR_MICROSOFT, MS_MPPE_SEND_KEY), (VENDOR_MICROSOFT, MS_MPPE_RECV_KEY)})
# Vendor attributes hidden like User-Password ("encrypt=1"): MS-CHAP-MPPE-Keys in MS-CHAPv1 accepts.
HIDDEN_VSAS: frozenset[tuple[int, int]] = frozenset({(VENDOR_MICROSOFT, MS_CHAP_MPPE_KEYS)})

_BLOCK = 16


def _md5_chain(data: bytes, secret: bytes, first: bytes, *, encrypt: bool) -> bytes:
    """XOR each 16-octet block with MD5(secret + previous ciphertext block), seeded by `first`.

    RFC 2865 §5.2 and RFC 2868 §3.5 share this; only `first` differs (RA, or R + Salt).
    """
    secret_hash = hashlib.md5(secret)  # reused for every block: the secret prefix never changes
    out = bytearray()
    previous = first
    for start in range(0, len(data), _BLOCK):
        block = data[start : start + _BLOCK]
        pad = secret_hash.copy()
        pad.update(previous)
        mixed = (int.from_bytes(block, "big") ^ int.from_bytes(pad.digest(), "big")).to_bytes(_BLOCK, "big")
        out += mixed
        # The chain always runs on ciphertext: our output when hiding, our input when revealing.
        previous = mixed if encrypt else block
    return bytes(out)


# --- User-Password (RFC 2865 §5.2) -------------------------------------------------------------


def _check_user_password(value: bytes) -> None:
    # RFC 2865 §5.2: "The password is first padded at the end with nulls to a multiple of
    # 16 octets."  (We relay values over 128 octets rather than judge the sender's limit.)
    if not value or len(value) % _BLOCK:
        raise MalformedPacket(f"User-Password length {len(value)} is not a multiple of 16")


def decrypt_user_password(value: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """The plaintext password, trailing NUL padding removed."""
    _check_user_password(value)
    return _md5_chain(value, secret, authenticator, encrypt=False).rstrip(b"\0")


def encrypt_user_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Hide `password` (at most 128 octets) for a request carrying `authenticator`."""
    # RFC 2865 §5.2: "The String field is between 16 and 128 octets long, inclusive."
    if len(password) > 128:
        raise ValueError(f"password is {len(password)} octets; at most 128 fit")
    padded = password.ljust(max(_BLOCK, -(-len(password) // _BLOCK) * _BLOCK), b"\0")
    return _md5_chain(padded, secret, authenticator, encrypt=True)


def reencrypt_user_password(
    value: bytes,
    old_secret: bytes,
    old_authenticator: bytes,
    new_secret: bytes,
    new_authenticator: bytes,
) -> bytes:
    """The same hidden password for the next hop; the padding is carried over, so is the length."""
    _check_user_password(value)
    padded = _md5_chain(value, old_secret, old_authenticator, encrypt=False)
    return _md5_chain(padded, new_secret, new_authenticator, encrypt=True)


# --- Salted values (RFC 2868 §3.5 Tunnel-Password, RFC 2548 §2.4.2/2.4.3 MS-MPPE keys) --------


def new_salt(used: Set[bytes] = frozenset()) -> bytes:
    """A random 2-octet salt with the high bit set, different from every salt in `used`."""
    while True:
        raw = secrets.token_bytes(2)
        # RFC 2868 §3.5: "The most significant bit (leftmost) of the Salt field MUST be set (1)."
        salt = bytes((raw[0] | 0x80, raw[1]))
        if salt not in used:
            return salt


def _checked_salt(salt: bytes) -> bytes:
    if len(salt) != 2 or not salt[0] & 0x80:
        raise ValueError("a salt is 2 octets with the high bit set")
    return salt


def _check_salted(value: bytes, what: str) -> None:
    """`value` is Salt (2 octets) + String; the String is whole 16-octet blocks."""
    string_length = len(value) - 2
    if string_length < _BLOCK or string_length % _BLOCK:
        raise MalformedPacket(f"{what} encrypted string is {max(string_length, 0)} octets")


def decrypt_salted(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """Salt + String to plaintext, unwrapping the leading length octet and padding."""
    _check_salted(value, "salted value")
    plain = _md5_chain(value[2:], secret, request_authenticator + value[:2], encrypt=False)
    length = plain[0]
    if length > len(plain) - 1:
        raise MalformedPacket(f"salted value length octet {length} exceeds its data")
    return plain[1 : 1 + length]


def encrypt_salted(plaintext: bytes, secret: bytes, request_authenticator: bytes, salt: bytes | None = None) -> bytes:
    """Salt + String hiding `plaintext` (length-prefixed, NUL-padded to 16-octet blocks)."""
    if len(plaintext) > 255:
        raise ValueError(f"salted plaintext is {len(plaintext)} octets; at most 255 fit")
    salt = new_salt() if salt is None else _checked_salt(salt)
    data = bytes((len(plaintext),)) + plaintext
    data = data.ljust(-(-len(data) // _BLOCK) * _BLOCK, b"\0")
    return salt + _md5_chain(data, secret, request_authenticator + salt, encrypt=True)


def reencrypt_salted(
    value: bytes,
    old_secret: bytes,
    old_request_authenticator: bytes,
    new_secret: bytes,
    new_request_authenticator: bytes,
    salt: bytes | None = None,
) -> bytes:
    """The same Salt + String for the next hop; `salt=None` keeps the old salt."""
    _check_salted(value, "salted value")
    old_salt = value[:2]
    new = old_salt if salt is None else _checked_salt(salt)
    padded = _md5_chain(value[2:], old_secret, old_request_authenticator + old_salt, encrypt=False)
    return new + _md5_chain(padded, new_secret, new_request_authenticator + new, encrypt=True)


def reencrypt_mppe_key(
    value: bytes,
    old_secret: bytes,
    old_request_authenticator: bytes,
    new_secret: bytes,
    new_request_authenticator: bytes,
    salt: bytes | None = None,
) -> bytes:
    """An MS-MPPE-Send-Key / Recv-Key sub-attribute value (Salt + String) for the next hop."""
    # RFC 2548 §2.4.2: "R be the sixteen-octet Request Authenticator" -- in an Access-Accept,
    # that of the Access-Request it answers; so the caller passes both hops' request's.
    return reencrypt_salted(
        value,
        old_secret,
        old_request_authenticator,
        new_secret,
        new_request_authenticator,
        salt,
    )


def _tag_length(value: bytes) -> int:
    """1 if a Tunnel-Password value starts with its Tag, 0 for the untagged form.

    RFC 2868 §3.5 always has the Tag, but pyrad <= 2.5.4 sent Salt + String only. The
    lengths tell them apart: Salt + String is 2 mod 16, Tag + Salt + String is 3 mod 16.
    """
    if len(value) % _BLOCK == 2:
        return 0
    if len(value) % _BLOCK == 3:
        return 1
    raise MalformedPacket(f"Tunnel-Password is {len(value)} octets")


def decrypt_tunnel_password(value: bytes, secret: bytes, request_authenticator: bytes) -> tuple[int, bytes]:
    """(tag, password) of a Tunnel-Password value: Tag, Salt, String (tag 0 if absent)."""
    tagged = _tag_length(value)
    tag = value[0] if tagged else 0
    return tag, decrypt_salted(value[tagged:], secret, request_authenticator)


def encrypt_tunnel_password(
    password: bytes,
    secret: bytes,
    request_authenticator: bytes,
    tag: int = 0,
    salt: bytes | None = None,
) -> bytes:
    """A Tunnel-Password value; `request_authenticator` is the Access-Request's, even in a reply."""
    # RFC 2868 §3.5: "Valid values for this field are 0x01 through 0x1F, inclusive.  If the
    # Tag field is unused, it MUST be zero (0x00)."
    if not 0 <= tag <= 0x1F:
        raise ValueError(f"tag {tag} is outside 0x00-0x1F")
    return bytes((tag,)) + encrypt_salted(password, secret, request_authenticator, salt)


def reencrypt_tunnel_password(
    value: bytes,
    old_secret: bytes,
    old_request_authenticator: bytes,
    new_secret: bytes,
    new_request_authenticator: bytes,
    salt: bytes | None = None,
) -> bytes:
    """The same Tunnel-Password for the next hop; the tag is kept, and the salt unless given."""
    tagged = _tag_length(value)
    return value[:tagged] + reencrypt_salted(
        value[tagged:],
        old_secret,
        old_request_authenticator,
        new_secret,
        new_request_authenticator,
        salt,
    )


# --- Whole attribute lists, one hop to the next -------------------------------------------------


class _SaltPicker:
    """Keeps each salt across the hop unless it is invalid or already used in this packet.

    Why keep it: the key stream is MD5(secret + R + salt) and R and the secret both change per
    hop, so the old salt yields a fresh key stream; keeping it makes re-encryption
    deterministic (golden tests, identical retransmissions) and costs no random draw on the
    hot path. The salt's own duties still hold per packet, and an upstream that broke them
    gets fresh random salts from us instead.
    """

    def __init__(self) -> None:
        self.used: set[bytes] = set()

    def pick(self, old_salt: bytes) -> bytes | None:
        """None to keep `old_salt`, else a replacement."""
        # RFC 2868 §3.5: "The contents of each Salt field in a given Access-Accept packet
        # MUST be unique."  RFC 2548 §2.4.2 says the same for the MS-MPPE keys.
        if old_salt[0] & 0x80 and old_salt not in self.used:
            self.used.add(old_salt)
            return None
        salt = new_salt(self.used)
        self.used.add(salt)
        return salt


class _Hop:
    """One hop's re-encryption: old secret and authenticator to new ones."""

    def __init__(
        self,
        old: tuple[bytes, bytes],
        new: tuple[bytes, bytes],
        salted_vsas: Set[tuple[int, int]],
        hidden_vsas: Set[tuple[int, int]],
    ) -> None:
        self.old = old  # (secret, request authenticator)
        self.new = new
        self.salted_vsas = salted_vsas
        self.hidden_vsas = hidden_vsas
        self.vendors = {vendor for vendor, _ in salted_vsas} | {v for v, _ in hidden_vsas}
        self.salts = _SaltPicker()

    def hidden(self, value: bytes) -> bytes:
        return reencrypt_user_password(value, *self.old, *self.new)

    def salted(self, value: bytes) -> bytes:
        _check_salted(value, "salted value")
        return reencrypt_salted(value, *self.old, *self.new, self.salts.pick(value[:2]))

    def tunnel_password(self, value: bytes) -> bytes:
        tagged = _tag_length(value)
        return value[:tagged] + self.salted(value[tagged:])

    def vendor_specific(self, value: bytes) -> bytes:
        if vsa_vendor(value) not in self.vendors:
            return value
        parsed = split_vsa(value)
        if parsed is None:
            # Relaying it would hand the NAS keys hidden with the wrong secret: refuse instead.
            raise MalformedPacket(f"vendor {vsa_vendor(value)} Vendor-Specific does not parse")
        vendor_id, subs = parsed
        rebuilt: list[bytes] = []
        changed = False
        for vendor_type, raw in subs:
            if (vendor_id, vendor_type) in self.salted_vsas:
                raw = raw[:2] + self.salted(raw[2:])
                changed = True
            elif (vendor_id, vendor_type) in self.hidden_vsas:
                raw = raw[:2] + self.hidden(raw[2:])
                changed = True
            rebuilt.append(raw)
        # Re-encryption keeps every length, so the rebuilt VSA has the original layout.
        return join_vsa(vendor_id, rebuilt) if changed else value

    def run(self, attributes: Iterable[Attribute]) -> Attributes:
        out: list[Attribute] = []
        for attribute in attributes:
            attr_type, value = attribute
            if attr_type == USER_PASSWORD:
                attribute = (attr_type, self.hidden(value))
            elif attr_type == TUNNEL_PASSWORD:
                attribute = (attr_type, self.tunnel_password(value))
            elif attr_type == VENDOR_SPECIFIC:
                new_value = self.vendor_specific(value)
                if new_value is not value:
                    attribute = (attr_type, new_value)
            out.append(attribute)
        return tuple(out)


def reencrypt_reply_attributes(
    attributes: Sequence[Attribute],
    old_secret: bytes,
    old_request_authenticator: bytes,
    new_secret: bytes,
    new_request_authenticator: bytes,
    *,
    salted_vsas: Set[tuple[int, int]] = SALTED_VSAS,
    hidden_vsas: Set[tuple[int, int]] = HIDDEN_VSAS,
) -> Attributes:
    """A reply's attributes with Tunnel-Password and hidden VSAs re-encrypted for the next hop.

    The authenticators are those of the two Access-Requests (upstream's and the NAS's):
    RFC 2868 §3.5 and RFC 2548 hide reply values with the Request Authenticator.
    Raises MalformedPacket if a hidden value has an impossible length.
    """
    return _reencrypt(
        attributes,
        (old_secret, old_request_authenticator),
        (new_secret, new_request_authenticator),
        salted_vsas,
        hidden_vsas,
    )


def reencrypt_request_attributes(
    attributes: Sequence[Attribute],
    old_secret: bytes,
    old_request_authenticator: bytes,
    new_secret: bytes,
    new_request_authenticator: bytes,
    *,
    salted_vsas: Set[tuple[int, int]] = SALTED_VSAS,
    hidden_vsas: Set[tuple[int, int]] = HIDDEN_VSAS,
) -> Attributes:
    """A request's attributes for the next hop: User-Password, Tunnel-Password, hidden VSAs,
    and CHAP-Challenge added when the old Request Authenticator was the challenge.
    """
    if old_request_authenticator != new_request_authenticator:
        attributes = ensure_chap_challenge(attributes, old_request_authenticator)
    return _reencrypt(
        attributes,
        (old_secret, old_request_authenticator),
        (new_secret, new_request_authenticator),
        salted_vsas,
        hidden_vsas,
    )


def _reencrypt(
    attributes: Sequence[Attribute],
    old: tuple[bytes, bytes],
    new: tuple[bytes, bytes],
    salted_vsas: Set[tuple[int, int]],
    hidden_vsas: Set[tuple[int, int]],
) -> Attributes:
    if old == new:
        return tuple(attributes)  # same secret, same authenticator: every value is still right
    return _Hop(old, new, salted_vsas, hidden_vsas).run(attributes)


def ensure_chap_challenge(attributes: Sequence[Attribute], request_authenticator: bytes) -> Attributes:
    """Pin the CHAP challenge down before the Request Authenticator changes at the next hop."""
    # RFC 2865 §5.3: "The CHAP challenge value is found in the CHAP-Challenge Attribute (60)
    # if present in the packet, otherwise in the Request Authenticator field."
    has_chap_password = False
    for attr_type, _ in attributes:
        if attr_type == CHAP_CHALLENGE:
            return tuple(attributes)
        if attr_type == CHAP_PASSWORD:
            has_chap_password = True
    if not has_chap_password:
        return tuple(attributes)
    return (*attributes, (CHAP_CHALLENGE, request_authenticator))
