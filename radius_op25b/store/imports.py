"""CSV import of subscribers, in three steps a provisioning system can rely on:

1. `parse_import` reads the whole file: columns by the header's names (or the documented order
   with `header=False`), the delimiter detected (',', ';', tab or '|'), and every line checked;
   each bad line becomes a Refusal, all of them collected. Whole-file problems raise InvalidInput.
2. `plan_import` checks the accepted lines against the database and writes nothing (--dry-run
   stops here): what would be added, changed (--update) or left as it is, and what is refused.
3. `apply_import` writes the plan all or nothing, in the caller's transaction: subscribers (COPY
   on PostgreSQL), their StaticAddress rows, one audit row per subscriber, one NOTIFY, and the
   pushes to the open sessions of the subscribers it added or changed.
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, exists, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radius_op25b.core.decision import username_key
from radius_op25b.core.inputs import MAX_NOTE, MAX_USERNAME_OCTETS, check_address, check_realm_name, check_text, check_username
from radius_op25b.errors import Conflict, InvalidInput
from radius_op25b.store.audit import VIA_KEY, notify
from radius_op25b.store.checks import IP_TYPES, check_class, realm_for
from radius_op25b.store.jobs import _add_jobs
from radius_op25b.store.models import AcctSession, AuditLog, StaticAddress, Subscriber
from radius_op25b.store.subscribers import static_owners

#: The columns, in the documented order (the order a file read with --no-header has).
CSV_COLUMNS = ("username", "realm", "ip_type", "static_addresses", "class", "note")
DELIMITERS = (",", ";", "\t", "|")
CHUNK = 10_000  # keys per database lookup
COPY_SLICE = 50_000  # rows per COPY buffer
SAMPLE = 100  # records looked at to tell the delimiter of a file without a header
HEAD = 1 << 16  # characters of the file that header and delimiter are told from
ACTION_ADD = "subscriber.import"
ACTION_UPDATE = "subscriber.import-update"
_ALIASES = {"class_override": "class", "user_name": "username", "static_address": "static_addresses"}
_ADDRESS_SPLIT = re.compile(r"[\s,]+")
_WORD = re.compile(r"[a-z_]+")


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One accepted line. `columns`: the columns the line gave a value for (--update keeps the
    stored value of the others); an empty ip_type counts as not given (it is inferred)."""

    line: int
    username: str
    realm: str | None
    ip_type: str
    static_addresses: tuple[str, ...]
    class_override: str | None
    note: str | None
    columns: frozenset[str]


@dataclass(frozen=True, slots=True)
class Refusal:
    line: int
    username: str | None
    message: str


@dataclass(frozen=True, slots=True)
class ParsedImport:
    source: str
    delimiter: str
    columns: tuple[str, ...]
    rows: tuple[ImportRow, ...]
    refused: tuple[Refusal, ...]


@dataclass(frozen=True, slots=True)
class Change:
    line: int
    username: str
    before: dict[str, Any] | None  # None for an add
    after: dict[str, Any]  # store.subscribers.subscriber_state's shape


@dataclass(frozen=True, slots=True)
class ImportPlan:
    source: str
    added: tuple[Change, ...]
    changed: tuple[Change, ...]
    unchanged: tuple[int, ...]  # line numbers of rows identical to what is stored
    refused: tuple[Refusal, ...]  # parse and database refusals, by line
    # Refusals for a malformed value (exit 2); the rest conflict with stored data (exit 1).
    malformed: int = 0


# --- parsing ------------------------------------------------------------------------------------


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str] | None, str]]:
    """(first physical line, fields, "") of each non-blank record; fields None and the csv
    module's complaint for a record it cannot read (the reader goes on after it)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, str(exc)
            continue
        if any(f.strip() for f in fields):
            yield start, fields, ""


def _name(field: str) -> str:
    name = field.strip().lower().replace("-", "_").replace(" ", "_")
    return _ALIASES.get(name, name)


def _physical_lines(text: str) -> list[str]:
    """The lines as the csv reader counts them (\\r\\n, \\r or \\n ends one)."""
    return re.split(r"\r\n|\r|\n", text)


def _show(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _counts(line: str) -> str:
    return " and ".join(f"{d!r} {line.count(d)} times" for d in DELIMITERS if d in line) or "no delimiter"


def _csv_error(message: str) -> str:
    if "unexpected end of data" in message:
        return "a quoted field is not closed before the end of the file"
    return f"not readable as CSV ({message})"


def _header(text: str, source: str) -> tuple[int, str, tuple[str, ...]]:
    """(line, delimiter, columns) of the header: the delimiter is the one that splits the first
    line into known column names."""
    firsts: dict[str, tuple[int, list[str]]] = {}
    for d in DELIMITERS:
        for line, fields, _ in _records(text, d):
            firsts[d] = (line, fields or [])
            break
    if not firsts:
        raise InvalidInput(f"{source}: the file is empty")
    known = {d: sum(_name(f) in CSV_COLUMNS for f in fields) for d, (_, fields) in firsts.items()}
    best = max(known.values())
    if best == 0:
        line, fields = firsts.get(",") or next(iter(firsts.values()))
        names = [_name(f) for f in fields]
        # Words close to column names are a misspelt header; anything else is data.
        if not (names and all(_WORD.fullmatch(n) for n in names) and any(_close(n) for n in names)):
            raise InvalidInput(
                f"{source}: the first line is not a header (columns: {', '.join(CSV_COLUMNS)}); "
                "give --no-header for the documented order"
            )
        candidates = [","]
    else:
        candidates = [d for d in DELIMITERS if known.get(d) == best]
        widest = max(len(firsts[d][1]) for d in candidates)
        candidates = [d for d in candidates if len(firsts[d][1]) == widest] if widest > 1 else [","]
    if len(candidates) > 1:
        raise InvalidInput(
            f"{source}: cannot tell the delimiter of the header: it reads as columns with "
            + " and with ".join(repr(d) for d in candidates)
        )
    delimiter = candidates[0]
    line, fields = firsts[delimiter]
    names = [_name(f) for f in fields]
    where = f"{source}: line {line} (the header)"
    for i, name in enumerate(names, start=1):
        if not name:
            raise InvalidInput(f"{where}: column {i} has no name (columns: {', '.join(CSV_COLUMNS)})")
        if name not in CSV_COLUMNS:
            close = _close(name)
            hint = f"did you mean {close!r}? " if close else ""
            raise InvalidInput(
                f"{where}: unknown column {_show(fields[i - 1].strip())} ({hint}columns: {', '.join(CSV_COLUMNS)})"
            )
        if names.index(name) != i - 1:
            raise InvalidInput(f"{where}: column {name!r} is given twice (columns {names.index(name) + 1} and {i})")
    if "username" not in names:
        raise InvalidInput(f"{where}: no 'username' column (it has {', '.join(names)})")
    return line, delimiter, tuple(names)


def _close(name: str) -> str | None:
    found = difflib.get_close_matches(name, CSV_COLUMNS + tuple(_ALIASES), n=1)
    return _ALIASES.get(found[0], found[0]) if found else None


def _sniff(text: str, source: str) -> str:
    """The delimiter of a file without a header, from its first records: the candidate that
    splits the lines (consistently, when two do). A single-column file reads as ','."""
    counts: dict[str, list[tuple[int, int]]] = {}
    for d in DELIMITERS:
        seen: list[tuple[int, int]] = []
        for line, fields, _ in _records(text, d):
            if fields is not None:  # a record the cut at HEAD left unreadable says nothing
                seen.append((line, len(fields)))
            if len(seen) == SAMPLE:
                break
        counts[d] = seen
    if not counts[","]:
        if text.strip(" \t\r\n,;|"):
            return ","  # nothing readable to tell it from: the lines are refused one by one
        raise InvalidInput(f"{source}: the file is empty")
    splitting = [d for d in DELIMITERS if any(n > 1 for _, n in counts[d])]
    if not splitting:
        return ","
    if len(splitting) > 1:
        everywhere = [d for d in splitting if all(n > 1 for _, n in counts[d])]
        consistent = [d for d in everywhere if len({n for _, n in counts[d]}) == 1]
        splitting = consistent if len(consistent) == 1 else everywhere
    if len(splitting) == 1:
        return splitting[0]
    lines = _physical_lines(text)
    sampled = [(line, lines[line - 1] if line <= len(lines) else "") for line, _ in counts[","][:3]]
    named = sorted(
        (d for d in DELIMITERS if any(d in raw for _, raw in sampled)), key=lambda d: -sum(raw.count(d) for _, raw in sampled)
    )
    shown = [f"line {line} has " + " and ".join(f"{d!r} {raw.count(d)} times" for d in named) for line, raw in sampled]
    raise InvalidInput(f"{source}: cannot tell the delimiter: {'; '.join(shown)} (give a header line to settle it)")


def parse_import(text: str, source: str, *, header: bool = True) -> ParsedImport:
    """Read and check the whole file; see the module's docstring.

    Columns: username, realm (empty: the part after '@'), ip_type (dynamic|static; empty: static
    when addresses are given), static_addresses (separated by spaces or commas), class
    (full|mobile|none; empty or 'default': the realm's or the policy's), note.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    # The header and the delimiter are told from the start of the file (whole lines of it).
    head = text if len(text) <= HEAD else text[: text.rfind("\n", 0, HEAD) + 1 or HEAD]
    if header:
        header_line, delimiter, columns = _header(head, source)
    else:
        header_line, delimiter, columns = 0, _sniff(head, source), CSV_COLUMNS
    lines_text: list[str] | None = None  # the raw lines, split only if a message needs one

    def raw_line(line: int) -> str:
        nonlocal lines_text
        if lines_text is None:
            lines_text = _physical_lines(text)
        return lines_text[line - 1] if line <= len(lines_text) else ""

    others = [d for d in ",;|" if d != delimiter]
    # The columns a line gives, shared between rows (an empty ip_type counts as not given).
    given: dict[tuple[str, ...], tuple[frozenset[str], frozenset[str]]] = {}
    rows: list[ImportRow] = []
    refused: list[Refusal] = []
    seen_users: dict[str, int] = {}
    seen_addresses: dict[str, tuple[int, str]] = {}
    realms: dict[str | None, str | None] = {}  # one string per realm, however many rows name it
    widest = 0
    first = True
    for line, fields, error in _records(text, delimiter):
        if line <= header_line:
            continue
        first, was_first = False, first
        if fields is None:
            refused.append(Refusal(line, None, _csv_error(error)))
            continue
        if header:
            names = columns
            if len(fields) != len(columns):
                # Not padded: a row that has fewer fields than the header is not this file's.
                refused.append(
                    Refusal(
                        line,
                        fields[0].strip()[:253] or None,
                        f"{len(fields)} field(s) where the header has {len(columns)} ({', '.join(columns)}), "
                        f"read with {delimiter!r} as the delimiter; the line has {_counts(raw_line(line))}",
                    )
                )
                continue
        else:
            if len(fields) > len(CSV_COLUMNS):
                refused.append(
                    Refusal(
                        line,
                        fields[0].strip()[:253] or None,
                        f"{len(fields)} fields, at most {len(CSV_COLUMNS)} ({', '.join(CSV_COLUMNS)}) "
                        f"read with {delimiter!r} as the delimiter",
                    )
                )
                continue
            if was_first and all(_name(f) in CSV_COLUMNS for f in fields) and _name(fields[0]) == "username":
                raise InvalidInput(
                    f"{source}: line {line} is a header ({', '.join(_name(f) for f in fields)}); leave out --no-header to read it as one"
                )
            names = CSV_COLUMNS[: len(fields)]
            widest = max(widest, len(fields))
        if names not in given:
            given[names] = (frozenset(names), frozenset(names) - {"ip_type"})
        row, refusal, valid_name = _check_row(
            line, dict(zip(names, fields, strict=True)), given[names], delimiter, others, realms
        )
        if row is not None:
            key = username_key(row.username)
            problems = []
            earlier = seen_users.get(key)
            if earlier is not None:
                problems.append(f"username {_show(row.username)} is already on line {earlier}")
            else:
                seen_users[key] = line
            for address in row.static_addresses:
                other = seen_addresses.get(address)
                if other is not None and other[1] != key:
                    problems.append(f"static address {address} is also on line {other[0]}; one address, one subscriber")
                elif other is None:
                    seen_addresses[address] = (line, key)
            if problems:
                refused.append(Refusal(line, row.username, "; ".join(problems)))
            else:
                rows.append(row)
        elif refusal is not None:
            refused.append(refusal)
            # A refused line still takes its name: a later line with it is a duplicate too.
            if valid_name is not None:
                seen_users.setdefault(username_key(valid_name), line)
    if not header:
        columns = CSV_COLUMNS[: max(widest, 1)]
    return ParsedImport(source, delimiter, columns, tuple(rows), tuple(refused))


def _check_row(
    line: int,
    values: dict[str, str],
    given: tuple[frozenset[str], frozenset[str]],
    delimiter: str,
    others: Sequence[str],
    realms: dict[str | None, str | None],
) -> tuple[ImportRow | None, Refusal | None, str | None]:
    """The row, or its refusal and the username when that much was valid."""
    problems: list[str] = []
    raw_user = values["username"].strip()
    username: str | None = None
    if raw_user.isascii() and raw_user.isprintable() and 0 < len(raw_user) <= MAX_USERNAME_OCTETS:
        username = raw_user  # what check_username returns for it (printable ASCII), without its per-character loop
    else:
        try:
            username = check_username(raw_user)
        except InvalidInput as exc:
            problems.append(str(exc))
    if username is not None:
        bad = next((d for d in others if d in username), None)
        if bad is not None:
            problems.append(
                f"username {_show(username)} contains {bad!r}: the file is read as {delimiter!r}-separated; "
                f"is it {bad!r}-separated?"
            )
    realm: str | None = None
    raw_realm = values.get("realm", "")
    try:
        if username is not None:
            realm = realm_for(username, raw_realm)
        elif raw_realm.strip():
            check_realm_name(raw_realm)
    except InvalidInput as exc:
        problems.append(str(exc))
    raw_type = values.get("ip_type", "").strip().lower()
    if raw_type and raw_type not in IP_TYPES:
        problems.append(f"ip_type {_show(raw_type)} is not dynamic or static")
    addresses: list[str] = []
    raw_statics = values.get("static_addresses", "").strip()
    if raw_statics:
        for part in _ADDRESS_SPLIT.split(raw_statics):
            if part:
                try:
                    addresses.append(check_address(part))
                except InvalidInput as exc:
                    problems.append(str(exc))
        addresses = list(dict.fromkeys(addresses))
    ip_type = raw_type or ("static" if addresses else "dynamic")
    if "static_addresses" in values and raw_type in IP_TYPES:
        if ip_type == "static" and not addresses and not problems:
            problems.append("ip_type static needs static_addresses")
        if ip_type == "dynamic" and addresses:
            problems.append("static_addresses given for a dynamic subscriber")
    cls: str | None = None
    raw_class = values.get("class", "").strip().lower()
    if raw_class and raw_class != "default":
        try:
            cls = check_class(raw_class)
        except InvalidInput as exc:
            problems.append(str(exc))
    note: str | None = None
    raw_note = values.get("note", "")
    if raw_note and not raw_note.isspace():
        try:
            note = check_text(raw_note.replace("\r\n", "\n"), "note", MAX_NOTE, required=False, multiline=True) or None
        except InvalidInput as exc:
            problems.append(str(exc))
    if problems or username is None:
        return None, Refusal(line, username or raw_user[:253] or None, "; ".join(problems)), username
    columns = given[0] if raw_type else given[1]
    realm = realms.setdefault(realm, realm)
    return ImportRow(line, username, realm, ip_type, tuple(addresses), cls, note, columns), None, username


# --- planning -----------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _batches(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _state(row: ImportRow) -> dict[str, Any]:
    return {
        "username": row.username,
        "realm": row.realm,
        "ip_type": row.ip_type,
        "static_addresses": list(row.static_addresses),
        "class_override": row.class_override,
        "note": row.note,
    }


def _merged(stored: dict[str, Any], row: ImportRow) -> tuple[dict[str, Any], str | None]:
    """The stored state with the row's columns applied, and what is wrong with it (or None)."""
    after = dict(stored)
    given = row.columns
    if "realm" in given:
        after["realm"] = row.realm
    if "static_addresses" in given:
        after["static_addresses"] = list(row.static_addresses)
    if "ip_type" in given:
        after["ip_type"] = row.ip_type
    elif "static_addresses" in given:
        after["ip_type"] = "static" if row.static_addresses else "dynamic"
    if "class" in given:
        after["class_override"] = row.class_override
    if "note" in given:
        after["note"] = row.note
    if after["ip_type"] == "static" and not after["static_addresses"]:
        return after, "ip_type static needs static_addresses (it has none stored)"
    if after["ip_type"] == "dynamic" and after["static_addresses"]:
        return after, (
            f"ip_type dynamic, but the stored static addresses ({' '.join(after['static_addresses'])}) stay: "
            "give an empty static_addresses column to remove them"
        )
    return after, None


def plan_import(session: Session, parsed: ParsedImport, *, update: bool = False) -> ImportPlan:
    """What applying `parsed` would do; reads the database (CHUNK keys at a time), writes nothing."""
    rows = parsed.rows
    keys = [username_key(r.username) for r in rows]
    stored: dict[str, dict[str, Any]] = {}
    # An empty table (a first import) needs no lookups at all.
    if rows and session.scalar(select(exists().select_from(Subscriber))):
        columns = Subscriber.__table__.c
        wanted = (
            columns.username_key,
            columns.username,
            columns.realm,
            columns.ip_type,
            columns.static_addresses,
            columns.class_override,
            columns.note,
        )
        for chunk in _chunks(keys):
            for key, username, realm, ip_type, statics, cls, note in session.execute(
                select(*wanted).where(columns.username_key.in_(chunk))
            ):
                stored[key] = {
                    "username": username,
                    "realm": realm,
                    "ip_type": ip_type,
                    "static_addresses": list(statics or []),
                    "class_override": cls,
                    "note": note,
                }
    refused = list(parsed.refused)
    malformed = len(refused)
    added: list[Change] = []
    changed: list[Change] = []
    unchanged: list[int] = []
    for row, key in zip(rows, keys, strict=True):
        before = stored.get(key)
        if before is None:
            if row.ip_type == "static" and not row.static_addresses:
                refused.append(Refusal(row.line, row.username, "ip_type static needs static_addresses"))
                malformed += 1
            else:
                added.append(Change(row.line, row.username, None, _state(row)))
        elif not update:
            refused.append(
                Refusal(row.line, row.username, f"subscriber {before['username']!r} already exists (give --update to change it)")
            )
        else:
            after, problem = _merged(before, row)
            if problem is not None:
                refused.append(Refusal(row.line, row.username, problem))
                malformed += 1
            elif after == before:
                unchanged.append(row.line)
            else:
                changed.append(Change(row.line, row.username, before, after))
    # One address, one subscriber: an address owned by someone else refuses the line.
    wanted_addresses = [a for c in (*added, *changed) for a in c.after["static_addresses"]]
    if wanted_addresses and session.scalar(select(exists().select_from(StaticAddress))):
        owners: dict[str, str] = {}
        for chunk in _chunks(wanted_addresses):
            owners.update(static_owners(session, chunk))
        if owners:
            taken: dict[int, list[str]] = {}
            for c in (*added, *changed):
                for address in c.after["static_addresses"]:
                    owner = owners.get(address)
                    if owner is not None and username_key(owner) != username_key(c.username):
                        taken.setdefault(c.line, []).append(f"static address {address} already belongs to subscriber {owner!r}")
            if taken:
                refused += [Refusal(c.line, c.username, "; ".join(taken[c.line])) for c in (*added, *changed) if c.line in taken]
                added = [c for c in added if c.line not in taken]
                changed = [c for c in changed if c.line not in taken]
    refused.sort(key=lambda r: r.line)
    return ImportPlan(parsed.source, tuple(added), tuple(changed), tuple(unchanged), tuple(refused), malformed)


# --- applying -----------------------------------------------------------------------------------


def refusal_summary(plan: ImportPlan, shown: int = 3) -> str:
    """One line: how many lines are refused, the first `shown` of them."""
    listed = "; ".join(f"line {r.line}: {r.message}" for r in plan.refused[:shown])
    more = " (see --dry-run for all)" if len(plan.refused) > shown else ""
    return f"{plan.source}: {len(plan.refused)} line(s) refused, nothing imported: {listed}{more}"


def apply_import(session: Session, plan: ImportPlan, *, actor: str, now: datetime) -> None:
    """Write the plan in the caller's transaction, all or nothing; a plan with a refused line
    writes nothing (InvalidInput naming the first refusals, or Conflict when every refused line
    only clashes with stored data).

    On PostgreSQL (psycopg2) the rows go in by COPY on the session's own connection, inside the
    caller's transaction, so a failure still leaves nothing behind; elsewhere an executemany
    INSERT is the portable path. bench/import_bench.py times a million rows.
    """
    if plan.refused:
        raise (InvalidInput if plan.malformed else Conflict)(refusal_summary(plan))
    if not plan.added and not plan.changed:
        return
    try:
        _write(session, plan, actor=actor, now=now)
    except IntegrityError as exc:
        # Planned and written in one transaction, this is another agent's change in between.
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise Conflict(f"{plan.source}: a subscriber or static address was taken meanwhile ({detail}); nothing imported") from exc


def _write(session: Session, plan: ImportPlan, *, actor: str, now: datetime) -> None:
    connection = session.connection()
    copy = _copy_rows if _copies(connection) else None
    table = cast(Table, Subscriber.__table__)
    columns = table.c

    # The new subscribers.
    if copy is not None:
        to_json = _bind(connection, columns.static_addresses)
        stamp = str(_bind(connection, columns.created_at)(now))
        copy(
            connection,
            Subscriber.__tablename__,
            (
                "username",
                "username_key",
                "realm",
                "ip_type",
                "static_addresses",
                "class_override",
                "note",
                "created_at",
                "updated_at",
            ),
            (
                (
                    a["username"],
                    username_key(a["username"]),
                    a["realm"],
                    a["ip_type"],
                    to_json(a["static_addresses"]),
                    a["class_override"],
                    a["note"],
                    stamp,
                    stamp,
                )
                for a in (c.after for c in plan.added)
            ),
        )
    else:
        # render_nulls: without it the ORM leaves None columns out and starts a new INSERT
        # wherever that set changes, which turned a mixed file into one INSERT per few rows.
        add_subscribers = insert(Subscriber).execution_options(render_nulls=True)
        for chunk in _chunks(plan.added):
            session.execute(
                add_subscribers,
                [
                    {**c.after, "username_key": username_key(c.after["username"]), "created_at": now, "updated_at": now}
                    for c in chunk
                ],
            )

    # The changed ones: one UPDATE, executed many times.
    if plan.changed:
        change_subscribers = (
            update(table)
            .where(columns.username_key == bindparam("k_key"))
            .values(
                realm=bindparam("v_realm", type_=columns.realm.type),
                ip_type=bindparam("v_ip_type", type_=columns.ip_type.type),
                static_addresses=bindparam("v_static", type_=columns.static_addresses.type),
                class_override=bindparam("v_class", type_=columns.class_override.type),
                note=bindparam("v_note", type_=columns.note.type),
                updated_at=bindparam("v_now", type_=columns.updated_at.type),
            )
        )
        for chunk in _chunks(plan.changed):
            session.execute(
                change_subscribers,
                [
                    {
                        "k_key": username_key(c.after["username"]),
                        "v_realm": c.after["realm"],
                        "v_ip_type": c.after["ip_type"],
                        "v_static": c.after["static_addresses"],
                        "v_class": c.after["class_override"],
                        "v_note": c.after["note"],
                        "v_now": now,
                    }
                    for c in chunk
                ],
            )

    # Who owns which static address: the changed subscribers' rows are replaced.
    moved = [c for c in plan.changed if c.after["static_addresses"] != (c.before or {}).get("static_addresses")]
    owning = [c for c in plan.added if c.after["static_addresses"]] + moved
    if owning:
        ids: dict[str, int] = {}
        for chunk in _chunks([username_key(c.username) for c in owning]):
            ids.update(
                (key, i)
                for key, i in session.execute(select(columns.username_key, columns.id).where(columns.username_key.in_(chunk)))
            )
        for chunk in _chunks([ids[username_key(c.username)] for c in moved]):
            session.execute(
                delete(StaticAddress).where(StaticAddress.subscriber_id.in_(chunk)).execution_options(synchronize_session=False)
            )
        owned = [(a, ids[username_key(c.username)]) for c in owning for a in c.after["static_addresses"]]
        if copy is not None:
            copy(connection, StaticAddress.__tablename__, ("address", "subscriber_id"), ((a, str(i)) for a, i in owned))
        else:
            for chunk in _chunks(owned):
                session.execute(insert(StaticAddress), [{"address": a, "subscriber_id": i} for a, i in chunk])

    # One audit row per subscriber, the file as the reason; one NOTIFY for the whole import.
    via = session.info.get(VIA_KEY, "cli")
    entries = itertools.chain(((ACTION_ADD, c) for c in plan.added), ((ACTION_UPDATE, c) for c in plan.changed))
    if copy is not None:
        audit_columns = AuditLog.__table__.c
        to_json = _bind(connection, audit_columns.after)
        null = to_json(None)  # as an INSERT stores a None: JSON null
        stamp = str(_bind(connection, audit_columns.at)(now))
        copy(
            connection,
            AuditLog.__tablename__,
            ("at", "actor", "action", "target", "reason", "via", "before", "after"),
            (
                (
                    stamp,
                    actor,
                    action,
                    username_key(c.username),
                    plan.source,
                    via,
                    null if c.before is None else to_json(c.before),
                    to_json(c.after),
                )
                for action, c in entries
            ),
        )
    else:
        add_entries = insert(AuditLog).execution_options(render_nulls=True)
        for chunk in _batches(entries):
            session.execute(
                add_entries,
                [
                    {
                        "at": now,
                        "actor": actor,
                        "action": action,
                        "target": username_key(c.username),
                        "reason": plan.source,
                        "via": via,
                        "before": c.before,
                        "after": c.after,
                    }
                    for action, c in chunk
                ],
            )
    notify(session, ACTION_ADD, f"import:{plan.source}")

    # Open sessions of these subscribers (an added one may be online, decided as an unknown
    # login): a push each. A change of the note alone changes no decision, so pushes nothing.
    if not session.scalar(select(exists().where(AcctSession.stopped_at.is_(None)))):
        return
    pushed = itertools.chain(
        (username_key(c.username) for c in plan.added),
        (username_key(c.username) for c in plan.changed if {**(c.before or {}), "note": c.after["note"]} != c.after),
    )
    for chunk in _batches(pushed):
        online = session.execute(
            select(AcctSession.id, AcctSession.username_key).where(
                AcctSession.stopped_at.is_(None), AcctSession.username_key.in_(chunk)
            )
        ).all()
        _add_jobs(session, online, ACTION_ADD, now)


def _copies(connection: Connection) -> bool:
    dialect = connection.dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg2"


def _bind(connection: Connection, column: Any) -> Any:
    """The column's own bind processor (JSON text, naive UTC), so COPY stores exactly what an
    INSERT would."""
    dialect = connection.dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None  # JSON and UTCDateTime both convert
    return process


# COPY's text format: \N is NULL; backslash, tab, newline and CR inside a value are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_rows(connection: Connection, table: str, names: Sequence[str], rows: Iterable[Sequence[str | None]]) -> None:
    """COPY `rows` into `table` on the session's own connection, COPY_SLICE rows per buffer (so
    the text stays small whatever the file size)."""
    # Imported here: only this path needs it.
    from sqlalchemy.exc import DBAPIError

    dialect = connection.dialect
    statement = f"COPY {table} ({', '.join(names)}) FROM STDIN"
    cursor: Any = connection.connection.cursor()
    try:
        buffer = io.StringIO()
        count = 0
        for values in rows:
            buffer.write("\t".join(map(_copy_value, values)))
            buffer.write("\n")
            count += 1
            if count == COPY_SLICE:
                buffer.seek(0)
                cursor.copy_expert(statement, buffer)
                buffer, count = io.StringIO(), 0
        if count:
            buffer.seek(0)
            cursor.copy_expert(statement, buffer)
    except dialect.loaded_dbapi.Error as exc:
        # Handled as SQLAlchemy handles an INSERT's error: a dropped connection is invalidated
        # (so the rollback does not fail on it) and db.transaction reports StoreUnavailable.
        lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from exc
    finally:
        cursor.close()
