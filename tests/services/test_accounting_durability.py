"""Issue 14, item 0: nothing acknowledged is lost, nothing stuck. Hostile records between good ones
(both backends): the good ones are recorded, the hostile ones clamped or set aside, the drain goes
on; the append/drain race; a spool that cannot take a record answers nothing; batched apply ends
as one-by-one apply does; the lag the CLI reads from the spool folder; the database stopped
mid-burst (SIGKILL mid-burst: tests/services/test_sessions.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, text

from radius_op25b import store
from radius_op25b.core.accounting import COUNTER_MAX, AccountingRecord, clean_record, record_from_request
from radius_op25b.metrics import QUARANTINED, SPOOL_FAILURES
from radius_op25b.radius import (
    ACCT_INPUT_GIGAWORDS,
    ACCT_INPUT_OCTETS,
    ACCT_SESSION_ID,
    ACCT_STATUS_START,
    ACCT_STATUS_TYPE,
    FRAMED_IP_ADDRESS,
    USER_NAME,
    encode_integer,
)
from radius_op25b.services.recorder import Recorder
from radius_op25b.services.spool import Spool, quarantined, record_line, spool_lag
from radius_op25b.store import db
from radius_op25b.store.models import AcctSession
from tests.support.harness import ProxyProcess, client_block, upstream_block
from tests.support.paths import TEMPLATE_DIR
from tests.support.postgres import PrivatePostgres
from tests.support.processes import wait_until
from tests.support.radclient import DICT_DIR, RADCLIENT

T0 = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def rec(status: str, minutes: float, sid: str, **kw: Any) -> AccountingRecord:
    base: dict[str, Any] = {
        "nas_name": "bng1",
        "nas_address": "192.0.2.10",
        "acct_session_id": sid,
        "username": f"{sid}@isp.example",
    }
    return AccountingRecord(status=status, event_time=(T0 + timedelta(minutes=minutes)).timestamp(), **{**base, **kw})


def rows(engine: Any) -> dict[str, AcctSession]:
    with db.reading(engine) as session:
        return {r.acct_session_id: r for r in session.scalars(select(AcctSession))}


def recorder_for(engine: Any, spool: Spool) -> Recorder:
    return Recorder(engine, spool, asyncio.new_event_loop())


def drain(recorder: Recorder) -> None:
    while recorder.drain_once():
        pass


# The database's own refusal, for a record that passes validation: a trigger stands in for any
# value a future column or constraint would not take (DataError on PostgreSQL, a constraint
# error on SQLite), so the quarantine is tested on both backends without a bug to find.
REFUSE_TRIGGER = {
    "sqlite": [
        "CREATE TRIGGER refuse_marked BEFORE INSERT ON sessions WHEN NEW.username = 'refuse-me' "
        "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.username = 'refuse-me' THEN RAISE EXCEPTION 'refused by trigger' USING ERRCODE = '22003'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_marked BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION refuse_marked()",
    ],
}


def hostile_records() -> list[tuple[AccountingRecord, str]]:
    """(record, what must happen to it): 'clamped' -> a row with sane values, 'quarantined'."""
    nan_time = rec("start", 0, "h-nan")
    return [
        (rec("start", 0, "h-counters", input_octets=(1 << 64) + 5, output_octets=-7), "clamped"),
        (rec("interim", 1, "h-session-time", session_time=10**30), "clamped"),
        (rec("start", 0, "h-long-" + "x" * 10_000, username="u" * 5_000, nas_name="n" * 500), "clamped"),
        (rec("stop", 0, "h-class", class_applied="full-and-then-some", terminate_cause="c" * 300), "clamped"),
        (rec("start", 0, "h-nul\x00", username="nul\x00user", nas_port_id="eth\x000"), "clamped"),
        (rec("start", 0, "h-surrogate", username="bad\ud800name", nas_identifier="\udcff"), "clamped"),
        (rec("start", 0, "h-addresses", framed_ip="999.1.1.1", nas_ip_address="not-an-ip"), "clamped"),
        (rec("start", 0, "h-prefixes", framed_ipv6_prefix="2001:db8::/200", delegated_ipv6_prefix="10.0.0.0/8"), "clamped"),
        (rec("start", 0, "h-dotted-i", username="İ" * 253), "clamped"),
        (replace(rec("start", 0, "h-far-future"), event_time=1e20), "clamped"),
        (replace(rec("start", 0, "h-before-1970"), event_time=-1e12), "clamped"),
        (replace(nan_time, event_time=math.nan), "quarantined"),
        (replace(rec("start", 0, "h-inf"), event_time=math.inf), "quarantined"),
        (rec("start", 0, "h-nas", nas_address="not-a-nas"), "quarantined"),
        (rec("bogus", 0, "h-status"), "quarantined"),
        (rec("start", 0, "h-type", input_octets="12"), "quarantined"),  # type: ignore[arg-type]
        (rec("start", 0, "h-refused", username="refuse-me"), "quarantined"),  # the database says no
    ]


def test_hostile_records_between_good_ones_are_clamped_or_set_aside_and_the_good_ones_recorded(
    database_url: str, tmp_path: Path
) -> None:
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        for statement in REFUSE_TRIGGER[engine.dialect.name]:
            conn.execute(text(statement))
    try:
        spool = Spool(tmp_path / "spool")
        hostile = hostile_records()
        good: list[AccountingRecord] = []
        for number, (record, _) in enumerate(hostile):
            good.append(rec("start", 0, f"good-{number}", framed_ip=f"100.64.0.{number + 1}"))
            assert spool.append([good[-1], record])
        good.append(rec("stop", 9, "good-0", input_octets=123, terminate_cause="User-Request"))
        assert spool.append([good[-1]])
        with open(spool.take_segment() or "", "a", encoding="utf-8") as fh:
            fh.write('{"status": "start", "not": "a record"}\n{garbage\n')  # lines that are not records
        spool.close()
        quarantined_before = QUARANTINED._value.get()  # noqa: SLF001

        recorder = recorder_for(engine, Spool(tmp_path / "spool"))
        drain(recorder)

        found = rows(engine)
        for number in range(len(hostile)):  # every good record, whatever stood beside it
            assert found[f"good-{number}"].framed_ip == f"100.64.0.{number + 1}"
        assert found["good-0"].stopped_at == T0 + timedelta(minutes=9) and found["good-0"].input_octets == 123
        by_sid = {r.acct_session_id: r for r in found.values()}
        assert (by_sid["h-counters"].input_octets, by_sid["h-counters"].output_octets) == (COUNTER_MAX, 0)
        assert by_sid["h-nul"].username == "nuluser" and by_sid["h-nul"].nas_port_id == "eth0"
        assert by_sid["h-surrogate"].username == "bad?name"
        assert by_sid["h-addresses"].framed_ip is None and by_sid["h-addresses"].nas_ip_address is None
        assert by_sid["h-prefixes"].framed_ipv6_prefix is None and by_sid["h-prefixes"].delegated_ipv6_prefix is None
        assert by_sid["h-class"].class_applied == "full-and" and len(by_sid["h-class"].terminate_cause or "") == 64
        assert len(by_sid["h-dotted-i"].username_key) == 253
        assert by_sid["h-far-future"].started_at == datetime.fromtimestamp((1 << 32) - 1, UTC)
        assert by_sid["h-before-1970"].started_at == datetime.fromtimestamp(0, UTC)
        long_row = next(r for sid, r in by_sid.items() if sid.startswith("h-long-"))
        assert (len(long_row.acct_session_id), len(long_row.username), len(long_row.nas_name)) == (253, 253, 100)
        clamped = {clean_record(r).acct_session_id for r, fate in hostile if fate == "clamped"}
        assert clamped <= set(by_sid)

        set_aside = quarantined(tmp_path / "spool")
        expected = {r.acct_session_id for r, fate in hostile if fate == "quarantined"}
        assert {e["record"]["acct_session_id"] for e in set_aside if "record" in e} == expected
        assert [e["line"] for e in set_aside if "line" in e] == ['{"status": "start", "not": "a record"}', "{garbage"]
        assert next(e for e in set_aside if e.get("record", {}).get("username") == "refuse-me")["reason"].startswith(
            "refused by the database"
        )
        assert QUARANTINED._value.get() - quarantined_before == len(expected) + 2  # noqa: SLF001
        assert spool_lag(tmp_path / "spool").bytes == 0 and recorder.spool.pending == 0  # nothing stuck
        for path in (tmp_path / "spool" / "quarantine").iterdir():
            assert path.stat().st_mode & 0o777 == 0o600
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("DROP TRIGGER IF EXISTS refuse_marked" + (" ON sessions" if engine.dialect.name != "sqlite" else ""))
            )
        engine.dispose()


def test_extraction_from_hostile_packets_decodes_and_widens_safely() -> None:
    attrs = (
        (ACCT_STATUS_TYPE, encode_integer(ACCT_STATUS_START)),
        (USER_NAME, b"\xff\xfe\x00alice"),  # not UTF-8, with a NUL
        (ACCT_SESSION_ID, b"s" * 253),
        (FRAMED_IP_ADDRESS, b"\x01\x02\x03"),  # 3 octets: not an address
        (ACCT_INPUT_OCTETS, encode_integer(0xFFFFFFFF)),
        (ACCT_INPUT_GIGAWORDS, encode_integer(0xFFFFFFFF)),
    )
    record = record_from_request(attrs, "bng1", "192.0.2.10", 1e9)
    assert record is not None and record.framed_ip is None and record.input_octets == (1 << 64) - 1
    clean = clean_record(record)
    assert clean.username == "\ufffd\ufffdalice" and clean.input_octets == COUNTER_MAX


def test_batched_apply_ends_as_one_by_one_apply_and_replay_changes_nothing(database_url: str) -> None:
    """Start, Interims, Stop of many sessions interleaved, a reused Acct-Session-Id inside one batch,
    an Accounting-On between, an Interim without its Start: one batch == one record at a time."""
    records: list[AccountingRecord] = []
    for minute in range(4):
        for n in range(30):
            status = ("start", "interim", "interim", "stop")[minute]
            records.append(rec(status, minute, f"s{n}", input_octets=minute * 10 + n, framed_ip=f"100.64.1.{n}"))
    records += [rec("start", 5, "s3", framed_ip="100.64.2.3"), rec("interim", 6, "s3", input_octets=5)]  # reuse after Stop
    records += [rec("start", 5, "on-a"), rec("on", 7, "", acct_session_id=""), rec("start", 8, "on-b")]
    records += [rec("interim", 9, "late", session_time=60), rec("stop", 2, "s7", input_octets=1)]  # a replayed Stop

    def snapshot(engine: Any) -> list[tuple[Any, ...]]:
        with db.reading(engine) as session:
            found = session.scalars(select(AcctSession).order_by(AcctSession.acct_session_id)).all()
            return [
                (
                    re.sub("#[0-9]+$", "#", r.acct_session_id),
                    r.started_at,
                    r.stopped_at,
                    r.terminate_cause,
                    r.input_octets,
                    r.framed_ip,
                    r.updated_at,
                )
                for r in found
            ]

    engine = db.make_engine(database_url)
    for record in records:
        with db.transaction(engine) as session:
            assert store.apply_accounting(session, [record]) == []
    one_by_one = snapshot(engine)
    with db.transaction(engine) as session:
        session.execute(text("DELETE FROM sessions"))
    for _ in range(2):  # the second pass is a replay of the whole spool
        with db.transaction(engine) as session:
            store.apply_accounting(session, records)
        batched = snapshot(engine)
        assert [r[:6] for r in batched] == [r[:6] for r in one_by_one]
    reused = [r for r in batched if r[0].startswith("s3")]
    assert len(reused) == 2 and any("#" in r[0] for r in reused)
    assert dict((r[0], r[3]) for r in batched)["on-a"] == "Accounting-On"
    engine.dispose()


def test_appends_racing_the_drainer_lose_no_acknowledged_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's tight loop: small segments, so nearly every append opens one while the drainer
    deletes the one it just applied."""
    monkeypatch.setattr(Spool, "SEGMENT_BYTES", 600)
    spool = Spool(tmp_path / "spool")
    acknowledged: set[str] = set()
    drained: list[str] = []
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()

    def write() -> None:
        try:
            for n in range(6_000):
                record = AccountingRecord("start", 0.0, "bng1", "192.0.2.1", f"r{n}", "alice")
                if spool.append([record]):
                    acknowledged.add(record.acct_session_id)
        except BaseException as exc:  # the old race: FileNotFoundError from bytes_used()
            errors.append(exc)
        finally:
            writing.clear()

    def drain_all() -> None:
        while writing.is_set() or spool.pending:
            segment = spool.take_segment()
            if segment is None:
                continue
            records, unreadable = spool.read(segment)
            assert unreadable == []
            drained.extend(r.acct_session_id for r in records)
            spool.done(segment, len(records))

    threads = [threading.Thread(target=write), threading.Thread(target=drain_all)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(acknowledged) == 6_000
    assert acknowledged == set(drained) and len(drained) == 6_000  # each once: none lost, none doubled
    assert spool.bytes == 0 and spool.pending == 0 and spool.oldest() is None


class _BrokenDisk(Spool):
    def append(self, records: list[AccountingRecord]) -> bool:
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("cause", ["full", "io-error"])
def test_a_record_that_cannot_be_spooled_is_not_answered(tmp_path: Path, cause: str) -> None:
    loop = asyncio.new_event_loop()
    spool = Spool(tmp_path / "spool", max_bytes=10) if cause == "full" else _BrokenDisk(tmp_path / "spool")
    released: list[Any] = []
    recorder = Recorder(db.make_engine(f"sqlite:///{tmp_path / 'x.db'}"), spool, loop, on_unrecorded=released.append)
    recorder._threads = recorder._threads[:1]  # noqa: SLF001  (the writer only: no database here)
    recorder.start()
    attrs = ((ACCT_STATUS_TYPE, encode_integer(ACCT_STATUS_START)), (ACCT_SESSION_ID, b"s1"), (USER_NAME, b"alice"))
    job = SimpleNamespace(
        request=SimpleNamespace(attributes=attrs), client=SimpleNamespace(name="bng1"), nas_addr=("192.0.2.1", 1)
    )
    failures = SPOOL_FAILURES._value.get()  # noqa: SLF001

    async def go() -> asyncio.Future[None] | None:
        future = recorder.record(job)
        deadline = time.monotonic() + 5
        while not released and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return future

    future = loop.run_until_complete(go())
    recorder.close()
    loop.close()
    assert future is not None and not future.done()  # no Accounting-Response: the NAS retries
    assert released == [job]  # and the relay forgets it, so the retry is relayed afresh
    assert SPOOL_FAILURES._value.get() - failures == 1  # noqa: SLF001
    assert spool.pending == 0


def test_spool_lag_reads_the_backlog_of_every_worker_from_the_folder(tmp_path: Path) -> None:
    base = tmp_path / "spool"
    assert spool_lag(base).json() == {"segments": 0, "bytes": 0, "oldest_age_seconds": None, "known": True}
    own, worker = Spool(base), Spool(base / "worker-1")
    record = AccountingRecord("start", 0.0, "bng1", "192.0.2.1", "s1", "alice")
    before = time.time()
    own.append([record])
    worker.append([record, record])
    lag = spool_lag(base, now=before + 30)
    assert lag.behind and lag.segments == 2 and lag.bytes == own.bytes + worker.bytes
    assert lag.oldest_age is not None and 29 <= lag.oldest_age <= 31
    assert own.pending == 1 and worker.pending == 2
    segment = own.take_segment()
    assert segment is not None
    own.done(segment, 1)
    assert spool_lag(base).segments == 1
    json.dumps(spool_lag(base).json())


def test_accounting_quarantine_and_lag_commands(tmp_path: Path) -> None:
    import argparse

    from radius_op25b.cli import accounting as cli
    from radius_op25b.services.spool import Quarantine, Refusal

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")

    def group(parent: Any, name: str, text: str, dest: str, metavar: str) -> Any:
        return parent.add_parser(name, help=text).add_subparsers(dest=dest, required=True, metavar=metavar)

    def leaf(parent: Any, name: str, text: str, func: str, **kw: str) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = parent.add_parser(name, help=text, description=kw.get("description", text))
        q.set_defaults(func=func)
        q.add_argument("--json", action="store_true")
        return q

    cli.add_parsers(sub, leaf, group)
    base = tmp_path / "spool"
    out: list[str] = []

    def run(*argv: str) -> str:
        args = parser.parse_args(list(argv))
        ctx = SimpleNamespace(
            args=args,
            config=SimpleNamespace(spool_dir=str(base)),
            emit=lambda data, text: out.append(json.dumps(data) if args.json else text),
        )
        assert cli.cmd_accounting(ctx) == 0  # type: ignore[arg-type]
        return out[-1]

    assert run("accounting", "quarantine").startswith("no accounting records set aside")
    assert run("accounting", "lag") == "the sessions table has every acknowledged accounting record"
    Spool(base).append([AccountingRecord("start", 0.0, "bng1", "192.0.2.1", "s1", "alice")])
    Quarantine(base / "quarantine").add([Refusal("invalid: unknown status 'x'", {"status": "x", "acct_session_id": "q1"})], "seg")
    Quarantine(base / "worker-1" / "quarantine").add([Refusal("unreadable spool line", None, "{garbage")], "seg")
    text_out = run("accounting", "quarantine")
    assert text_out.startswith("2 accounting record(s) set aside") and "'q1'" in text_out and "{garbage" in text_out
    data = json.loads(run("accounting", "quarantine", "--json", "--limit", "1"))
    assert data["count"] == 2 and len(data["records"]) == 1
    assert run("accounting", "lag").startswith("the sessions table is behind: ")
    assert json.loads(run("accounting", "lag", "--json"))["behind"] is True


# --- the database stopped mid-burst (real PostgreSQL, radclient, `op25b serve`) ------------------------

OUTAGE_RECORDS = 20_000


@pytest.fixture(scope="module")
def upstream(freeradius_factory):  # type: ignore[no-untyped-def]
    return freeradius_factory("durability-up", secret="up-secret")


def test_database_stopped_mid_burst_loses_no_acknowledged_record(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    """A private cluster (never the shared server) stopped while radclient is sending and started
    again a few seconds later: every record radclient saw acknowledged ends in `sessions`, none
    set aside. The full-size case (30 s down) is bench/accounting_bench.py --db-outage 30."""
    assert RADCLIENT is not None
    pg = PrivatePostgres()
    radclient_run: subprocess.Popen[str] | None = None
    try:
        pg.start()
        body = client_block("nas", "127.0.0.1", "nas-secret", require_message_authenticator=False) + upstream_block(
            "up", upstream
        )
        proxy = ProxyProcess(tmp_path / "proxy", body, database_url=pg.url)
        load = tmp_path / "burst.txt"
        load.write_text(
            "\n".join(
                f'User-Name = "u{i}@isp.example"\nAcct-Status-Type = Start\nAcct-Session-Id = "M-{i}"\n'
                f"NAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}\n"
                for i in range(OUTAGE_RECORDS)
            )
        )
        with proxy:
            args = [RADCLIENT, "-q", "-s", "-D", DICT_DIR, "-d", str(TEMPLATE_DIR), "-p", "32", "-r", "3", "-t", "3"]
            radclient_run = subprocess.Popen(
                [*args, "-f", str(load), proxy.acct_addr, "acct", "nas-secret"], stdout=subprocess.PIPE, text=True
            )
            engine = db.make_engine(pg.url)

            def in_table() -> int:
                try:
                    with engine.connect() as conn:
                        return int(
                            conn.execute(text("SELECT count(*) FROM sessions WHERE acct_session_id LIKE 'M-%'")).scalar_one()
                        )
                except Exception:  # noqa: BLE001  (the cluster is down meanwhile)
                    return -1

            before = wait_until(in_table, 20, 0.05)  # the drain is writing: the burst is on
            engine.dispose()
            pg.stop()
            assert radclient_run.poll() is None and 0 < before < OUTAGE_RECORDS  # mid-burst
            time.sleep(3)
            still_sending = radclient_run.poll() is None
            pg.start()
            out, _ = radclient_run.communicate(timeout=120)
            accepted = int(re.search(r"Accepted\s*:\s*(\d+)", out).group(1))  # type: ignore[union-attr]
            lost = int(re.search(r"Lost\s*:\s*(\d+)", out).group(1))  # type: ignore[union-attr]
            assert (accepted, lost) == (OUTAGE_RECORDS, 0), out
            assert wait_until(lambda: in_table() == OUTAGE_RECORDS, 60, 0.2), in_table()
            assert still_sending, "the burst ended during the outage: make it longer"
            proxy.wait_for_log("database unavailable")
            proxy.wait_for_log("database available again")
            assert quarantined(tmp_path / "proxy" / "op25b-spool") == []  # an outage is no refusal
            engine.dispose()
    finally:
        if radclient_run is not None and radclient_run.poll() is None:
            radclient_run.kill()
            radclient_run.wait(5)
        pg.destroy()


def test_the_spool_line_is_the_records_json_and_the_drainer_lets_a_young_segment_grow(tmp_path: Path) -> None:
    record = rec("stop", 3, "s-ü\x00", input_octets=5, session_time=7, framed_ip="100.64.0.1", terminate_cause="Idle")
    assert record_line(record) == record.to_json() and AccountingRecord.from_json(record_line(record)) == record
    spool = Spool(tmp_path / "spool")
    spool.append([record])
    assert spool.take_segment(hold=60, hold_bytes=1 << 20) is None  # young and small: left to grow
    assert spool.take_segment(hold=60, hold_bytes=10) is not None  # long enough: taken (and sealed)
    spool.append([record])
    assert spool.take_segment() is not None  # the first, sealed one is still the oldest
    later = Spool(tmp_path / "spool")  # a restart: segments found in the folder are taken at once
    assert later.take_segment(hold=60, hold_bytes=1 << 20) is not None and later.pending == 2
    # A drain process that deleted a segment and died before saying so: counted as applied.
    first = spool.take_segment()
    assert first is not None and spool.pending == 2
    first.unlink()
    assert spool.forget_missing() == 1 and spool.pending == 1 and spool.forget_missing() == 0


def test_the_drain_process_applies_what_the_writer_sealed_and_is_restarted_and_ends_with_the_recorder(
    database_url: str, tmp_path: Path
) -> None:
    from radius_op25b.metrics import RECORDED

    engine = db.make_engine(database_url)
    loop = asyncio.new_event_loop()
    recorder = Recorder(engine, Spool(tmp_path / "spool"), loop, drain_process=True)
    recorder.start()
    recorded_before = RECORDED._value.get()  # noqa: SLF001
    second = None

    def send(prefix: str, count: int) -> None:
        async def go() -> None:
            futures = [recorder.submit(rec("start", 0, f"{prefix}{n}", framed_ip=f"100.64.1.{n % 250}")) for n in range(count)]
            await asyncio.wait_for(asyncio.gather(*futures), 10)  # spooled: acknowledged

        loop.run_until_complete(go())

    def in_table(prefix: str) -> int:
        return sum(1 for sid in rows(engine) if sid.startswith(prefix))

    try:
        send("p", 500)
        assert wait_until(lambda: in_table("p") == 500 and recorder.spool.pending == 0, 30, 0.1), in_table("p")
        assert wait_until(lambda: RECORDED._value.get() - recorded_before == 500, 5, 0.05)  # noqa: SLF001  (reported up the pipe)
        first = recorder._link.proc  # noqa: SLF001
        assert first is not None and first.poll() is None
        first.kill()  # the drain process dies: the relay starts another, nothing is lost
        first.wait(5)
        send("q", 300)
        assert wait_until(lambda: in_table("q") == 300 and recorder.spool.pending == 0, 30, 0.1), in_table("q")
        second = recorder._link.proc  # noqa: SLF001
        assert second is not None and second.pid != first.pid
    finally:
        recorder.close()
        loop.close()
        engine.dispose()
    assert second is not None and second.poll() is not None  # the recorder closed: its pipe closed, the drain process ended
    assert spool_lag(tmp_path / "spool").bytes == 0
