"""The parser of `op25b` (README: "The op25b command"). It imports nothing heavy, so `op25b --help` and
`--version` start at once: a command's module is imported when that command runs."""

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


def default_actor() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one `error:` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="op25b",
        description="RADIUS proxy that applies Outbound Port 25 Blocking (OP25B) per subscriber, "
        "and the tools support staff use to manage it.",
        epilog="Exit status: 0 success, 1 operational error, 2 usage error.",
    )
    p.add_argument("-c", "--config", help="config file (env OP25B_CONFIG; default ./op25b.toml)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def json_flag(q: argparse.ArgumentParser) -> None:
        q.add_argument("--json", action="store_true", help=JSON_HELP)

    def actor_flag(q: argparse.ArgumentParser) -> None:
        q.add_argument("--actor", default=default_actor(), help="who makes the change, for the audit log (default: your OS user)")

    q = sub.add_parser("init", help="write an example config and create the embedded database")
    q.add_argument("--force", action="store_true", help="overwrite an existing config file")
    q.set_defaults(func="cmd_init", json=False)

    q = sub.add_parser("serve", help="run the proxy (SIGHUP reloads the config, SIGTERM drains)")
    q.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    q.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the ports (SO_REUSEPORT); worker K serves metrics on the metrics port + K",
    )
    q.set_defaults(func="cmd_serve", json=False)

    q = sub.add_parser("db", help="database migrations")
    dbs = q.add_subparsers(dest="db_command", required=True, metavar="upgrade|current", parser_class=_Parser)
    for name, text in (("upgrade", "apply every pending migration"), ("current", "show the schema revision and the head")):
        r = dbs.add_parser(name, help=text)
        json_flag(r)
    q.set_defaults(func="cmd_db")

    q = sub.add_parser("subscriber", help="add, change and inspect subscribers")
    ss = q.add_subparsers(dest="subscriber_command", required=True, metavar="ACTION", parser_class=_Parser)
    r = ss.add_parser("add", help="add a subscriber (dynamic unless --static)")
    r.add_argument("user", help="User-Name as the NAS sends it (case-insensitive)")
    r.add_argument("--realm", help="ISP / wholesale partner realm (default: the part after @)")
    r.add_argument("--static", nargs="+", metavar="IP", help="static IP address(es): never filtered")
    r.add_argument("--class", dest="cls", choices=CLASSES, help="class override")
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
    r.add_argument("cls", choices=(*CLASSES, "default"), metavar="CLASS", help="full, mobile, none or default")
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
    q.set_defaults(func="cmd_subscriber")

    q = sub.add_parser("realm", help="ISP / wholesale-partner realms and their MSA(25) permits")
    rs = q.add_subparsers(dest="realm_command", required=True, metavar="ACTION", parser_class=_Parser)
    r = rs.add_parser("add", help="add a realm")
    r.add_argument("name")
    r.add_argument("--class", dest="cls", choices=CLASSES, help="the realm's default class")
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
    q.set_defaults(func="cmd_realm")

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
    q.set_defaults(func="cmd_sessions")

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
    q.set_defaults(func="cmd_mobile_mta")

    q = sub.add_parser("policy", help="explain decisions")
    ps = q.add_subparsers(dest="policy_command", required=True, metavar="explain", parser_class=_Parser)
    r = ps.add_parser("explain", help="the class, the reason and the attributes a login would get")
    r.add_argument("user")
    r.add_argument("--framed-ip", metavar="IP", help="the Framed-IP-Address of the Accept (static pools)")
    r.add_argument("--nas", metavar="NAME", help="the client (NAS) name from the config: its profile and enforcement")
    r.add_argument("--profile", help="render for this profile instead of the NAS's")
    r.add_argument("--at", metavar="TIME", help="decide as of this ISO time (default: now)")
    json_flag(r)
    q.set_defaults(func="cmd_policy")

    q = sub.add_parser("audit", help="the change log")
    q.add_argument("--user", help="only changes to this subscriber")
    q.add_argument("--limit", type=int, default=200)
    json_flag(q)
    q.set_defaults(func="cmd_audit")
    return p
