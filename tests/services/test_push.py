"""The push worker in memory: a real SQLite database, the event loop, and a NAS that answers
from inside the test through the worker's transport, with a clock the test sets. No socket and
no sleeping on timeouts; the UDP end-to-end pushes are in test_sessions.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from radius_op25b import store
from radius_op25b.core import profiles
from radius_op25b.core.accounting import AccountingRecord
from radius_op25b.core.config import parse_config, resolve_secrets
from radius_op25b.radius import (
    ACCT_SESSION_ID,
    COA_ACK,
    COA_NAK,
    COA_REQUEST,
    DISCONNECT_ACK,
    DISCONNECT_REQUEST,
    EVENT_TIMESTAMP,
    FILTER_ID,
    FRAMED_IP_ADDRESS,
    NAS_IP_ADDRESS,
    USER_NAME,
    Packet,
    decode_integer,
    get_first,
    parse_packet,
    sign_reply,
    verify_accounting_request,
)
from radius_op25b.services import push
from radius_op25b.store import db

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = b"coa-secret"


def config(profile: str):  # type: ignore[no-untyped-def]
    parsed = parse_config(
        {
            "clients": [{"name": "bng1", "address": "192.0.2.1", "secret": SECRET.decode(), "profile": profile}],
            "upstreams": [{"name": "u", "address": "127.0.0.1", "secret": "x"}],
        },
        "test.toml",
    )
    return resolve_secrets(parsed)


class InMemoryNas:
    """The worker's transport: keeps each request and answers it with `code` (None: silence)."""

    def __init__(self, worker: push.PushWorker, answers: list[int | None], source: tuple[str, int] | None = None) -> None:
        self.worker, self.answers, self.received, self.source = worker, answers, [], source

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.received.append((data, addr))
        code = self.answers[min(len(self.received), len(self.answers)) - 1]
        if code is not None:
            request = parse_packet(data)
            reply = sign_reply(Packet(code, request.identifier, request.authenticator, ()), request.authenticator, SECRET, True)
            asyncio.get_running_loop().call_soon(self.worker.reply_received, reply, self.source or addr)

    def close(self) -> None:
        pass


@pytest.fixture
def engine(tmp_path):  # type: ignore[no-untyped-def]
    engine = db.make_engine(f"sqlite:///{tmp_path / 'op25b.db'}")
    db.upgrade(engine)
    with db.transaction(engine) as s:
        store.add_subscriber(s, "alice@isp.example", actor="t", now=NOW - timedelta(days=1))
        record = AccountingRecord(
            "start",
            NOW.timestamp() - 60,
            "bng1",
            "192.0.2.1",
            "sess-1",
            "alice@isp.example",
            nas_ip_address="192.0.2.1",
            framed_ip="198.51.100.7",
            class_applied="full",
        )
        store.apply_accounting(s, [record])
    return engine


def run_jobs(engine, profile: str, answers: list[int | None], monkeypatch, source=None) -> tuple[InMemoryNas, list[Any]]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(push, "TRY_TIMEOUT", 0.01)  # silence is decided in 10 ms, not 2 s

    async def go() -> tuple[InMemoryNas, list[Any]]:
        worker = push.PushWorker(
            config(profile), engine, asyncio.get_running_loop(), lambda: profiles.FilterContext(), now=lambda: NOW
        )
        nas = InMemoryNas(worker, answers, source)
        worker.transport = nas  # type: ignore[assignment]
        tasks = worker._claim()  # noqa: SLF001
        for task in tasks:
            await worker._push(task)  # noqa: SLF001
        return nas, tasks

    return asyncio.run(go())


def last_job(engine):  # type: ignore[no-untyped-def]
    with db.reading(engine) as s:
        (session,) = store.active_sessions(s)
        return store.last_pushes(s, [session.id])[session.id]


def test_exempt_on_generic_disconnects_the_session_and_records_the_ack(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        store.exempt(s, "alice@isp.example", reason="ticket 1", until=NOW + timedelta(days=7), actor="agent", now=NOW)
    nas, tasks = run_jobs(engine, "generic", [DISCONNECT_ACK], monkeypatch)
    assert len(tasks) == 1
    ((wire, addr),) = nas.received
    request = parse_packet(wire)
    assert addr == ("192.0.2.1", 3799)
    assert request.code == DISCONNECT_REQUEST and verify_accounting_request(wire, SECRET)
    assert get_first(request.attributes, USER_NAME) == b"alice@isp.example"
    assert get_first(request.attributes, ACCT_SESSION_ID) == b"sess-1"
    assert get_first(request.attributes, NAS_IP_ADDRESS) == bytes([192, 0, 2, 1])
    assert get_first(request.attributes, FRAMED_IP_ADDRESS) == bytes([198, 51, 100, 7])
    assert decode_integer(get_first(request.attributes, EVENT_TIMESTAMP)) == int(NOW.timestamp())
    job = last_job(engine)
    assert (job.status, job.method, job.result) == ("done", "disconnect", "ack")


def test_a_class_change_on_juniper_is_a_coa_with_the_new_filter(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        store.set_class(s, "alice@isp.example", "mobile", actor="agent", now=NOW)
    nas, _ = run_jobs(engine, "juniper", [COA_ACK], monkeypatch)
    ((wire, _),) = nas.received
    request = parse_packet(wire)
    assert request.code == COA_REQUEST
    assert b"OP25B-MOBILE" in wire and get_first(request.attributes, FILTER_ID) is None
    job = last_job(engine)
    assert (job.status, job.method, job.result) == ("done", "coa", "ack")


def test_a_silent_nas_gets_three_identical_sends_and_a_retry_later(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        store.set_class(s, "alice@isp.example", "mobile", actor="agent", now=NOW)
    nas, _ = run_jobs(engine, "juniper", [None], monkeypatch)
    assert len(nas.received) == push.TRIES and len({w for w, _ in nas.received}) == 1  # retransmissions
    job = last_job(engine)
    assert job.result == "timeout" and job.status == "pending" and job.next_attempt_at > NOW


def test_a_nak_on_a_profile_with_fallback_disconnects(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert profiles.live_change_for("juniper").nak_fallback
    with db.transaction(engine) as s:
        store.set_class(s, "alice@isp.example", "mobile", actor="agent", now=NOW)
    nas, _ = run_jobs(engine, "juniper", [COA_NAK, DISCONNECT_ACK], monkeypatch)
    assert [parse_packet(w).code for w, _ in nas.received] == [COA_REQUEST, DISCONNECT_REQUEST]
    job = last_job(engine)
    assert (job.method, job.result) == ("coa-nak+disconnect", "ack")


def test_an_answer_from_another_address_is_not_taken(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        store.set_class(s, "alice@isp.example", "mobile", actor="agent", now=NOW)
    dropped = push.REPLIES_DROPPED.labels("wrong_source")._value.get()  # noqa: SLF001
    nas, _ = run_jobs(engine, "juniper", [COA_ACK], monkeypatch, source=("127.0.0.2", 3799))
    assert len(nas.received) == push.TRIES  # a valid ACK, but from 127.0.0.2: never taken
    assert push.REPLIES_DROPPED.labels("wrong_source")._value.get() == dropped + push.TRIES  # noqa: SLF001
    job = last_job(engine)
    assert job.result == "timeout" and job.status == "pending"
    # the retry is not due yet at the same clock: move it forward, and the NAS itself answers
    with db.transaction(engine) as s:
        from radius_op25b.store.models import CoaJob

        s.get(CoaJob, job.id).next_attempt_at = NOW
    nas, _ = run_jobs(engine, "juniper", [COA_ACK], monkeypatch, source=("192.0.2.1", 3799))
    assert len(nas.received) == 1
    assert last_job(engine).result == "ack"


def test_a_disconnect_ack_to_a_coa_is_a_protocol_error(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        store.set_class(s, "alice@isp.example", "mobile", actor="agent", now=NOW)
    nas, _ = run_jobs(engine, "juniper", [DISCONNECT_ACK], monkeypatch)
    assert len(nas.received) == 1  # answered: not retransmitted as if silent
    job = last_job(engine)
    assert job.result == "protocol-error" and job.method == "coa"
