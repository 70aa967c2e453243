"""Repository functions over the subscriber database: every function takes a `session` and
leaves its lifecycle to the caller (one CLI command or one pipeline step = one transaction).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import ipaddress
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, insert, literal, select, text, update
from sqlalchemy.orm import Session, selectinload

from radius_op25b.core import decision as d
from radius_op25b.core.accounting import AccountingRecord
from radius_op25b.core.decision import username_key
from radius_op25b.errors import Conflict, InvalidInput, NotFound
from radius_op25b.store.models import (
    AcctSession,
    AuditLog,
    CoaJob,
    Exemption,
    MobileMtaBlock,
    Realm,
    RealmMsaPermit,
    Subscriber,
    UTCDateTime,
)

IP_TYPES = ("dynamic", "static")
NOTIFY_CHANNEL = "op25b_policy"  # PostgreSQL LISTEN/NOTIFY channel of policy changes
CLASSES = tuple(c.value for c in d.FilterClass)


def realm_for(username: str, realm: str | None) -> str | None:
    """The realm given, else the one in `user@realm`; always lower-cased."""
    chosen = (realm or "").strip() or d.realm_of(username)
    return chosen.lower() if chosen else None


# --- validation of operator input (shared by CLI and CSV import) --------------------------------


def check_username(username: str) -> str:
    name = username.strip()
    if not name:
        raise InvalidInput("username is empty")
    if len(name.encode()) > 253:
        raise InvalidInput(f"username {name[:40]!r}... is longer than 253 octets (RFC 2865 §5.1)")
    if any(ord(ch) < 32 for ch in name):
        raise InvalidInput(f"username {name!r} contains control characters")
    return name


def check_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise InvalidInput(f"{text!r} is not an IP address") from None


def check_cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True))
    except ValueError as exc:
        raise InvalidInput(f"{text!r} is not a CIDR block ({exc})") from None


def check_class(text: str) -> str:
    if text not in CLASSES:
        raise InvalidInput(f"unknown class {text!r} (choose {', '.join(CLASSES)})")
    return text


# --- audit --------------------------------------------------------------------------------------


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(AuditLog(at=now, actor=actor, action=action, target=target, before=before, after=after))
    if session.get_bind().dialect.name == "postgresql":
        # Delivered to every running proxy when (and only if) this transaction commits.
        session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": f"{action}\t{target}"})


def audit_entries(session: Session, target: str | None = None, limit: int = 200) -> Sequence[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if target is not None:
        query = query.where(AuditLog.target == target)
    return list(reversed(session.scalars(query).all()))


# --- subscribers --------------------------------------------------------------------------------


def subscriber_state(sub: Subscriber) -> dict[str, Any]:
    """The audited fields of a subscriber, as JSON-ready values."""
    return {
        "username": sub.username,
        "realm": sub.realm,
        "ip_type": sub.ip_type,
        "static_addresses": list(sub.static_addresses or []),
        "class_override": sub.class_override,
        "note": sub.note,
    }


def find_subscriber(session: Session, username: str) -> Subscriber | None:
    query = (
        select(Subscriber)
        .where(Subscriber.username_key == username_key(username))
        .options(selectinload(Subscriber.exemptions))
    )
    return session.scalars(query).one_or_none()


def get_subscriber(session: Session, username: str) -> Subscriber:
    sub = find_subscriber(session, username)
    if sub is None:
        raise NotFound(f"no subscriber {username!r}")
    return sub


def add_subscriber(
    session: Session,
    username: str,
    *,
    actor: str,
    now: datetime,
    realm: str | None = None,
    static_addresses: Sequence[str] = (),
    class_override: str | None = None,
    note: str | None = None,
) -> Subscriber:
    name = check_username(username)
    if find_subscriber(session, name) is not None:
        raise Conflict(f"subscriber {name!r} already exists")
    statics = [check_address(a) for a in static_addresses]
    sub = Subscriber(
        username=name,
        username_key=username_key(name),
        realm=realm_for(name, realm),
        ip_type="static" if statics else "dynamic",
        static_addresses=statics,
        class_override=check_class(class_override) if class_override else None,
        note=note,
        created_at=now,
        updated_at=now,
    )
    session.add(sub)
    session.flush()
    audit(session, actor=actor, action="subscriber.add", target=sub.username_key, now=now, after=subscriber_state(sub))
    queue_pushes(session, cause="subscriber.add", now=now, username=sub.username_key)
    return sub


def _change(session: Session, sub: Subscriber, action: str, actor: str, now: datetime, **fields: Any) -> Subscriber:
    before = subscriber_state(sub)
    for key, value in fields.items():
        setattr(sub, key, value)
    sub.updated_at = now
    session.flush()
    audit(session, actor=actor, action=action, target=sub.username_key, now=now, before=before, after=subscriber_state(sub))
    queue_pushes(session, cause=action, now=now, username=sub.username_key)
    return sub


def set_static(session: Session, username: str, addresses: Sequence[str], *, actor: str, now: datetime) -> Subscriber:
    if not addresses:
        raise InvalidInput("set-static needs at least one IP address")
    statics = [check_address(a) for a in addresses]
    sub = get_subscriber(session, username)
    return _change(session, sub, "subscriber.set-static", actor, now, ip_type="static", static_addresses=statics)


def set_dynamic(session: Session, username: str, *, actor: str, now: datetime) -> Subscriber:
    sub = get_subscriber(session, username)
    return _change(session, sub, "subscriber.set-dynamic", actor, now, ip_type="dynamic", static_addresses=[])


def set_class(session: Session, username: str, cls: str | None, *, actor: str, now: datetime) -> Subscriber:
    value = check_class(cls) if cls is not None else None
    sub = get_subscriber(session, username)
    return _change(session, sub, "subscriber.set-class", actor, now, class_override=value)


def exemption_state(ex: Exemption) -> dict[str, Any]:
    return {
        "reason": ex.reason,
        "actor": ex.actor,
        "created_at": ex.created_at.isoformat(),
        "expires_at": ex.expires_at.isoformat() if ex.expires_at else None,
        "revoked_at": ex.revoked_at.isoformat() if ex.revoked_at else None,
        "revoked_by": ex.revoked_by,
        "revoke_reason": ex.revoke_reason,
    }


def exempt(
    session: Session, username: str, *, reason: str, until: datetime | None, actor: str, now: datetime
) -> Exemption:
    if not reason.strip():
        raise InvalidInput("an exemption needs a --reason")
    if until is not None and until <= now:
        raise InvalidInput(f"expiry {until.isoformat()} is not in the future")
    sub = get_subscriber(session, username)
    ex = Exemption(subscriber=sub, reason=reason.strip(), actor=actor, created_at=now, expires_at=until)
    session.add(ex)
    sub.updated_at = now
    session.flush()
    audit(session, actor=actor, action="subscriber.exempt", target=sub.username_key, now=now, after=exemption_state(ex))
    queue_pushes(session, cause="subscriber.exempt", now=now, username=sub.username_key)
    return ex


def unexempt(session: Session, username: str, *, reason: str, actor: str, now: datetime) -> list[Exemption]:
    if not reason.strip():
        raise InvalidInput("unexempt needs a --reason")
    sub = get_subscriber(session, username)
    active = [ex for ex in sub.exemptions if exemption_view(ex).active_at(now)]
    if not active:
        raise NotFound(f"subscriber {sub.username!r} has no active exemption")
    for ex in active:
        before = exemption_state(ex)
        ex.revoked_at, ex.revoked_by, ex.revoke_reason = now, actor, reason.strip()
        audit(session, actor=actor, action="subscriber.unexempt", target=sub.username_key, now=now, before=before, after=exemption_state(ex))
    sub.updated_at = now
    session.flush()
    queue_pushes(session, cause="subscriber.unexempt", now=now, username=sub.username_key)
    return active


def list_subscribers(session: Session, *, realm: str | None = None, limit: int = 1000) -> Sequence[Subscriber]:
    query = select(Subscriber).order_by(Subscriber.username_key).limit(limit).options(selectinload(Subscriber.exemptions))
    if realm is not None:
        query = query.where(Subscriber.realm == realm.lower())
    return session.scalars(query).all()


def count_subscribers(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Subscriber)) or 0)


# --- CSV import ------------------------------------------------------------------------------------

CSV_COLUMNS = ("username", "realm", "ip_type", "static_addresses", "class", "note")


@dataclass(frozen=True)
class ImportRow:
    username: str
    realm: str | None
    ip_type: str
    static_addresses: tuple[str, ...]
    class_override: str | None
    note: str | None


def parse_import_csv(text: str, source: str) -> list[ImportRow]:
    """Check every line before anything is written: the first bad line is reported by number.

    Columns: username, realm, ip_type (dynamic|static), static_addresses (space-separated),
    class (full|mobile|none or empty), note. A header line naming these columns is optional.
    """
    rows: list[ImportRow] = []
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text))
    for line_no, fields in enumerate(reader, start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        if line_no == 1 and fields[0].strip().lower() == "username":
            continue
        where = f"{source}: line {line_no}"
        if len(fields) > len(CSV_COLUMNS):
            raise InvalidInput(f"{where}: {len(fields)} fields, expected at most {len(CSV_COLUMNS)} ({', '.join(CSV_COLUMNS)})")
        fields = [f.strip() for f in fields] + [""] * (len(CSV_COLUMNS) - len(fields))
        username, realm, ip_type, statics, cls, note = fields
        try:
            username = check_username(username)
            ip_type = ip_type.lower() or ("static" if statics else "dynamic")
            if ip_type not in IP_TYPES:
                raise InvalidInput(f"ip_type {ip_type!r} is not dynamic or static")
            addresses = tuple(check_address(a) for a in statics.split())
            if ip_type == "static" and not addresses:
                raise InvalidInput("ip_type static needs static_addresses")
            if ip_type == "dynamic" and addresses:
                raise InvalidInput("static_addresses given for a dynamic subscriber")
            cls_value = check_class(cls.lower()) if cls else None
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        key = username_key(username)
        if key in seen:
            raise InvalidInput(f"{where}: username {username!r} already on line {seen[key]}")
        seen[key] = line_no
        rows.append(
            ImportRow(username, realm_for(username, realm), ip_type, addresses, cls_value, note or None)
        )
    return rows


def import_subscribers(session: Session, rows: Sequence[ImportRow], *, actor: str, now: datetime, source: str) -> int:
    """Insert all rows or none; an existing username is a conflict that aborts the import.

    On PostgreSQL (psycopg2) the rows go in by COPY on the session's own connection, inside the
    caller's transaction, so a failure still leaves nothing behind; elsewhere an executemany
    INSERT is the portable path. bench/import_bench.py times a million rows.
    """
    keys = [username_key(r.username) for r in rows]
    for chunk_start in range(0, len(keys), 10_000):
        chunk = keys[chunk_start : chunk_start + 10_000]
        existing = session.scalars(select(Subscriber.username).where(Subscriber.username_key.in_(chunk)).limit(1)).first()
        if existing is not None:
            raise Conflict(f"{source}: subscriber {existing!r} already exists; nothing imported")
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg2":
        # Imported here: only this path needs it.
        from sqlalchemy.exc import DBAPIError

        # Values go through the columns' own bind processors (JSON text, naive UTC), so COPY
        # stores exactly what an INSERT would.
        columns = Subscriber.__table__.c
        to_json = columns.static_addresses.type.dialect_impl(dialect).bind_processor(dialect)
        to_utc = columns.created_at.type.dialect_impl(dialect).bind_processor(dialect)
        assert to_json is not None and to_utc is not None  # JSON and UTCDateTime both convert
        stamp = str(to_utc(now))
        # COPY's text format: \N is NULL; backslash, tab, newline and CR inside a value are escaped.
        escapes = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

        def copy_value(value: str | None) -> str:
            return "\\N" if value is None else value.translate(escapes)

        names = "username, username_key, realm, ip_type, static_addresses, class_override, note, created_at, updated_at"
        copy = f"COPY {Subscriber.__tablename__} ({names}) FROM STDIN"
        cursor: Any = connection.connection.cursor()
        try:
            # In slices, so the text buffer stays small whatever the file size.
            for start in range(0, len(rows), 50_000):
                buffer = io.StringIO()
                for r, key in zip(rows[start : start + 50_000], keys[start : start + 50_000], strict=True):
                    values = (r.username, key, r.realm, r.ip_type, to_json(list(r.static_addresses)), r.class_override, r.note)
                    buffer.write("\t".join(map(copy_value, values)) + f"\t{stamp}\t{stamp}\n")
                buffer.seek(0)
                cursor.copy_expert(copy, buffer)
        except dialect.loaded_dbapi.Error as exc:
            # Handled as SQLAlchemy handles an INSERT's error: a dropped connection is invalidated
            # (so the rollback does not fail on it) and db.transaction reports StoreUnavailable.
            lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
            if lost:
                connection.invalidate(exc)
            raise DBAPIError.instance(copy, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect) from exc
        finally:
            cursor.close()
    else:
        batch = [
            {
                "username": r.username,
                "username_key": key,
                "realm": r.realm,
                "ip_type": r.ip_type,
                "static_addresses": list(r.static_addresses),
                "class_override": r.class_override,
                "note": r.note,
                "created_at": now,
                "updated_at": now,
            }
            for r, key in zip(rows, keys, strict=True)
        ]
        # render_nulls: without it the ORM leaves None columns out and starts a new INSERT
        # wherever that set changes, which turned a mixed file into one INSERT per few rows.
        statement = insert(Subscriber).execution_options(render_nulls=True)
        for start in range(0, len(batch), 10_000):
            session.execute(statement, batch[start : start + 10_000])
    audit(session, actor=actor, action="subscriber.import", target=f"import:{source}", now=now, after={"rows": len(rows)})
    # Imported subscribers may already be online (decided as unknowns): push to those sessions.
    for start in range(0, len(keys), 10_000):
        chunk = keys[start : start + 10_000]
        online = session.execute(select(AcctSession.id, AcctSession.username_key).where(AcctSession.stopped_at.is_(None), AcctSession.username_key.in_(chunk))).all()
        _add_jobs(session, online, "subscriber.import", now)
    return len(rows)


# --- realms, permits, mobile MTA blocks -------------------------------------------------------------


def realm_state(realm: Realm) -> dict[str, Any]:
    return {
        "name": realm.name,
        "default_class": realm.default_class,
        "model": realm.model,
        "filter_name": realm.filter_name,
        "note": realm.note,
        "msa_permits": [{"cidr": p.cidr, "until": p.permit_until.isoformat()} for p in realm.msa_permits],
    }


def find_realm(session: Session, name: str) -> Realm | None:
    query = select(Realm).where(Realm.name == name.strip().lower()).options(selectinload(Realm.msa_permits))
    return session.scalars(query).one_or_none()


def get_realm(session: Session, name: str) -> Realm:
    realm = find_realm(session, name)
    if realm is None:
        raise NotFound(f"no realm {name!r}")
    return realm


def add_realm(
    session: Session,
    name: str,
    *,
    actor: str,
    now: datetime,
    default_class: str | None = None,
    model: str | None = None,
    filter_name: str | None = None,
    note: str | None = None,
) -> Realm:
    key = name.strip().lower()
    if not key or any(ch.isspace() or ch == "@" for ch in key):
        raise InvalidInput(f"{name!r} is not a realm name")
    if find_realm(session, key) is not None:
        raise Conflict(f"realm {key!r} already exists")
    if model is not None and model.upper() not in ("A", "B", "C"):
        raise InvalidInput(f"model {model!r} is not A, B or C")
    realm = Realm(
        name=key,
        default_class=check_class(default_class) if default_class else None,
        model=model.upper() if model else None,
        filter_name=filter_name,
        note=note,
        created_at=now,
        updated_at=now,
    )
    session.add(realm)
    session.flush()
    audit(session, actor=actor, action="realm.add", target=key, now=now, after=realm_state(realm))
    queue_pushes(session, cause="realm.add", now=now, realm=key)
    return realm


def permit_msa(session: Session, name: str, cidr: str, *, until: datetime, actor: str, now: datetime) -> RealmMsaPermit:
    block = check_cidr(cidr)
    if until <= now:
        raise InvalidInput(f"permit-until {until.isoformat()} is not in the future")
    realm = get_realm(session, name)
    before = realm_state(realm)
    existing = next((p for p in realm.msa_permits if p.cidr == block), None)
    if existing is not None:
        existing.permit_until, existing.actor = until, actor
        permit = existing
    else:
        permit = RealmMsaPermit(realm=realm, cidr=block, permit_until=until, actor=actor, created_at=now)
        session.add(permit)
    realm.updated_at = now
    session.flush()
    session.refresh(realm)
    audit(session, actor=actor, action="realm.permit-msa", target=realm.name, now=now, before=before, after=realm_state(realm))
    queue_pushes(session, cause="realm.permit-msa", now=now, realm=realm.name)
    return permit


def list_realms(session: Session) -> Sequence[Realm]:
    return session.scalars(select(Realm).order_by(Realm.name).options(selectinload(Realm.msa_permits))).all()


def add_mobile_mta_block(session: Session, cidr: str, *, carrier: str, actor: str, now: datetime, note: str | None = None) -> MobileMtaBlock:
    block = check_cidr(cidr)
    if session.scalars(select(MobileMtaBlock).where(MobileMtaBlock.cidr == block)).first() is not None:
        raise Conflict(f"mobile MTA block {block} already exists")
    row = MobileMtaBlock(cidr=block, carrier=carrier, note=note, created_at=now)
    session.add(row)
    session.flush()
    audit(session, actor=actor, action="mobile-mta.add", target=block, now=now, after={"cidr": block, "carrier": carrier})
    queue_pushes(session, cause="mobile-mta.add", now=now, mobile=True)
    return row


def list_mobile_mta_blocks(session: Session) -> Sequence[MobileMtaBlock]:
    return session.scalars(select(MobileMtaBlock).order_by(MobileMtaBlock.cidr)).all()


# --- views for the pure decision -------------------------------------------------------------------


def exemption_view(ex: Exemption) -> d.Exemption:
    return d.Exemption(ex.reason, ex.actor, ex.created_at, ex.expires_at, ex.revoked_at)


def subscriber_view(sub: Subscriber) -> d.Subscriber:
    return d.Subscriber(
        username=sub.username,
        realm=sub.realm,
        ip_type=sub.ip_type,
        static_addresses=tuple(sub.static_addresses or ()),
        class_override=d.FilterClass(sub.class_override) if sub.class_override else None,
        exemptions=tuple(exemption_view(ex) for ex in sub.exemptions),
    )


def realm_view(realm: Realm) -> d.Realm:
    return d.Realm(
        name=realm.name,
        default_class=d.FilterClass(realm.default_class) if realm.default_class else None,
        msa_permits=tuple(d.MsaPermit(ipaddress.ip_network(p.cidr), p.permit_until) for p in realm.msa_permits),
        filter_name=realm.filter_name,
    )


def policy_inputs(session: Session, username: str) -> tuple[d.Subscriber | None, d.Realm | None]:
    """The subscriber and realm the decision needs, as plain values."""
    sub = find_subscriber(session, username)
    view = subscriber_view(sub) if sub else None
    realm_name = d.realm_name(view, username)
    realm = find_realm(session, realm_name) if realm_name else None
    return view, (realm_view(realm) if realm else None)


def mobile_mta_networks(session: Session) -> tuple[d.IPNetwork, ...]:
    return tuple(ipaddress.ip_network(b.cidr) for b in list_mobile_mta_blocks(session))


# Each subscriber with its live exemptions (not revoked, not expired): one row per exemption, or
# one row of NULLs. Built once: building a statement costs more than running it.
_VIEW_ROWS = select(
    Subscriber.username, Subscriber.username_key, Subscriber.realm, Subscriber.ip_type,
    Subscriber.static_addresses, Subscriber.class_override,
    Exemption.reason, Exemption.actor, Exemption.created_at, Exemption.expires_at,
).outerjoin(
    Exemption,
    (Exemption.subscriber_id == Subscriber.id)
    & Exemption.revoked_at.is_(None)
    & (Exemption.expires_at.is_(None) | (Exemption.expires_at > bindparam("now", type_=UTCDateTime()))),
)
_SUBSCRIBERS_BY_KEY = _VIEW_ROWS.where(Subscriber.username_key.in_(bindparam("keys", expanding=True)))
# A superset of the subscribers whose decision differs from that of an unknown subscriber of the
# same name (d.decides_as_unknown is exact): static, a class override, a live exemption, or a
# realm other than the one in the name. The realm test is a plain suffix comparison, so that
# wildcard characters in a realm name cannot hide a subscriber.
_SPECIAL_SUBSCRIBERS = _VIEW_ROWS.where(
    (Subscriber.ip_type != "dynamic")
    | Subscriber.class_override.is_not(None)
    | Exemption.id.is_not(None)
    | (
        Subscriber.realm.is_not(None)
        & (
            Subscriber.realm.contains("@", autoescape=True)
            | (
                func.substr(Subscriber.username_key, func.length(Subscriber.username_key) - func.length(Subscriber.realm))
                != literal("@") + Subscriber.realm
            )
        )
    )
)


def _views(rows: Iterable[Any]) -> dict[str, d.Subscriber]:
    """Views from (subscriber, live exemption or NULLs) rows, in one pass that keeps no row."""
    views: dict[str, d.Subscriber] = {}
    for r in rows:
        view = views.get(r.username_key)
        if view is None:
            # Realm names and IP types repeat across many rows: one string object each.
            view = d.Subscriber(
                username=r.username,
                realm=sys.intern(r.realm) if r.realm else None,
                ip_type=sys.intern(r.ip_type),
                static_addresses=tuple(r.static_addresses or ()),
                class_override=d.FilterClass(r.class_override) if r.class_override else None,
            )
        if r.created_at is not None:
            exemption = d.Exemption(r.reason, r.actor, r.created_at, r.expires_at)
            view = dataclasses.replace(view, exemptions=(*view.exemptions, exemption))
        views[r.username_key] = view
    return views


def special_subscriber_views(session: Session, now: datetime, keys: Sequence[str] | None = None) -> dict[str, d.Subscriber]:
    """Decision views (no ORM objects; only exemptions that still matter at `now`) of every
    subscriber that is not decided like an unknown one - or of those among `keys`: what the
    proxy holds in memory so that no Access-Accept waits for the database."""
    if keys is None:
        rows = session.execute(_SPECIAL_SUBSCRIBERS, {"now": now})
    else:
        rows = session.execute(_SUBSCRIBERS_BY_KEY, {"keys": list(keys), "now": now})
    return {key: view for key, view in _views(rows).items() if not d.decides_as_unknown(view, key)}


def realm_views(session: Session) -> dict[str, d.Realm]:
    """Every realm with its permits: few enough for the proxy to hold them all in memory."""
    return {r.name: realm_view(r) for r in list_realms(session)}


# --- sessions from accounting -------------------------------------------------------------------


def apply_accounting(session: Session, records: Sequence[AccountingRecord]) -> None:
    """Apply accounting records in order. Idempotent: a replayed or retransmitted record
    leaves the same rows as the first application did."""
    for record in records:
        _apply_record(session, record)
        session.flush()


def _apply_record(session: Session, r: AccountingRecord) -> None:
    when = datetime.fromtimestamp(r.event_time, UTC)
    if r.status in ("on", "off"):
        # RFC 2866 §5.1: Accounting-On/Off - the NAS (re)started or stops: its sessions ended.
        session.execute(
            update(AcctSession)
            .where(AcctSession.nas_address == r.nas_address, AcctSession.stopped_at.is_(None), AcctSession.started_at <= when)
            .values(stopped_at=when, updated_at=when, terminate_cause=f"Accounting-{r.status.capitalize()}")
        )
        return
    if not r.acct_session_id:
        return
    row = session.scalars(
        select(AcctSession).where(AcctSession.nas_address == r.nas_address, AcctSession.acct_session_id == r.acct_session_id)
    ).one_or_none()
    if row is not None and row.stopped_at is not None and r.status == "start" and when > row.stopped_at:
        # The NAS reused the Acct-Session-Id for a new session: keep the old one's history.
        row.acct_session_id = f"{row.acct_session_id}#{row.id}"
        session.flush()
        row = None
    if row is None:
        started = when if r.status == "start" else when - timedelta(seconds=r.session_time or 0)
        row = AcctSession(
            nas_name=r.nas_name, nas_address=r.nas_address, acct_session_id=r.acct_session_id,
            username=r.username, username_key=username_key(r.username),
            started_at=started, updated_at=when, input_octets=0, output_octets=0,
        )
        session.add(row)
    elif row.stopped_at is not None and r.status != "stop":
        return  # an earlier record replayed after the Stop
    for field_name in ("nas_ip_address", "nas_identifier", "nas_port_id", "framed_ip", "framed_ipv6_prefix", "delegated_ipv6_prefix", "class_applied"):
        value = getattr(r, field_name)
        if value:
            setattr(row, field_name, value)
    if r.username:
        row.username, row.username_key = r.username, username_key(r.username)
    row.updated_at = max(row.updated_at, when)
    row.input_octets = max(row.input_octets or 0, r.input_octets or 0)
    row.output_octets = max(row.output_octets or 0, r.output_octets or 0)
    if r.status == "stop":
        row.stopped_at = row.stopped_at or when
        row.terminate_cause = r.terminate_cause or row.terminate_cause


def active_sessions(session: Session, username: str | None = None, limit: int = 1000) -> Sequence[AcctSession]:
    query = select(AcctSession).where(AcctSession.stopped_at.is_(None)).order_by(AcctSession.started_at.desc()).limit(limit)
    if username is not None:
        query = query.where(AcctSession.username_key == username_key(username))
    return session.scalars(query).all()


def _prefix_candidates(address: ipaddress.IPv6Address) -> list[str]:
    """Every prefix (/16 to /128) that contains `address`, normalized as stored: an exact-match
    IN query on the prefix columns then finds containing prefixes through their indexes."""
    return [str(ipaddress.IPv6Network((int(address) >> (128 - n) << (128 - n), n))) for n in range(16, 129)]


def who_had(session: Session, address: str, at: datetime) -> Sequence[AcctSession]:
    """Sessions that held `address` (IPv4, or an IPv6 address inside a framed/delegated prefix) at `at`."""
    ip = ipaddress.ip_address(check_address(address))
    during = (AcctSession.started_at <= at) & (AcctSession.stopped_at.is_(None) | (AcctSession.stopped_at >= at))
    if isinstance(ip, ipaddress.IPv4Address):
        where = AcctSession.framed_ip == str(ip)
    else:
        candidates = _prefix_candidates(ip)
        where = AcctSession.framed_ipv6_prefix.in_(candidates) | AcctSession.delegated_ipv6_prefix.in_(candidates)
    return session.scalars(select(AcctSession).where(where, during).order_by(AcctSession.started_at)).all()


def purge_sessions(session: Session, older_than: datetime, *, actor: str, now: datetime) -> int:
    """Delete sessions that stopped before `older_than` (their CoA jobs go with them)."""
    doomed = select(AcctSession.id).where(AcctSession.stopped_at.is_not(None), AcctSession.stopped_at < older_than)
    session.execute(delete(CoaJob).where(CoaJob.session_id.in_(doomed)))
    count = session.execute(delete(AcctSession).where(AcctSession.stopped_at.is_not(None), AcctSession.stopped_at < older_than)).rowcount
    audit(session, actor=actor, action="sessions.purge", target="sessions", now=now, after={"older_than": older_than.isoformat(), "deleted": count})
    return int(count or 0)


# --- live changes: CoA / Disconnect jobs -------------------------------------------------------


def queue_pushes(session: Session, *, cause: str, now: datetime, username: str | None = None, realm: str | None = None, mobile: bool = False) -> int:
    """Queue one job per open session whose decision this change may alter (same transaction)."""
    query = select(AcctSession.id, AcctSession.username_key).where(AcctSession.stopped_at.is_(None))
    if username is not None:
        query = query.where(AcctSession.username_key == username_key(username))
    elif realm is not None:
        members = select(Subscriber.username_key).where(Subscriber.realm == realm)
        query = query.where(AcctSession.username_key.in_(members) | AcctSession.username_key.like(f"%@{realm}"))
    elif mobile:
        query = query.where(AcctSession.class_applied == "mobile")
    else:
        return 0
    rows = session.execute(query).all()
    _add_jobs(session, rows, cause, now)
    return len(rows)


def _add_jobs(session: Session, sessions: Iterable[Any], cause: str, now: datetime) -> None:
    """One pending push per (session id, username key)."""
    for session_id, key in sessions:
        session.add(CoaJob(session_id=session_id, username_key=key, cause=cause, status="pending", attempts=0, created_at=now, next_attempt_at=now))


# What the push worker has to do at `now` (one condition each, shared by the work itself and by
# push_work_due's cheap probe): exemptions and permits that expired and were not pushed yet,
# jobs due, and jobs whose claim ran out.
def _exemption_expired_unpushed(now: Any) -> Any:
    return (Exemption.expires_at <= now) & Exemption.revoked_at.is_(None) & Exemption.expiry_pushed_at.is_(None)


def _permit_expired_unpushed(now: Any) -> Any:
    return (RealmMsaPermit.permit_until <= now) & RealmMsaPermit.expiry_pushed_at.is_(None)


def _job_claimable(now: Any) -> Any:
    due = (CoaJob.status == "pending") & (CoaJob.next_attempt_at <= now)
    stale = (CoaJob.status == "sending") & (CoaJob.claimed_until < now)
    return due | stale


def queue_expired(session: Session, now: datetime) -> int:
    """Exemptions and MSA permits that expired since the last sweep become pushes, once each."""
    queued = 0
    expired = session.execute(
        select(Exemption.id, Subscriber.username_key).join(Subscriber).where(_exemption_expired_unpushed(now))
    ).all()
    for exemption_id, key in expired:
        claimed = session.execute(
            update(Exemption).where(Exemption.id == exemption_id, Exemption.expiry_pushed_at.is_(None)).values(expiry_pushed_at=now)
        ).rowcount
        if claimed:  # another instance may have swept it first
            queued += queue_pushes(session, cause="exemption.expired", now=now, username=key)
    permits = session.execute(
        select(RealmMsaPermit.id, Realm.name).join(Realm).where(_permit_expired_unpushed(now))
    ).all()
    for permit_id, realm_name in permits:
        claimed = session.execute(
            update(RealmMsaPermit).where(RealmMsaPermit.id == permit_id, RealmMsaPermit.expiry_pushed_at.is_(None)).values(expiry_pushed_at=now)
        ).rowcount
        if claimed:
            queued += queue_pushes(session, cause="msa-permit.expired", now=now, realm=realm_name)
    return queued


_NOW = bindparam("now", type_=UTCDateTime())
_PUSH_WORK_DUE = select(
    exists().where(_job_claimable(_NOW))
    | exists().where(_exemption_expired_unpushed(_NOW))
    | exists().where(_permit_expired_unpushed(_NOW))
)


def push_work_due(session: Session, now: datetime) -> bool:
    """Whether queue_expired or claim_pushes would find anything at `now`: one cheap query."""
    return bool(session.execute(_PUSH_WORK_DUE, {"now": now}).scalar())


def claim_pushes(session: Session, now: datetime, limit: int = 50, lease: timedelta = timedelta(seconds=60)) -> list[CoaJob]:
    """Jobs due now, claimed for this instance until `lease` runs out (a crashed instance's
    claims expire and are taken again). PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent
    instances take disjoint jobs; every dialect: a compare-and-set on the status as well."""
    query = select(CoaJob).where(_job_claimable(now)).order_by(CoaJob.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for job in session.scalars(query).all():
        won = session.execute(
            update(CoaJob)
            .where(CoaJob.id == job.id, CoaJob.status == job.status, CoaJob.attempts == job.attempts)
            .values(status="sending", claimed_until=now + lease, attempts=job.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won:
            session.refresh(job)
            claimed.append(job)
    return claimed


def finish_push(
    session: Session, job_id: int, *, now: datetime, ok: bool, result: str, method: str | None,
    error_cause: int | None = None, detail: str | None = None, retry_in: timedelta | None = None,
    class_applied: str | None = None,
) -> None:
    job = session.get(CoaJob, job_id)
    if job is None:
        return
    job.result, job.method, job.error_cause, job.detail = result, method, error_cause, detail
    job.claimed_until = None
    if ok or retry_in is None:
        job.status, job.finished_at = ("done" if ok else "failed"), now
    else:
        job.status, job.next_attempt_at = "pending", now + retry_in
    if ok and class_applied is not None:
        row = session.get(AcctSession, job.session_id)
        if row is not None:
            row.class_applied = class_applied


def last_pushes(session: Session, session_ids: Sequence[int]) -> dict[int, CoaJob]:
    if not session_ids:
        return {}
    jobs = session.scalars(select(CoaJob).where(CoaJob.session_id.in_(session_ids)).order_by(CoaJob.id)).all()
    return {job.session_id: job for job in jobs}
