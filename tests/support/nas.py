"""Test helper: a NAS's RFC 5176 Dynamic Authorization port, which can ACK, NAK or stay silent.

It checks each request's authenticator with the NAS secret (as a real NAS must) and keeps what
it received. Used where a real NAS cannot be run here: FreeRADIUS has no sessions to change.
"""

from __future__ import annotations

import socket
import threading
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


class NasStandIn:
    def __init__(self, secret: bytes, coa: str = "ack", disconnect: str = "ack") -> None:
        self.secret = secret
        self.coa, self.disconnect = coa, disconnect  # "ack" | "nak" | "silent"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[float, Packet, bool]] = []  # (time, packet, authenticator ok)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            packet = parse_packet(data)
            ok = verify_accounting_request(data, self.secret)
            self.received.append((time.monotonic(), packet, ok))
            mode = self.coa if packet.code == COA_REQUEST else self.disconnect
            if mode == "silent" or not ok:
                continue
            if mode == "ack":
                code = COA_ACK if packet.code == COA_REQUEST else DISCONNECT_ACK
                attrs: tuple[tuple[int, bytes], ...] = ()
            else:
                code = COA_NAK if packet.code == COA_REQUEST else DISCONNECT_NAK
                attrs = ((ERROR_CAUSE, encode_integer(503)),)  # Session-Context-Not-Found
            reply = sign_reply(Packet(code, packet.identifier, packet.authenticator, attrs), packet.authenticator, self.secret, True)
            self.sock.sendto(reply, addr)

    def wait_for(self, count: int, timeout: float) -> list[tuple[float, Packet, bool]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()
