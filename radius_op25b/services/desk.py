"""The support desk: every operation an agent performs, for `op25b` (cli/) and `op25b web`.

Each operation checks its values first (core/inputs.py: the same limits on both backends, before
any database work), runs in one transaction, reads the clock when the change is made, and returns
plain data in the JSON shapes README.md documents. A change that reaches open sessions returns
what will happen to each of them (`live_sessions`): a CoA, a Disconnect (the customer drops and
reconnects), nothing, or nothing until the next login (`at_next_login`). The callers only parse
and print.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from radius_op25b import store
from radius_op25b.core import profiles
from radius_op25b.core.clients import ClientTable
from radius_op25b.core.config import Config
from radius_op25b.core.inputs import (
    MAX_ACTOR,
    MAX_CARRIER,
    MAX_FILTER_NAME,
    MAX_NOTE,
    MAX_OFFSET,
    MAX_REASON,
    MAX_ROWS,
    check_count,
    check_text,
    format_duration,
    format_expiry,
    parse_duration,
    parse_time,
)
from radius_op25b.errors import InvalidInput, NotFound, Op25bError, UsageError
from radius_op25b.services import explain
from radius_op25b.store import db
from radius_op25b.store.models import AcctSession, AuditLog, CoaJob, Exemption, Realm, Subscriber

# --- JSON shapes (README.md "JSON shapes"; keep them stable) ------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def exemption_json(ex: Exemption, now: datetime) -> dict[str, Any]:
    return {
        "reason": ex.reason,
        "actor": ex.actor,
        "created_at": _iso(ex.created_at),
        "expires_at": _iso(ex.expires_at),
        "expires": format_expiry(ex.expires_at),
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
    data: dict[str, Any] = {
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
        "reason": entry.reason,
        "via": entry.via,
        "before": entry.before,
        "after": entry.after,
    }


def field_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """The fields an audit entry changed, (name, before, after), in the order the entry names them;
    an add has no before, a delete no after."""
    old, new = before or {}, after or {}
    return [(k, old.get(k), new.get(k)) for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]


# --- what a change does to open sessions ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LivePush:
    """What a change does to one open session."""

    nas: str
    acct_session_id: str
    username: str
    method: str  # coa | disconnect | none | next-login | no-nas
    why: str | None = None  # for a Disconnect: why not a CoA

    def json(self) -> dict[str, Any]:
        return {"nas": self.nas, "acct_session_id": self.acct_session_id, "username": self.username, "method": self.method}


def live_lines(pushes: Sequence[LivePush]) -> list[str]:
    """One sentence per (NAS, what happens), in the words an agent reads before the customer calls."""
    groups: dict[tuple[str, str, str | None], int] = {}
    for p in pushes:
        groups[(p.nas, p.method, p.why)] = groups.get((p.nas, p.method, p.why), 0) + 1
    lines = []
    for (nas, method, why), n in groups.items():
        sessions = f"{n} live session{'s' if n != 1 else ''} on {nas}"
        if method == "coa":
            lines.append(f"{sessions} {'gets' if n == 1 else 'get'} a CoA (the filter changes without a reconnect)")
        elif method == "disconnect":
            who = "the customer reconnects" if n == 1 else "the customers reconnect"
            lines.append(f"{sessions} will be DISCONNECTED ({why}): {who} and {'gets' if n == 1 else 'get'} the new filter")
        elif method == "none":
            lines.append(f"{sessions} {'needs' if n == 1 else 'need'} no push (the filter stays as it is)")
        elif method == "next-login":
            lines.append(
                f"{sessions} {'keeps its' if n == 1 else 'keep their'} current filter until the next login (--at-next-login)"
            )
        else:
            lines.append(f"{sessions} cannot be pushed ({why}): the change applies at the next login")
    return lines


@dataclass(frozen=True)
class Result:
    """What an operation returns: its data, and for a change, what it does to open sessions."""

    data: dict[str, Any]
    live: tuple[LivePush, ...] = ()
    reaches_sessions: bool = False  # a change that can alter decisions (a note cannot)
    held: bool = False  # --at-next-login

    def json(self) -> dict[str, Any]:
        if not self.reaches_sessions:
            return self.data
        return {**self.data, "live_sessions": [p.json() for p in self.live], "at_next_login": self.held}


def check_actor(actor: str) -> str:
    return check_text(actor, "--actor", MAX_ACTOR)


# --- the desk -----------------------------------------------------------------------------------


@dataclass
class Desk:
    """The operations, bound to a config, a database, an actor (with where they act from) and a clock.

    `at_next_login`: changes are not pushed to open sessions; they apply at each customer's next
    login (the sessions are still listed, as `next-login`)."""

    config: Config
    engine: Engine
    actor: str = "unknown"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    at_next_login: bool = False
    via: str = "cli"  # cli | web | api, for the audit log

    check_schema: bool = True  # refuse a database not at the migrations' head (on first use)

    def __post_init__(self) -> None:
        self.actor = check_actor(self.actor)
        self._schema_ok = not self.check_schema

    def _database(self) -> Engine:
        """The engine, its schema checked on first use: every value is checked before this, so a
        malformed value is refused as such (exit 2) even while the database is down."""
        if not self._schema_ok:
            db.require_current_schema(self.engine)
            self._schema_ok = True
        return self.engine

    # one transaction; a change's live effect is read inside it, after the change
    def _change(self, work: Callable[[Session, datetime], dict[str, Any]], *, reaches_sessions: bool = True) -> Result:
        with db.transaction(self._database()) as session:
            store.made_via(session, self.via)
            if self.at_next_login:
                store.hold_pushes(session)
            data = work(session, self.clock())
            live = self._live(session) if reaches_sessions else ()
        return Result(data, live, reaches_sessions, self.at_next_login)

    def _preview(self, work: Callable[[Session, datetime], object]) -> tuple[LivePush, ...]:
        """What `work` would do to open sessions, found by doing it and rolling it back (the same
        reckoning as a real change's; nothing is queued, audited or kept)."""
        with db.unavailable_as_store_error(self.engine), Session(self._database()) as session:
            store.hold_pushes(session)
            try:
                work(session, self.clock())
            except Op25bError:
                return ()  # the change itself would be refused: it disconnects nobody
            live = self._live(session, preview=True)
            session.rollback()
        return live

    def preview_exempt(self, user: str) -> tuple[LivePush, ...]:
        """What an exemption (or moving its end) would do to the subscriber's open sessions now."""
        store.check_username(user)

        def work(session: Session, now: datetime) -> None:
            sub = store.lock_subscriber(session, user)
            extend = store.active_exemption(sub, now) is not None
            store.exempt(session, user, reason="preview", until=now + timedelta(days=1), actor=self.actor, now=now, extend=extend)

        return self._preview(work)

    def preview_unexempt(self, user: str) -> tuple[LivePush, ...]:
        """What ending the exemption would do to the subscriber's open sessions now."""
        store.check_username(user)
        return self._preview(lambda session, now: store.unexempt(session, user, reason="preview", actor=self.actor, now=now))

    def _live(self, session: Session, *, preview: bool = False) -> tuple[LivePush, ...]:
        ids = store.affected_sessions(session)
        if not ids:
            return ()
        rows = session.scalars(select(AcctSession).where(AcctSession.id.in_(ids)).order_by(AcctSession.id)).all()
        ctx = profiles.FilterContext(self.config.filters, store.mobile_mta_networks(session))
        table = ClientTable(self.config.clients)
        now = self.clock()
        pushes = []
        for row in rows:
            if self.at_next_login and not preview:
                pushes.append(LivePush(row.nas_name, row.acct_session_id, row.username, "next-login"))
                continue
            client = self.config.client(row.nas_name) or table.lookup(row.nas_address)
            if client is None:
                why = f"no [[clients]] entry for NAS {row.nas_name} ({row.nas_address})"
                pushes.append(LivePush(row.nas_name, row.acct_session_id, row.username, "no-nas", why))
                continue
            framed = ipaddress.ip_address(row.framed_ip) if row.framed_ip else None
            subscriber, realm = store.policy_inputs(session, row.username)
            request = explain.request_for(row.username, framed, client)
            found = explain.explain(self.config, ctx, client.profile, request, subscriber, realm, now)
            method = explain.push_method(found, row.class_applied)
            why = explain.disconnect_reason(found) if method == "disconnect" else None
            pushes.append(LivePush(row.nas_name, row.acct_session_id, row.username, method, why))
        return tuple(pushes)

    def _read(self, work: Callable[[Session, datetime], dict[str, Any]]) -> dict[str, Any]:
        with db.transaction(self._database()) as session:
            return work(session, self.clock())

    # --- subscribers ---------------------------------------------------------------------------

    def add_subscriber(
        self,
        user: str,
        *,
        realm: str | None = None,
        static: Sequence[str] = (),
        cls: str | None = None,
        note: str | None = None,
    ) -> Result:
        store.check_username(user)
        if realm is not None:
            store.check_realm_name(realm)
        [store.check_address(a) for a in static]
        if cls is not None:
            store.check_class(cls)
        if note is not None:
            check_text(note, "--note", MAX_NOTE, required=False, multiline=True)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            sub = store.add_subscriber(
                session, user, actor=self.actor, now=now, realm=realm, static_addresses=static, class_override=cls, note=note
            )
            return subscriber_json(sub, now)

        return self._change(work)

    def show_subscriber(self, user: str) -> dict[str, Any]:
        store.check_username(user)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            sub = store.get_subscriber(session, user)
            live = store.active_sessions(session, sub.username)
            pushes = store.last_pushes(session, [row.id for row in live])
            return {**subscriber_json(sub, now), "sessions": [session_json(row, pushes.get(row.id)) for row in live]}

        return self._read(work)

    def list_subscribers(
        self, *, realm: str | None = None, limit: int = 1000, offset: int = 0, prefix: str | None = None
    ) -> dict[str, Any]:
        key = store.check_realm_name(realm) if realm is not None else None
        start = store.check_username(prefix) if prefix else None
        check_count(limit, "--limit", low=1, high=MAX_ROWS)
        check_count(offset, "--offset", low=0, high=MAX_OFFSET)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            subs, total = store.list_subscribers(session, realm=key, limit=limit, offset=offset, prefix=start)
            return {
                "subscribers": [subscriber_json(s, now) for s in subs],
                "total": total,
                "limit": limit,
                "offset": offset,
            }

        return self._read(work)

    def find_ip(self, address: str) -> dict[str, Any]:
        ip = store.check_address(address)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            owner = store.subscriber_owning(session, ip)
            open_rows = store.who_had(session, ip, now)
            last = store.last_session_with(session, ip)
            return {
                "address": ip,
                "static_owner": owner.username if owner else None,
                "open_sessions": [session_json(r) for r in open_rows if r.stopped_at is None],
                "last_session": session_json(last) if last else None,
            }

        return self._read(work)

    def set_static(self, user: str, ips: Sequence[str]) -> Result:
        store.check_username(user)
        if not ips:
            raise InvalidInput("set-static needs at least one IP address")
        [store.check_address(a) for a in ips]
        return self._change(lambda s, now: subscriber_json(store.set_static(s, user, ips, actor=self.actor, now=now), now))

    def set_dynamic(self, user: str) -> Result:
        store.check_username(user)
        return self._change(lambda s, now: subscriber_json(store.set_dynamic(s, user, actor=self.actor, now=now), now))

    def set_class(self, user: str, cls: str | None) -> Result:
        store.check_username(user)
        if cls is not None:
            store.check_class(cls)
        return self._change(lambda s, now: subscriber_json(store.set_class(s, user, cls, actor=self.actor, now=now), now))

    def set_note(self, user: str, note: str) -> Result:
        store.check_username(user)
        check_text(note, "note", MAX_NOTE, required=False, multiline=True)
        return self._change(
            lambda s, now: subscriber_json(store.set_note(s, user, note, actor=self.actor, now=now), now), reaches_sessions=False
        )

    def set_realm(self, user: str, realm: str | None) -> Result:
        store.check_username(user)
        if realm is not None:
            store.check_realm_name(realm)
        return self._change(lambda s, now: subscriber_json(store.set_realm(s, user, realm, actor=self.actor, now=now), now))

    def delete_subscriber(self, user: str, *, reason: str) -> Result:
        store.check_username(user)
        check_text(reason, "the reason", MAX_REASON)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            return {"deleted": store.delete_subscriber(session, user, reason=reason, actor=self.actor, now=now)}

        return self._change(work)

    # --- exemptions ------------------------------------------------------------------------------

    def exempt(
        self,
        user: str,
        *,
        reason: str,
        until: str | None = None,
        duration: str | None = None,
        permanent: bool = False,
        extend: bool = False,
    ) -> Result:
        """One active exemption per subscriber, with an end: `until` (a date means its end, UTC),
        `duration` from now, or `permanent` (refused when policy.max_exemption caps the length)."""
        if sum((until is not None, duration is not None, permanent)) != 1:
            raise UsageError("give one end: until (a date or time), for (a duration such as 30d) or permanent")
        store.check_username(user)
        check_text(reason, "the reason", MAX_REASON)
        end = parse_time(until, end_of_day=True) if until is not None else None
        length = parse_duration(duration) if duration is not None else None
        cap = self.config.max_exemption
        if permanent and cap is not None:
            raise InvalidInput(f"policy.max_exemption is {format_duration(cap)}: a permanent exemption is not allowed")

        def work(session: Session, now: datetime) -> dict[str, Any]:
            store.lock_subscriber(session, user)
            now = self.clock()  # after the lock: when the change is made
            expires = end if end is not None else (now + length if length is not None else None)
            if cap is not None and expires is not None and expires - now > cap:
                raise InvalidInput(
                    f"{format_expiry(expires)} is longer than policy.max_exemption ({format_duration(cap)} from now)"
                )
            ex = store.exempt(session, user, reason=reason, until=expires, actor=self.actor, now=now, extend=extend)
            return {"username": ex.subscriber.username, **exemption_json(ex, now), "extended": extend}

        return self._change(work)

    def unexempt(self, user: str, *, reason: str) -> Result:
        store.check_username(user)
        check_text(reason, "the reason", MAX_REASON)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            store.lock_subscriber(session, user)
            now = self.clock()
            ended = store.unexempt(session, user, reason=reason, actor=self.actor, now=now)
            return {"username": ended[0].subscriber.username, "revoked": [exemption_json(ex, now) for ex in ended]}

        return self._change(work)

    def exemptions(self, *, expiring_within: str | None = None) -> dict[str, Any]:
        window = parse_duration(expiring_within) if expiring_within is not None else None

        def work(session: Session, now: datetime) -> dict[str, Any]:
            rows = store.active_exemptions(session, now, expiring_before=now + window if window else None)
            return {
                "at": _iso(now),
                "expiring_within": format_duration(window) if window else None,
                "exemptions": [{"username": ex.subscriber.username, **exemption_json(ex, now)} for ex in rows],
            }

        return self._read(work)

    # --- import ------------------------------------------------------------------------------------

    def import_csv(self, text: str, source: str, *, header: bool = True, update: bool = False, dry_run: bool = False) -> Result:
        """All or nothing; `dry_run` reports the plan (added, changed, refused, by line) and writes nothing."""
        parsed = store.parse_import(text, source, header=header)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            plan = store.plan_import(session, parsed, update=update)
            data = import_json(plan, dry_run)
            if not dry_run:
                store.apply_import(session, plan, actor=self.actor, now=now)
            return data

        if dry_run:
            with db.transaction(self._database()) as session:
                return Result(work(session, self.clock()))
        return self._change(work)

    # --- realms and mobile MTA blocks ------------------------------------------------------------

    def add_realm(
        self,
        name: str,
        *,
        cls: str | None = None,
        model: str | None = None,
        filter_name: str | None = None,
        note: str | None = None,
    ) -> Result:
        store.check_realm_name(name)
        if cls is not None:
            store.check_class(cls)
        if filter_name is not None:
            check_text(filter_name, "--filter-name", MAX_FILTER_NAME)
        if note is not None:
            check_text(note, "--note", MAX_NOTE, required=False, multiline=True)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            realm = store.add_realm(
                session, name, actor=self.actor, now=now, default_class=cls, model=model, filter_name=filter_name, note=note
            )
            return realm_json(realm, now)

        return self._change(work)

    def show_realm(self, name: str) -> dict[str, Any]:
        store.check_realm_name(name)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            realm = store.get_realm(session, name)
            users = store.list_subscribers(session, realm=realm.name, limit=1)[1]
            return {**realm_json(realm, now), "subscribers": users}

        return self._read(work)

    def list_realms(self) -> dict[str, Any]:
        return self._read(lambda s, now: {"realms": [realm_json(r, now) for r in store.list_realms(s)]})

    def delete_realm(self, name: str) -> Result:
        store.check_realm_name(name)
        return self._change(lambda s, now: {"deleted": store.delete_realm(s, name, actor=self.actor, now=now)})

    def permit_msa(self, name: str, cidr: str, *, until: str) -> Result:
        store.check_realm_name(name)
        store.check_cidr(cidr)
        end = parse_time(until, end_of_day=True)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            permit = store.permit_msa(session, name, cidr, until=end, actor=self.actor, now=now)
            return {
                "realm": permit.realm.name,
                "cidr": permit.cidr,
                "until": _iso(permit.permit_until),
                "expires": format_expiry(permit.permit_until),
            }

        return self._change(work)

    def revoke_msa(self, name: str, cidr: str) -> Result:
        store.check_realm_name(name)
        store.check_cidr(cidr)
        return self._change(lambda s, now: store.revoke_msa(s, name, cidr, actor=self.actor, now=now))

    def add_mobile_mta(self, cidr: str, *, carrier: str, note: str | None = None) -> Result:
        store.check_cidr(cidr)
        check_text(carrier, "--carrier", MAX_CARRIER)
        if note is not None:
            check_text(note, "--note", MAX_NOTE, required=False, multiline=True)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            row = store.add_mobile_mta_block(session, cidr, carrier=carrier, actor=self.actor, now=now, note=note)
            return {"cidr": row.cidr, "carrier": row.carrier, "note": row.note}

        return self._change(work)

    def remove_mobile_mta(self, cidr: str) -> Result:
        store.check_cidr(cidr)
        return self._change(lambda s, now: {"removed": store.remove_mobile_mta_block(s, cidr, actor=self.actor, now=now)})

    def list_mobile_mta(self) -> dict[str, Any]:
        return self._read(
            lambda s, now: {
                "blocks": [{"cidr": r.cidr, "carrier": r.carrier, "note": r.note} for r in store.list_mobile_mta_blocks(s)]
            }
        )

    # --- sessions and the audit log ---------------------------------------------------------------

    def active_sessions(self, *, user: str | None = None, limit: int = 1000) -> dict[str, Any]:
        if user is not None:
            store.check_username(user)
        check_count(limit, "--limit", low=1, high=MAX_ROWS)
        return self._read(lambda s, now: {"sessions": [session_json(r) for r in store.active_sessions(s, user, limit=limit)]})

    def who_had(self, address: str, *, at: str | None = None) -> dict[str, Any]:
        ip = store.check_address(address)
        when = parse_time(at) if at is not None else None

        def work(session: Session, now: datetime) -> dict[str, Any]:
            moment = when or now
            rows = store.who_had(session, ip, moment)
            return {"address": ip, "at": _iso(moment), "sessions": [session_json(r) for r in rows]}

        return self._read(work)

    def purge_sessions(self, *, older_than: str) -> Result:
        age = parse_duration(older_than)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            cutoff = now - age
            count = store.purge_sessions(session, cutoff, actor=self.actor, now=now)
            return {"deleted": count, "older_than": _iso(cutoff)}

        return self._change(work, reaches_sessions=False)

    def audit(
        self, *, user: str | None = None, since: str | None = None, action: str | None = None, limit: int = 200
    ) -> dict[str, Any]:
        target = store.username_key(store.check_username(user)) if user is not None else None
        start = parse_time(since) if since is not None else None
        kind = store.check_action(action) if action is not None else None
        check_count(limit, "--limit", low=1, high=MAX_ROWS)

        def work(session: Session, now: datetime) -> dict[str, Any]:
            entries = store.audit_entries(session, target, limit=limit, since=start, action=kind)
            return {"entries": [audit_json(e) for e in entries]}

        return self._read(work)

    # --- decisions -------------------------------------------------------------------------------

    def explain(
        self,
        user: str,
        *,
        framed_ip: str | None = None,
        nas: str | None = None,
        profile: str | None = None,
        at: str | None = None,
    ) -> dict[str, Any]:
        """The class, the reason and the attributes a login would get (and how a change reaches it)."""
        config = self.config
        name = store.check_username(user)
        when = parse_time(at) if at is not None else None
        address = ipaddress.ip_address(store.check_address(framed_ip)) if framed_ip is not None else None
        client = None
        if nas is not None:
            client = config.client(nas)
            if client is None:
                known = ", ".join(c.name for c in config.clients) or "none configured"
                raise NotFound(f"no NAS (client) named {nas!r} in {config.path} (known: {known})")
        chosen = profile or (client.profile if client else (config.clients[0].profile if config.clients else "generic"))
        if chosen not in profiles.BUILTIN_PROFILES and chosen not in config.profiles:
            known = ", ".join([*profiles.BUILTIN_PROFILES, *config.profiles])
            raise InvalidInput(f"unknown profile {chosen!r} (known: {known})")
        request = explain.request_for(name, address, client)
        with db.transaction(self._database()) as session:
            subscriber, realm = store.policy_inputs(session, name)
            mta = store.mobile_mta_networks(session)
        moment = when or self.clock()
        found = explain.explain(config, profiles.FilterContext(config.filters, mta), chosen, request, subscriber, realm, moment)
        decision, change = found.decision, found.live_change
        return {
            "username": name,
            "known_subscriber": subscriber is not None,
            "at": _iso(moment),
            "class": str(decision.filter_class),
            "reason": decision.reason,
            "reason_kind": decision.reason_kind,
            "realm": decision.realm,
            "msa_permits": [str(n) for n in decision.msa_permits],
            "nas": client.name if client else None,
            "profile": chosen,
            "attributes": [{"name": n, "value": v} for n, v in found.accept],
            "live_change": {"method": change.method, "nak_fallback": change.nak_fallback},
        }


def import_json(plan: Any, dry_run: bool) -> dict[str, Any]:
    return {
        "source": plan.source,
        "dry_run": dry_run,
        "added": [{"line": c.line, "username": c.username} for c in plan.added],
        "changed": [{"line": c.line, "username": c.username, "before": c.before, "after": c.after} for c in plan.changed],
        "unchanged": list(plan.unchanged),
        "refused": [{"line": r.line, "username": r.username, "message": r.message} for r in plan.refused],
    }
