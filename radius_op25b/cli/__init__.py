"""The `op25b` command: a plain `main(args)` over a separate parser builder (DESIGN §5).

Commands are thin: parse, open one transaction, call the store or the decision, print.
Exit 0 on success, 1 on an operational error, 2 on a usage error; errors are one `error:` line.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from radius_op25b import store
from radius_op25b.store import db
from radius_op25b.core import profiles
from radius_op25b.core.config import Config, config_path, load_config
from radius_op25b.core.decision import Decision, Request, decide
from radius_op25b.errors import InvalidInput, Op25bError, StoreUnavailable, UsageError
from radius_op25b.store.models import AcctSession, AuditLog, CoaJob, Exemption, Realm, Subscriber

JSON_HELP = "print JSON (a stable shape, documented in README.md)"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one `error:` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


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


def default_actor() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


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
            "cause": push.cause, "status": push.status, "method": push.method, "result": push.result,
            "error_cause": push.error_cause, "attempts": push.attempts, "at": _iso(push.finished_at or push.created_at),
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
        ctx.emit({"from": before, "to": after}, f"upgraded {before or '(empty)'} -> {after}" if before != after else f"already at {after}")
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
                session, a.user, actor=a.actor, now=now, realm=a.realm, static_addresses=a.static or (), class_override=a.cls, note=a.note
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
            text = "\n".join(
                f"{s.username:40} {s.realm or '-':24} {s.ip_type:8} {s.class_override or 'default'}" for s in subs
            )
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
            ctx.emit(exemption_json(ex, now), f"{ex.subscriber.username}: exempt " + (f"until {ex.expires_at:%Y-%m-%d %H:%M} UTC" if ex.expires_at else "with no expiry"))
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
            realm = store.add_realm(session, a.name, actor=a.actor, now=now, default_class=a.cls, model=a.model, filter_name=a.filter_name, note=a.note)
            ctx.emit(realm_json(realm, now), f"added realm {realm.name} (default {realm.default_class or 'policy default'})")
        elif a.realm_command == "show":
            realm = store.get_realm(session, a.name)
            permits = "\n".join(
                f"  permit MSA(25) {p.cidr} until {p.permit_until:%Y-%m-%d} ({'active' if now < p.permit_until else 'expired'})"
                for p in realm.msa_permits
            )
            text = f"{realm.name}\n  default class: {realm.default_class or 'policy default'}\n  model: {realm.model or '-'}" + (f"\n{permits}" if permits else "")
            ctx.emit(realm_json(realm, now), text)
        elif a.realm_command == "list":
            realms = store.list_realms(session)
            text = "\n".join(f"{r.name:32} {r.default_class or 'default':8} {len(r.msa_permits)} permit(s)" for r in realms)
            ctx.emit({"realms": [realm_json(r, now) for r in realms]}, text or "(no realms)")
        elif a.realm_command == "permit-msa":
            until = parse_time(a.until, end_of_day=True)
            permit = store.permit_msa(session, a.name, a.cidr, until=until, actor=a.actor, now=now)
            ctx.emit({"realm": permit.realm.name, "cidr": permit.cidr, "until": _iso(permit.permit_until)}, f"{permit.realm.name}: permit port 25 to {permit.cidr} until {permit.permit_until:%Y-%m-%d %H:%M} UTC")
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
            ctx.emit({"deleted": count, "older_than": _iso(cutoff)}, f"deleted {count} session(s) that ended before {cutoff:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_mobile_mta(ctx: Context) -> int:
    a, now = ctx.args, ctx.now
    with db.transaction(ctx.engine()) as session:
        if a.mobile_command == "add":
            row = store.add_mobile_mta_block(session, a.cidr, carrier=a.carrier, actor=a.actor, now=now, note=a.note)
            ctx.emit({"cidr": row.cidr, "carrier": row.carrier}, f"added mobile MTA block {row.cidr} ({row.carrier})")
        else:
            rows = store.list_mobile_mta_blocks(session)
            ctx.emit({"blocks": [{"cidr": r.cidr, "carrier": r.carrier, "note": r.note} for r in rows]}, "\n".join(f"{r.cidr:20} {r.carrier}" for r in rows) or "(no blocks)")
    return 0


def explain(ctx: Context) -> tuple[Decision, dict[str, Any]]:
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
    request = Request(a.user, framed_ip, client.name if client else None, client.enforce if client else True)
    with db.transaction(ctx.engine()) as session:
        subscriber, realm = store.policy_inputs(session, a.user)
        mta = store.mobile_mta_networks(session)
    decision = decide(request, subscriber, realm, config.policy, at)
    fctx = profiles.FilterContext(config.filters, mta)
    attrs = profiles.attributes_for(profile, decision, fctx, config.profiles)
    change = profiles.live_change_for(profile, config.profiles)
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
    decision, data = explain(ctx)
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


# --- the parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="op25b",
        description="RADIUS proxy that applies Outbound Port 25 Blocking (OP25B) per subscriber, "
        "and the tools support staff use to manage it.",
        epilog="Exit status: 0 success, 1 operational error, 2 usage error.",
    )
    p.add_argument("-c", "--config", help="config file (env OP25B_CONFIG; default ./op25b.toml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def json_flag(q: argparse.ArgumentParser) -> None:
        q.add_argument("--json", action="store_true", help=JSON_HELP)

    def actor_flag(q: argparse.ArgumentParser) -> None:
        q.add_argument("--actor", default=default_actor(), help="who makes the change, for the audit log (default: your OS user)")

    q = sub.add_parser("init", help="write an example config and create the embedded database")
    q.add_argument("--force", action="store_true", help="overwrite an existing config file")
    q.set_defaults(func=cmd_init, json=False)

    q = sub.add_parser("serve", help="run the proxy (SIGHUP reloads the config, SIGTERM drains)")
    q.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    q.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="processes sharing the ports (SO_REUSEPORT); worker K serves metrics on the metrics port + K",
    )
    q.set_defaults(func=cmd_serve, json=False)

    q = sub.add_parser("db", help="database migrations")
    dbs = q.add_subparsers(dest="db_command", required=True, metavar="upgrade|current", parser_class=_Parser)
    for name, text in (("upgrade", "apply every pending migration"), ("current", "show the schema revision and the head")):
        r = dbs.add_parser(name, help=text)
        json_flag(r)
    q.set_defaults(func=cmd_db)

    q = sub.add_parser("subscriber", help="add, change and inspect subscribers")
    ss = q.add_subparsers(dest="subscriber_command", required=True, metavar="ACTION", parser_class=_Parser)
    r = ss.add_parser("add", help="add a subscriber (dynamic unless --static)")
    r.add_argument("user", help="User-Name as the NAS sends it (case-insensitive)")
    r.add_argument("--realm", help="ISP / wholesale partner realm (default: the part after @)")
    r.add_argument("--static", nargs="+", metavar="IP", help="static IP address(es): never filtered")
    r.add_argument("--class", dest="cls", choices=store.CLASSES, help="class override")
    r.add_argument("--note")
    actor_flag(r)
    json_flag(r)
    r = ss.add_parser("show", help="one subscriber with its exemptions")
    r.add_argument("user")
    json_flag(r)
    r = ss.add_parser("list", help="subscribers, by username")
    r.add_argument("--realm")
    r.add_argument("--limit", type=int, default=1000)
    json_flag(r)
    r = ss.add_parser("set-static", help="static IP upgrade: removes the filter")
    r.add_argument("user")
    r.add_argument("ips", nargs="+", metavar="IP")
    actor_flag(r)
    json_flag(r)
    r = ss.add_parser("set-dynamic", help="back to a dynamic IP: the filter applies again")
    r.add_argument("user")
    actor_flag(r)
    json_flag(r)
    r = ss.add_parser("set-class", help="override the class, or `default` to follow realm/policy")
    r.add_argument("user")
    r.add_argument("cls", choices=(*store.CLASSES, "default"), metavar="CLASS", help="full, mobile, none or default")
    actor_flag(r)
    json_flag(r)
    r = ss.add_parser("exempt", help="grant an exemption (no filter) with a reason and an expiry")
    r.add_argument("user")
    r.add_argument("--reason", required=True)
    r.add_argument("--until", metavar="ISO-DATE", help="last day (UTC) or exact time of the exemption")
    r.add_argument("--for", dest="for_", metavar="DURATION", help="e.g. 30d, 12h, 2w")
    actor_flag(r)
    json_flag(r)
    r = ss.add_parser("unexempt", help="end the active exemption now")
    r.add_argument("user")
    r.add_argument("--reason", required=True)
    actor_flag(r)
    json_flag(r)
    r = ss.add_parser("import", help="add subscribers from a CSV file, all or nothing")
    r.add_argument("file", help="CSV: username,realm,ip_type,static_addresses,class,note")
    actor_flag(r)
    json_flag(r)
    q.set_defaults(func=cmd_subscriber)

    q = sub.add_parser("realm", help="ISP / wholesale-partner realms and their MSA(25) permits")
    rs = q.add_subparsers(dest="realm_command", required=True, metavar="ACTION", parser_class=_Parser)
    r = rs.add_parser("add", help="add a realm")
    r.add_argument("name")
    r.add_argument("--class", dest="cls", choices=store.CLASSES, help="the realm's default class")
    r.add_argument("--model", choices=("A", "B", "C"), help="JEAG ISP model")
    r.add_argument("--filter-name", help="the partner's own named full filter (default: FULL-NAME-REALM)")
    r.add_argument("--note")
    actor_flag(r)
    json_flag(r)
    r = rs.add_parser("show", help="one realm with its permits")
    r.add_argument("name")
    json_flag(r)
    r = rs.add_parser("list", help="all realms")
    json_flag(r)
    r = rs.add_parser("permit-msa", help="permit port 25 to a partner's MSA(25) block until a date")
    r.add_argument("name")
    r.add_argument("cidr")
    r.add_argument("--until", required=True, metavar="ISO-DATE", help="last day (UTC) of the permit")
    actor_flag(r)
    json_flag(r)
    q.set_defaults(func=cmd_realm)

    q = sub.add_parser("sessions", help="sessions from accounting: who is online, who had an address")
    ss2 = q.add_subparsers(dest="sessions_command", required=True, metavar="ACTION", parser_class=_Parser)
    r = ss2.add_parser("active", help="open sessions")
    r.add_argument("--user")
    r.add_argument("--limit", type=int, default=1000)
    json_flag(r)
    r = ss2.add_parser("who-had", help="who held an IPv4 address, or an IPv6 address inside a prefix, at a time")
    r.add_argument("ip", metavar="IP")
    r.add_argument("--at", metavar="TIME", help="ISO time, UTC unless it has an offset (default: now)")
    json_flag(r)
    r = ss2.add_parser("purge", help="delete sessions that ended long ago")
    r.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 180d")
    actor_flag(r)
    json_flag(r)
    q.set_defaults(func=cmd_sessions)

    q = sub.add_parser("mobile-mta", help="mobile carriers' mail server blocks (the `mobile` class)")
    ms = q.add_subparsers(dest="mobile_command", required=True, metavar="ACTION", parser_class=_Parser)
    r = ms.add_parser("add", help="add a block")
    r.add_argument("cidr")
    r.add_argument("--carrier", required=True)
    r.add_argument("--note")
    actor_flag(r)
    json_flag(r)
    r = ms.add_parser("list", help="all blocks")
    json_flag(r)
    q.set_defaults(func=cmd_mobile_mta)

    q = sub.add_parser("policy", help="explain decisions")
    ps = q.add_subparsers(dest="policy_command", required=True, metavar="explain", parser_class=_Parser)
    r = ps.add_parser("explain", help="the class, the reason and the attributes a login would get")
    r.add_argument("user")
    r.add_argument("--framed-ip", metavar="IP", help="the Framed-IP-Address of the Accept (static pools)")
    r.add_argument("--nas", metavar="NAME", help="the client (NAS) name from the config: its profile and enforcement")
    r.add_argument("--profile", help="render for this profile instead of the NAS's")
    r.add_argument("--at", metavar="TIME", help="decide as of this ISO time (default: now)")
    json_flag(r)
    q.set_defaults(func=cmd_policy)

    q = sub.add_parser("audit", help="the change log")
    q.add_argument("--user", help="only changes to this subscriber")
    q.add_argument("--limit", type=int, default=200)
    json_flag(q)
    q.set_defaults(func=cmd_audit)
    return p


def main(args: Sequence[str] | None = None, *, now: datetime | None = None, out: Callable[[str], None] = print) -> int:
    """Run one command; `now` and `out` are there for tests (an injected clock and output)."""
    try:
        parsed = build_parser().parse_args(args)
        return int(parsed.func(Context(parsed, now or datetime.now(UTC), out)))
    except Op25bError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
