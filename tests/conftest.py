"""Shared fixtures for every test below tests/: a migrated database on both backends (SQLite file
and the real PostgreSQL), and the FreeRADIUS upstreams of tests/support/freeradius.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from radius_op25b.store import db
from radius_op25b.store.models import Base
from tests.support.freeradius import freeradius_factory, freeradius_upstream  # noqa: F401  (fixtures)
from tests.support.postgres import PG_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private database on the PostgreSQL at 127.0.0.1:5432, migrated once, dropped at the end."""
    name = f"op25b_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - the environment is broken, say how
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable ({exc}); start it or set OP25B_TEST_POSTGRES_URL")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """An empty, migrated database; each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'op25b.db'}"
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)

    def empty() -> None:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    empty()
    yield url
    empty()  # tests on postgres_url itself share this database: leave it as found
    engine.dispose()
