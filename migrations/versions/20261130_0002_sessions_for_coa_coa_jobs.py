"""sessions for CoA, coa jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 00:38:56.478803
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import radius_op25b.store.models


revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('coa_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('username_key', sa.String(length=253), nullable=False),
    sa.Column('cause', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('next_attempt_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('claimed_until', radius_op25b.store.models.UTCDateTime(), nullable=True),
    sa.Column('finished_at', radius_op25b.store.models.UTCDateTime(), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=True),
    sa.Column('result', sa.String(length=64), nullable=True),
    sa.Column('error_cause', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'sending', 'done', 'failed')", name=op.f('ck_coa_jobs_status')),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_coa_jobs_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coa_jobs'))
    )
    with op.batch_alter_table('coa_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coa_jobs_session_id'), ['session_id'], unique=False)
        batch_op.create_index('ix_coa_jobs_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_coa_jobs_username_key'), ['username_key'], unique=False)

    with op.batch_alter_table('exemptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expiry_pushed_at', radius_op25b.store.models.UTCDateTime(), nullable=True))

    with op.batch_alter_table('realm_msa_permits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expiry_pushed_at', radius_op25b.store.models.UTCDateTime(), nullable=True))

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nas_ip_address', sa.String(length=45), nullable=True))
        batch_op.add_column(sa.Column('nas_identifier', sa.String(length=253), nullable=True))
        batch_op.add_column(sa.Column('nas_port_id', sa.String(length=253), nullable=True))
        batch_op.create_index('ix_sessions_delegated_ipv6_prefix', ['delegated_ipv6_prefix'], unique=False)
        batch_op.create_index('ix_sessions_framed_ipv6_prefix', ['framed_ipv6_prefix'], unique=False)
        batch_op.create_index('ix_sessions_nas_address_stopped_at', ['nas_address', 'stopped_at'], unique=False)
        batch_op.create_index('ix_sessions_stopped_at', ['stopped_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_stopped_at')
        batch_op.drop_index('ix_sessions_nas_address_stopped_at')
        batch_op.drop_index('ix_sessions_framed_ipv6_prefix')
        batch_op.drop_index('ix_sessions_delegated_ipv6_prefix')
        batch_op.drop_column('nas_port_id')
        batch_op.drop_column('nas_identifier')
        batch_op.drop_column('nas_ip_address')

    with op.batch_alter_table('realm_msa_permits', schema=None) as batch_op:
        batch_op.drop_column('expiry_pushed_at')

    with op.batch_alter_table('exemptions', schema=None) as batch_op:
        batch_op.drop_column('expiry_pushed_at')

    with op.batch_alter_table('coa_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coa_jobs_username_key'))
        batch_op.drop_index('ix_coa_jobs_status_next_attempt_at')
        batch_op.drop_index(batch_op.f('ix_coa_jobs_session_id'))

    op.drop_table('coa_jobs')
