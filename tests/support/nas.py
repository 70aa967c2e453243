"""A NAS's RFC 5176 Dynamic Authorization port, which can ACK, NAK or stay silent.

It checks each request's authenticator with the NAS secret (as a real NAS must) and keeps what
it received. Used where a real NAS cannot be run here: FreeRADIUS has no sessions to change.
"""

from __future__ import annotations

import time

from radius_op25b.radius import (
    COA_ACK,
    COA_NAK,
    COA_REQUEST,
    DISCONNECT_ACK,
    DISCONNECT_NAK,
    ERROR_CAUSE,
    Packet,
    encode_integer,
    parse_packet,
    sign_reply,
    verify_accounting_request,
)
from tests.support.udp import Address, UdpResponder


class NasStandIn(UdpResponder):
    def __init__(self, secret: bytes, coa: str = "ack", disconnect: str = "ack") -> None:
        self.secret = secret
        self.coa, self.disconnect = coa, disconnect  # "ack" | "nak" | "silent"
        self.received: list[tuple[float, Packet, bool]] = []  # (time, packet, authenticator ok)
        super().__init__(self._answer)

    def _answer(self, data: bytes, addr: Address) -> bytes | None:
        packet = parse_packet(data)
        ok = verify_accounting_request(data, self.secret)
        self.received.append((time.monotonic(), packet, ok))
        mode = self.coa if packet.code == COA_REQUEST else self.disconnect
        if mode == "silent" or not ok:
            return None
        if mode == "ack":
            code = COA_ACK if packet.code == COA_REQUEST else DISCONNECT_ACK
            attrs: tuple[tuple[int, bytes], ...] = ()
        else:
            code = COA_NAK if packet.code == COA_REQUEST else DISCONNECT_NAK
            attrs = ((ERROR_CAUSE, encode_integer(503)),)  # Session-Context-Not-Found
        return sign_reply(Packet(code, packet.identifier, packet.authenticator, attrs), packet.authenticator, self.secret, True)

    def wait_for(self, count: int, timeout: float) -> list[tuple[float, Packet, bool]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)
