"""`POST /api/v1/accounting` (issue 17, item 3) on a real `op25b web` process, both backends:
what FreeRADIUS's rlm_rest sends from `accounting` (deploy/freeradius-plugin/) becomes a session
row like a proxied one, through this process's spool. The FreeRADIUS end of it is in
tests/test_freeradius_plugin.py.

- a Start, its Interim-Update and Stop (form-encoded, as rlm_rest sends them; or JSON) make one
  session with the op25b tag of its Class, the counters with their Gigawords, the cause by name;
- the NAS is the [[clients]] entry holding nas_address; an address in none: 422, nothing recorded;
- a type we do not record (Failed): 204, nothing recorded;
- bad values (a counter over 32 bits, a negative one, an unknown field, a bad address): 422,
  nothing recorded; no token 401; a viewer's token 403 (session rows are the abuse desk's evidence);
- a spool that cannot be opened: 503 and nothing recorded (never an answer for a record that is
  not durable), and the next record after it is fixed is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from radius_op25b.services.desk import session_json
from radius_op25b.store import db
from radius_op25b.store.models import AcctSession
from radius_op25b.web.accounting import WEB_SPOOL
from tests.support.processes import wait_until
from tests.web.test_decide import Stack, make_stack


@pytest.fixture
def stack(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Stack]:
    yield from make_stack(tmp_path, database_url, capsys)


FORM = {"content-type": "application/x-www-form-urlencoded"}
NOW = int(time.time())


def fields(**values: Any) -> dict[str, str]:
    """The fields as the shipped module sends them: every one, empty when the attribute is absent."""
    base = dict.fromkeys(
        [
            "acct_status_type",
            "acct_session_id",
            "user_name",
            "nas_address",
            "nas_ip_address",
            "nas_identifier",
            "nas_port_id",
            "framed_ip_address",
            "framed_ipv6_prefix",
            "delegated_ipv6_prefix",
            "class",
            "acct_session_time",
            "acct_input_octets",
            "acct_input_gigawords",
            "acct_output_octets",
            "acct_output_gigawords",
            "acct_terminate_cause",
            "acct_delay_time",
            "event_timestamp",
        ],
        "",
    )
    base.update(user_name="alice@isp.example", nas_address="127.0.0.1", nas_ip_address="127.0.0.1")
    base.update({k: str(v) for k, v in values.items()})
    return base


def post(stack: Stack, who: str | None = "ann", **values: Any) -> Any:
    with stack.api(who) as api:
        return api.post("/api/v1/accounting", content=urlencode(fields(**values)), headers=FORM)


def sessions(stack: Stack) -> list[dict[str, Any]]:
    """alice's session rows, as the desk shows them (read straight from the database)."""
    engine = db.make_engine(stack.url)
    try:
        with db.reading(engine) as session:
            rows = session.scalars(
                select(AcctSession).where(AcctSession.username == "alice@isp.example").order_by(AcctSession.id)
            )
            return [session_json(row) for row in rows]
    finally:
        engine.dispose()


def test_start_interim_stop_make_one_session(stack: Stack) -> None:
    tag = "0x" + b"upstream".hex() + ",0x" + b"op25b:mobile".hex()  # %{Class[*]}: every Class
    r = post(
        stack,
        acct_status_type="Start",
        acct_session_id="S-1",
        framed_ip_address="100.64.0.9",
        **{"class": tag},
        event_timestamp=NOW - 120,
        nas_port_id="ge-0/0/1.100",
    )
    assert r.status_code == 204, r.text
    assert wait_until(lambda: len(sessions(stack)) == 1, 5), stack.web.log_text()[-2000:]
    [row] = sessions(stack)
    assert (row["nas"], row["nas_address"], row["acct_session_id"], row["class_applied"], row["framed_ip"]) == (
        "bng-generic",
        "127.0.0.1",
        "S-1",
        "mobile",
        "100.64.0.9",
    ), row
    r = post(
        stack,
        acct_status_type="Interim-Update",
        acct_session_id="S-1",
        acct_input_octets=7,
        acct_input_gigawords=1,
        event_timestamp=NOW - 60,
    )
    assert r.status_code == 204, r.text
    with stack.api("ann") as api:  # JSON decides the same
        r = api.post(
            "/api/v1/accounting",
            json={
                **fields(
                    acct_status_type="Stop",
                    acct_session_id="S-1",
                    acct_output_octets=9,
                    acct_terminate_cause="Lost-Carrier",
                    event_timestamp=NOW,
                )
            },
        )
    assert r.status_code == 204, r.text
    assert wait_until(lambda: sessions(stack)[0]["stopped_at"] is not None, 5), sessions(stack)
    [row] = sessions(stack)
    assert (row["input_octets"], row["output_octets"], row["terminate_cause"]) == (2**32 + 7, 9, "Lost-Carrier"), row
    assert row["started_at"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(NOW - 120))), row


def test_refusals_record_nothing(stack: Stack) -> None:
    cases = {
        "no token": (None, {}, 401),
        "a viewer": ("vic", {}, 403),
        "a NAS in no [[clients]] entry": ("ann", {"nas_address": "192.0.2.1"}, 422),
        "a counter over 32 bits": ("ann", {"acct_input_octets": 2**32}, 422),
        "a negative counter": ("ann", {"acct_session_time": -1}, 422),
        "a bad address": ("ann", {"framed_ip_address": "100.64.0.300"}, 422),
        "no status": ("ann", {"acct_status_type": ""}, 422),
    }
    for what, (who, values, status) in cases.items():
        r = post(stack, who, **{"acct_status_type": "Start", "acct_session_id": "BAD", **values})
        assert r.status_code == status, (what, r.status_code, r.text)
        assert "error" in r.json(), (what, r.text)
    with stack.api("ann") as api:
        r = api.post("/api/v1/accounting", content=urlencode({**fields(acct_status_type="Start"), "password": "x"}), headers=FORM)
        assert r.status_code == 422 and "password" in r.text, r.text
    r = post(stack, acct_status_type="Failed", acct_session_id="F-1")  # RFC 2866 type 15: not a session
    assert r.status_code == 204, r.text
    time.sleep(0.5)
    assert sessions(stack) == []


def test_no_durable_spool_no_answer(stack: Stack, tmp_path: Path) -> None:
    blocker = tmp_path / "op25b-spool" / WEB_SPOOL
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")  # the spool cannot be made
    r = post(stack, acct_status_type="Start", acct_session_id="S-2")
    assert r.status_code == 503 and "spool" in r.json()["error"], r.text
    blocker.unlink()
    r = post(stack, acct_status_type="Start", acct_session_id="S-3")
    assert r.status_code == 204, r.text
    assert wait_until(lambda: [s["acct_session_id"] for s in sessions(stack)] == ["S-3"], 5), sessions(stack)
