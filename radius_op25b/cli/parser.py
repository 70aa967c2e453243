"""The parser of `op25b` (README: "The op25b command"). It imports nothing heavy, so `op25b --help` and
`--version` start at once: a command's module is imported when that command runs.

The global options (-c/--config, --json, --actor) are accepted before or after the subcommand."""

from __future__ import annotations

import argparse
import getpass
import os
from typing import NoReturn

from radius_op25b import __version__
from radius_op25b.core.decision import FilterClass
from radius_op25b.errors import UsageError

JSON_HELP = "print JSON (a stable shape, documented in README.md)"
CLASSES = tuple(c.value for c in FilterClass)
MAX_ROWS = 1_000_000


def default_actor() -> str:
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (a container, DynamicUser=)
        return f"uid:{os.getuid()}"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one `error:` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> object:
        # `--reason=--`: argparse drops the '--' as an end-of-options marker and hands the option
        # an empty list; the user gave the text "--".
        if action.nargs in (None, argparse.OPTIONAL) and arg_strings == ["--"] and action.option_strings:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


def _count(low: int, high: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high:,}")
        return value

    parse.__name__ = "number"
    return parse  # type: ignore[return-value]


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """On the top parser with their defaults; on every subcommand without (argparse.SUPPRESS), so
    a value given there overrides the top one and an absent one leaves it alone."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "-c", "--config", default=default(None), metavar="PATH", help="config file (env OP25B_CONFIG; default ./op25b.toml)"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help=JSON_HELP)
    parser.add_argument("--actor", default=default(None), help="who makes the change, for the audit log (default: your OS user)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="op25b",
        description="RADIUS proxy that applies Outbound Port 25 Blocking (OP25B) per subscriber, "
        "and the tools support staff use to manage it.",
        epilog="Exit status: 0 success, 1 operational error (not found, conflict, database down), "
        "2 usage error (a malformed argument or value). Global options may also follow the subcommand.",
    )
    _global_options(p, top=True)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = _Parser(add_help=False)
    _global_options(common, top=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def group(parent: argparse._SubParsersAction, name: str, text: str, dest: str, metavar: str) -> argparse._SubParsersAction:  # type: ignore[type-arg]
        q = parent.add_parser(name, help=text, description=text, parents=[common])
        return q.add_subparsers(dest=dest, required=True, metavar=metavar, parser_class=_Parser)

    def leaf(parent: argparse._SubParsersAction, name: str, text: str, func: str, **kw: str) -> argparse.ArgumentParser:  # type: ignore[type-arg]
        q = parent.add_parser(name, help=text, description=kw.get("description", text), parents=[common])
        q.set_defaults(func=func)
        return q

    def live(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--at-next-login",
            action="store_true",
            help="do not push the change to open sessions (no CoA, no Disconnect): it applies when the customer next logs in",
        )

    def limit(q: argparse.ArgumentParser, default: int) -> None:
        q.add_argument(
            "--limit", type=_count(1, MAX_ROWS), default=default, metavar="N", help=f"at most N rows (default {default})"
        )

    q = leaf(sub, "init", "write an example config and create the embedded database", "cmd_init")
    q.add_argument("--force", action="store_true", help="overwrite an existing config file")

    q = leaf(sub, "serve", "run the proxy (SIGHUP reloads the config, SIGTERM drains)", "cmd_serve")
    q.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    q.add_argument(
        "--workers",
        type=_count(1, 64),
        default=1,
        metavar="N",
        help="processes sharing the ports (SO_REUSEPORT); the metrics port shows the sum over them",
    )

    dbs = group(sub, "db", "database migrations", "db_command", "upgrade|current")
    leaf(dbs, "upgrade", "apply every pending migration", "cmd_db")
    leaf(dbs, "current", "show the schema revision and the head", "cmd_db")

    ss = group(sub, "subscriber", "add, change and inspect subscribers", "subscriber_command", "ACTION")
    r = leaf(ss, "add", "add a subscriber (dynamic unless --static)", "cmd_subscriber")
    r.add_argument("user", help="User-Name as the NAS sends it (case-insensitive)")
    r.add_argument("--realm", help="ISP / wholesale partner realm (default: the part after @)")
    r.add_argument("--static", nargs="+", metavar="IP", help="static IP address(es): never filtered; one owner per address")
    r.add_argument("--class", dest="cls", choices=CLASSES, help="class override")
    r.add_argument("--note")
    live(r)
    r = leaf(ss, "show", "one subscriber with its exemptions and open sessions", "cmd_subscriber")
    r.add_argument("user")
    r = leaf(ss, "list", "subscribers, by username, a page at a time", "cmd_subscriber")
    r.add_argument("--realm")
    limit(r, 1000)
    r.add_argument("--offset", type=_count(0, 1_000_000_000), default=0, metavar="K", help="skip the first K (default 0)")
    r = leaf(ss, "find", "who has an address: its static owner, the open session, the last session", "cmd_subscriber")
    r.add_argument("--ip", required=True, metavar="ADDR", help="an IPv4 or IPv6 address")
    r = leaf(ss, "set-static", "static IP upgrade: removes the filter", "cmd_subscriber")
    r.add_argument("user")
    r.add_argument("ips", nargs="+", metavar="IP")
    live(r)
    r = leaf(ss, "set-dynamic", "back to a dynamic IP: the filter applies again", "cmd_subscriber")
    r.add_argument("user")
    live(r)
    r = leaf(ss, "set-class", "override the class, or `default` to follow realm/policy", "cmd_subscriber")
    r.add_argument("user")
    r.add_argument("cls", choices=(*CLASSES, "default"), metavar="CLASS", help="full, mobile, none or default")
    live(r)
    r = leaf(ss, "set-note", "replace the note (an empty TEXT clears it); pushes nothing", "cmd_subscriber")
    r.add_argument("user")
    r.add_argument("text", metavar="TEXT")
    r = leaf(ss, "set-realm", "move to another realm, or `default` for the part after @", "cmd_subscriber")
    r.add_argument("user")
    r.add_argument("realm", metavar="REALM")
    live(r)
    r = leaf(ss, "delete", "delete a subscriber and its exemptions; open sessions get the default policy", "cmd_subscriber")
    r.add_argument("user")
    r.add_argument("--reason", required=True, help="why, for the audit log")
    live(r)
    r = leaf(
        ss,
        "exempt",
        "grant the exemption (no filter), with a reason and an end",
        "cmd_subscriber",
        description="Grant the one active exemption of a subscriber (no port-25 filter). It needs an end: "
        "--until (a date means the end of that day, UTC), --for, or an explicit --permanent. "
        "policy.max_exemption caps the length. Exempting again is refused; --extend moves the end.",
    )
    r.add_argument("user")
    r.add_argument("--reason", required=True)
    end = r.add_mutually_exclusive_group(required=True)
    end.add_argument("--until", metavar="ISO-DATE", help="last day (UTC), or an exact ISO time, of the exemption")
    end.add_argument("--for", dest="for_", metavar="DURATION", help="from now: e.g. 30d, 12h, 2w")
    end.add_argument("--permanent", action="store_true", help="no end (refused when policy.max_exemption is set)")
    r.add_argument("--extend", action="store_true", help="move the end of the active exemption instead")
    live(r)
    r = leaf(ss, "unexempt", "end the active exemption now", "cmd_subscriber")
    r.add_argument("user")
    r.add_argument("--reason", required=True)
    live(r)
    r = leaf(
        ss,
        "import",
        "add (or with --update, change) subscribers from a CSV file, all or nothing",
        "cmd_subscriber",
        description="Columns by header name: username (required), realm, ip_type (dynamic|static), "
        "static_addresses (space-separated), class (full|mobile|none), note. The delimiter (, ; tab |) "
        "is detected. Nothing is written unless every line is accepted.",
    )
    r.add_argument("file", metavar="FILE", help="the CSV file, or - for standard input")
    r.add_argument("--dry-run", action="store_true", help="say what would be added, changed and refused, by line; write nothing")
    r.add_argument("--update", action="store_true", help="change subscribers that exist (the file's columns only)")
    r.add_argument(
        "--no-header",
        action="store_true",
        help="the file has no header: columns in the order username,realm,ip_type,static_addresses,class,note",
    )
    live(r)

    es = group(sub, "exemptions", "active exemptions across subscribers", "exemptions_command", "list")
    r = leaf(es, "list", "active exemptions, soonest end first", "cmd_exemptions")
    r.add_argument("--expiring-within", metavar="DURATION", help="only those ending within e.g. 7d")

    rs = group(sub, "realm", "ISP / wholesale-partner realms and their MSA(25) permits", "realm_command", "ACTION")
    r = leaf(rs, "add", "add a realm", "cmd_realm")
    r.add_argument("name")
    r.add_argument("--class", dest="cls", choices=CLASSES, help="the realm's default class")
    r.add_argument("--model", choices=("A", "B", "C"), help="JEAG ISP model")
    r.add_argument("--filter-name", help="the partner's own named full filter (default: FULL-NAME-REALM)")
    r.add_argument("--note")
    live(r)
    r = leaf(rs, "show", "one realm with its permits", "cmd_realm")
    r.add_argument("name")
    leaf(rs, "list", "all realms", "cmd_realm")
    r = leaf(rs, "delete", "delete a realm with no subscribers (its permits go with it)", "cmd_realm")
    r.add_argument("name")
    live(r)
    r = leaf(rs, "permit-msa", "permit port 25 to a partner's MSA(25) block until a date", "cmd_realm")
    r.add_argument("name")
    r.add_argument("cidr")
    r.add_argument("--until", required=True, metavar="ISO-DATE", help="last day (UTC) of the permit")
    live(r)
    r = leaf(rs, "revoke-msa", "end a partner's MSA(25) permit now", "cmd_realm")
    r.add_argument("name")
    r.add_argument("cidr")
    live(r)

    ss2 = group(sub, "sessions", "sessions from accounting: who is online, who had an address", "sessions_command", "ACTION")
    r = leaf(ss2, "active", "open sessions", "cmd_sessions")
    r.add_argument("--user")
    limit(r, 1000)
    r = leaf(ss2, "who-had", "who held an IPv4 address, or an IPv6 address inside a prefix, at a time", "cmd_sessions")
    r.add_argument("ip", metavar="IP")
    r.add_argument("--at", metavar="TIME", help="ISO time, UTC unless it has an offset (default: now)")
    r = leaf(ss2, "purge", "delete sessions that ended long ago", "cmd_sessions")
    r.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 180d")

    ms = group(sub, "mobile-mta", "mobile carriers' mail server blocks (the `mobile` class)", "mobile_command", "ACTION")
    r = leaf(ms, "add", "add a block", "cmd_mobile_mta")
    r.add_argument("cidr")
    r.add_argument("--carrier", required=True)
    r.add_argument("--note")
    live(r)
    r = leaf(ms, "remove", "remove a block", "cmd_mobile_mta")
    r.add_argument("cidr")
    live(r)
    leaf(ms, "list", "all blocks", "cmd_mobile_mta")

    ps = group(sub, "policy", "explain decisions", "policy_command", "explain")
    r = leaf(ps, "explain", "the class, the reason and the attributes a login would get", "cmd_policy")
    r.add_argument("user")
    r.add_argument("--framed-ip", metavar="IP", help="the Framed-IP-Address of the Accept (static pools)")
    r.add_argument("--nas", metavar="NAME", help="the client (NAS) name from the config: its profile and enforcement")
    r.add_argument("--profile", help="render for this profile instead of the NAS's")
    r.add_argument("--at", metavar="TIME", help="decide as of this ISO time (default: now)")

    from radius_op25b.cli import acl as acl_cli  # acl render/report/diff, export (its own module)

    acl_cli.add_parsers(sub, leaf, group)
    from radius_op25b.cli import accounting as accounting_cli  # accounting quarantine | lag (its own module)

    accounting_cli.add_parsers(sub, leaf, group)

    q = leaf(sub, "web", "the support desk's pages and the HTTP API ([web] listen)", "cmd_web")
    q.add_argument("--listen", metavar="HOST:PORT", help="override [web] listen (default 127.0.0.1:8080)")
    q.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    st = group(sub, "staff", "support-desk staff of `op25b web` and their API tokens", "staff_command", "ACTION")
    r = leaf(
        st,
        "add",
        "add a staff member",
        "cmd_staff",
        description="Add a staff member. Roles: viewer (read only), agent (exemptions, static/dynamic, "
        "class, notes), admin (also realms, permits, mobile MTA blocks, import, staff). The password "
        "is read from standard input (one line, at least 12 characters); without --password-stdin "
        "the member signs in only through API tokens or the SSO header.",
    )
    r.add_argument("name")
    r.add_argument("--role", required=True, choices=("viewer", "agent", "admin"))
    r.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    r = leaf(st, "token", "issue an API token: printed once, alone on standard output, stored hashed", "cmd_staff")
    r.add_argument("name")
    valid = r.add_mutually_exclusive_group()
    valid.add_argument("--for", dest="for_", metavar="DURATION", default="90d", help="valid for (default 90d)")
    valid.add_argument("--no-expiry", action="store_true", help="valid until revoked")
    leaf(st, "list", "staff members, their roles and live tokens", "cmd_staff")
    r = leaf(st, "disable", "disable a staff member (their tokens are revoked)", "cmd_staff")
    r.add_argument("name")
    r = leaf(st, "revoke-tokens", "revoke every API token of a staff member", "cmd_staff")
    r.add_argument("name")

    q = leaf(sub, "audit", "the change log, newest last", "cmd_audit")
    q.add_argument("--user", help="only changes to this subscriber")
    q.add_argument("--since", metavar="TIME", help="only changes at or after this ISO time (UTC unless it has an offset)")
    q.add_argument("--action", help="only this action (e.g. subscriber.exempt) or group (e.g. subscriber)")
    limit(q, 200)
    return p
