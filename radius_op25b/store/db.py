"""Engines, sessions and migrations: the only place that knows SQLAlchemy and Alembic exist
underneath the store; their errors leave this module as StoreUnavailable or SchemaOutOfDate.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from radius_op25b.errors import ConfigError, SchemaOutOfDate, StoreUnavailable

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# Alembic is imported where migrations are read: it costs every other command ~0.3 s of start-up.


def migrations_path() -> Path:
    """migrations/ ships inside the package; in a plain checkout it is at the repository top."""
    try:
        path = Path(str(resources.files("radius_op25b.migrations")))
        if (path / "env.py").exists():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, pre_ping: bool = True) -> Engine:
    """`pre_ping=False` saves a round trip per checkout; a dead connection then fails its first
    statement (StoreUnavailable) and the pool replaces it."""
    check_url(url)
    try:
        options: dict[str, Any] = {"pool_pre_ping": pre_ping}
        if url.startswith("postgresql"):
            # A dead server must fail fast: the proxy falls back to cached decisions meanwhile.
            # TCP keepalives: a connection whose peer vanished (a partition, no RST) errors
            # within about 20 s instead of the kernel's 15 minutes - the policy watcher's
            # LISTEN connection then reconnects and reloads.
            options["connect_args"] = {
                "connect_timeout": 2,
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 3,
                "keepalives_count": 3,
            }
        engine = create_engine(url, **options)
    except Exception as exc:  # a missing driver, an unknown option: the message names no password
        raise StoreUnavailable(f"database url {redact_url(url)}: {type(exc).__name__}: {_first_line(exc)}") from None
    if engine.dialect.name == "sqlite":
        _create_private(engine.url.database)
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _create_private(path: str | None) -> None:
    """Create the SQLite file 0600 before SQLite does (with the umask's 0644): it holds who had
    which address."""
    if not path or path == ":memory:" or path.startswith("file:") or Path(path).exists():
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        pass  # a missing folder or no permission: SQLite's own open says so, with its message


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def redact_url(url: str) -> str:
    """The URL without its password, for messages; for one that does not parse, its scheme only
    (any other part of it may be a piece of the password)."""
    from sqlalchemy.engine import make_url

    if _ambiguous_credentials(url):
        return _scheme(url) + "://<unparseable>"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return _scheme(url) + "://<unparseable>"


def _scheme(url: str) -> str:
    scheme = url.partition("://")[0] if "://" in url else ""
    return scheme if scheme.replace("+", "").replace("_", "").isalnum() else "<unknown scheme>"


def _ambiguous_credentials(url: str) -> bool:
    """More than one '@' before the host: a password with an unencoded '@' in it, which the
    parser would split somewhere inside the password."""
    authority = url.partition("://")[2].partition("/")[0]
    return authority.count("@") > 1


def check_url(url: str) -> None:
    """Refuse a URL that cannot be parsed, naming no part of it but its scheme."""
    from sqlalchemy.engine import make_url

    hint = "write '@', ':' and '/' in the password percent-encoded (%40, %3A, %2F)"
    if _ambiguous_credentials(url):
        raise ConfigError(f"database url {redact_url(url)}: more than one '@' before the host; {hint}")
    try:
        make_url(url)
    except Exception:
        raise ConfigError(f"database url {redact_url(url)} cannot be parsed; {hint}") from None


@contextlib.contextmanager
def unavailable_as_store_error(engine: Engine) -> Iterator[None]:
    """A lost or refused connection leaves here as StoreUnavailable; a SQL bug stays a bug.
    Also for work on the driver's own connection (the policy watcher's LISTEN), whose errors
    are the driver's, not SQLAlchemy's."""
    dbapi = engine.dialect.dbapi
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not isinstance(exc, OperationalError):
            raise
        raise StoreUnavailable(f"database {redact_url(str(engine.url))}: {_first_line(exc)}") from exc
    except (dbapi.OperationalError, dbapi.InterfaceError) as exc:
        raise StoreUnavailable(f"database {redact_url(str(engine.url))}: {_first_line(exc)}") from exc


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error; DB failures become StoreUnavailable."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with unavailable_as_store_error(engine), factory.begin() as session:
        yield session


_readers: dict[int, tuple[Engine, Engine]] = {}


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """Read-only lookups in autocommit mode: no BEGIN/COMMIT round trips around them."""
    pair = _readers.get(id(engine))
    if pair is None or pair[0] is not engine:
        # Made once per engine: execution_options() builds a new engine proxy each call.
        pair = _readers[id(engine)] = (engine, engine.execution_options(isolation_level="AUTOCOMMIT"))
    with unavailable_as_store_error(engine), Session(pair[1]) as session:
        yield session


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc)) or type(exc).__name__
    return text.strip().splitlines()[0]


def alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_path()))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    try:
        command.upgrade(alembic_config(engine), revision)
    except OperationalError as exc:
        raise StoreUnavailable(f"database {redact_url(str(engine.url))}: {_first_line(exc)}") from exc


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise StoreUnavailable(f"database {redact_url(str(engine.url))}: {_first_line(exc)}") from exc


# The newest revision in migrations/versions. Every command checks the schema against it before
# it works, and importing alembic to ask would double a read command's start-up time;
# tests/test_schema_head.py keeps this equal to alembic's own head.
HEAD_REVISION = "0004"


def stored_revision(engine: Engine) -> str | None:
    """The revision the database says it is at (alembic's version table), without alembic."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise StoreUnavailable(f"database {redact_url(str(engine.url))}: {_first_line(exc)}") from exc


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at head, and say how to fix it."""
    current = stored_revision(engine)
    if current != HEAD_REVISION:
        state = "is empty" if current is None else f"is at revision {current}"
        raise SchemaOutOfDate(f"database {redact_url(str(engine.url))} {state}, not {HEAD_REVISION}; run `op25b db upgrade`")
