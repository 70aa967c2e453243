"""Compatibility: the helpers that lived here are in tests/support/ now; import from there."""

from tests.support.harness import ProxyProcess, client_block, upstream_block  # noqa: F401
from tests.support.ports import free_tcp_port, free_udp_port  # noqa: F401
from tests.support.processes import wait_until  # noqa: F401
