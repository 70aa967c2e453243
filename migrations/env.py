"""Alembic environment: runs on the engine `op25b db upgrade` hands in, or, for the `alembic`
command itself (alembic.ini at the repo top), on OP25B_DATABASE_URL / the config's database.url.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from radius_op25b.store.models import Base

target_metadata = Base.metadata


def _engine() -> Engine:
    engine = context.config.attributes.get("engine")
    if engine is not None:
        return engine  # type: ignore[no-any-return]
    import os

    from radius_op25b.core.config import load_config
    from radius_op25b.store.db import make_engine

    return make_engine(os.environ.get("OP25B_DATABASE_URL") or load_config().database_url)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by table copy
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `op25b db upgrade`")
run_migrations_online()
