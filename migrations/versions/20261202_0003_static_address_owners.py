"""static address owners: one subscriber per static address; the audit log keeps the reason

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    table = op.create_table(
        "static_addresses",
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_static_addresses_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_static_addresses")),
    )
    with op.batch_alter_table("static_addresses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_static_addresses_subscriber_id"), ["subscriber_id"], unique=False)

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))

    # Existing static subscribers: the oldest holder of an address keeps it; a later duplicate is
    # reported (its decision is unchanged: the list on the subscriber stays as it was).
    rows = op.get_bind().execute(
        sa.text("SELECT id, username, static_addresses FROM subscribers WHERE ip_type = 'static' ORDER BY id")
    ).all()
    owners: dict[str, str] = {}
    batch = []
    for sub_id, username, addresses in rows:
        if isinstance(addresses, str):
            addresses = json.loads(addresses)
        for address in addresses or []:
            if address in owners:
                log.warning("static address %s of %s is already owned by %s: left with the first", address, username, owners[address])
                continue
            owners[address] = username
            batch.append({"address": address, "subscriber_id": sub_id})
    if batch:
        op.bulk_insert(table, batch)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("reason")
    with op.batch_alter_table("static_addresses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_static_addresses_subscriber_id"))
    op.drop_table("static_addresses")
