"""The commands of `op25b`: each takes the parsed arguments (a Context), opens one transaction,
calls the store or the decision, and prints. The parser is `cli/parser.py`; `main` is
`cli/__init__.py`."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from radius_op25b import store
from radius_op25b.core import profiles
from radius_op25b.core.config import Config, config_path, load_config
from radius_op25b.core.decision import Decision
from radius_op25b.errors import InvalidInput, StoreUnavailable, UsageError
from radius_op25b.services import explain
from radius_op25b.store import db
from radius_op25b.store.models import AcctSession, AuditLog, CoaJob, Exemption, Realm, Subscriber

# --- time and value parsing -----------------------------------------------------------------------


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """ISO date or date-time; a bare date means the end of that day when `end_of_day`. UTC unless
    the text carries an offset."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{text!r} is not an ISO date or date-time (e.g. 2027-01-31 or 2027-01-31T14:03)") from None
    if len(text.strip()) == 10 and end_of_day:
        value = value + timedelta(days=1)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_DURATION = re.compile(r"^(\d+)([mhdw])$")


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidInput(f"{text!r} is not a duration like 90m, 12h, 30d or 2w")
    n, unit = int(match.group(1)), match.group(2)
    if n <= 0:
        raise InvalidInput(f"duration {text!r} must be positive")
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- JSON shapes (documented in README.md; keep them stable) ------------------------------------


def exemption_json(ex: Exemption, now: datetime) -> dict[str, Any]:
    return {
        "reason": ex.reason,
        "actor": ex.actor,
        "created_at": _iso(ex.created_at),
        "expires_at": _iso(ex.expires_at),
        "revoked_at": _iso(ex.revoked_at),
        "revoked_by": ex.revoked_by,
        "revoke_reason": ex.revoke_reason,
        "active": store.exemption_view(ex).active_at(now),
    }


def subscriber_json(sub: Subscriber, now: datetime) -> dict[str, Any]:
    return {
        **store.subscriber_state(sub),
        "created_at": _iso(sub.created_at),
        "updated_at": _iso(sub.updated_at),
        "exemptions": [exemption_json(ex, now) for ex in sub.exemptions],
    }


def session_json(row: AcctSession, push: CoaJob | None = None) -> dict[str, Any]:
    data = {
        "username": row.username,
        "nas": row.nas_name,
        "nas_address": row.nas_address,
        "acct_session_id": row.acct_session_id,
        "framed_ip": row.framed_ip,
        "framed_ipv6_prefix": row.framed_ipv6_prefix,
        "delegated_ipv6_prefix": row.delegated_ipv6_prefix,
        "class_applied": row.class_applied,
        "started_at": _iso(row.started_at),
        "updated_at": _iso(row.updated_at),
        "stopped_at": _iso(row.stopped_at),
        "terminate_cause": row.terminate_cause,
        "input_octets": row.input_octets,
        "output_octets": row.output_octets,
    }
    if push is not None:
        data["last_push"] = {
            "cause": push.cause,
            "status": push.status,
            "method": push.method,
            "result": push.result,
            "error_cause": push.error_cause,
            "attempts": push.attempts,
            "at": _iso(push.finished_at or push.created_at),
        }
    return data


def _session_line(row: AcctSession) -> str:
    addresses = " ".join(a for a in (row.framed_ip, row.framed_ipv6_prefix, row.delegated_ipv6_prefix) if a) or "-"
    until = f"{row.stopped_at:%Y-%m-%d %H:%M:%S}" if row.stopped_at else "now"
    return f"{row.username:32} {addresses:40} {row.class_applied or '?':6} {row.nas_name}/{row.acct_session_id}  {row.started_at:%Y-%m-%d %H:%M:%S} .. {until}"


def realm_json(realm: Realm, now: datetime) -> dict[str, Any]:
    return {
        **store.realm_state(realm),
        "msa_permits": [
            {"cidr": p.cidr, "until": _iso(p.permit_until), "actor": p.actor, "active": now < p.permit_until}
            for p in realm.msa_permits
        ],
    }


def audit_json(entry: AuditLog) -> dict[str, Any]:
    return {
        "at": _iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
    }


# --- the commands ---------------------------------------------------------------------------------


class Context:
    """What a command needs: the config (loaded on first use), an engine, the clock, the output."""

    def __init__(self, args: argparse.Namespace, now: datetime, out: Callable[[str], None]) -> None:
        self.args, self.now, self.out = args, now, out
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config_or_defaults(self.args.config)
        return self._config

    def engine(self, check_schema: bool = True) -> Any:
        engine = db.make_engine(self.config.database_url)
        if check_schema:
            db.require_current_schema(engine)
        return engine

    def emit(self, data: Any, text: str) -> None:
        self.out(json.dumps(data, indent=2, sort_keys=True) if self.args.json else text)


def load_config_or_defaults(explicit: str | None) -> Config:
    """The config file; without one, OP25B_DATABASE_URL alone is enough for database commands."""
    path = config_path(explicit)
    if not explicit and "OP25B_CONFIG" not in os.environ and not Path(path).exists() and os.environ.get("OP25B_DATABASE_URL"):
        return Config(database_url=os.environ["OP25B_DATABASE_URL"])
    return load_config(path)


def cmd_init(ctx: Context) -> int:
    path = Path(config_path(ctx.args.config))
    if path.exists() and not ctx.args.force:
        ctx.out(f"{path}: exists, kept (use --force to overwrite)")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(resources.files("radius_op25b").joinpath("example.toml").read_text())
        ctx.out(f"{path}: wrote an example configuration")
    engine = ctx.engine(check_schema=False)
    db.upgrade(engine)
    ctx.out(f"database {db.redact_url(str(engine.url))}: at revision {db.current_revision(engine)}")
    return 0


def cmd_db(ctx: Context) -> int:
    engine = ctx.engine(check_schema=False)
    if ctx.args.db_command == "upgrade":
        before = db.current_revision(engine)
        db.upgrade(engine)
        after = db.current_revision(engine)
        ctx.emit(
            {"from": before, "to": after},
            f"upgraded {before or '(empty)'} -> {after}" if before != after else f"already at {after}",
        )
        return 0
    current, head = db.current_revision(engine), db.head_revision(engine)
    data = {"current": current, "head": head, "up_to_date": current == head}
    text = f"current {current or '(empty)'}, head {head}" + ("" if current == head else "; run `op25b db upgrade`")
    ctx.emit(data, text)
    return 0


def _subscriber_text(sub: Subscriber, now: datetime) -> str:
    lines = [
        f"{sub.username}",
        f"  realm:   {sub.realm or '-'}",
        f"  ip type: {sub.ip_type}" + (f" ({', '.join(sub.static_addresses)})" if sub.static_addresses else ""),
        f"  class:   {sub.class_override or 'default'}",
    ]
    if sub.note:
        lines.append(f"  note:    {sub.note}")
    for ex in sub.exemptions:
        state = "active" if store.exemption_view(ex).active_at(now) else ("revoked" if ex.revoked_at else "expired")
        until = f"until {ex.expires_at:%Y-%m-%d %H:%M} UTC" if ex.expires_at else "no expiry"
        lines.append(f"  exemption ({state}): {until}, by {ex.actor}: {ex.reason}")
    return "\n".join(lines)


def cmd_subscriber(ctx: Context) -> int:
    a, now = ctx.args, ctx.now
    command = a.subscriber_command
    engine = ctx.engine()
    with db.transaction(engine) as session:
        if command == "add":
            sub = store.add_subscriber(
                session,
                a.user,
                actor=a.actor,
                now=now,
                realm=a.realm,
                static_addresses=a.static or (),
                class_override=a.cls,
                note=a.note,
            )
            ctx.emit(subscriber_json(sub, now), f"added {sub.username} ({sub.ip_type})")
        elif command == "show":
            sub = store.get_subscriber(session, a.user)
            live = store.active_sessions(session, sub.username)
            pushes = store.last_pushes(session, [row.id for row in live])
            data = {**subscriber_json(sub, now), "sessions": [session_json(row, pushes.get(row.id)) for row in live]}
            lines = [_subscriber_text(sub, now)]
            for row in live:
                push = pushes.get(row.id)
                last = f"; last push {push.method or '-'} {push.result or push.status} ({push.cause})" if push else ""
                lines.append(f"  session: {_session_line(row)}{last}")
            ctx.emit(data, "\n".join(lines))
        elif command == "list":
            subs = store.list_subscribers(session, realm=a.realm, limit=a.limit)
            text = "\n".join(f"{s.username:40} {s.realm or '-':24} {s.ip_type:8} {s.class_override or 'default'}" for s in subs)
            ctx.emit({"subscribers": [subscriber_json(s, now) for s in subs]}, text or "(no subscribers)")
        elif command == "set-static":
            sub = store.set_static(session, a.user, a.ips, actor=a.actor, now=now)
            ctx.emit(subscriber_json(sub, now), f"{sub.username}: static {', '.join(sub.static_addresses)}")
        elif command == "set-dynamic":
            sub = store.set_dynamic(session, a.user, actor=a.actor, now=now)
            ctx.emit(subscriber_json(sub, now), f"{sub.username}: dynamic")
        elif command == "set-class":
            cls = None if a.cls == "default" else a.cls
            sub = store.set_class(session, a.user, cls, actor=a.actor, now=now)
            ctx.emit(subscriber_json(sub, now), f"{sub.username}: class {sub.class_override or 'default'}")
        elif command == "exempt":
            if a.until and a.for_:
                raise UsageError("give --until or --for, not both")
            until = parse_time(a.until, end_of_day=True) if a.until else (now + parse_duration(a.for_) if a.for_ else None)
            ex = store.exempt(session, a.user, reason=a.reason, until=until, actor=a.actor, now=now)
            ctx.emit(
                exemption_json(ex, now),
                f"{ex.subscriber.username}: exempt "
                + (f"until {ex.expires_at:%Y-%m-%d %H:%M} UTC" if ex.expires_at else "with no expiry"),
            )
        elif command == "unexempt":
            ended = store.unexempt(session, a.user, reason=a.reason, actor=a.actor, now=now)
            ctx.emit({"revoked": [exemption_json(ex, now) for ex in ended]}, f"{a.user}: {len(ended)} exemption(s) revoked")
        elif command == "import":
            try:
                text = Path(a.file).read_text(encoding="utf-8-sig")
            except OSError as exc:
                raise InvalidInput(f"{a.file}: cannot read: {exc.strerror}") from None
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"{a.file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            rows = store.parse_import_csv(text, a.file)
            count = store.import_subscribers(session, rows, actor=a.actor, now=now, source=a.file)
            ctx.emit({"imported": count}, f"imported {count} subscribers from {a.file}")
    return 0


def cmd_realm(ctx: Context) -> int:
    a, now = ctx.args, ctx.now
    with db.transaction(ctx.engine()) as session:
        if a.realm_command == "add":
            realm = store.add_realm(
                session,
                a.name,
                actor=a.actor,
                now=now,
                default_class=a.cls,
                model=a.model,
                filter_name=a.filter_name,
                note=a.note,
            )
            ctx.emit(realm_json(realm, now), f"added realm {realm.name} (default {realm.default_class or 'policy default'})")
        elif a.realm_command == "show":
            realm = store.get_realm(session, a.name)
            permits = "\n".join(
                f"  permit MSA(25) {p.cidr} until {p.permit_until:%Y-%m-%d} ({'active' if now < p.permit_until else 'expired'})"
                for p in realm.msa_permits
            )
            text = f"{realm.name}\n  default class: {realm.default_class or 'policy default'}\n  model: {realm.model or '-'}" + (
                f"\n{permits}" if permits else ""
            )
            ctx.emit(realm_json(realm, now), text)
        elif a.realm_command == "list":
            realms = store.list_realms(session)
            text = "\n".join(f"{r.name:32} {r.default_class or 'default':8} {len(r.msa_permits)} permit(s)" for r in realms)
            ctx.emit({"realms": [realm_json(r, now) for r in realms]}, text or "(no realms)")
        elif a.realm_command == "permit-msa":
            until = parse_time(a.until, end_of_day=True)
            permit = store.permit_msa(session, a.name, a.cidr, until=until, actor=a.actor, now=now)
            ctx.emit(
                {"realm": permit.realm.name, "cidr": permit.cidr, "until": _iso(permit.permit_until)},
                f"{permit.realm.name}: permit port 25 to {permit.cidr} until {permit.permit_until:%Y-%m-%d %H:%M} UTC",
            )
    return 0


def cmd_sessions(ctx: Context) -> int:
    a, now = ctx.args, ctx.now
    with db.transaction(ctx.engine()) as session:
        if a.sessions_command == "active":
            rows = store.active_sessions(session, a.user, limit=a.limit)
            ctx.emit({"sessions": [session_json(r) for r in rows]}, "\n".join(map(_session_line, rows)) or "(no active sessions)")
        elif a.sessions_command == "who-had":
            at = parse_time(a.at) if a.at else now
            rows = store.who_had(session, a.ip, at)
            text = "\n".join(map(_session_line, rows)) or f"nobody had {a.ip} at {at:%Y-%m-%d %H:%M:%S} UTC"
            ctx.emit({"address": a.ip, "at": _iso(at), "sessions": [session_json(r) for r in rows]}, text)
        else:
            cutoff = now - parse_duration(a.older_than)
            count = store.purge_sessions(session, cutoff, actor=a.actor, now=now)
            ctx.emit(
                {"deleted": count, "older_than": _iso(cutoff)},
                f"deleted {count} session(s) that ended before {cutoff:%Y-%m-%d %H:%M} UTC",
            )
    return 0


def cmd_mobile_mta(ctx: Context) -> int:
    a, now = ctx.args, ctx.now
    with db.transaction(ctx.engine()) as session:
        if a.mobile_command == "add":
            row = store.add_mobile_mta_block(session, a.cidr, carrier=a.carrier, actor=a.actor, now=now, note=a.note)
            ctx.emit({"cidr": row.cidr, "carrier": row.carrier}, f"added mobile MTA block {row.cidr} ({row.carrier})")
        else:
            rows = store.list_mobile_mta_blocks(session)
            ctx.emit(
                {"blocks": [{"cidr": r.cidr, "carrier": r.carrier, "note": r.note} for r in rows]},
                "\n".join(f"{r.cidr:20} {r.carrier}" for r in rows) or "(no blocks)",
            )
    return 0


def explain_data(ctx: Context) -> tuple[Decision, dict[str, Any]]:
    a, config = ctx.args, ctx.config
    at = parse_time(a.at) if a.at else ctx.now
    framed_ip = None
    if a.framed_ip:
        try:
            framed_ip = ipaddress.ip_address(a.framed_ip)
        except ValueError:
            raise InvalidInput(f"--framed-ip {a.framed_ip!r} is not an IP address") from None
    client = None
    if a.nas:
        client = config.client(a.nas)
        if client is None:
            known = ", ".join(c.name for c in config.clients) or "none configured"
            raise InvalidInput(f"no NAS (client) named {a.nas!r} in {config.path} (known: {known})")
    profile = a.profile or (client.profile if client else (config.clients[0].profile if config.clients else "generic"))
    if profile not in profiles.BUILTIN_PROFILES and profile not in config.profiles:
        raise InvalidInput(f"unknown profile {profile!r} (known: {', '.join([*profiles.BUILTIN_PROFILES, *config.profiles])})")
    request = explain.request_for(a.user, framed_ip, client)
    with db.transaction(ctx.engine()) as session:
        subscriber, realm = store.policy_inputs(session, a.user)
        mta = store.mobile_mta_networks(session)
    found = explain.explain(config, profiles.FilterContext(config.filters, mta), profile, request, subscriber, realm, at)
    decision, attrs, change = found.decision, found.accept, found.live_change
    data = {
        "username": a.user,
        "known_subscriber": subscriber is not None,
        "at": _iso(at),
        "class": str(decision.filter_class),
        "reason": decision.reason,
        "reason_kind": decision.reason_kind,
        "realm": decision.realm,
        "msa_permits": [str(n) for n in decision.msa_permits],
        "nas": client.name if client else None,
        "profile": profile,
        "attributes": [{"name": n, "value": v} for n, v in attrs],
        "live_change": {"method": change.method, "nak_fallback": change.nak_fallback},
    }
    return decision, data


def cmd_policy(ctx: Context) -> int:
    decision, data = explain_data(ctx)
    lines = [
        f"{data['username']}: {decision.filter_class}",
        f"  reason:     {decision.reason}",
        f"  profile:    {data['profile']}" + (f" (NAS {data['nas']})" if data["nas"] else ""),
    ]
    if data["attributes"]:
        lines.append("  attributes:")
        lines += [f"    {x['name']} = {json.dumps(x['value'])}" for x in data["attributes"]]
    else:
        lines.append("  attributes: (none)")
    ctx.emit(data, "\n".join(lines))
    return 0


def cmd_serve(ctx: Context) -> int:
    import logging

    from radius_op25b.proxy.server import serve

    logging.basicConfig(
        level=getattr(logging, ctx.args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = ctx.config
    if not config.clients:
        raise InvalidInput(f"{config.path}: no [[clients]]: nothing could send us requests")
    if not config.upstreams:
        raise InvalidInput(f"{config.path}: no [[upstreams]]: nowhere to relay requests")
    if ctx.args.workers < 1:
        raise UsageError("--workers must be at least 1")
    engine = ctx.engine(check_schema=False)
    try:
        db.require_current_schema(engine)  # refuses an out-of-date schema, naming the fix
    except StoreUnavailable as exc:
        # A proxy that will not start while the database is down turns every login into
        # silence; one that starts relays them, with policy.on_database_error until it loads.
        logging.getLogger("op25b").error("%s; serving with policy.on_database_error until it answers", exc)
    serve(config, engine, ctx.args.workers)
    return 0


def cmd_audit(ctx: Context) -> int:
    a = ctx.args
    with db.transaction(ctx.engine()) as session:
        target = store.username_key(a.user) if a.user else None
        entries = store.audit_entries(session, target, limit=a.limit)
        text = "\n".join(f"{e.at:%Y-%m-%d %H:%M:%S} {e.actor:12} {e.action:24} {e.target}" for e in entries)
        ctx.emit({"entries": [audit_json(e) for e in entries]}, text or "(no entries)")
    return 0
