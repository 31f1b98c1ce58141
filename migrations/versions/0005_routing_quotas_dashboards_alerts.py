"""webhook routing and per-organization quotas; dashboard snapshots; grouped ops alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 15:03:22.471504
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('dashboard_snapshots',
    sa.Column('asset_key', sa.String(length=128), nullable=False, comment="Dagster asset key, e.g. 'org_whatsapp_status'."),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False, comment='When the materialisation computed it (UTC).'),
    sa.Column('run_id', sa.String(length=64), nullable=True, comment='Dagster run that materialised it.'),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, comment="The dashboard's rows and totals, as the asset computed them."),
    sa.PrimaryKeyConstraint('asset_key', name=op.f('pk_dashboard_snapshots'))
    )
    op.create_table('ops_alerts',
    sa.Column('fingerprint', sa.String(length=255), nullable=False, comment='kind:key; repeated alerts with it are grouped.'),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('organization_id', sa.Uuid(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_sent_at', sa.DateTime(timezone=True), nullable=True, comment='Last time the sinks were called for it.'),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True, comment='Set when the cause cleared; a new occurrence reopens it.'),
    sa.CheckConstraint("severity IN ('info', 'warning', 'error', 'critical')", name=op.f('ck_ops_alerts_severity')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_ops_alerts_organization_id_organizations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_ops_alerts'))
    )
    with op.batch_alter_table('whatsapp_webhook_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waba_id', sa.String(length=64), nullable=True, comment='Routing hint: entry[0].id read by the receiver from the envelope; NULL if not found.'))
        batch_op.add_column(sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True, comment='Last claim; drives per-organization quotas.'))
        batch_op.create_index(batch_op.f('ix_whatsapp_webhook_logs_claimed_at'), ['claimed_at'], unique=False)
        batch_op.create_index('ix_whatsapp_webhook_logs_locked_until', ['locked_until'], unique=False)
        batch_op.create_index(
            'ix_whatsapp_webhook_logs_open_by_waba',
            ['waba_id', 'id'],
            unique=False,
            postgresql_where=sa.text("status IN ('pending', 'failed')"),
            sqlite_where=sa.text("status IN ('pending', 'failed')"),
        )




def downgrade() -> None:

    with op.batch_alter_table('whatsapp_webhook_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_whatsapp_webhook_logs_open_by_waba')
        batch_op.drop_index('ix_whatsapp_webhook_logs_locked_until')
        batch_op.drop_index(batch_op.f('ix_whatsapp_webhook_logs_claimed_at'))
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('waba_id')

    op.drop_table('ops_alerts')
    op.drop_table('dashboard_snapshots')

