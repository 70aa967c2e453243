"""A UDP responder on 127.0.0.1 in a thread: what a test puts where a NAS or an upstream would be."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Address = tuple[str, int]
#: Gets each datagram and its sender; returns the reply to send back, or None for silence.
Handler = Callable[[bytes, Address], bytes | None]


class UdpResponder:
    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            reply = self.handler(data, addr)
            if reply is not None:
                self.sock.sendto(reply, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def __enter__(self) -> UdpResponder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
