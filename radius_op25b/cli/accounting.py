"""`op25b accounting quarantine|lag` (issue 14): the records the database refused, set aside in the
spool folder, and how far the sessions table is behind the acknowledged accounting. Module level
stays light for cli/parser.py; the spool module loads when a command runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radius_op25b.cli.commands import Context

Group = Callable[..., "argparse._SubParsersAction[argparse.ArgumentParser]"]
Leaf = Callable[..., argparse.ArgumentParser]

QUARANTINE_HELP = (
    "List the accounting records the database refused (or spool lines that were not records): they were "
    "acknowledged to the NAS, so they are kept in <accounting.spool_dir>/quarantine, one JSON object a line, "
    "with the reason, while the drain went on. Fix the cause, then move a file's records back into the spool "
    "by hand or apply them with your own tooling."
)
LAG_HELP = (
    "How far the sessions table is behind the accounting already acknowledged: spool segments and bytes not "
    "yet applied (every worker's), and the age of the oldest. While it is behind, `sessions who-had` may miss "
    "the newest sessions."
)


def add_parsers(sub: Any, leaf: Leaf, group: Group) -> None:
    """Wire `accounting` into the top-level subparsers (`build_parser` in cli/parser.py)."""
    acct = group(sub, "accounting", "the accounting spool: records set aside, and the lag", "accounting_command", "ACTION")
    r = leaf(
        acct, "quarantine", "accounting records the database refused, set aside", "cmd_accounting", description=QUARANTINE_HELP
    )
    r.add_argument("--limit", type=int, default=100, help="show at most this many, newest last (default 100; 0: all)")
    leaf(acct, "lag", "how far the sessions table is behind the spool", "cmd_accounting", description=LAG_HELP)


def cmd_accounting(ctx: Context) -> int:
    from radius_op25b.services import spool

    a = ctx.args
    spool_dir = ctx.config.spool_dir
    if a.accounting_command == "quarantine":
        entries = spool.quarantined(spool_dir)
        shown = entries[-a.limit :] if a.limit > 0 else entries
        data = {"spool_dir": str(spool_dir), "count": len(entries), "records": shown}
        ctx.emit(data, _quarantine_text(entries, shown, str(spool_dir)))
    else:
        lag = spool.spool_lag(spool_dir)
        data = {"spool_dir": str(spool_dir), "behind": lag.behind, **lag.json()}
        ctx.emit(data, lag_text(lag))
    return 0


def lag_text(lag: Any) -> str:
    if not lag.known:
        return "cannot tell whether the sessions table is behind: the spool folder is not readable by this user"
    if not lag.behind:
        return "the sessions table has every acknowledged accounting record"
    age = f", the oldest spooled {lag.oldest_age:.0f} s ago" if lag.oldest_age is not None else ""
    return f"the sessions table is behind: {lag.bytes} byte(s) in {lag.segments} spool segment(s) not yet applied{age}"


def _quarantine_text(entries: list[dict[str, Any]], shown: list[dict[str, Any]], spool_dir: str) -> str:
    if not entries:
        return f"no accounting records set aside (in {spool_dir}/quarantine)"
    lines = [
        f"{len(entries)} accounting record(s) set aside" + (f", the last {len(shown)}:" if len(shown) < len(entries) else ":")
    ]
    for entry in shown:
        at = datetime.fromtimestamp(entry["at"], UTC).strftime("%Y-%m-%d %H:%M:%S") if entry.get("at") else "?"
        record = entry.get("record")
        what = (
            f"{record.get('status')} {record.get('nas_address')} {str(record.get('acct_session_id'))[:40]!r} "
            f"{str(record.get('username'))[:40]!r}"
            if isinstance(record, dict)
            else f"line {str(entry.get('line'))[:60]!r}"
        )
        lines.append(f"{at}  {what}  - {entry.get('reason')}  ({entry['file']}:{entry['line_number']})")
    return "\n".join(lines)
