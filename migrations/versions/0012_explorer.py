"""webhook explorer: search keys and item outcomes of landed webhooks, rejected deliveries

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 12:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('whatsapp_webhook_keys',
    sa.Column('kind', sa.String(length=16), nullable=False, comment='wamid, wa_id, user_id, phone_number_id, waba_id or field.'),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('webhook_log_id', BigId, nullable=False, comment='The webhook whose body names this value (no foreign key: a derived index, checked by nothing on the hot path).'),
    sa.CheckConstraint("kind IN ('wamid', 'wa_id', 'user_id', 'phone_number_id', 'waba_id', 'field')", name=op.f('ck_whatsapp_webhook_keys_kind')),
    sa.PrimaryKeyConstraint('kind', 'value', 'webhook_log_id', name=op.f('pk_whatsapp_webhook_keys'))
    )
    op.create_table('whatsapp_webhook_items',
    sa.Column('webhook_log_id', BigId, nullable=False),
    sa.Column('position', sa.Integer(), nullable=False, comment='Item order in the body (0-based).'),
    sa.Column('place', sa.String(length=255), nullable=True, comment='Where it is, e.g. entry[0].changes[1].messages[0].'),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('error_kind', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True, comment="The failure's message (never payload values)."),
    sa.Column('phone_number_id', sa.String(length=64), nullable=True, comment='A message or status item: the number it belongs to.'),
    sa.Column('wamid', sa.String(length=255), nullable=True, comment="A message or status item: its wamid (the trace's rows are found by it)."),
    sa.Column('attempt', sa.Integer(), nullable=False, comment='whatsapp_webhook_logs.attempts of the claim that wrote it.'),
    sa.CheckConstraint("result IN ('processed', 'ignored', 'failed')", name=op.f('ck_whatsapp_webhook_items_result')),
    sa.ForeignKeyConstraint(['webhook_log_id'], ['whatsapp_webhook_logs.id'], name=op.f('fk_whatsapp_webhook_items_webhook_log_id_whatsapp_webhook_logs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('webhook_log_id', 'position', name=op.f('pk_whatsapp_webhook_items'))
    )
    op.create_table('whatsapp_webhook_rejections',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False, comment='Arrival (UTC); for an aggregate row, the start of its minute.'),
    sa.Column('reason', sa.String(length=32), nullable=False, comment='missing, malformed, mismatch (signature) or too_large.'),
    sa.Column('ip', sa.String(length=64), nullable=True, comment='Client address; NULL on an aggregate row.'),
    sa.Column('body_size', sa.BigInteger(), nullable=True, comment='Bytes read (too_large: the declared or read size); aggregate: total.'),
    sa.Column('body_sha256', sa.String(length=64), nullable=True, comment='Hex SHA-256 of the body (never the body); NULL when not fully read.'),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False, comment='1 for a recorded delivery; >1 for the deliveries past the per-minute cap, aggregated.'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_webhook_rejections'))
    )
    op.create_index('ix_whatsapp_webhook_rejections_received_at', 'whatsapp_webhook_rejections', ['received_at'], unique=False)
    op.create_index('ix_whatsapp_webhook_logs_received_at', 'whatsapp_webhook_logs', ['received_at'], unique=False)
    op.create_index(
        'ix_whatsapp_webhook_logs_error_kind', 'whatsapp_webhook_logs', ['error_kind', 'id'], unique=False,
        postgresql_where=sa.text('error_kind IS NOT NULL'), sqlite_where=sa.text('error_kind IS NOT NULL'),
    )
    op.create_index(
        'ix_whatsapp_messages_group_thread', 'whatsapp_messages', ['organization_id', 'group_id'], unique=False,
        postgresql_where=sa.text('group_id IS NOT NULL'), sqlite_where=sa.text('group_id IS NOT NULL'),
    )
    op.create_index(
        'ix_whatsapp_messages_org_sort_time', 'whatsapp_messages',
        ['organization_id', sa.text('coalesce(provider_timestamp, received_at)'), 'id'], unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_whatsapp_messages_org_sort_time', table_name='whatsapp_messages')
    op.drop_index('ix_whatsapp_messages_group_thread', table_name='whatsapp_messages')
    op.drop_index('ix_whatsapp_webhook_logs_error_kind', table_name='whatsapp_webhook_logs')
    op.drop_index('ix_whatsapp_webhook_logs_received_at', table_name='whatsapp_webhook_logs')
    op.drop_index('ix_whatsapp_webhook_rejections_received_at', table_name='whatsapp_webhook_rejections')
    op.drop_table('whatsapp_webhook_rejections')
    op.drop_table('whatsapp_webhook_items')
    op.drop_table('whatsapp_webhook_keys')
