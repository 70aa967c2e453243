"""store.db.HEAD_REVISION, which every command checks the schema against, is alembic's head."""

from __future__ import annotations

from radius_op25b.store import db


def test_head_revision_is_alembics_head(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert db.head_revision(engine) == db.HEAD_REVISION


def test_the_schema_check_reads_the_stored_revision(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from radius_op25b.errors import SchemaOutOfDate

    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(SchemaOutOfDate, match="is empty, not"):
        db.require_current_schema(engine)
    db.upgrade(engine, "0001")
    with pytest.raises(SchemaOutOfDate, match="is at revision 0001, not 0004; run `op25b db upgrade`"):
        db.require_current_schema(engine)
    db.upgrade(engine)
    assert db.stored_revision(engine) == db.current_revision(engine) == db.HEAD_REVISION
    db.require_current_schema(engine)
