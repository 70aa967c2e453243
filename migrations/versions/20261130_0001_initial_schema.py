"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-30 00:16:37.810342
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import radius_op25b.store.models


revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=253), nullable=False),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_target'), ['target'], unique=False)

    op.create_table('mobile_mta_blocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cidr', sa.String(length=49), nullable=False),
    sa.Column('carrier', sa.String(length=100), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mobile_mta_blocks')),
    sa.UniqueConstraint('cidr', name=op.f('uq_mobile_mta_blocks_cidr'))
    )
    op.create_table('realms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=253), nullable=False),
    sa.Column('default_class', sa.String(length=8), nullable=True),
    sa.Column('model', sa.String(length=1), nullable=True),
    sa.Column('filter_name', sa.String(length=100), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint("default_class IN ('full', 'mobile', 'none')", name=op.f('ck_realms_default_class')),
    sa.CheckConstraint("model IN ('A', 'B', 'C')", name=op.f('ck_realms_model')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_realms')),
    sa.UniqueConstraint('name', name=op.f('uq_realms_name'))
    )
    op.create_table('sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('nas_name', sa.String(length=100), nullable=False),
    sa.Column('nas_address', sa.String(length=45), nullable=False),
    sa.Column('acct_session_id', sa.String(length=253), nullable=False),
    sa.Column('username', sa.String(length=253), nullable=False),
    sa.Column('username_key', sa.String(length=253), nullable=False),
    sa.Column('framed_ip', sa.String(length=45), nullable=True),
    sa.Column('framed_ipv6_prefix', sa.String(length=49), nullable=True),
    sa.Column('delegated_ipv6_prefix', sa.String(length=49), nullable=True),
    sa.Column('class_applied', sa.String(length=8), nullable=True),
    sa.Column('started_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('stopped_at', radius_op25b.store.models.UTCDateTime(), nullable=True),
    sa.Column('terminate_cause', sa.String(length=64), nullable=True),
    sa.Column('input_octets', sa.BigInteger(), nullable=False),
    sa.Column('output_octets', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions')),
    sa.UniqueConstraint('nas_address', 'acct_session_id', name=op.f('uq_sessions_nas_address'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_framed_ip_started_at', ['framed_ip', 'started_at'], unique=False)
        batch_op.create_index('ix_sessions_username_key', ['username_key'], unique=False)

    op.create_table('subscribers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=253), nullable=False),
    sa.Column('username_key', sa.String(length=253), nullable=False),
    sa.Column('realm', sa.String(length=253), nullable=True),
    sa.Column('ip_type', sa.String(length=8), nullable=False),
    sa.Column('static_addresses', sa.JSON(), nullable=False),
    sa.Column('class_override', sa.String(length=8), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint("class_override IN ('full', 'mobile', 'none')", name=op.f('ck_subscribers_class_override')),
    sa.CheckConstraint("ip_type IN ('dynamic', 'static')", name=op.f('ck_subscribers_ip_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscribers')),
    sa.UniqueConstraint('username_key', name=op.f('uq_subscribers_username_key'))
    )
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscribers_realm'), ['realm'], unique=False)

    op.create_table('exemptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('created_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', radius_op25b.store.models.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', radius_op25b.store.models.UTCDateTime(), nullable=True),
    sa.Column('revoked_by', sa.String(length=100), nullable=True),
    sa.Column('revoke_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_exemptions_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exemptions'))
    )
    with op.batch_alter_table('exemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exemptions_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('realm_msa_permits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('realm_id', sa.Integer(), nullable=False),
    sa.Column('cidr', sa.String(length=49), nullable=False),
    sa.Column('permit_until', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('created_at', radius_op25b.store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['realm_id'], ['realms.id'], name=op.f('fk_realm_msa_permits_realm_id_realms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_realm_msa_permits')),
    sa.UniqueConstraint('realm_id', 'cidr', name=op.f('uq_realm_msa_permits_realm_id'))
    )


def downgrade() -> None:
    op.drop_table('realm_msa_permits')
    with op.batch_alter_table('exemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exemptions_subscriber_id'))

    op.drop_table('exemptions')
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscribers_realm'))

    op.drop_table('subscribers')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_username_key')
        batch_op.drop_index('ix_sessions_framed_ip_started_at')

    op.drop_table('sessions')
    op.drop_table('realms')
    op.drop_table('mobile_mta_blocks')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_target'))
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
