"""`op25b acl render|report|diff` and `op25b export dynamic-ranges|ptr-check` (issue 13): the parser
wiring and the commands. Module level stays light for cli/parser.py (core/acl.py is pure stdlib);
the database and the services load when a command runs."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from radius_op25b.cli.files import read_text, write_text
from radius_op25b.core.acl import VENDORS
from radius_op25b.errors import InvalidInput

if TYPE_CHECKING:
    from radius_op25b.cli.commands import Context

Group = Callable[..., "argparse._SubParsersAction[argparse.ArgumentParser]"]
Leaf = Callable[..., argparse.ArgumentParser]

RENDER_HELP = (
    "Write the filters the NAS profiles name, for one vendor: full (permit TCP/25 to a realm's active "
    "MSA(25) permits, deny TCP/25, pass the rest), each partner realm's variant, and mobile (deny TCP/25 to "
    "the mobile carriers' MTA blocks), IPv4 and IPv6. Permits and blocks are aggregated into the fewest "
    "CIDRs; expired permits are left out; comments say until when each permit holds. Names and ids come "
    "from [filters] and the realms, as the profiles send them. --json gives each filter's rule count."
)
REPORT_HELP = (
    "Each filter's line count at the termination point (JEAG 4.1: MSA blocks + 1 per variant) beside what "
    "the same policy costs as one core or edge ACL (dynamic blocks x (MSA blocks + 1), from "
    "policy.dynamic_pools), and the rules as rendered for the vendors your clients' profiles need. "
    "Warns when a partner's permits aggregate further or a filter outgrows a vendor limit."
)
DIFF_HELP = (
    "Compare the file that is on the router (an earlier `acl render` output) with a rendering now: the "
    "lines added and removed, for the change process, and the permits that end soon."
)
DYNAMIC_HELP = (
    "List policy.dynamic_pools less the static pools and static subscribers' addresses, one CIDR a line "
    "with a comment column (JEAG's note on Inbound Port 25 Blocking), for receivers and block-list maintainers."
)
PTR_HELP = (
    "Check that one regular expression matches the reverse names of the dynamic addresses: reads the PTR "
    "records of an in-addr.arpa / ip6.arpa zone file and lists the dynamic addresses whose name the pattern "
    "fails to match (Python re.search, case-insensitive), and the other addresses whose name it matches."
)


def add_parsers(sub: Any, leaf: Leaf, group: Group) -> None:
    """Wire `acl` and `export` into the top-level subparsers (`build_parser` in cli/parser.py)."""
    acls = group(sub, "acl", "the filters on the BNG that the profiles name: render, report, diff", "acl_command", "ACTION")
    r = leaf(acls, "render", "write the filters for one vendor", "cmd_acl", description=RENDER_HELP)
    _vendor(r)
    _selection(r)
    r.add_argument("-o", "--output", metavar="FILE", help="write the filters to FILE (default: standard output)")
    leaf(acls, "report", "line counts: termination point vs. core/edge ACL (JEAG 4.1)", "cmd_acl", description=REPORT_HELP)
    r = leaf(acls, "diff", "what changed since the rendered file on the router", "cmd_acl", description=DIFF_HELP)
    _vendor(r)
    _selection(r)
    r.add_argument("--against", required=True, metavar="FILE", help="the rendered file that is on the router")
    r.add_argument(
        "--expiring-within",
        default="14d",
        metavar="DURATION",
        help="also list the permits that end within this (e.g. 14d, 2w; default 14d)",
    )

    ex = group(sub, "export", "published lists: dynamic ranges, reverse-name check", "export_command", "ACTION")
    r = leaf(ex, "dynamic-ranges", "the dynamic address ranges, less static ones", "cmd_export", description=DYNAMIC_HELP)
    r.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (prefix,comment; default) or json")
    r = leaf(ex, "ptr-check", "does one regular expression match every dynamic reverse name?", "cmd_export", description=PTR_HELP)
    r.add_argument("--pattern", required=True, metavar="REGEX", help=r"e.g. '^dyn-\d+-\d+-\d+-\d+\.isp\.example$'")
    r.add_argument("--zone", required=True, metavar="FILE", help="a reverse zone in master-file format (RFC 1035 §5)")


def _vendor(q: argparse.ArgumentParser) -> None:
    q.add_argument("--vendor", required=True, choices=VENDORS, help="router syntax: " + ", ".join(VENDORS))


def _selection(q: argparse.ArgumentParser) -> None:
    q.add_argument("--class", dest="cls", choices=("full", "mobile"), help="only the full or only the mobile filters")
    q.add_argument("--realm", metavar="R", help="only the filters this realm's subscribers can be given")


def _selected(ctx: Context) -> dict[str, Any]:
    from radius_op25b.core.decision import FilterClass

    cls = getattr(ctx.args, "cls", None)
    return {"filter_class": FilterClass(cls) if cls else None, "realm": getattr(ctx.args, "realm", None)}


def cmd_acl(ctx: Context) -> int:
    from radius_op25b.services import acl as service

    a = ctx.args
    if a.acl_command == "render":
        rendering = service.render(ctx.config, ctx.engine(), a.vendor, ctx.clock(), **_selected(ctx))
        data = rendering.json()
        rules = sum(len(f.rules) for f in rendering.filters)
        if a.output:
            write_text(a.output, rendering.text, "-o")
            data["file"] = a.output
            ctx.emit(data, f"wrote {a.output}: {len(rendering.filters)} {a.vendor} filter(s), {rules} rule(s)")
        else:
            ctx.emit(data, rendering.text.rstrip("\n"))
    elif a.acl_command == "report":
        result, vendors = service.report(ctx.config, ctx.engine(), ctx.clock())
        ctx.emit(_report_json(result, vendors), _report_text(result, vendors))
    else:
        _diff(ctx)
    return 0


def _report_json(result: Any, vendors: tuple[str, ...]) -> dict[str, Any]:
    return {
        "dynamic_blocks": {"ipv4": result.dynamic[4], "ipv6": result.dynamic[6]},
        "vendors": list(vendors),
        "filters": [
            {
                "name": row.spec.name,
                "class": str(row.spec.filter_class),
                "realm": row.spec.realm,
                "family": f"ipv{row.version}",
                "entries": len(row.spec.family(row.version)),
                "termination_lines": row.termination,
                "core_edge_lines": row.core_edge,
                "rendered_rules": row.rendered,
            }
            for row in result.rows
        ],
        "warnings": list(result.warnings),
    }


def _report_text(result: Any, vendors: tuple[str, ...]) -> str:
    from radius_op25b.cli.commands import table

    rows = [
        (
            row.spec.name,
            str(row.spec.filter_class),
            row.spec.realm,
            f"ipv{row.version}",
            f"{len(row.spec.family(row.version)):,}",
            f"{row.termination:,}",
            f"{row.core_edge:,}",
            *(f"{row.rendered[v]:,}" if v in row.rendered else "-" for v in vendors),
        )
        for row in result.rows
    ]
    headers = ("filter", "class", "realm", "family", "blocks", "termination", "core/edge", *vendors)
    lines = [
        f"dynamic blocks (policy.dynamic_pools, aggregated): IPv4 {result.dynamic[4]:,}, IPv6 {result.dynamic[6]:,}",
        table(headers, rows, "(no filters)"),
        "termination: lines of one shared filter at the BNG, JEAG 4.1 (MSA blocks + 1; mobile: its blocks)",
        "core/edge:   the same policy as one ACL at a core or edge router, dynamic blocks x (MSA blocks + 1)",
        f"{', '.join(vendors)}: rules as rendered (with the vendor's own pass-the-rest line or jump)",
    ]
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def _diff(ctx: Context) -> None:
    from radius_op25b.core import acl
    from radius_op25b.core.inputs import format_duration, format_expiry, parse_duration
    from radius_op25b.services import acl as service

    a = ctx.args
    within = parse_duration(a.expiring_within)
    against = read_text(a.against, "--against")
    engine = ctx.engine()
    now = ctx.clock()
    rendering = service.render(ctx.config, engine, a.vendor, now, **_selected(ctx))
    change = acl.diff(against, rendering.text, against_name=f"{a.against} (on the router)")
    soon = service.expiring(engine, now, within)
    data = {
        "vendor": a.vendor,
        "against": a.against,
        "changed": bool(change.unified),
        "added": list(change.added),
        "removed": list(change.removed),
        "diff": list(change.unified),
        "expiring_within": format_duration(within),
        "expiring": [{"realm": e.realm, "cidr": str(e.network), "until": e.until.isoformat()} for e in soon],
    }
    if change.unified:
        lines = [*change.unified, f"{len(change.added)} line(s) added, {len(change.removed)} removed"]
    else:
        lines = [f"no change: {a.against} matches the {a.vendor} rendering now"]
    if soon:
        lines.append(f"permits ending within {format_duration(within)}:")
        lines += [f"  {e.realm} {e.network} {format_expiry(e.until)}" for e in soon]
    else:
        lines.append(f"no permit ends within {format_duration(within)}")
    ctx.emit(data, "\n".join(lines))


def cmd_export(ctx: Context) -> int:
    from radius_op25b.services import acl as service

    a = ctx.args
    if a.export_command == "dynamic-ranges":
        ranges = service.dynamic_ranges(ctx.config, ctx.engine())
        rows = [
            {
                "prefix": str(r.network),
                "pool": str(r.pool),
                "comment": f"dynamic (policy.dynamic_pools {r.pool}"
                + (f", less {r.excluded} static block(s))" if r.excluded else ")"),
            }
            for r in ranges
        ]
        if a.json or a.format == "json":
            ctx.out(json.dumps({"ranges": rows}, indent=2, sort_keys=True))
        else:
            ctx.out("\n".join(["prefix,comment", *(f"{r['prefix']},{r['comment']}" for r in rows)]))
        return 0
    try:
        pattern = re.compile(a.pattern, re.IGNORECASE)
    except re.error as exc:
        raise InvalidInput(f"--pattern {a.pattern!r} is not a regular expression ({exc})") from None
    check = service.ptr_check(ctx.config, ctx.engine(), pattern, read_text(a.zone, "--zone"))
    matched = len(check.dynamic) - len(check.unmatched)

    def rec(r: Any) -> dict[str, Any]:
        return {"line": r.line, "address": str(r.address), "name": r.target}

    data = {
        "pattern": a.pattern,
        "zone": a.zone,
        "dynamic": len(check.dynamic),
        "matched": matched,
        "unmatched": [rec(r) for r in check.unmatched],
        "static_matched": [rec(r) for r in check.static_matched],
        "skipped": list(check.skipped),
    }
    lines = [f"{a.zone}: {matched:,} of {len(check.dynamic):,} dynamic reverse names match '{a.pattern}'"]
    if check.unmatched:
        lines.append("dynamic addresses whose reverse name the pattern fails to match:")
        lines += [f"  {r.address}  {r.target}  (line {r.line})" for r in check.unmatched]
    if check.static_matched:
        lines.append("addresses outside the dynamic ranges whose reverse name the pattern matches:")
        lines += [f"  {r.address}  {r.target}  (line {r.line})" for r in check.static_matched]
    lines += [f"skipped {s}" for s in check.skipped]
    ctx.emit(data, "\n".join(lines))
    return 0
