"""processing controls: per-organization pause and caps, per-WABA pause

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('processing_org_controls',
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True, comment="Set while the organization's lane is paused; NULL = running."),
    sa.Column('paused_reason', sa.Text(), nullable=True, comment='Why an operator paused it (free text).'),
    sa.Column('resumed_at', sa.DateTime(timezone=True), nullable=True, comment='Last resume.'),
    sa.Column('max_in_flight', sa.Integer(), nullable=True, comment='Cap on rows leased at once; NULL = PROCESSING_ORG_MAX_IN_FLIGHT, 0 = no cap.'),
    sa.Column('webhooks_per_minute', sa.Integer(), nullable=True, comment='Cap on claims per rolling minute; NULL = PROCESSING_ORG_WEBHOOKS_PER_MINUTE, 0 = no cap.'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('max_in_flight IS NULL OR max_in_flight >= 0', name=op.f('ck_processing_org_controls_max_in_flight')),
    sa.CheckConstraint('webhooks_per_minute IS NULL OR webhooks_per_minute >= 0', name=op.f('ck_processing_org_controls_webhooks_per_minute')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_processing_org_controls_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('organization_id', name=op.f('pk_processing_org_controls'))
    )
    op.create_table('processing_waba_controls',
    sa.Column('waba_id', sa.String(length=64), nullable=False, comment='Matched against whatsapp_webhook_logs.waba_id (the routing hint).'),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True, comment="Set while the WABA's webhooks are paused; NULL = running."),
    sa.Column('paused_reason', sa.Text(), nullable=True, comment='Why an operator paused it (free text).'),
    sa.Column('resumed_at', sa.DateTime(timezone=True), nullable=True, comment='Last resume.'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('waba_id', name=op.f('pk_processing_waba_controls'))
    )


def downgrade() -> None:
    op.drop_table('processing_waba_controls')
    op.drop_table('processing_org_controls')
