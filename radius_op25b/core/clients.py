"""Which configured NAS a datagram comes from: exact host addresses first, then the most
specific configured network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from radius_op25b.core.config import ClientConfig


class ClientTable:
    def __init__(self, clients: Iterable[ClientConfig]) -> None:
        self._hosts: dict[str, ClientConfig] = {}
        self._networks: list[ClientConfig] = []
        for client in clients:
            net = client.network
            if net.prefixlen == net.max_prefixlen:
                self._hosts.setdefault(str(net.network_address), client)
            else:
                self._networks.append(client)
        self._networks.sort(key=lambda c: c.network.prefixlen, reverse=True)

    def lookup(self, address: str) -> ClientConfig | None:
        """The client for a source address, or None for an unknown source."""
        client = self._hosts.get(address)
        if client is not None or not self._networks:
            return client
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return self.lookup(str(ip.ipv4_mapped))
        for candidate in self._networks:
            if ip.version == candidate.network.version and ip in candidate.network:
                return candidate
        return None
