"""coexistence sync state per number and type (from whatsapp_configs); errors kept on messages

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 12:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_CONFIG_COLUMNS = [
    ('history_progress', sa.SmallInteger(), 'Coexistence history sync: highest progress seen (0–100).'),
    ('history_completed_at', sa.DateTime(timezone=True), 'When a history chunk reported progress 100.'),
    ('history_declined_at', sa.DateTime(timezone=True), 'When the business declined to share history.'),
    ('history_declined_reason', sa.Text(), None),
    ('contact_sync_request_id', sa.String(length=255), None),
    ('contact_sync_requested_at', sa.DateTime(timezone=True), None),
    ('history_sync_request_id', sa.String(length=255), None),
    ('history_sync_requested_at', sa.DateTime(timezone=True), None),
    ('sync_error', sa.Text(), None),
]

_COPY_CONTACTS = """
INSERT INTO whatsapp_coexistence_syncs (organization_id, phone_number_id, sync_type, status, request_id, requested_at,
  request_count, request_error, updated_at)
SELECT organization_id, phone_number_id, 'smb_app_state_sync',
  CASE WHEN contact_sync_request_id IS NULL THEN 'failed' ELSE 'requested' END,
  contact_sync_request_id, contact_sync_requested_at, 1,
  CASE WHEN sync_error LIKE 'smb_app_state_sync:%' THEN sync_error END, updated_at
FROM whatsapp_configs WHERE contact_sync_requested_at IS NOT NULL
"""
_COPY_HISTORY = """
INSERT INTO whatsapp_coexistence_syncs (organization_id, phone_number_id, sync_type, status, request_id, requested_at,
  request_count, request_error, progress, completed_at, declined_at, declined_reason, updated_at)
SELECT organization_id, phone_number_id, 'history',
  CASE WHEN history_completed_at IS NOT NULL THEN 'complete' WHEN history_declined_at IS NOT NULL THEN 'declined'
       WHEN history_progress IS NOT NULL THEN 'receiving' WHEN history_sync_request_id IS NULL THEN 'failed' ELSE 'requested' END,
  history_sync_request_id, history_sync_requested_at, CASE WHEN history_sync_requested_at IS NULL THEN 0 ELSE 1 END,
  CASE WHEN sync_error LIKE 'history:%' THEN sync_error END, history_progress, history_completed_at, history_declined_at,
  history_declined_reason, updated_at
FROM whatsapp_configs
WHERE history_sync_requested_at IS NOT NULL OR history_progress IS NOT NULL OR history_declined_at IS NOT NULL
"""


def upgrade() -> None:
    op.create_table('whatsapp_coexistence_syncs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('sync_type', sa.String(length=32), nullable=False, comment='smb_app_state_sync (contacts) or history.'),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('request_id', sa.String(length=255), nullable=True, comment="Meta's request_id of the last accepted request."),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=True, comment='Last request that Meta accepted or may have received (UTC).'),
    sa.Column('request_count', sa.Integer(), nullable=False, comment="Requests sent (the onboarding's and operators')."),
    sa.Column('request_error', sa.Text(), nullable=True, comment="Why the last request failed (Meta's code and message)."),
    sa.Column('progress', sa.SmallInteger(), nullable=True, comment='History: highest progress seen (0-100).'),
    sa.Column('last_data_at', sa.DateTime(timezone=True), nullable=True, comment='Latest sync webhook (our arrival time).'),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True, comment='History: when a chunk reported progress 100.'),
    sa.Column('declined_at', sa.DateTime(timezone=True), nullable=True, comment='History: when the business declined (2593109).'),
    sa.Column('declined_reason', sa.Text(), nullable=True),
    sa.Column('stalled_at', sa.DateTime(timezone=True), nullable=True, comment='When the stall check found no data after HISTORY_STALL_HOURS.'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('requested', 'receiving', 'complete', 'declined', 'stalled', 'failed')", name=op.f('ck_whatsapp_coexistence_syncs_status')),
    sa.CheckConstraint("sync_type IN ('smb_app_state_sync', 'history')", name=op.f('ck_whatsapp_coexistence_syncs_sync_type')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_coexistence_syncs_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_coexistence_syncs')),
    sa.UniqueConstraint('phone_number_id', 'sync_type', name='uq_whatsapp_coexistence_syncs_key')
    )
    with op.batch_alter_table('whatsapp_coexistence_syncs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_coexistence_syncs_organization_id'), ['organization_id'], unique=False)

    op.execute(_COPY_CONTACTS)
    op.execute(_COPY_HISTORY)
    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        for name, _, _ in _CONFIG_COLUMNS:
            batch_op.drop_column(name)

    with op.batch_alter_table('whatsapp_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('errors', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True, comment='Every errors[] object of the message and of its value (each with scope message|value).'))


def _back(column: str, sync_type: str) -> str:
    return (f"UPDATE whatsapp_configs SET {{target}} = (SELECT s.{column} FROM whatsapp_coexistence_syncs s"
            f" WHERE s.phone_number_id = whatsapp_configs.phone_number_id AND s.sync_type = '{sync_type}')")


def downgrade() -> None:
    with op.batch_alter_table('whatsapp_messages', schema=None) as batch_op:
        batch_op.drop_column('errors')

    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        for name, type_, comment in _CONFIG_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True, comment=comment))
    for target, column, sync_type in (
        ('history_progress', 'progress', 'history'), ('history_completed_at', 'completed_at', 'history'),
        ('history_declined_at', 'declined_at', 'history'), ('history_declined_reason', 'declined_reason', 'history'),
        ('contact_sync_request_id', 'request_id', 'smb_app_state_sync'), ('contact_sync_requested_at', 'requested_at', 'smb_app_state_sync'),
        ('history_sync_request_id', 'request_id', 'history'), ('history_sync_requested_at', 'requested_at', 'history'),
        ('sync_error', 'request_error', 'history'),
    ):
        op.execute(_back(column, sync_type).format(target=target))

    with op.batch_alter_table('whatsapp_coexistence_syncs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_coexistence_syncs_organization_id'))
    op.drop_table('whatsapp_coexistence_syncs')
