"""radius-op25b inside FreeRADIUS (rlm_python3, Debian's freeradius-python3): the OP25B decision
of each Access-Accept made in the FreeRADIUS process itself, from the policy set it holds in
memory - the same PolicyService, watcher and decision as `op25b serve` and `op25b web`'s
/api/v1/decide, with no HTTP hop. The alternative to mods-available/op25b (rlm_rest); see
README.md for when to take which.

FreeRADIUS's environment: OP25B_CONFIG (the op25b.toml; its database, [[clients]], [policy]
and [filters]), PYTHONPATH or the module's python_path holding radius_op25b and its
dependencies (the site-packages of op25b's venv). The held set is loaded in `instantiate`
(FreeRADIUS refuses to start when the config is broken); while the database is away,
policy.on_database_error decides, as in `serve`. Any error inside a decision returns `noop`:
the Accept goes out as the upstream made it, never a Reject because of us.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import radiusd  # type: ignore[import-not-found]  # provided by rlm_python3 inside FreeRADIUS

from radius_op25b.core import decision as d
from radius_op25b.core.config import load_config
from radius_op25b.store import db
from radius_op25b.web.decide import DecideBody, HeldPolicy

log = logging.getLogger("op25b.rlm_python3")
HELD: HeldPolicy | None = None
# The request/reply attributes the decision reads, by FreeRADIUS name -> DecideBody field.
FIELDS = {
    ("request", "User-Name"): "user_name",
    ("reply", "Framed-IP-Address"): "framed_ip_address",
    ("reply", "Framed-IPv6-Prefix"): "framed_ipv6_prefix",
    ("reply", "Delegated-IPv6-Prefix"): "delegated_ipv6_prefix",
    ("request", "NAS-IP-Address"): "nas_ip_address",
    ("request", "NAS-Identifier"): "nas_identifier",
}


def instantiate(_config: Any) -> int:
    global HELD
    path = os.environ.get("OP25B_CONFIG", "/etc/op25b/op25b.toml")
    try:
        config = load_config(path)
        HELD = HeldPolicy(config, db.make_engine(config.database_url))
        HELD.start()
    except Exception as exc:  # a broken config must stop FreeRADIUS's start, loudly
        radiusd.radlog(radiusd.L_ERR, f"op25b: cannot load the policy set from {path}: {exc}")
        return radiusd.RLM_MODULE_FAIL
    radiusd.radlog(radiusd.L_INFO, f"op25b: holding the policy set of {path} (loaded: {HELD.service.loaded})")
    return radiusd.RLM_MODULE_OK


def detach(_config: Any = None) -> int:
    if HELD is not None:
        HELD.stop()
    return radiusd.RLM_MODULE_OK


def post_auth(p: dict[str, tuple[tuple[str, str], ...]]) -> Any:
    """`pass_all_vps_dict = yes`: p["request"], p["reply"] are (name, value) tuples."""
    if HELD is None:
        return radiusd.RLM_MODULE_NOOP
    try:
        fields: dict[str, str] = {}
        for (where, name), field in FIELDS.items():
            for attr, value in p.get(where) or ():
                if attr == name:
                    fields[field] = value
                    break
        decision, _, attributes = HELD.decide(DecideBody.model_validate(fields))
    except Exception as exc:
        radiusd.radlog(radiusd.L_ERR, f"op25b: no decision ({type(exc).__name__}: {exc}); the Accept goes out as it is")
        return radiusd.RLM_MODULE_NOOP
    if decision.filter_class is d.FilterClass.NONE and not attributes:
        return radiusd.RLM_MODULE_NOOP
    counts: dict[str, int] = {}
    for name, _ in attributes:
        counts[name] = counts.get(name, 0) + 1
    # One value replaces the reply's copy (as managed_attributes = "replace"); several are added.
    reply = [(name, ":=" if counts[name] == 1 else "+=", value) for name, value in attributes]
    reply.append(("Class", "+=", f"op25b:{decision.filter_class}"))
    return radiusd.RLM_MODULE_UPDATED, tuple(reply), ()
