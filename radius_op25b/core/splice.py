"""The splice of a decision into an Access-Accept: the profile's attributes encoded once per
(profile, decision), the upstream's copies of them removed, our Class tag added. Pure."""

from __future__ import annotations

import ipaddress
from typing import Any

from radius_op25b.core import decision as d
from radius_op25b.core import profiles
from radius_op25b.core.config import ClientConfig, Config
from radius_op25b.radius import CLASS, FRAMED_IP_ADDRESS, Attributes, get_first, named


class Splice:
    """What an Accept of one profile and one decision gets: our attributes and the rules for
    removing the upstream's. They depend on few values, so they are built once and reused."""

    def __init__(self, config: Config, ctx: profiles.FilterContext) -> None:
        self.config, self.ctx = config, ctx
        self._memo: dict[tuple[Any, ...], tuple[Attributes, named.OwnedRules]] = {}

    def parts(self, profile: str, decision: d.Decision) -> tuple[Attributes, named.OwnedRules]:
        realm = decision.realm if decision.msa_permits else None  # only partner names use it
        key = (profile, decision.filter_class, decision.msa_permits, decision.partner_filter, realm)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) > 4096:
                self._memo.clear()
            ours = named.encode(profiles.attributes_for(profile, decision, self.ctx, self.config.profiles))
            owned = named.owned_rules(profiles.managed_attributes(profile, self.config.profiles))
            found = self._memo[key] = (ours, owned)
        return found


def framed_ip(attributes: Attributes) -> d.IPAddress | None:
    raw = get_first(attributes, FRAMED_IP_ADDRESS)
    return ipaddress.IPv4Address(raw) if raw is not None and len(raw) == 4 else None


def apply_decision(decision: d.Decision, client: ClientConfig, attributes: Attributes, splice: Splice) -> Attributes:
    """The Accept's attributes with the profile's filter spliced in and our Class tag added.

    `replace` (default): the profile's attributes from the upstream are removed and ours added.
    `keep-upstream`: if the upstream set any of them, its filter stands and we add none.
    The upstream's own Class attributes are never touched; ours is one more Class.
    """
    ours, owned = splice.parts(client.profile, decision)
    stripped, upstream_had_filter = named.strip_owned(attributes, owned)
    if client.managed_attributes == "keep-upstream" and upstream_had_filter:
        stripped, ours = tuple(attributes), ()
    return stripped + ours + _CLASS_TAGS[decision.filter_class]


_CLASS_TAGS = {cls: ((CLASS, f"op25b:{cls}".encode()),) for cls in d.FilterClass}
