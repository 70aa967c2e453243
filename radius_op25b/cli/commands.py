"""The commands of `op25b`: each takes the parsed arguments (a Context), calls one operation of
the support desk (services/desk.py) and prints its result, as text or `--json`. No decisions
here: the parser is `cli/parser.py`, `main` is `cli/__init__.py`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from radius_op25b.cli.accounting import cmd_accounting, lag_text  # noqa: F401  (accounting quarantine, lag)
from radius_op25b.cli.acl import cmd_acl, cmd_export  # noqa: F401  (acl render/report/diff, export)
from radius_op25b.cli.files import read_text
from radius_op25b.cli.parser import default_actor
from radius_op25b.core.config import Config, config_path, load_config
from radius_op25b.core.inputs import format_expiry
from radius_op25b.errors import ConfigError, InvalidInput, StoreUnavailable, UsageError
from radius_op25b.services.desk import Desk, Result, field_changes, live_lines
from radius_op25b.store import db

# --- text output ------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> str:
    """Columns padded to their widest cell, under a header line; `empty` when there are no rows."""
    cells = [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]
    if not cells:
        return empty
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _addresses(s: dict[str, Any]) -> str:
    return " ".join(a for a in (s["framed_ip"], s["framed_ipv6_prefix"], s["delegated_ipv6_prefix"]) if a) or "-"


def sessions_table(rows: Sequence[dict[str, Any]], empty: str) -> str:
    return table(
        ("username", "address", "class", "nas", "session", "started", "stopped"),
        (
            (
                s["username"],
                _addresses(s),
                s["class_applied"] or "unknown",
                s["nas"],
                s["acct_session_id"],
                _when(s["started_at"]),
                _when(s["stopped_at"]) if s["stopped_at"] else "open",
            )
            for s in rows
        ),
        empty,
    )


def subscriber_text(sub: dict[str, Any]) -> str:
    statics = ", ".join(sub["static_addresses"])
    lines = [
        sub["username"],
        f"  realm:    {sub['realm'] or '-'}",
        f"  ip type:  {sub['ip_type']}" + (f" ({statics})" if statics else ""),
        f"  class:    {sub['class_override'] or 'default'}",
    ]
    if sub["note"]:
        lines.append(f"  note:     {sub['note']}")
    for ex in sub["exemptions"]:
        state = "active" if ex["active"] else ("revoked" if ex["revoked_at"] else "ended")
        lines.append(f"  exemption ({state}): {ex['expires']}, by {ex['actor']}: {ex['reason']}")
    return "\n".join(lines)


def _changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """before -> after of the fields that differ."""
    if before is None and after is None:
        return ""
    changed = sorted(field_changes(before, after))
    if before is None or after is None:  # an add (+ its values) or a delete (- what it had)
        values = [(k, new if before is None else old) for k, old, new in changed]
        shown = ", ".join(f"{k}={_value(v)}" for k, v in values if v not in (None, [], ""))
        return f"{'+' if before is None else '-'} {shown}"
    return "; ".join(f"{k}: {_value(old)} -> {_value(new)}" for k, old, new in changed)


def _value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(_value, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_value(x)}" for k, x in v.items()) + "}"
    return "-" if v is None else str(v)


# --- the commands ---------------------------------------------------------------------------------


class Context:
    """What a command needs: the config (loaded on first use), an engine, the clock, the output."""

    def __init__(self, args: argparse.Namespace, clock: Callable[[], datetime], out: Callable[[str], None]) -> None:
        self.args, self.clock, self.out = args, clock, out
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

    def desk(self) -> Desk:
        return Desk(
            self.config,
            self.engine(check_schema=False),  # the desk checks it on first use, after the values
            actor=self.args.actor if self.args.actor is not None else default_actor(),
            clock=self.clock,
            at_next_login=getattr(self.args, "at_next_login", False),
        )

    def emit(self, data: Any, text: str) -> None:
        self.out(json.dumps(data, indent=2, sort_keys=True) if self.args.json else text)

    def report(self, result: Result, text: str) -> None:
        """A change: what it did, then what it does to open sessions."""
        if self.args.json:
            self.out(json.dumps(result.json(), indent=2, sort_keys=True))
            return
        self.out(text)
        if result.reaches_sessions:
            for line in live_lines(result.live) or ["no live sessions to change"]:
                self.out(line)


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


def import_text(data: dict[str, Any]) -> str:
    lines = []
    for item in data["added"]:
        lines.append(f"line {item['line']}: add {item['username']}")
    for item in data["changed"]:
        lines.append(f"line {item['line']}: change {item['username']}: {_changes(item['before'], item['after'])}")
    for item in data["refused"]:
        lines.append(f"line {item['line']}: REFUSED {item['username'] or ''}: {item['message']}".replace("  ", " "))
    summary = (
        f"{data['source']}: {len(data['added'])} to add, {len(data['changed'])} to change, "
        f"{len(data['unchanged'])} unchanged, {len(data['refused'])} refused"
    )
    if data["dry_run"]:
        return "\n".join([*lines, summary + " (dry run: nothing written)"])
    return f"imported {data['source']}: {len(data['added'])} added, {len(data['changed'])} changed, {len(data['unchanged'])} unchanged"


def cmd_subscriber(ctx: Context) -> int:
    a = ctx.args
    command = a.subscriber_command
    desk = ctx.desk()
    if command == "show":
        data = desk.show_subscriber(a.user)
        lines = [subscriber_text(data)]
        for s in data["sessions"]:
            push = s.get("last_push")
            last = f"; last push {push['method'] or '-'} {push['result'] or push['status']} ({push['cause']})" if push else ""
            lines.append(f"  session:  {s['nas']}/{s['acct_session_id']} {_addresses(s)} since {_when(s['started_at'])}{last}")
        ctx.emit(data, "\n".join(lines))
    elif command == "list":
        data = desk.list_subscribers(realm=a.realm, limit=a.limit, offset=a.offset)
        subs = data["subscribers"]
        text = table(
            ("username", "realm", "ip type", "class", "exempt"),
            ((s["username"], s["realm"], s["ip_type"], s["class_override"] or "default", _exempt(s["exemptions"])) for s in subs),
            "(no subscribers)",
        )
        if subs or data["total"]:
            first = data["offset"] + 1 if subs else data["offset"]
            text += f"\n{len(subs):,} of {data['total']:,} shown" + (
                f" ({first:,}-{data['offset'] + len(subs):,}; next page: --offset {data['offset'] + len(subs)})"
                if data["offset"] + len(subs) < data["total"]
                else ""
            )
        ctx.emit(data, text)
    elif command == "find":
        data = desk.find_ip(a.ip)
        lines = [f"{data['address']}:", f"  static owner: {data['static_owner'] or 'nobody'}"]
        opened = data["open_sessions"]
        lines.append(
            "  open session: " + (", ".join(f"{s['username']} on {s['nas']}/{s['acct_session_id']}" for s in opened) or "none")
        )
        last = data["last_session"]
        lines.append(
            "  last session: "
            + (
                f"{last['username']} on {last['nas']}/{last['acct_session_id']}, {_when(last['started_at'])} .. "
                + (_when(last["stopped_at"]) if last["stopped_at"] else "open")
                if last
                else "none recorded"
            )
        )
        ctx.emit(data, "\n".join(lines))
    elif command == "add":
        result = desk.add_subscriber(a.user, realm=a.realm, static=a.static or (), cls=a.cls, note=a.note)
        ctx.report(result, f"added {result.data['username']} ({result.data['ip_type']})")
    elif command == "set-static":
        result = desk.set_static(a.user, a.ips)
        ctx.report(result, f"{result.data['username']}: static {', '.join(result.data['static_addresses'])}")
    elif command == "set-dynamic":
        result = desk.set_dynamic(a.user)
        ctx.report(result, f"{result.data['username']}: dynamic")
    elif command == "set-class":
        result = desk.set_class(a.user, None if a.cls == "default" else a.cls)
        ctx.report(result, f"{result.data['username']}: class {result.data['class_override'] or 'default'}")
    elif command == "set-note":
        result = desk.set_note(a.user, a.text)
        ctx.report(
            result, f"{result.data['username']}: note " + (repr(result.data["note"]) if result.data["note"] else "cleared")
        )
    elif command == "set-realm":
        result = desk.set_realm(a.user, None if a.realm == "default" else a.realm)
        ctx.report(result, f"{result.data['username']}: realm {result.data['realm'] or '(none)'}")
    elif command == "delete":
        result = desk.delete_subscriber(a.user, reason=a.reason)
        ctx.report(result, f"deleted {result.data['deleted']['username']}")
    elif command == "exempt":
        result = desk.exempt(a.user, reason=a.reason, until=a.until, duration=a.for_, permanent=a.permanent, extend=a.extend)
        ctx.report(result, f"{result.data['username']}: {'exemption moved' if a.extend else 'exempt'} {result.data['expires']}")
    elif command == "unexempt":
        result = desk.unexempt(a.user, reason=a.reason)
        ctx.report(result, f"{result.data['username']}: exemption revoked")
    elif command == "import":
        if a.dry_run and a.at_next_login:
            raise UsageError("--at-next-login has no meaning with --dry-run")
        result = desk.import_csv(
            read_text(a.file, stdin=True), a.file, header=not a.no_header, update=a.update, dry_run=a.dry_run
        )
        if a.dry_run:
            ctx.emit(result.json(), import_text(result.data))
        else:
            ctx.report(result, import_text(result.data))
    return 0


def _exempt(exemptions: Sequence[dict[str, Any]]) -> str:
    active = next((ex for ex in exemptions if ex["active"]), None)
    return active["expires"].removeprefix("until ") if active else "no"


def cmd_exemptions(ctx: Context) -> int:
    data = ctx.desk().exemptions(expiring_within=ctx.args.expiring_within)
    rows = data["exemptions"]
    empty = f"(no exemptions ending within {data['expiring_within']})" if data["expiring_within"] else "(no active exemptions)"
    text = table(
        ("username", "ends", "granted by", "granted", "reason"),
        ((e["username"], e["expires"].removeprefix("until "), e["actor"], _when(e["created_at"]), e["reason"]) for e in rows),
        empty,
    )
    ctx.emit(data, text)
    return 0


def cmd_realm(ctx: Context) -> int:
    a = ctx.args
    desk = ctx.desk()
    if a.realm_command == "add":
        result = desk.add_realm(a.name, cls=a.cls, model=a.model, filter_name=a.filter_name, note=a.note)
        ctx.report(result, f"added realm {result.data['name']} (default {result.data['default_class'] or 'policy default'})")
    elif a.realm_command == "show":
        data = desk.show_realm(a.name)
        lines = [
            data["name"],
            f"  default class: {data['default_class'] or 'policy default'}",
            f"  model:         {data['model'] or '-'}",
            f"  subscribers:   {data['subscribers']:,}",
        ]
        lines += [
            f"  permit MSA(25) {p['cidr']} {format_expiry(datetime.fromisoformat(p['until']))} ({'active' if p['active'] else 'ended'})"
            for p in data["msa_permits"]
        ]
        ctx.emit(data, "\n".join(lines))
    elif a.realm_command == "list":
        data = desk.list_realms()
        text = table(
            ("realm", "default class", "model", "permits"),
            ((r["name"], r["default_class"] or "policy", r["model"], len(r["msa_permits"])) for r in data["realms"]),
            "(no realms)",
        )
        ctx.emit(data, text)
    elif a.realm_command == "delete":
        result = desk.delete_realm(a.name)
        ctx.report(result, f"deleted realm {result.data['deleted']['name']}")
    elif a.realm_command == "permit-msa":
        result = desk.permit_msa(a.name, a.cidr, until=a.until)
        ctx.report(result, f"{result.data['realm']}: port 25 to {result.data['cidr']} permitted {result.data['expires']}")
    elif a.realm_command == "revoke-msa":
        result = desk.revoke_msa(a.name, a.cidr)
        ctx.report(result, f"{result.data['realm']}: MSA(25) permit for {result.data['cidr']} revoked")
    return 0


def cmd_sessions(ctx: Context) -> int:
    a = ctx.args
    desk = ctx.desk()
    if a.sessions_command == "active":
        data = desk.active_sessions(user=a.user, limit=a.limit)
        ctx.emit(data, sessions_table(data["sessions"], "(no active sessions)"))
    elif a.sessions_command == "who-had":
        from radius_op25b.services.spool import spool_lag

        data = desk.who_had(a.ip, at=a.at)
        lag = spool_lag(ctx.config.spool_dir)  # the spool folder of every worker; no database
        data["spool"], data["complete"] = lag.json(), lag.known and not lag.behind
        text = sessions_table(data["sessions"], f"nobody had {data['address']} at {_when(data['at'])} UTC")
        if not data["complete"]:
            text += f"\n(may be incomplete: {lag_text(lag)})"
        ctx.emit(data, text)
    else:
        result = desk.purge_sessions(older_than=a.older_than)
        ctx.report(
            result, f"deleted {result.data['deleted']} session(s) that ended before {_when(result.data['older_than'])} UTC"
        )
    return 0


def cmd_mobile_mta(ctx: Context) -> int:
    a = ctx.args
    desk = ctx.desk()
    if a.mobile_command == "add":
        result = desk.add_mobile_mta(a.cidr, carrier=a.carrier, note=a.note)
        ctx.report(result, f"added mobile MTA block {result.data['cidr']} ({result.data['carrier']})")
    elif a.mobile_command == "remove":
        result = desk.remove_mobile_mta(a.cidr)
        ctx.report(result, f"removed mobile MTA block {result.data['removed']['cidr']} ({result.data['removed']['carrier']})")
    else:
        data = desk.list_mobile_mta()
        ctx.emit(
            data,
            table(("block", "carrier", "note"), ((b["cidr"], b["carrier"], b["note"]) for b in data["blocks"]), "(no blocks)"),
        )
    return 0


def cmd_policy(ctx: Context) -> int:
    a = ctx.args
    data = ctx.desk().explain(a.user, framed_ip=a.framed_ip, nas=a.nas, profile=a.profile, at=a.at)
    lines = [
        f"{data['username']}: {data['class']}",
        f"  reason:     {data['reason']}",
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
        raise ConfigError(f"{config.path}: no [[clients]]: nothing could send us requests")
    if not config.upstreams:
        raise ConfigError(f"{config.path}: no [[upstreams]]: nowhere to relay requests")
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
    data = ctx.desk().audit(user=a.user, since=a.since, action=a.action, limit=a.limit)
    text = table(
        ("at", "actor", "via", "action", "target", "reason", "change"),
        (
            (_when(e["at"]), e["actor"], e["via"], e["action"], e["target"], e["reason"], _changes(e["before"], e["after"]))
            for e in data["entries"]
        ),
        "(no entries)",
    )
    ctx.emit(data, text)
    return 0


def cmd_staff(ctx: Context) -> int:
    from radius_op25b.services.staff import StaffService

    a = ctx.args
    service = StaffService(ctx.engine(), actor=_actor(ctx), clock=ctx.clock)
    if a.staff_command == "add":
        password = None
        if a.password_stdin:
            line = sys.stdin.readline()
            password = line[:-1] if line.endswith("\n") else line
            if not password:
                raise InvalidInput("--password-stdin: standard input held no password")
        data = service.add(a.name, role=a.role, password=password)
        ctx.emit(
            data,
            f"added staff member {data['name']} ({data['role']})"
            + ("" if data["has_password"] else "; no password: tokens only"),
        )
    elif a.staff_command == "token":
        token, data = service.token(a.name, valid_for=None if a.no_expiry else a.for_)
        if a.json:
            ctx.emit({**data, "token": token}, "")
        else:
            ctx.out(token)  # alone on stdout, for `TOKEN=$(op25b staff token NAME)`
            expiry = f"until {data['expires_at'][:16].replace('T', ' ')} UTC" if data["expires_at"] else "until revoked"
            print(f"token {data['prefix']}... for {data['name']}, valid {expiry}; it is shown only this once", file=sys.stderr)
    elif a.staff_command == "list":
        data = service.list()
        rows = (
            (
                m["name"],
                m["role"],
                "disabled" if m["disabled_at"] else "active",
                m["tokens"],
                "yes" if m["has_password"] else "no",
            )
            for m in data["staff"]
        )
        ctx.emit(data, table(("name", "role", "state", "tokens", "password"), rows, "(no staff)"))
    elif a.staff_command == "disable":
        data = service.disable(a.name)
        ctx.emit(data, f"disabled {data['name']}; their tokens are revoked")
    else:
        data = service.revoke_tokens(a.name)
        ctx.emit(data, f"revoked {data['revoked']} token(s) of {data['name']}")
    return 0


def _actor(ctx: Context) -> str:
    from radius_op25b.services.desk import check_actor

    return check_actor(ctx.args.actor if ctx.args.actor is not None else default_actor())


def cmd_web(ctx: Context) -> int:
    from radius_op25b.web.server import run

    run(ctx.config, ctx.engine(), listen=ctx.args.listen, log_level=ctx.args.log_level)
    return 0
