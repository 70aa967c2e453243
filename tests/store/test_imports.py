"""The CSV import (store/imports.py) on a real database, SQLite and PostgreSQL: parse, plan, apply."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from radius_op25b.errors import Conflict, InvalidInput
from radius_op25b.store import db
from radius_op25b.store.imports import (
    CSV_COLUMNS,
    ImportPlan,
    ParsedImport,
    apply_import,
    parse_import,
    plan_import,
)
from radius_op25b.store.jobs import affected_sessions, hold_pushes
from radius_op25b.store.models import AcctSession, AuditLog, Base, CoaJob, StaticAddress, Subscriber
from radius_op25b.store.subscribers import add_subscriber, find_subscriber, subscriber_state

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
HEADER = ",".join(CSV_COLUMNS)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


def parse(text: str, *, header: bool = True, source: str = "subs.csv") -> ParsedImport:
    return parse_import(text, source, header=header)


def plan(engine: Engine, text: str, *, header: bool = True, update: bool = False, source: str = "subs.csv") -> ImportPlan:
    with db.transaction(engine) as s:
        return plan_import(s, parse(text, header=header, source=source), update=update)


def run(engine: Engine, text: str, *, header: bool = True, update: bool = False, source: str = "subs.csv") -> ImportPlan:
    """Parse, plan and apply in one transaction, as `op25b subscriber import` does."""
    with db.transaction(engine) as s:
        planned = plan_import(s, parse(text, header=header, source=source), update=update)
        apply_import(s, planned, actor="prov", now=NOW)
    return planned


def subscribers(engine: Engine) -> dict[str, dict[str, Any]]:
    with db.transaction(engine) as s:
        return {sub.username_key: subscriber_state(sub) for sub in s.scalars(select(Subscriber))}


def owners(engine: Engine) -> dict[str, str]:
    with db.transaction(engine) as s:
        rows = s.execute(select(StaticAddress.address, Subscriber.username_key).join(Subscriber)).all()
    return dict(rows)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table."""
    with db.transaction(engine) as s:
        return {
            t.name: sorted((tuple(map(repr, row)) for row in s.execute(select(t)).all()), key=repr)
            for t in Base.metadata.sorted_tables
        }


def add(engine: Engine, username: str, **kw: Any) -> None:
    with db.transaction(engine) as s:
        add_subscriber(s, username, actor="desk", now=NOW, **kw)


def open_session(engine: Engine, username: str, acct_id: str = "s1", stopped: bool = False) -> int:
    with db.transaction(engine) as s:
        row = AcctSession(
            nas_name="bng1",
            nas_address="192.0.2.10",
            acct_session_id=acct_id,
            username=username,
            username_key=username.lower(),
            framed_ip="100.64.0.9",
            started_at=NOW,
            updated_at=NOW,
            stopped_at=NOW if stopped else None,
        )
        s.add(row)
        s.flush()
        return row.id


def refusal_lines(refused: Any) -> list[int]:
    return [r.line for r in refused]


# --- reading the file -------------------------------------------------------------------------


def test_header_names_the_columns_in_any_order(engine: Engine) -> None:
    text = 'note,username,class\n"shop, 2F",alice@isp.example,Mobile\n,Bob@ISP.example,\n'
    parsed = parse(text)
    assert parsed.columns == ("note", "username", "class") and parsed.delimiter == ","
    assert [r.line for r in parsed.rows] == [2, 3] and parsed.refused == ()
    run(engine, text)
    assert subscribers(engine) == {
        "alice@isp.example": {
            "username": "alice@isp.example",
            "realm": "isp.example",
            "ip_type": "dynamic",
            "static_addresses": [],
            "class_override": "mobile",
            "note": "shop, 2F",
        },
        "bob@isp.example": {
            "username": "Bob@ISP.example",
            "realm": "isp.example",
            "ip_type": "dynamic",
            "static_addresses": [],
            "class_override": None,
            "note": None,
        },
    }


def test_no_header_reads_the_documented_order(engine: Engine) -> None:
    text = "a@isp.example,partner.example,static,192.0.2.1 2001:0db8::0001,none,first\nb@isp.example\n\nc@isp.example,,,,full\n"
    parsed = parse(text, header=False)
    assert [r.line for r in parsed.rows] == [1, 2, 4]  # physical lines; the blank one skipped
    assert parsed.columns == CSV_COLUMNS
    run(engine, text, header=False)
    subs = subscribers(engine)
    assert subs["a@isp.example"] == {
        "username": "a@isp.example",
        "realm": "partner.example",
        "ip_type": "static",
        "static_addresses": ["192.0.2.1", "2001:db8::1"],
        "class_override": "none",
        "note": "first",
    }
    assert subs["b@isp.example"]["ip_type"] == "dynamic" and subs["c@isp.example"]["class_override"] == "full"
    assert owners(engine) == {"192.0.2.1": "a@isp.example", "2001:db8::1": "a@isp.example"}


def test_a_header_read_without_header_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"line 1 is a header \(username, realm\); leave out --no-header"):
        parse("username,realm\na@x,isp\n", header=False)
    with pytest.raises(InvalidInput, match="line 1 is a header"):
        parse("username\na@x\n", header=False)


def test_a_first_line_that_is_not_a_header_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        parse("alice@isp.example,,dynamic,,,\n")
    assert str(info.value) == (
        "subs.csv: the first line is not a header (columns: username, realm, ip_type, static_addresses, class, note); "
        "give --no-header for the documented order"
    )


def test_semicolon_file_is_read_as_semicolons(engine: Engine) -> None:
    text = "username;static_addresses;note\nalice@isp.example;192.0.2.7;shop, 2F\n"
    parsed = parse(text)
    assert parsed.delimiter == ";" and parsed.columns == ("username", "static_addresses", "note")
    run(engine, text)
    assert subscribers(engine)["alice@isp.example"]["static_addresses"] == ["192.0.2.7"]
    assert subscribers(engine)["alice@isp.example"]["note"] == "shop, 2F"
    # Without a header: the semicolons that occur the same number of times on every line.
    parsed = parse("bob@isp.example;;static;192.0.2.8;;\ncarol@isp.example;;;;mobile;a, b\n", header=False)
    assert parsed.delimiter == ";" and [r.username for r in parsed.rows] == ["bob@isp.example", "carol@isp.example"]
    assert parsed.rows[1].note == "a, b"


def test_mixed_delimiters_are_refused_naming_the_semicolon() -> None:
    with pytest.raises(InvalidInput) as info:
        parse("alice@isp.example;;static;192.0.2.7\nbob@isp.example,,dynamic\n", header=False)
    message = str(info.value)
    assert message.startswith("subs.csv: cannot tell the delimiter: line 1 has ';' 3 times and ',' 0 times")
    assert "line 2 has ';' 0 times and ',' 2 times" in message
    # A semicolon header over comma lines: each line is refused, not read as one column.
    parsed = parse("username;realm\nalice@isp.example,isp.example\n")
    assert parsed.rows == ()
    [refusal] = parsed.refused
    assert refusal.line == 2 and "with ';' as the delimiter" in refusal.message and "',' 1 times" in refusal.message
    # A one-column header over semicolon lines: never a username 'alice@isp.example;isp.example'.
    parsed = parse("username\nalice@isp.example;isp.example\n")
    assert parsed.rows == () and "contains ';'" in parsed.refused[0].message


def test_tab_file(engine: Engine) -> None:
    text = "username\tip_type\tstatic_addresses\tnote\nalice@isp.example\tstatic\t192.0.2.9\tback office\n"
    parsed = parse(text)
    assert parsed.delimiter == "\t"
    run(engine, text)
    assert subscribers(engine)["alice@isp.example"]["note"] == "back office"
    assert parse("bob@isp.example\t\tdynamic\n", header=False).delimiter == "\t"


def test_header_only_file_imports_nothing(engine: Engine) -> None:
    parsed = parse(HEADER + "\n")
    assert parsed.rows == () and parsed.refused == () and parsed.columns == CSV_COLUMNS
    before = snapshot(engine)
    planned = run(engine, HEADER + "\n")
    assert (planned.added, planned.changed, planned.unchanged, planned.refused) == ((), (), (), ())
    assert snapshot(engine) == before


def test_a_short_header_is_never_a_subscriber(engine: Engine) -> None:
    run(engine, "username\nalice@isp.example\nbob@isp.example\n")
    assert sorted(subscribers(engine)) == ["alice@isp.example", "bob@isp.example"]
    assert parse("username\n").rows == ()
    assert parse(" Username \r\nx@y\r\n").rows[0].username == "x@y"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "subs.csv: the file is empty"),
        ("\n  \n\n", "subs.csv: the file is empty"),
        ("username,clas\n", "subs.csv: line 1 (the header): unknown column 'clas' (did you mean 'class'?"),
        ("usernme\n", "unknown column 'usernme' (did you mean 'username'?"),
        ("username,colour\n", "unknown column 'colour' (columns: username, realm"),
        ("username,note,Note\n", "column 'note' is given twice (columns 2 and 3)"),
        ("realm,note\n", "no 'username' column (it has realm, note)"),
        ("username,,note\n", "column 2 has no name"),
    ],
)
def test_whole_file_problems(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_bad_line_is_refused_with_its_line_number(engine: Engine) -> None:
    text = "\n".join(
        [
            HEADER,  # 1
            "ok1@isp.example,,,,,",  # 2
            "bad-ip@isp.example,,static,300.1.2.3,,",  # 3
            "bad-class@isp.example,,,,partial,",  # 4
            "bad-type@isp.example,,roaming,,,",  # 5
            "no-address@isp.example,,static,,,",  # 6
            "dyn-address@isp.example,,dynamic,192.0.2.1,,",  # 7
            "too,many,fields,,,,,",  # 8
            ",,dynamic,,,",  # 9: no username
            "OK1@isp.example,,,,,",  # 10: the same username as line 2
            'note@isp.example,,,,,"a\x07bell"',  # 11
            "realm@isp.example,bad realm,,,,",  # 12
            "ok2@isp.example,,static,192.0.2.5,,",  # 13
            "ok3@isp.example,,static,192.0.2.5,,",  # 14: line 13's address
        ]
    )
    parsed = parse(text + "\n")
    assert [r.line for r in parsed.rows] == [2, 13]
    messages = {r.line: r.message for r in parsed.refused}
    assert sorted(messages) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14]
    assert messages[3] == "'300.1.2.3' is not an IP address"
    assert "unknown class 'partial'" in messages[4]
    assert messages[5] == "ip_type 'roaming' is not dynamic or static"
    assert messages[6] == "ip_type static needs static_addresses"
    assert messages[7] == "static_addresses given for a dynamic subscriber"
    assert messages[8].startswith("8 field(s) where the header has 6")
    assert messages[9] == "username is empty"
    assert messages[10] == "username 'OK1@isp.example' is already on line 2"
    assert "control character" in messages[11]
    assert "not a realm name" in messages[12]
    assert messages[14] == "static address 192.0.2.5 is also on line 13; one address, one subscriber"
    assert {r.line: r.username for r in parsed.refused}[9] is None

    before = snapshot(engine)
    with db.transaction(engine) as s:
        planned = plan_import(s, parsed)
        assert refusal_lines(planned.refused) == sorted(messages)
        with pytest.raises(InvalidInput) as info:
            apply_import(s, planned, actor="prov", now=NOW)
    assert str(info.value) == (
        "subs.csv: 11 line(s) refused, nothing imported: line 3: '300.1.2.3' is not an IP address; "
        f"line 4: {messages[4]}; line 5: ip_type 'roaming' is not dynamic or static (see --dry-run for all)"
    )
    assert snapshot(engine) == before


def test_an_unclosed_quote_is_refused_not_swallowed() -> None:
    parsed = parse('username,note\na@isp.example,"open\nb@isp.example,x\n')
    assert parsed.rows == ()
    assert [(r.line, r.message) for r in parsed.refused] == [(2, "a quoted field is not closed before the end of the file")]


# --- against the database ---------------------------------------------------------------------


def test_an_existing_subscriber_is_refused_without_update_and_changed_with_it(engine: Engine) -> None:
    add(engine, "Alice@isp.example", note="old note")
    text = "username,class,note\nalice@ISP.example,mobile,new note\nnew@isp.example,,\n"
    before = snapshot(engine)
    with db.transaction(engine) as s:
        planned = plan_import(s, parse(text))
        assert [(r.line, r.message) for r in planned.refused] == [
            (2, "subscriber 'Alice@isp.example' already exists (give --update to change it)")
        ]
        with pytest.raises(Conflict, match="1 line\\(s\\) refused, nothing imported: line 2: subscriber 'Alice@isp.example'"):
            apply_import(s, planned, actor="prov", now=NOW)
    assert snapshot(engine) == before  # not even new@isp.example

    planned = run(engine, text, update=True)
    [change] = planned.changed
    assert change.line == 2 and change.username == "alice@ISP.example"
    assert change.before == {
        "username": "Alice@isp.example",
        "realm": "isp.example",
        "ip_type": "dynamic",
        "static_addresses": [],
        "class_override": None,
        "note": "old note",
    }
    assert change.after == {**change.before, "class_override": "mobile", "note": "new note"}
    assert [(c.line, c.before, c.after["username"]) for c in planned.added] == [(3, None, "new@isp.example")]
    assert subscribers(engine)["alice@isp.example"] == change.after


def test_rows_identical_to_the_stored_ones_are_unchanged(engine: Engine) -> None:
    text = HEADER + "\na@isp.example,,static,192.0.2.1,full,x\nb@isp.example,,,,,\n"
    run(engine, text)
    before = snapshot(engine)
    planned = run(engine, text + "c@isp.example,,,,,\n", update=True)
    assert planned.unchanged == (2, 3) and planned.changed == ()
    assert [c.username for c in planned.added] == ["c@isp.example"]
    after = snapshot(engine)
    assert [r for r in after["audit_log"] if r not in before["audit_log"]] != []
    assert {k: v for k, v in after.items() if k not in ("subscribers", "audit_log")} == {
        k: v for k, v in before.items() if k not in ("subscribers", "audit_log")
    }
    with db.transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.target == "a@isp.example")) == 1


def test_columns_the_file_leaves_out_keep_the_stored_values(engine: Engine) -> None:
    add(engine, "s@isp.example", realm="partner.example", static_addresses=["192.0.2.20"], class_override="none", note="keep")
    add(engine, "d@isp.example", note="keep too")
    planned = run(engine, "username,class\ns@isp.example,mobile\nd@isp.example,default\n", update=True)
    assert len(planned.changed) == 1 and planned.unchanged == (3,)
    assert subscribers(engine)["s@isp.example"] == {
        "username": "s@isp.example",
        "realm": "partner.example",
        "ip_type": "static",
        "static_addresses": ["192.0.2.20"],
        "class_override": "mobile",
        "note": "keep",
    }
    assert owners(engine) == {"192.0.2.20": "s@isp.example"}
    # The merged result is checked: dynamic while the stored addresses stay is refused.
    refused = plan(engine, "username,ip_type\ns@isp.example,dynamic\n", update=True).refused
    assert [r.line for r in refused] == [2] and "stored static addresses (192.0.2.20) stay" in refused[0].message
    # An empty ip_type is inferred from the addresses: here, emptied, so dynamic.
    run(engine, "username,ip_type,static_addresses\ns@isp.example,,\n", update=True)
    assert subscribers(engine)["s@isp.example"]["ip_type"] == "dynamic" and owners(engine) == {}
    # An empty realm column: the realm of the name again.
    run(engine, "username,realm\ns@isp.example,\n", update=True)
    assert subscribers(engine)["s@isp.example"]["realm"] == "isp.example"


def test_update_replaces_the_owned_addresses(engine: Engine) -> None:
    add(engine, "s@isp.example", static_addresses=["192.0.2.20", "192.0.2.21"])
    run(engine, "username,static_addresses\ns@isp.example,192.0.2.21 192.0.2.22\n", update=True)
    assert owners(engine) == {"192.0.2.21": "s@isp.example", "192.0.2.22": "s@isp.example"}
    assert subscribers(engine)["s@isp.example"]["static_addresses"] == ["192.0.2.21", "192.0.2.22"]


def test_an_address_owned_by_another_subscriber_is_refused_naming_the_owner(engine: Engine) -> None:
    add(engine, "Bob@isp.example", static_addresses=["203.0.113.5"])
    text = "username,static_addresses\nnew@isp.example,203.0.113.7\nalice@isp.example,203.0.113.6 203.0.113.5\n"
    planned = plan(engine, text)
    assert [(r.line, r.username, r.message) for r in planned.refused] == [
        (3, "alice@isp.example", "static address 203.0.113.5 already belongs to subscriber 'Bob@isp.example'")
    ]
    before = snapshot(engine)
    with pytest.raises(Conflict, match="line 3: static address 203.0.113.5 already belongs to subscriber 'Bob@isp.example'"):
        run(engine, text)
    assert snapshot(engine) == before
    # Bob keeping his own address is fine.
    planned = run(engine, "username,static_addresses\nbob@isp.example,203.0.113.5 203.0.113.6\n", update=True)
    assert [c.username for c in planned.changed] == ["bob@isp.example"] and planned.refused == ()
    assert owners(engine) == {"203.0.113.5": "bob@isp.example", "203.0.113.6": "bob@isp.example"}
    # Moving an address between two subscribers in one file: refused, naming its owner.
    add(engine, "carol@isp.example")
    refused = plan(engine, "username,static_addresses\nbob@isp.example,203.0.113.9\ncarol@isp.example,203.0.113.5\n", update=True)
    assert [(r.line, r.message) for r in refused.refused] == [
        (3, "static address 203.0.113.5 already belongs to subscriber 'Bob@isp.example'")
    ]


def test_the_same_address_twice_in_the_file_is_refused(engine: Engine) -> None:
    text = "username,static_addresses\na@isp.example,192.0.2.1\nb@isp.example,192.0.2.2 192.0.2.1\n"
    before = snapshot(engine)
    with pytest.raises(InvalidInput, match="line 3: static address 192.0.2.1 is also on line 2"):
        run(engine, text)
    assert snapshot(engine) == before


def test_a_conflict_between_plan_and_apply_writes_nothing(engine: Engine) -> None:
    """All or nothing also when the database refuses: another agent took the address after the plan."""
    text = HEADER + "\na@isp.example,,,,,\nb@isp.example,,static,192.0.2.30,,\n"
    planned = plan(engine, text)
    add(engine, "other@isp.example", static_addresses=["192.0.2.30"])
    before = snapshot(engine)
    with (
        pytest.raises(Conflict, match="subs.csv: a subscriber or static address was taken meanwhile"),
        db.transaction(engine) as s,
    ):
        apply_import(s, planned, actor="prov", now=NOW)
    assert snapshot(engine) == before


def test_one_audit_row_per_subscriber_with_the_file_as_reason(engine: Engine) -> None:
    add(engine, "old@isp.example")
    run(
        engine,
        HEADER + "\nnew1@isp.example,,,,,\nNew2@isp.example,,static,192.0.2.3,none,n\nold@isp.example,,,,mobile,\n",
        update=True,
    )
    with db.transaction(engine) as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.actor == "prov").order_by(AuditLog.id)).all()
        stored = {sub.username_key: subscriber_state(sub) for sub in s.scalars(select(Subscriber))}
    assert [(r.action, r.target, r.reason, r.at) for r in rows] == [
        ("subscriber.import", "new1@isp.example", "subs.csv", NOW),
        ("subscriber.import", "new2@isp.example", "subs.csv", NOW),
        ("subscriber.import-update", "old@isp.example", "subs.csv", NOW),
    ]
    assert [r.after for r in rows] == [stored["new1@isp.example"], stored["new2@isp.example"], stored["old@isp.example"]]
    assert rows[0].before is None and rows[2].before == {**stored["old@isp.example"], "class_override": None}


def test_stdin_is_named_as_given(engine: Engine) -> None:
    run(engine, "username\na@isp.example\n", source="-")
    with db.transaction(engine) as s:
        assert s.scalars(select(AuditLog.reason).where(AuditLog.actor == "prov")).all() == ["-"]


def test_static_address_rows_are_written(engine: Engine) -> None:
    run(engine, HEADER + "\na@isp.example,,static,192.0.2.1 2001:DB8::0:1,,\nb@isp.example,,,192.0.2.2,,\nc@isp.example,,,,,\n")
    assert owners(engine) == {"192.0.2.1": "a@isp.example", "2001:db8::1": "a@isp.example", "192.0.2.2": "b@isp.example"}
    with db.transaction(engine) as s:
        sub = find_subscriber(s, "a@isp.example")
        assert sub is not None and [o.address for o in sub.owned_addresses] == ["192.0.2.1", "2001:db8::1"]
        assert sub.static_addresses == ["192.0.2.1", "2001:db8::1"]
    # And the desk's own check sees them: one address, one subscriber.
    with pytest.raises(Conflict, match="already belongs to subscriber 'b@isp.example'"):
        add(engine, "d@isp.example", static_addresses=["192.0.2.2"])


def test_awkward_text_goes_through_intact(engine: Engine) -> None:
    """Tab, backslash, newline and a quote in a note: COPY's text format escapes them (PostgreSQL)."""
    note = 'tab\there \\N back\\slash "quoted"\nsecond line'
    csv_note = '"' + note.replace('"', '""') + '"'
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        run(engine, f"username,note\nweird@isp.example,{csv_note}\nplain@isp.example,\\N\n")
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    subs = subscribers(engine)
    assert subs["weird@isp.example"]["note"] == note
    assert subs["plain@isp.example"]["note"] == "\\N"  # the text, not NULL
    with db.transaction(engine) as s:
        assert s.scalar(select(AuditLog.after).where(AuditLog.target == "weird@isp.example"))["note"] == note
    inserts = [st for st in statements if st.lstrip().upper().startswith("INSERT INTO")]
    if engine.dialect.name == "postgresql":
        assert inserts == []  # subscribers, addresses and audit rows all went in by COPY
    else:
        assert any("subscribers" in st for st in inserts)


def test_an_online_subscriber_gets_a_push(engine: Engine) -> None:
    online = open_session(engine, "carol@isp.example")
    open_session(engine, "dave@isp.example", "s2", stopped=True)
    run(engine, "username,class\nCarol@isp.example,mobile\ndave@isp.example,\n")
    with db.transaction(engine) as s:
        jobs = s.execute(select(CoaJob.session_id, CoaJob.username_key, CoaJob.cause, CoaJob.status)).all()
    assert jobs == [(online, "carol@isp.example", "subscriber.import", "pending")]
    # An update that changes the decision pushes again; one of the note alone does not.
    run(engine, "username,class\ncarol@isp.example,full\n", update=True)
    run(engine, "username,note\ncarol@isp.example,called\n", update=True)
    with db.transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(CoaJob)) == 2


def test_held_pushes_list_the_sessions_but_queue_nothing(engine: Engine) -> None:
    online = open_session(engine, "carol@isp.example")
    with db.transaction(engine) as s:
        hold_pushes(s)
        apply_import(s, plan_import(s, parse("username\ncarol@isp.example\n")), actor="prov", now=NOW)
        assert affected_sessions(s) == [online]
    with db.transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(CoaJob)) == 0


def test_a_plan_writes_nothing(engine: Engine) -> None:
    add(engine, "old@isp.example")
    before = snapshot(engine)
    planned = plan(engine, "username|note\nold@isp.example|x\nnew@isp.example|y\n", update=True)
    assert [c.username for c in planned.added] == ["new@isp.example"] and [c.line for c in planned.changed] == [2]
    assert snapshot(engine) == before


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    """PostgreSQL only: LISTEN/NOTIFY is its own (SQLite's watcher reads the audit log)."""
    engine = db.make_engine(postgres_url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


def test_one_notification_for_the_whole_import(pg_engine: Engine) -> None:
    """PostgreSQL: running proxies hear of the import once (they reload everything), not per row."""
    engine = pg_engine
    from radius_op25b.store.checks import NOTIFY_CHANNEL

    raw = engine.raw_connection()
    try:
        listener: Any = raw.driver_connection
        listener.autocommit = True
        with listener.cursor() as cursor:
            cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        run(engine, "username\na@isp.example\nb@isp.example\nc@isp.example\n", source="batch-7.csv")
        with listener.cursor() as cursor:
            cursor.execute("SELECT 1")  # reads what has arrived
        assert [n.payload for n in listener.notifies] == ["subscriber.import\timport:batch-7.csv"]
    finally:
        raw.invalidate()
