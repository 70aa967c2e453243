"""Generated command lines for `op25b` (issue 11 item 6): errors are one line, for any input.

Hypothesis drives `main([...])` with generated arguments and values on SQLite and PostgreSQL, over a
seeded database (realms, subscribers, an exemption, a permit, a mobile block, sessions), and checks:

- `main` returns 0, 1 or 2: nothing escapes it (an escaping exception is a traceback for the user);
- a refusal (1 or 2) is exactly one stderr line starting `error: `, and changes no row of any table;
- a refusal never comes from the database (`error: database ...`): the database is up, so a value the
  database refuses was not checked first;
- the same command gives the same exit status and error line on both backends, and a malformed value
  is refused (exit 2) the same way when the database is down: the limits are checked before it.

The fuzz tests survey rather than stop at the first failure: every distinct failure (by exception type
and the product frame that raised it) is kept with the shortest command line that showed it, and the
test fails at the end listing them all. `pytest -s` prints a summary line per test.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, insert, select, text
from sqlalchemy.engine import Engine

from radius_op25b.cli import main
from radius_op25b.store import db
from radius_op25b.store.models import AcctSession, Base
from tests.support.cli import CONFIG
from tests.support.ports import free_tcp_port

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CSV_MARK = "@@CSV-FILE@@"  # replaced by the path of the generated CSV file when the command runs
# Sized for CI (the file runs in about a minute on two cores); OP25B_FUZZ_SCALE=10 runs ten times as
# many, and OP25B_FUZZ_SEED=<n> explores other examples than the fixed (derandomized) ones.
SCALE = float(os.environ.get("OP25B_FUZZ_SCALE", "1"))
SEED_ENV = os.environ.get("OP25B_FUZZ_SEED")
SQLITE_EXAMPLES = int(600 * SCALE)
POSTGRES_EXAMPLES = int(400 * SCALE)
DIFFERENTIAL_EXAMPLES = int(200 * SCALE)
DOWN_EXAMPLES = int(300 * SCALE)

# --- the seeded database ------------------------------------------------------------------------------

SEED = [
    ["realm", "add", "isp.example"],
    ["realm", "add", "isp-b.example", "--model", "B", "--filter-name", "PARTNER-B"],
    ["realm", "add", "empty.example", "--class", "none"],
    ["realm", "permit-msa", "isp-b.example", "198.51.100.0/24", "--until", "2027-03-31"],
    ["mobile-mta", "add", "198.18.25.0/24", "--carrier", "mobile-x", "--note", "MX"],
    ["subscriber", "add", "alice@isp.example", "--note", "vip"],
    ["subscriber", "add", "bob@isp.example", "--static", "192.0.2.77", "2001:db8::77"],
    ["subscriber", "add", "carol@isp-b.example", "--class", "mobile"],
    ["subscriber", "exempt", "carol@isp-b.example", "--reason", "runs own MTA", "--for", "30d", "--actor", "seed"],
]


def _sessions() -> list[dict[str, Any]]:
    def row(n: int, user: str, ip: str, started: datetime, stopped: datetime | None) -> dict[str, Any]:
        return {
            "nas_name": "bng1",
            "nas_address": "192.0.2.10",
            "acct_session_id": f"S{n:04d}",
            "username": user,
            "username_key": user.lower(),
            "framed_ip": ip,
            "framed_ipv6_prefix": "2001:db8:1:1::/64" if n == 1 else None,
            "class_applied": "full",
            "started_at": started,
            "updated_at": stopped or started,
            "stopped_at": stopped,
            "input_octets": 0,
            "output_octets": 0,
        }

    return [
        row(1, "alice@isp.example", "100.64.0.5", NOW - timedelta(hours=3), None),
        row(2, "carol@isp-b.example", "100.64.0.6", NOW - timedelta(hours=1), None),
        row(3, "dave@isp.example", "100.64.0.5", NOW - timedelta(days=400), NOW - timedelta(days=399)),
        row(4, "bob@isp.example", "100.64.0.9", NOW - timedelta(days=2), NOW - timedelta(days=1)),
    ]


def _seed(config: Path, url: str) -> None:
    for argv in SEED:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["-c", str(config), *argv], now=NOW, out=lambda _s: None)
        assert code == 0, f"seeding {argv} failed: exit {code}: {err.getvalue()}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(AcctSession.__table__), _sessions())
    engine.dispose()


def _rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as conn:
        return {t.name: [dict(r) for r in conn.execute(select(t)).mappings()] for t in Base.metadata.sorted_tables}


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (tests/cli/test_cli.py's Op25b.snapshot)."""
    with engine.connect() as conn:
        return {t.name: sorted(map(tuple, conn.execute(select(t)).all()), key=repr) for t in Base.metadata.sorted_tables}


_SQLITE_TEMPLATE: dict[str, Path] = {}
_PG_SEED: dict[str, dict[str, list[dict[str, Any]]]] = {}


def _sqlite_template(root: Path) -> Path:
    """A migrated, seeded SQLite file, made once per session; each example runs on a copy."""
    if "path" not in _SQLITE_TEMPLATE:
        root.mkdir(parents=True, exist_ok=True)
        path = root / "template.db"
        engine = db.make_engine(f"sqlite:///{path}")
        db.upgrade(engine)
        engine.dispose()
        config = root / "seed.toml"
        config.write_text(CONFIG.format(url=f"sqlite:///{path}"))
        _seed(config, f"sqlite:///{path}")
        _SQLITE_TEMPLATE["path"] = path
    return _SQLITE_TEMPLATE["path"]


# --- running one command ------------------------------------------------------------------------------


@dataclass
class Run:
    code: int | None  # None: an exception escaped main
    out: list[str]
    err: str
    exc: BaseException | None = None
    tb: str = ""


class Backend:
    """A seeded database and a config pointing at it; `reset()` puts the seeded rows back."""

    def __init__(self, kind: str, root: Path, pg_url: str | None = None) -> None:
        self.kind, self.root = kind, root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "op25b.toml"
        self.n = 0
        self.engine: Engine | None = None
        self.clean: Any = None  # the snapshot right after reset()
        self.dirty = True  # reset() needed: a command changed rows since
        if kind == "postgresql":
            assert pg_url is not None
            self.url = pg_url
            self.engine = create_engine(pg_url)
            if pg_url not in _PG_SEED:
                self._empty()
                self.config.write_text(CONFIG.format(url=pg_url))
                _seed(self.config, pg_url)
                _PG_SEED[pg_url] = _rows(self.engine)
            self.seed_rows = _PG_SEED[pg_url]
        elif kind == "down":  # a PostgreSQL that is not there: nothing listens on the port
            self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_tcp_port()}/op25b"
        else:
            self.template = _sqlite_template(root.parent / "sqlite-template")
            self.url = ""
        self.config.write_text(CONFIG.format(url=self.url))

    def _empty(self) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            for t in reversed(Base.metadata.sorted_tables):
                conn.execute(delete(t))

    def reset(self) -> None:
        if self.kind == "sqlite":
            # a new file per example: engines left open by earlier commands never see it
            if self.engine is not None:
                self.engine.dispose()
            self.n += 1
            path = self.root / f"op25b-{self.n}.db"
            shutil.copyfile(self.template, path)
            self.url = f"sqlite:///{path}"
            self.config.write_text(CONFIG.format(url=self.url))
            self.engine = create_engine(self.url)
            previous = self.root / f"op25b-{self.n - 1}.db"
            previous.unlink(missing_ok=True)
        elif self.kind == "postgresql":
            assert self.engine is not None
            with self.engine.begin() as conn:
                for t in reversed(Base.metadata.sorted_tables):
                    conn.execute(delete(t))
                for t in Base.metadata.sorted_tables:
                    if self.seed_rows[t.name]:
                        conn.execute(insert(t), self.seed_rows[t.name])
                    if "id" in t.c:
                        conn.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM \"{t.name}\"), false)"
                            )
                        )
        _forget_engines()
        self.clean = self.snapshot()
        self.dirty = False

    def prepare(self) -> Any:
        """The seeded state (reset only when an earlier command changed it); its snapshot."""
        if self.dirty:
            self.reset()
        return self.clean

    def changed(self, after: Any) -> None:
        self.dirty = self.dirty or after != self.clean

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]] | None:
        return _snapshot(self.engine) if self.engine is not None else None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        _forget_engines()

    def run(self, argv: list[str], csv: bytes | None = None) -> Run:
        """`main(["-c", config, *argv])`; the CSV marker becomes a file holding `csv`, and `-` as
        the import file reads `csv` from a patched standard input."""
        args = ["-c", str(self.config)]
        csv_path = self.root / "import.csv"
        if csv is not None:
            csv_path.write_bytes(csv)
        args += [a.replace(CSV_MARK, str(csv_path)) for a in argv]
        out: list[str] = []

        def emit(s: str) -> None:
            s.encode("utf-8")  # a terminal's stdout (UTF-8, strict) refuses what cannot be encoded
            out.append(s)

        err = io.StringIO()
        stdin = io.TextIOWrapper(io.BytesIO(csv or b""), encoding="utf-8")
        try:
            with contextlib.redirect_stderr(err), mock.patch.object(sys, "stdin", stdin):
                code = main(args, now=NOW, out=emit)
        except BaseException as exc:  # noqa: BLE001 - anything escaping main is the finding
            if isinstance(exc, KeyboardInterrupt):
                raise
            return Run(None, out, err.getvalue(), exc, traceback.format_exc())
        return Run(code, out, err.getvalue())


def _forget_engines() -> None:
    """Each command makes its own engine; dispose of the ones db.reading() keeps, so a long run
    does not pile up open PostgreSQL connections (a test-harness concern, not a command's)."""
    readers = getattr(db, "_readers", None)
    if isinstance(readers, dict):
        for pair in list(readers.values()):
            with contextlib.suppress(Exception):
                pair[0].dispose()
        readers.clear()


# --- what a run must satisfy -----------------------------------------------------------------------------


def _product_frame(exc: BaseException) -> str:
    """Where in radius_op25b the exception was raised (the innermost product frame), for grouping."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "radius_op25b" in f.filename]
    f = (mine or frames)[-1] if (mine or frames) else None
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}" if f else "?"


def error_lines(err: str) -> list[str]:
    """stderr as a terminal shows it: \\n, \\r, \\v and \\f break the line (str.splitlines also
    breaks at \\x1c-\\x1e, \\x85 and U+2028/9, which a terminal does not)."""
    lines = re.split(r"\r\n|[\n\r\v\f]", err)
    return lines[:-1] if lines[-1] == "" else lines


def problems(run: Run, before: Any, after: Any) -> tuple[str, str] | None:
    """(kind, detail) of what is wrong with one run, or None."""
    if run.code is None:
        assert run.exc is not None
        last = traceback.format_exception_only(type(run.exc), run.exc)[0].strip()
        return f"traceback {type(run.exc).__name__} at {_product_frame(run.exc)}", last[:400]
    if not isinstance(run.code, int) or run.code not in (0, 1, 2):
        return f"exit status {run.code!r}", run.err
    if run.code == 0:
        if run.err:
            return "stderr on success", run.err
        return None
    lines = error_lines(run.err)
    if len(lines) != 1 or not lines[0].startswith("error: ") or not run.err.endswith("\n"):
        return f"exit {run.code} without exactly one error line", repr(run.err[:500])
    if re.match(r"error: database \S+: ", lines[0]):
        return f"exit {run.code}: the database refused a value", lines[0][:300]
    if before != after:
        changed = sorted(k for k in before if before[k] != after[k])
        return f"exit {run.code} changed tables", f"{changed}: {lines[0][:200]}"
    return None


def command_of(argv: list[str]) -> str:
    words = [a for a in argv if a in COMMAND_WORDS]
    for spec in SPECS:
        if tuple(words[: len(spec.path)]) == spec.path:
            return " ".join(spec.path)
    return " ".join(words[:2]) or "?"


@dataclass
class Survey:
    """Counts of one fuzz test, and each distinct failure with the shortest command line showing it."""

    backend: str
    counts: Counter[str] = field(default_factory=Counter)
    found: dict[str, tuple[list[str], bytes | None, str]] = field(default_factory=dict)

    def record(self, argv: list[str], csv: bytes | None, kind: str, detail: str) -> None:
        if not kind.startswith("traceback"):
            kind = f"{kind}: {command_of(argv)}"  # one entry per command, not one for them all
        old = self.found.get(kind)
        if old is None or len(repr(argv)) < len(repr(old[0])):
            self.found[kind] = (argv, csv, detail)

    def summary(self) -> str:
        c = self.counts
        return (
            f"fuzz[{self.backend}]: {c['commands']} commands run, {c['0']} ok, {c['1']} exit 1, {c['2']} exit 2, "
            f"{c['traceback']} tracebacks, {c['bad']} other failures ({len(self.found)} distinct)"
        )

    def report(self) -> str:
        parts = [self.summary()]
        for kind, (argv, csv, detail) in sorted(self.found.items()):
            extra = f"\n    csv={csv[:300]!r}" if csv is not None and any(CSV_MARK in a or a == "-" for a in argv) else ""
            parts.append(f"- [{self.backend}] {kind}\n    argv={argv!r}{extra}\n    " + detail.replace("\n", "\n    "))
        return "\n".join(parts)


# --- the strategies ---------------------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    total = sum(w for w, _ in choices)

    def pick(n: int) -> st.SearchStrategy[Any]:
        for w, s in choices:
            if n < w:
                return s
            n -= w
        raise AssertionError

    return st.integers(0, total - 1).flatmap(pick)


# A Linux argv carries the bytes that are not UTF-8 as lone surrogates U+DC80..U+DCFF (surrogateescape);
# no other lone surrogate can come from a real command line. (st.text() never makes any.)
SURROGATE = st.integers(0xDC80, 0xDCFF).map(chr)
ODD_CHARS = [
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\u200b",
    "\t",
    "\n",
    "\r",
    " ",
    "\udcff",
    "\udc80",
]
ODD_WORDS = [
    "👩‍💻",
    "\u202eexample.com",
    "مرحبا",
    "שלום",
    "ｆｕｌｌ",
    "Ａlice",
    "\ufeffalice",
    "İ",
    "ß",
    "ﬁ",
    "e\u0301",
    "\U0010ffff",
]


def long_text(low: int = 300, high: int = 5000) -> st.SearchStrategy[str]:
    return st.tuples(st.text(min_size=1, max_size=4), st.integers(low, high)).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )


ARBITRARY = weighted(
    (4, st.text(max_size=20)),
    (2, st.lists(st.one_of(st.characters(), SURROGATE, st.sampled_from(ODD_CHARS)), max_size=12).map("".join)),
    (1, long_text()),
    (1, st.sampled_from(ODD_WORDS)),
    (
        1,
        st.sampled_from(
            ["", " ", "-", "--", "default", "none", "null", "NULL", "'; DROP TABLE subscribers; --", "%", "_", "*", "\\"]
        ),
    ),
)


def mutated(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid-looking value with something odd done to it."""
    ops: list[Callable[[str, str], str]] = [
        lambda v, c: v + c,
        lambda v, c: c + v,
        lambda v, c: v[: len(v) // 2] + c + v[len(v) // 2 :],
        lambda v, _c: v.upper(),
        lambda v, _c: f"  {v}  ",
        lambda v, _c: v * 40,
        lambda v, _c: v[:-1],
    ]
    return st.tuples(valid, st.sampled_from(ODD_CHARS + ODD_WORDS), st.sampled_from(ops)).map(lambda t: t[2](t[0], t[1]))


@dataclass(frozen=True)
class Kind:
    """The values of one kind of argument: valid-looking ones, and odd ones (near misses, valid ones
    mangled, arbitrary text)."""

    valid: st.SearchStrategy[str]
    odd: st.SearchStrategy[str]

    @property
    def any(self) -> st.SearchStrategy[str]:
        return weighted((5, self.valid), (4, self.odd))


def values(valid: list[str], near: list[str]) -> Kind:
    return Kind(
        st.sampled_from(valid),
        weighted((3, st.sampled_from(near)), (2, mutated(st.sampled_from(valid))), (2, ARBITRARY)),
    )


LONG_USER = "u" * 242 + "@isp.example"  # 254 octets
USERS = values(
    [
        "alice@isp.example",
        "ALICE@ISP.EXAMPLE",
        "bob@isp.example",
        "carol@isp-b.example",
        "dave@isp.example",
        "nobody@isp.example",
        "new@isp.example",
        "eve@new.example",
        "plain",
    ],
    [
        LONG_USER,
        "u" * 241 + "@isp.example",
        "é" * 127,
        "é" * 126,
        "alice\x00@isp.example",
        "\udcff@isp.example",
        "@isp.example",
        "alice@",
        "@",
        "a@b@c",
        " ",
        "",
    ],
)
REALMS = values(
    ["isp.example", "isp-b.example", "ISP-B.Example", "empty.example", "new.example", "default"],
    [
        "r" * 254,
        "r" * 253,
        "has space.example",
        "a@b",
        "isp.example.",
        ".",
        "\x00",
        "\udcff",
        "İSP.example",
        "ISP.EXAMPLE\u0130",
        "\u0130" * 200,
    ],
)
IPS = values(
    [
        "192.0.2.77",
        "192.0.2.78",
        "203.0.113.25",
        "100.64.0.5",
        "100.64.0.9",
        "198.51.100.7",
        "2001:db8::77",
        "2001:db8:1:1::5",
        "::1",
    ],
    [
        "256.1.1.1",
        "192.0.2.300",
        "::ffff:1.2.3.4",
        "1.2.3",
        "01.2.3.4",
        "1.2.3.4/32",
        "fe80::1%eth0",
        "fe80::1%" + "e" * 55,
        "fe80::1%" + "e" * 70,
        "0.0.0.0",
        "255.255.255.255",
        "::",
        ":::",
    ],
)
CIDRS = values(
    ["198.51.100.0/24", "198.18.25.0/24", "203.0.113.0/25", "2001:db8::/32", "10.0.0.0/8", "192.0.2.7/32"],
    [
        "10.0.0.0/33",
        "10.0.0.1/24",
        "198.51.100.0/-1",
        "0.0.0.0/0",
        "::/0",
        "::ffff:1.2.3.0/120",
        "fe80::%eth0/64",
        "fe80::%" + "e" * 55 + "/64",
        "10.0.0.0/8/8",
        "10.0.0.0",
        "2001:db8::/129",
    ],
)
DATES = values(
    ["2027-01-31", "2027-03-31", "2026-12-02", "2027-01-31T14:03", "2027-01-31T14:03+09:00", "2026-12-01T09:00:00Z", "2026-11-30"],
    [
        "2027-02-30", "9999-12-31", "0001-01-01", "8999-12-31", "9000-01-01", "1969-12-31", "1970-01-01", "2027-13-01", "2027-01-31T25:00",
        "2027-01-31T14:03+24:00", "0001-01-01T00:00+01:00", "9999-12-31T23:59:59-23:59", "20270131", "2027-W05-1", "2027-032",
        "2026-12-01T09:00", "2026-12-01", "next week", "2027-01-31 14:03:00.123456789", "+002027-01-31",
    ],
)  # fmt: skip
DURATIONS = values(
    ["30d", "12h", "2w", "90m", "1d", "180d", "36525d"],
    [
        "0d",
        "-1d",
        "1.5d",
        "99999999999d",
        "999999999w",
        "36526d",
        "5218w",
        "876600h",
        "876601h",
        "30D",
        "30 d",
        "d",
        "30",
        "٣٠d",
        "1e3d",
        "30d30d",
    ],
)
COUNTS = values(
    ["1", "10", "200", "1000", "0"],
    [
        str(10**30),
        "-1",
        "-" + str(10**30),
        "1000000",
        "1000001",
        "1000000000",
        "1000000001",
        "1_000",
        " 5 ",
        "５",
        "0x10",
        "1e3",
        "",
        "nan",
    ],
)
CLASSES = values(["full", "mobile", "none"], ["default", "FULL", "partial", ""])
SET_CLASSES = values(["full", "mobile", "none", "default"], ["Default", "partial", ""])
MODELS = values(["A", "B", "C"], ["a", "D", ""])
NOTES = values(["vip", "customer asked", "a note\nwith two lines", ""], ["n" * 2000, "n" * 2001, "n\x00n", "\udcff"])
REASONS = values(["runs own MTA", "moved to 587", "ticket 4711"], ["r" * 1000, "r" * 1001, "r\x00", " ", "", "\tx"])
CARRIERS = values(["mobile-x", "mobile-y"], ["c" * 100, "c" * 101, "c\x00", ""])
FILTER_NAMES = values(["PARTNER-B", "OP25B-FULL-X"], ["f" * 100, "f" * 101, "f\x00", "has space", ""])
ACTORS = values(["alice-support", "seed", "root"], ["a" * 100, "a" * 101, "a\x00", "", " ", "\udcff"])
NAS = values(["bng1", "legacy"], ["bng9", "", "\x00"])
PROFILES = values(["juniper", "generic", "rfc4849", "cisco-ios", "mikrotik"], ["cisco-ios-xe", "", "JUNIPER"])
ACTIONS = values(["subscriber", "subscriber.exempt", "realm", "subscriber.add"], ["subscriber.", "sub", "", "*"])
CSV_FILES = Kind(
    weighted((4, st.just(CSV_MARK)), (1, st.just("-"))),
    weighted(
        (
            2,
            st.sampled_from(
                ["/nonexistent/subs.csv", "/", "/etc/shadow", "/dev/null", "/proc/self/mem", "subs\x00.csv", "\udcff.csv", ""]
            ),
        ),
        (1, ARBITRARY),
    ),
)


@dataclass(frozen=True)
class Spec:
    """A command: its positionals, options (required or not), flags."""

    path: tuple[str, ...]
    positionals: tuple[st.SearchStrategy[str] | tuple[st.SearchStrategy[str], int], ...] = ()
    options: tuple[tuple[str, Any, bool], ...] = ()  # (name, strategy or ("nargs+", strategy), required)
    flags: tuple[str, ...] = ()


LIVE = ("--at-next-login",)
SPECS = [
    Spec(
        ("subscriber", "add"),
        (USERS,),
        (("--realm", REALMS, False), ("--static", ("+", IPS), False), ("--class", CLASSES, False), ("--note", NOTES, False)),
        LIVE,
    ),
    Spec(("subscriber", "show"), (USERS,)),
    Spec(("subscriber", "list"), (), (("--realm", REALMS, False), ("--limit", COUNTS, False), ("--offset", COUNTS, False))),
    Spec(("subscriber", "find"), (), (("--ip", IPS, True),)),
    Spec(("subscriber", "set-static"), (USERS, (IPS, 3)), (), LIVE),
    Spec(("subscriber", "set-dynamic"), (USERS,), (), LIVE),
    Spec(("subscriber", "set-class"), (USERS, SET_CLASSES), (), LIVE),
    Spec(("subscriber", "set-note"), (USERS, NOTES)),
    Spec(("subscriber", "set-realm"), (USERS, REALMS), (), LIVE),
    Spec(("subscriber", "delete"), (USERS,), (("--reason", REASONS, True),), LIVE),
    Spec(
        ("subscriber", "exempt"),
        (USERS,),
        (("--reason", REASONS, True), ("--until", DATES, False), ("--for", DURATIONS, False)),
        ("--permanent", "--extend", *LIVE),
    ),
    Spec(("subscriber", "unexempt"), (USERS,), (("--reason", REASONS, True),), LIVE),
    Spec(("subscriber", "import"), (CSV_FILES,), (), ("--dry-run", "--update", "--no-header", *LIVE)),
    Spec(("exemptions", "list"), (), (("--expiring-within", DURATIONS, False),)),
    Spec(
        ("realm", "add"),
        (REALMS,),
        (
            ("--class", CLASSES, False),
            ("--model", MODELS, False),
            ("--filter-name", FILTER_NAMES, False),
            ("--note", NOTES, False),
        ),
        LIVE,
    ),
    Spec(("realm", "show"), (REALMS,)),
    Spec(("realm", "list")),
    Spec(("realm", "delete"), (REALMS,), (), LIVE),
    Spec(("realm", "permit-msa"), (REALMS, CIDRS), (("--until", DATES, True),), LIVE),
    Spec(("realm", "revoke-msa"), (REALMS, CIDRS), (), LIVE),
    Spec(("mobile-mta", "add"), (CIDRS,), (("--carrier", CARRIERS, True), ("--note", NOTES, False)), LIVE),
    Spec(("mobile-mta", "remove"), (CIDRS,), (), LIVE),
    Spec(("mobile-mta", "list")),
    Spec(("sessions", "active"), (), (("--user", USERS, False), ("--limit", COUNTS, False))),
    Spec(("sessions", "who-had"), (IPS,), (("--at", DATES, False),)),
    Spec(("sessions", "purge"), (), (("--older-than", DURATIONS, True),)),
    Spec(
        ("policy", "explain"),
        (USERS,),
        (("--framed-ip", IPS, False), ("--nas", NAS, False), ("--profile", PROFILES, False), ("--at", DATES, False)),
    ),
    Spec(
        ("audit",),
        (),
        (("--user", USERS, False), ("--since", DATES, False), ("--action", ACTIONS, False), ("--limit", COUNTS, False)),
    ),
]

COMMAND_WORDS = {w for spec in SPECS for w in spec.path}
GARBAGE = weighted(
    (
        3,
        st.sampled_from(
            ["--", "-", "--unknown", "-x", "--json=1", "--limit", "--reason", "--static", "extra", "--at-next-login", "-c"]
        ),
    ),
    (2, ARBITRARY),
)


def _triggers_help(token: str) -> bool:
    """A token argparse would take for --help or --version (it exits instead of returning)."""
    name = token.split("=", 1)[0]
    if token.startswith("-") and not token.startswith("--"):
        return "h" in token[1:2]
    return len(name) > 2 and ("--help".startswith(name) or "--version".startswith(name))


def _no_help(argv: list[str]) -> list[str]:
    return [("h" if _triggers_help(a) else a) for a in argv]


class Slots:
    """Draws the values of one command line. Mode `clean`: all valid-looking; `one`: valid but for
    one odd value (so that the check for that value, not an earlier one, answers); `wild`: any."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.mode = draw(st.sampled_from(["clean", "clean", "one", "one", "one", "wild", "wild"]))
        self.odd_at = draw(st.integers(0, 4))
        self.n = 0

    def __call__(self, kind: Kind) -> str:
        self.n += 1
        if self.mode == "wild":
            return self.draw(kind.any)
        if self.mode == "one" and self.n - 1 == self.odd_at:
            return self.draw(kind.odd)
        return self.draw(kind.valid)

    def option(self, name: str, kind: Kind | tuple[str, Kind]) -> list[str]:
        if isinstance(kind, tuple):  # nargs="+"
            return [name, *(self(kind[1]) for _ in range(self.draw(st.integers(1, 3))))]
        value = self(kind)
        if value.startswith("-") or self.draw(st.integers(0, 3)) == 0:
            return [f"{name}={value}"]  # the only way to give a value starting with '-'
        return [name, value]


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[list[str], bytes | None]:
    spec = draw(st.sampled_from(SPECS))
    slot = Slots(draw)
    argv = list(spec.path)
    rest: list[list[str]] = []
    for p in spec.positionals:
        if isinstance(p, tuple):
            rest.append([slot(p[0]) for _ in range(draw(st.integers(1, p[1])))])
        else:
            rest.append([slot(p)])
    # a positional is sometimes left out
    if rest and draw(st.integers(0, 19)) == 0:
        rest.pop(draw(st.integers(0, len(rest) - 1)))
    for name, kind, required in spec.options:
        if draw(st.integers(0, 19)) < (19 if required else 7):
            rest.append(slot.option(name, kind))
    for flag in spec.flags:
        if draw(st.integers(0, 3)) == 0:
            rest.append([flag])
    if spec.path == ("subscriber", "exempt") and draw(st.integers(0, 4)):
        # mostly exactly one of --until/--for/--permanent, else argparse refuses before the desk sees it
        kept = draw(st.sampled_from(["--until", "--for", "--permanent"]))
        rest = [r for r in rest if r[0].split("=")[0] not in ("--until", "--for", "--permanent") or r[0].startswith(kept)]
        if not any(r[0].startswith(kept) for r in rest):
            rest.append(
                ["--permanent"] if kept == "--permanent" else slot.option(kept, DATES if kept == "--until" else DURATIONS)
            )
    rest = draw(st.permutations(rest))
    body = [t for group in rest for t in group]
    # global options before the command, between its words, or after it
    bad_config = st.sampled_from(["/nonexistent/op25b.toml", "/", "/dev/null", "op25b\x00.toml", "\udcff.toml", ""])
    for opt, chance in ((["--json"], 5), (slot.option("--actor", ACTORS), 5), (["-c", draw(bad_config)], 1)):
        if draw(st.integers(0, 19)) >= chance:
            continue
        where = draw(st.integers(0, len(argv)))
        if where == len(argv):
            body.extend(opt)
        else:
            argv[where:where] = opt
    argv += body
    if slot.mode != "clean":
        for _ in range(draw(st.integers(0, 12)) // 10):  # now and then a stray token
            argv.insert(draw(st.integers(0, len(argv))), draw(GARBAGE))
    csv = draw(csv_contents(slot.mode)) if any(a == CSV_MARK or a == "-" for a in argv) else None
    return _no_help(argv), csv


def _maybe_empty(kind: Kind) -> Kind:
    return Kind(weighted((1, st.just("")), (2, kind.valid)), kind.odd)


CSV_FIELD = {
    "username": USERS,
    "realm": _maybe_empty(REALMS),
    "ip_type": values(["dynamic", "static", ""], ["Static", "both", "\x00"]),
    "static_addresses": Kind(
        weighted((2, st.just("")), (2, IPS.valid), (1, st.lists(IPS.valid, max_size=3).map(" ".join))), IPS.odd
    ),
    "class": _maybe_empty(CLASSES),
    "note": _maybe_empty(NOTES),
}
CSV_COLUMNS = list(CSV_FIELD)
ANY_FIELD = Kind(st.just(""), ARBITRARY)


@st.composite
def csv_contents(draw: st.DrawFn, mode: str) -> bytes:
    if mode != "clean" and draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"] + ([" "] if mode != "clean" else [])))
    if mode == "clean":
        columns = ["username", *draw(st.lists(st.sampled_from(CSV_COLUMNS[1:]), unique=True, max_size=5))]
    else:
        columns = draw(st.lists(st.sampled_from([*CSV_COLUMNS, "bogus", "USERNAME", ""]), min_size=1, max_size=7))
        if draw(st.booleans()):
            columns = ["username", *columns]
    lines = [delimiter.join(columns)] if mode == "clean" or draw(st.integers(0, 4)) else []
    for n in range(draw(st.integers(0, 4))):
        wild = mode == "wild" or (mode == "one" and n == 0)
        fields = [draw((CSV_FIELD.get(c, ANY_FIELD)).any if wild else CSV_FIELD.get(c, ANY_FIELD).valid) for c in columns]
        if wild and draw(st.integers(0, 5)) == 0:
            fields.append(draw(ARBITRARY))
        if draw(st.integers(0, 5)) == 0:
            fields = [f'"{f}"' for f in fields]
        lines.append(delimiter.join(fields))
    body = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n"]))
    try:
        data = body.encode("utf-8", "surrogateescape")  # \udc80-\udcff: the bytes they stand for
    except UnicodeEncodeError:
        data = body.encode("utf-8", "surrogatepass")  # other lone surrogates: CESU-ish garbage
    extra = draw(st.integers(0, 7)) if mode != "clean" else 7
    if extra == 0:
        data = b"\xef\xbb\xbf" + data
    elif extra == 1:
        data += draw(st.binary(min_size=1, max_size=8))
    elif extra == 2:
        data = body.encode("utf-16", "surrogatepass")
    return data


# --- the fuzz tests -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict[str, Backend]]:
    """One seeded database per backend for the whole module (each command runs on the seeded rows:
    they are put back after a command that changed them)."""
    made: dict[str, Backend] = {}

    class Lazy(dict[str, Backend]):
        def __missing__(self, kind: str) -> Backend:
            root = tmp_path_factory.mktemp(kind)
            pg = request.getfixturevalue("postgres_url") if kind == "postgresql" else None
            made[kind] = self[kind] = Backend(kind, root, pg)
            return made[kind]

    yield Lazy()
    for backend in made.values():
        backend.close()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _check(backend: Backend, survey: Survey, argv: list[str], csv: bytes | None) -> Run:
    before = backend.prepare()
    run = backend.run(argv, csv)
    after = backend.snapshot()
    backend.changed(after)
    survey.counts["commands"] += 1
    found = problems(run, before, after)
    if run.code is None:
        survey.counts["traceback"] += 1
    else:
        survey.counts[str(run.code)] += 1
        if found:
            survey.counts["bad"] += 1
    if found:
        survey.record(argv, csv, *found)
    return run


FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=SEED_ENV is None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def seeded(f: Callable[..., None]) -> Callable[..., None]:
    return hypothesis_seed(int(SEED_ENV))(f) if SEED_ENV is not None else f


@pytest.mark.parametrize("kind", BACKENDS)
def test_fuzz_any_command_line(backends: dict[str, Backend], kind: str) -> None:
    """Generated command lines: no traceback, one error line, and a refusal changes nothing."""
    backend = backends[kind]
    survey = Survey(kind)

    @seeded
    @settings(FUZZ_SETTINGS, max_examples=SQLITE_EXAMPLES if kind == "sqlite" else POSTGRES_EXAMPLES)
    @given(command_lines())
    def prop(case: tuple[list[str], bytes | None]) -> None:
        _check(backend, survey, *case)

    prop()
    print(survey.summary())
    assert not survey.found, survey.report()


def _same(run: Run, backend: Backend) -> tuple[int | None, str]:
    err = run.err.replace(str(backend.config), "<config>").replace(str(backend.root), "<dir>")
    return run.code, err


def test_fuzz_same_answer_on_both_backends(backends: dict[str, Backend]) -> None:
    """The same command line: the same exit status and error line on SQLite and PostgreSQL."""
    lite, pg = backends["sqlite"], backends["postgresql"]
    survey = Survey("both")

    @seeded
    @settings(FUZZ_SETTINGS, max_examples=DIFFERENTIAL_EXAMPLES)
    @given(command_lines())
    def prop(case: tuple[list[str], bytes | None]) -> None:
        argv, csv = case
        a = _check(lite, survey, argv, csv)
        b = _check(pg, survey, argv, csv)
        if a.code is not None and b.code is not None and _same(a, lite) != _same(b, pg):
            survey.record(argv, csv, "sqlite and postgresql differ", f"sqlite: {_same(a, lite)}\npostgresql: {_same(b, pg)}")

    prop()
    print(survey.summary())
    assert not survey.found, survey.report()


def test_fuzz_malformed_values_refused_with_the_database_down(backends: dict[str, Backend], tmp_path: Path) -> None:
    """A command refused as malformed (exit 2) on a live database is refused the same way, exit 2
    with the same line, when the database is down: the limits are checked before the database."""
    lite = backends["sqlite"]
    down = Backend("down", tmp_path / "down")
    survey = Survey("down")

    @seeded
    @settings(FUZZ_SETTINGS, max_examples=DOWN_EXAMPLES)
    @given(command_lines())
    def prop(case: tuple[list[str], bytes | None]) -> None:
        argv, csv = case
        a = _check(lite, survey, argv, csv)
        if a.code != 2:
            return
        c = down.run(argv, csv)
        if c.code is None:
            survey.record(argv, csv, f"traceback {type(c.exc).__name__} with the database down", c.tb[-600:])
        elif _same(c, down) != _same(a, lite):
            survey.record(
                argv, csv, "malformed, but not refused before the database", f"up:   {a.err.strip()}\ndown: {c.err.strip()}"
            )

    prop()
    print(survey.summary())
    assert not survey.found, survey.report()


# --- the tricky values, one by one: the same limits on both backends -----------------------------------------

U = "alice@isp.example"
LIMITS: list[tuple[str, list[str]]] = []


def _case(name: str, *argv: str) -> None:
    LIMITS.append((name, list(argv)))


for _value in (
    "2027-02-30",
    "9999-12-31",
    "0001-01-01",
    "9000-01-01",
    "1969-12-31",
    "0001-01-01T00:00+01:00",
    "9999-12-31T23:59-23:59",
    "x\x00",
    "\udcff",
):
    _case(f"exempt-until-{_value!a}", "subscriber", "exempt", U, "--reason", "r", "--until", _value)
    _case(f"permit-until-{_value!a}", "realm", "permit-msa", "isp-b.example", "10.9.0.0/16", "--until", _value)
    _case(f"audit-since-{_value!a}", "audit", "--since", _value)
    _case(f"who-had-at-{_value!a}", "sessions", "who-had", "100.64.0.5", "--at", _value)
    _case(f"explain-at-{_value!a}", "policy", "explain", U, "--at", _value)
for _value in ("99999999999d", "0d", "-1d", "1.5d", "36526d", "999999999w", "30 days", "\x00", "\udcff"):
    _case(f"exempt-for-{_value!a}", "subscriber", "exempt", U, "--reason", "r", f"--for={_value}")
    _case(f"expiring-within-{_value!a}", "exemptions", "list", f"--expiring-within={_value}")
    _case(f"purge-older-than-{_value!a}", "sessions", "purge", f"--older-than={_value}")
for _value in ("256.1.1.1", "192.0.2.300", "1.2.3", "fe80::1%" + "e" * 70, "\x00", "\udcff", "1" * 5000):
    _case(f"set-static-{_value[:20]!a}", "subscriber", "set-static", U, _value)
    _case(f"add-static-{_value[:20]!a}", "subscriber", "add", "eve@isp.example", "--static", _value)
    _case(f"find-{_value[:20]!a}", "subscriber", "find", f"--ip={_value}")
    _case(f"who-had-{_value[:20]!a}", "sessions", "who-had", _value)
    _case(f"framed-ip-{_value[:20]!a}", "policy", "explain", U, f"--framed-ip={_value}")
for _value in ("10.0.0.0/33", "10.0.0.1/24", "198.51.100.0/-1", "2001:db8::/129", "\x00", "\udcff", "1" * 5000):
    _case(f"permit-cidr-{_value[:20]!a}", "realm", "permit-msa", "isp-b.example", _value, "--until", "2027-01-31")
    _case(f"revoke-cidr-{_value[:20]!a}", "realm", "revoke-msa", "isp-b.example", _value)
    _case(f"mobile-add-{_value[:20]!a}", "mobile-mta", "add", _value, "--carrier", "c")
    _case(f"mobile-remove-{_value[:20]!a}", "mobile-mta", "remove", _value)
for _value in (str(10**30), "-1", "0", "1000001", "1.5", "\x00"):
    _case(f"list-limit-{_value[:12]!a}", "subscriber", "list", f"--limit={_value}")
    _case(f"active-limit-{_value[:12]!a}", "sessions", "active", f"--limit={_value}")
    _case(f"audit-limit-{_value[:12]!a}", "audit", f"--limit={_value}")
for _value in (str(10**30), "-1", "1000000001"):
    _case(f"list-offset-{_value[:12]!a}", "subscriber", "list", f"--offset={_value}")
# over-long, NUL-bearing and unencodable text in every text option
_TEXT = {"--reason": 1000, "--note": 2000, "--actor": 100, "--carrier": 100, "--filter-name": 100}
for _option, _limit in _TEXT.items():
    for _label, _value in (
        ("over-long", "x" * (_limit + 1)),
        ("nul", "x\x00y"),
        ("surrogate", "x\udcffy"),
        ("control", "x\x1by"),
    ):
        name = f"{_option[2:]}-{_label}"
        if _option == "--reason":
            _case(f"delete-{name}", "subscriber", "delete", U, f"--reason={_value}")
            _case(f"exempt-{name}", "subscriber", "exempt", U, f"--reason={_value}", "--for", "1d")
            _case(f"unexempt-{name}", "subscriber", "unexempt", "carol@isp-b.example", f"--reason={_value}")
        elif _option == "--note":
            _case(f"add-{name}", "subscriber", "add", "eve@isp.example", f"--note={_value}")
            _case(f"set-note-{name}", "subscriber", "set-note", U, _value)
            _case(f"realm-add-{name}", "realm", "add", "new.example", f"--note={_value}")
            _case(f"mobile-add-{name}", "mobile-mta", "add", "10.9.0.0/16", "--carrier", "c", f"--note={_value}")
        elif _option == "--actor":
            _case(f"add-{name}", "subscriber", "add", "eve@isp.example", f"--actor={_value}")
            _case(f"exempt-{name}", "subscriber", "exempt", U, "--reason", "r", "--for", "1d", f"--actor={_value}")
            _case(f"list-{name}", "subscriber", "list", f"--actor={_value}")
        elif _option == "--carrier":
            _case(f"mobile-add-{name}", "mobile-mta", "add", "10.9.0.0/16", f"--carrier={_value}")
        else:
            _case(f"realm-add-{name}", "realm", "add", "new.example", f"--filter-name={_value}")
for _label, _value in (
    ("254-octets", "u" * 242 + "@isp.example"),
    ("254-octets-multibyte", "é" * 127),
    ("5000-chars", "u" * 5000),
    ("nul", "alice\x00@isp.example"),
    ("surrogate", "\udcff@isp.example"),
    ("control", "alice\x1b@isp.example"),
    ("empty", ""),
    ("blank", "   "),
):
    _case(f"user-add-{_label}", "subscriber", "add", _value)
    _case(f"user-show-{_label}", "subscriber", "show", _value)
    _case(f"user-set-note-{_label}", "subscriber", "set-note", _value, "n")
    _case(f"user-delete-{_label}", "subscriber", "delete", _value, "--reason", "r")
    _case(f"user-exempt-{_label}", "subscriber", "exempt", _value, "--reason", "r", "--for", "1d")
    _case(f"user-explain-{_label}", "policy", "explain", _value)
    _case(f"user-audit-{_label}", "audit", f"--user={_value}")
    _case(f"user-active-{_label}", "sessions", "active", f"--user={_value}")
for _label, _value in (
    ("254-chars", "r" * 254),
    ("5000-chars", "r" * 5000),
    ("space", "has space.example"),
    ("at", "a@b"),
    ("nul", "isp\x00.example"),
    ("surrogate", "isp\udcff.example"),
):
    _case(f"realm-add-{_label}", "realm", "add", _value)
    _case(f"realm-show-{_label}", "realm", "show", _value)
    _case(f"realm-delete-{_label}", "realm", "delete", _value)
    _case(f"realm-permit-{_label}", "realm", "permit-msa", _value, "10.9.0.0/16", "--until", "2027-01-31")
    _case(f"realm-list-subs-{_label}", "subscriber", "list", f"--realm={_value}")
    _case(f"realm-set-realm-{_label}", "subscriber", "set-realm", U, _value)
    _case(f"realm-add-sub-{_label}", "subscriber", "add", "eve@isp.example", f"--realm={_value}")
for _argv in (["realm", "add", ""], ["realm", "show", " "], ["realm", "delete", ""], ["subscriber", "set-realm", U, ""]):
    _case(f"realm-empty-{_argv[1]}", *_argv)
# a realm that lower() makes longer (U+0130 lower-cases to two characters), a zoned IPv6 address
# longer than any address column: within the typed limits, but not once stored
_case("realm-add-lower-expands", "realm", "add", "\u0130" * 200)
_case("realm-of-sub-lower-expands", "subscriber", "add", "eve@isp.example", "--realm", "\u0130" * 200)
_case("set-realm-lower-expands", "subscriber", "set-realm", U, "\u0130" * 200)
_case("set-static-zoned-63-chars", "subscriber", "set-static", U, "fe80::1%" + "e" * 55)
_case("add-static-zoned-63-chars", "subscriber", "add", "eve@isp.example", "--static", "fe80::1%" + "e" * 55)
# `--option=--`: argparse would hand the option an empty list; it is the text "--" (cli/parser.py),
# malformed where a value has a form (texts such as --reason=-- are taken as written: see below)
for _argv in (
    ["subscriber", "find", "--ip=--"],
    ["subscriber", "list", "--limit=--"],
    ["subscriber", "exempt", U, "--reason", "r", "--until=--"],
    ["subscriber", "exempt", U, "--reason", "r", "--for=--"],
    ["sessions", "who-had", "100.64.0.5", "--at=--"],
    ["audit", "--since=--"],
    ["audit", "--action=--"],
    ["exemptions", "list", "--expiring-within=--"],
    ["policy", "explain", U, "--framed-ip=--"],
    ["policy", "explain", U, "--profile=--"],
):
    _option = next(a for a in _argv if a.endswith("=--"))[2:-3]
    _case(f"double-dash-value-{_option}-{'-'.join(a for a in _argv[:2] if not a.startswith('-'))}", *_argv)
# an argument argparse does not expect, echoed in its message: still one line
_case("unrecognized-newline", "audit", "x\ny")
_case("unrecognized-carriage-return", "audit", "--limit", "5", "x\ry")
_case("unrecognized-option-newline", "subscriber", "show", U, "--bogus\nx")
_case("extra-positional-newline", "subscriber", "show", U, "b\nc")
_case("import-nul-path", "subscriber", "import", "subs\x00.csv")
_case("import-surrogate-path", "subscriber", "import", "/nonexistent/\udcff.csv")
_case("import-directory", "subscriber", "import", "/")
_case("action-nul", "audit", "--action=subscriber\x00")
_case("profile-nul", "policy", "explain", U, "--profile=juniper\x00")


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("case", LIMITS, ids=[c[0] for c in LIMITS])
def test_tricky_value_is_refused_the_same_on_both_backends(
    backends: dict[str, Backend], kind: str, case: tuple[str, list[str]]
) -> None:
    _, argv = case
    backend = backends[kind]
    before = backend.prepare()
    run = backend.run(argv)
    after = backend.snapshot()
    backend.changed(after)
    assert run.code is not None, f"traceback for {argv!r}:\n{run.tb}"
    assert run.code == 2, f"exit {run.code} for {argv!r}, stderr: {run.err!r}"
    lines = error_lines(run.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), repr(run.err)
    assert not lines[0].startswith("error: database "), lines[0]
    assert after == before


AWKWARD = [
    # (id, argv): values whose right exit status (1 or 2) is arguable, but never a traceback
    ("config-nul", ["-c", "op25b\x00.toml", "subscriber", "list"]),
    ("config-nul-after-command", ["subscriber", "list", "-c", "op25b\x00.toml"]),
    ("config-surrogate", ["-c", "/nonexistent/\udcff.toml", "subscriber", "list"]),
    ("config-directory", ["-c", "/", "subscriber", "list"]),
    ("config-empty", ["-c", "", "subscriber", "list"]),
    ("config-long", ["-c", "x" * 5000, "subscriber", "list"]),
    ("nas-nul", ["policy", "explain", U, "--nas=bng1\x00"]),
    ("nas-surrogate", ["policy", "explain", U, "--nas=\udcff"]),
    ("nas-double-dash", ["policy", "explain", U, "--nas=--"]),
    ("import-too-long-path", ["subscriber", "import", "x" * 5000]),
]


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("case", AWKWARD, ids=[c[0] for c in AWKWARD])
def test_awkward_value_gives_one_error_line(backends: dict[str, Backend], kind: str, case: tuple[str, list[str]]) -> None:
    _, argv = case
    backend = backends[kind]
    before = backend.prepare()
    run = backend.run(argv)  # run() puts its own -c first: a -c in argv overrides it
    after = backend.snapshot()
    backend.changed(after)
    assert run.code is not None, f"traceback for {argv!r}:\n{run.tb}"
    assert run.code in (1, 2), f"exit {run.code} for {argv!r}, stderr: {run.err!r}"
    lines = error_lines(run.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), repr(run.err)
    assert after == before


H = "username,realm,ip_type,static_addresses,class,note\n"
CSV_CASES = [
    # (id, file content): each has one malformed line; the import is refused (exit 2), nothing written
    ("nul-username", H + "a\x00b@isp.example,,,,,\n"),
    ("254-octet-username", H + "u" * 242 + "@isp.example,,,,,\n"),
    ("254-char-realm", H + "e@isp.example," + "r" * 254 + ",,,,\n"),
    ("realm-lower-expands", H + "e@isp.example," + "\u0130" * 200 + ",,,,\n"),
    ("zoned-static-63-chars", H + "e@isp.example,,static,fe80::1%" + "e" * 55 + ",,\n"),
    ("bad-static", H + "e@isp.example,,static,300.1.2.3,,\n"),
    ("2001-char-note", H + "e@isp.example,,,,," + "n" * 2001 + "\n"),
    ("nul-note", H + "e@isp.example,,,,,a\x00b\n"),
    ("bad-class", H + "e@isp.example,,,,partial,\n"),
    ("unclosed-quote", H + '"e@isp.example,,,,,\n'),
    ("huge-field", H + "e@isp.example,,,,," + "n" * 200_000 + "\n"),
    ("duplicate-in-file", H + "e@isp.example,,,,,\nE@isp.example,,,,,\n"),
    ("latin-1", (H + "\u00e9@isp.example,,,,,\n").encode("latin-1")),
    ("utf-16", (H + "e@isp.example,,,,,\n").encode("utf-16")),
    ("garbage-bytes", b"\xff\xfe\x00\x01garbage\n"),
    ("nul-in-header", "user\x00name\n"),
]


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("case", CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_malformed_csv_is_refused_the_same_on_both_backends(
    backends: dict[str, Backend], kind: str, stdin: bool, case: tuple[str, str | bytes]
) -> None:
    _, content = case
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    backend = backends[kind]
    before = backend.prepare()
    argv = ["subscriber", "import", "-" if stdin else CSV_MARK]
    run = backend.run(argv, data)
    after = backend.snapshot()
    backend.changed(after)
    assert run.code is not None, f"traceback for {argv!r} of {data[:200]!r}:\n{run.tb}"
    assert run.code == 2, f"exit {run.code}, stderr: {run.err!r}"
    lines = error_lines(run.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), repr(run.err)
    assert after == before


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_seeded_database_is_what_the_fuzzing_expects(backends: dict[str, Backend], kind: str) -> None:
    """The fuzzing reaches existing rows: plain valid commands on the seed succeed."""
    backend = backends[kind]
    for argv in (
        ["subscriber", "show", "ALICE@isp.example"],
        ["realm", "show", "isp-b.example"],
        ["sessions", "who-had", "100.64.0.5"],
    ):
        backend.prepare()
        run = backend.run(argv)
        assert run.code == 0, (argv, run.err, run.tb)


@pytest.mark.parametrize("kind", BACKENDS)
def test_double_dash_text_is_taken_as_written(backends: dict[str, Backend], kind: str) -> None:
    """`--reason=--` is the reason "--", not an empty list (argparse's reading of a lone '--')."""
    backend = backends[kind]
    backend.prepare()
    run = backend.run(["--actor=--", "subscriber", "set-note", U, "checked by phone"])
    assert run.code == 0, run
    run = backend.run(["subscriber", "delete", U, "--reason=--", "--json"])
    assert run.code == 0, run
    run = backend.run(["audit", "--json", "--action", "subscriber"])
    entries = json.loads(run.out[0])["entries"]
    assert [(e["action"], e["actor"], e["reason"]) for e in entries[-2:]] == [
        ("subscriber.set-note", "--", None),
        ("subscriber.delete", entries[-1]["actor"], "--"),
    ]
