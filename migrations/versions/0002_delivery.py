"""delivery: reactions, revisions, history chunks, replay and retention columns

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 13:12:25.024351
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('whatsapp_message_reactions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('target_wamid', sa.String(length=255), nullable=False, comment='The message reacted to (may be unknown to us).'),
    sa.Column('reactor', sa.String(length=128), nullable=False, comment='wa_id or user_id of who reacted.'),
    sa.Column('emoji', sa.String(length=64), nullable=True, comment='Current emoji; NULL once the reaction was removed.'),
    sa.Column('reaction_wamid', sa.String(length=255), nullable=False, comment='The latest reaction message applied.'),
    sa.Column('provider_timestamp', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of that reaction."),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_message_reactions_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_message_reactions')),
    sa.UniqueConstraint('phone_number_id', 'target_wamid', 'reactor', name='uq_whatsapp_message_reactions_target_reactor')
    )
    with op.batch_alter_table('whatsapp_message_reactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_message_reactions_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_message_revisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('original_wamid', sa.String(length=255), nullable=False),
    sa.Column('revision_wamid', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('body', sa.Text(), nullable=True, comment='New text of an edit; NULL for a revoke.'),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('provider_timestamp', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True, comment='NULL while parked: the original is not stored yet.'),
    sa.CheckConstraint("kind IN ('edit', 'revoke')", name=op.f('ck_whatsapp_message_revisions_kind')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_message_revisions_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_message_revisions')),
    sa.UniqueConstraint('phone_number_id', 'revision_wamid', name='uq_whatsapp_message_revisions_revision')
    )
    with op.batch_alter_table('whatsapp_message_revisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_message_revisions_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index('ix_whatsapp_message_revisions_original', ['phone_number_id', 'original_wamid'], unique=False)

    op.create_table('whatsapp_history_chunks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('phase', sa.SmallInteger(), nullable=False),
    sa.Column('chunk_order', sa.Integer(), nullable=False),
    sa.Column('progress', sa.SmallInteger(), nullable=True),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('webhook_log_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_history_chunks_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['webhook_log_id'], ['whatsapp_webhook_logs.id'], name=op.f('fk_whatsapp_history_chunks_webhook_log_id_whatsapp_webhook_logs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_history_chunks')),
    sa.UniqueConstraint('phone_number_id', 'phase', 'chunk_order', name='uq_whatsapp_history_chunks_key')
    )
    with op.batch_alter_table('whatsapp_history_chunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_history_chunks_organization_id'), ['organization_id'], unique=False)

    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('history_progress', sa.SmallInteger(), nullable=True, comment='Coexistence history sync: highest progress seen (0–100).'))
        batch_op.add_column(sa.Column('history_completed_at', sa.DateTime(timezone=True), nullable=True, comment='When a history chunk reported progress 100.'))
        batch_op.add_column(sa.Column('history_declined_at', sa.DateTime(timezone=True), nullable=True, comment='When the business declined to share history.'))
        batch_op.add_column(sa.Column('history_declined_reason', sa.Text(), nullable=True))

    with op.batch_alter_table('whatsapp_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_id', sa.String(length=255), nullable=True, comment='Group thread of a group message (the sender is the participant).'))
        batch_op.add_column(sa.Column('edited_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the latest edit applied."))
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the revoke (message deleted by its sender)."))

    with op.batch_alter_table('whatsapp_webhook_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('items_dead', sa.Integer(), nullable=True, comment='Failed items that can never succeed (permanent errors).'))
        batch_op.add_column(sa.Column('replay_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True, comment='Last time an operator put the row back in line.'))
        batch_op.add_column(sa.Column('body_purged_at', sa.DateTime(timezone=True), nullable=True, comment='When retention removed the body.'))



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_webhook_logs', schema=None) as batch_op:
        batch_op.drop_column('body_purged_at')
        batch_op.drop_column('replayed_at')
        batch_op.drop_column('replay_count')
        batch_op.drop_column('items_dead')

    with op.batch_alter_table('whatsapp_messages', schema=None) as batch_op:
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('edited_at')
        batch_op.drop_column('group_id')

    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        batch_op.drop_column('history_declined_reason')
        batch_op.drop_column('history_declined_at')
        batch_op.drop_column('history_completed_at')
        batch_op.drop_column('history_progress')

    with op.batch_alter_table('whatsapp_history_chunks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_history_chunks_organization_id'))

    op.drop_table('whatsapp_history_chunks')
    with op.batch_alter_table('whatsapp_message_revisions', schema=None) as batch_op:
        batch_op.drop_index('ix_whatsapp_message_revisions_original')
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_revisions_organization_id'))

    op.drop_table('whatsapp_message_revisions')
    with op.batch_alter_table('whatsapp_message_reactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_reactions_organization_id'))

    op.drop_table('whatsapp_message_reactions')
