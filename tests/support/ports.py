"""Free ports on 127.0.0.1 for the servers a test starts."""

from __future__ import annotations

import random
import socket

# Ports handed to test servers come from below the kernel's ephemeral range (32768-60999 on
# Debian), so that a socket bound to port 0 meanwhile (a proxy's upstream or CoA socket, a
# client) cannot take one between the choice and the server's bind.
_TEST_PORTS = range(20000, 32768)
_handed_out: set[int] = set()


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port on ``host`` that is free now and was not handed out before in this session."""
    for _ in range(1000):
        port = random.choice(_TEST_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_TEST_PORTS}")


def free_udp_port(host: str = "127.0.0.1") -> int:
    return free_port(socket.SOCK_DGRAM, host)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    return free_port(socket.SOCK_STREAM, host)
