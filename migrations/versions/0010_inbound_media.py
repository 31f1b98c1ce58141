"""inbound media: whatsapp_media

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 12:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('whatsapp_media',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=True, comment='The connection whose business token downloads it.'),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('wamid', sa.String(length=255), nullable=False, comment='The message that brought it.'),
    sa.Column('media_id', sa.String(length=128), nullable=False, comment="Meta's media id (lives 7 days for inbound media)."),
    sa.Column('kind', sa.String(length=16), nullable=False, comment='image, audio, video, document or sticker.'),
    sa.Column('source', sa.String(length=32), nullable=False, comment='cloud_api (messages) or history (coexistence).'),
    sa.Column('mime_type', sa.String(length=255), nullable=True, comment='From the webhook, then from GET /{media-id}.'),
    sa.Column('sha256', sa.String(length=128), nullable=True, comment="As the webhook gave it; once stored, the verified file's hex SHA-256."),
    sa.Column('filename', sa.Text(), nullable=True, comment='Documents: the file name the sender gave.'),
    sa.Column('file_size', sa.BigInteger(), nullable=True, comment='Bytes, from GET /{media-id}.'),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True, comment="Pending: due then (also the claim's lease)."),
    sa.Column('error_kind', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('storage_key', sa.Text(), nullable=True, comment='Key under MEDIA_STORAGE_URL once stored.'),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False, comment='When the webhook reached us (UTC).'),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False, comment='first_seen_at + 7 days: Meta forgets the id then.'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('pending', 'stored', 'failed', 'expired')", name=op.f('ck_whatsapp_media_state')),
    sa.ForeignKeyConstraint(['connection_id'], ['whatsapp_connections.id'], name=op.f('fk_whatsapp_media_connection_id_whatsapp_connections'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_media_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_media')),
    sa.UniqueConstraint('phone_number_id', 'media_id', name='uq_whatsapp_media_phone_media')
    )
    with op.batch_alter_table('whatsapp_media', schema=None) as batch_op:
        batch_op.create_index('ix_whatsapp_media_due', ['next_attempt_at'], unique=False, postgresql_where=sa.text("state = 'pending'"), sqlite_where=sa.text("state = 'pending'"))
        batch_op.create_index('ix_whatsapp_media_org_media', ['organization_id', 'media_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_media_organization_id'), ['organization_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_media', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_media_organization_id'))
        batch_op.drop_index('ix_whatsapp_media_org_media')
        batch_op.drop_index('ix_whatsapp_media_due', postgresql_where=sa.text("state = 'pending'"), sqlite_where=sa.text("state = 'pending'"))

    op.drop_table('whatsapp_media')
