"""Compatibility: the helpers that lived here are in tests/support/ now; import from there."""

from tests.support.freeradius import (  # noqa: F401  # noqa: F401
    DEFAULT_SECRET,
    FREERADIUS,
    FreeRadiusError,
    FreeRadiusInstance,
    freeradius_factory,
    freeradius_upstream,
    require_freeradius,
)
from tests.support.mschap import MsChapV2, md4, mschapv2_request, nt_password_hash  # noqa: F401
from tests.support.paths import REPO_ROOT, TEMPLATE_DIR  # noqa: F401
from tests.support.ports import free_port, free_tcp_port, free_udp_port  # noqa: F401
from tests.support.processes import SETPRIV  # noqa: F401
from tests.support.radclient import DICT_DIR, RADCLIENT, Reply, octets, parse_reply, radclient  # noqa: F401
from tests.support.rawclient import RawReply, pap_request, status_server  # noqa: F401
