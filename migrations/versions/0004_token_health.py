"""token health

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 14:18:50.384085
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_health', sa.String(length=32), nullable=True, comment='valid, expiring_soon, expired, invalid, missing_permission, unknown.'))
        batch_op.add_column(sa.Column('token_health_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('token_checked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('token_expires_at', sa.DateTime(timezone=True), nullable=True, comment='From debug_token; NULL = never expires.'))
        batch_op.add_column(sa.Column('token_data_access_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('token_scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.create_check_constraint(
            'token_health',
            "token_health IS NULL OR token_health IN ('valid', 'expiring_soon', 'expired', 'invalid', 'missing_permission', 'unknown')",
        )



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_whatsapp_configs_token_health'), type_='check')
        batch_op.drop_column('token_scopes')
        batch_op.drop_column('token_data_access_expires_at')
        batch_op.drop_column('token_expires_at')
        batch_op.drop_column('token_checked_at')
        batch_op.drop_column('token_health_reason')
        batch_op.drop_column('token_health')

