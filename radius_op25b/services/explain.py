"""Inputs -> decide -> attributes, assembled once.

The proxy (for each Accept, from the held set), `op25b policy explain` and the push worker (from
the database) and the benchmarks all come here, so a decision reads the same wherever it is
made: the same key for the name, the same realm, the same attributes for a profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from radius_op25b.core import decision as d
from radius_op25b.core import profiles
from radius_op25b.core.config import ClientConfig, Config


def request_for(username: str, framed_ip: d.IPAddress | None, client: ClientConfig | None) -> d.Request:
    """The decision's view of a login (or a live session) on `client` (None: no NAS named)."""
    return d.Request(d.username_key(username), framed_ip, client.name if client else None, client.enforce if client else True)


def decide(
    config: Config,
    request: d.Request,
    subscriber: d.Subscriber | None,
    realm: d.Realm | None,
    now: datetime,
) -> d.Decision:
    """The decision for `request`, given the subscriber and the realm it is decided under
    (`held_realm` for the proxy's held set, `store.policy_inputs` for the database)."""
    return d.decide(request, subscriber, realm, config.policy, now)


def held_realm(realms: dict[str, d.Realm], subscriber: d.Subscriber | None, request: d.Request) -> d.Realm | None:
    """The realm `request` is decided under, from the realms held by name."""
    name = d.realm_name(subscriber, request.username)
    return realms.get(name) if name else None


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decision and what it puts on the wire for one profile."""

    decision: d.Decision
    profile: str
    accept: profiles.Attributes  # what an Access-Accept carries (named, before encoding)
    coa: profiles.Attributes | None  # what a CoA-Request carries; None: Disconnect instead
    live_change: profiles.LiveChange


def explain(
    config: Config,
    ctx: profiles.FilterContext,
    profile: str,
    request: d.Request,
    subscriber: d.Subscriber | None,
    realm: d.Realm | None,
    now: datetime,
) -> Explanation:
    decision = decide(config, request, subscriber, realm, now)
    return Explanation(
        decision,
        profile,
        profiles.attributes_for(profile, decision, ctx, config.profiles),
        profiles.coa_attributes_for(profile, decision, ctx, config.profiles),
        profiles.live_change_for(profile, config.profiles),
    )


def push_method(found: Explanation, class_applied: str | None) -> str:
    """How a live session is moved to `found`: "coa", "disconnect", or "none" when only a
    Disconnect could change it and its class stays what it is (the push worker sends nothing)."""
    if found.coa is not None:
        return "coa"
    return "none" if str(found.decision.filter_class) == class_applied else "disconnect"


def disconnect_reason(found: Explanation) -> str:
    """Why a change reaches a session on this profile by Disconnect, in the words of the desk."""
    if found.live_change.method == "disconnect":
        return f"profile {found.profile} changes filters only by Disconnect"
    return f"profile {found.profile} has no CoA remove"
