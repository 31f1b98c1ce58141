"""WABA state fields: templates, number health, WABA health, account alerts, histories

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:00:45.949478
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('whatsapp_account_alerts',
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False, comment='BUSINESS, PHONE_NUMBER, CURRENT_STATUS_ID.'),
    sa.Column('entity_id', sa.String(length=64), nullable=False, comment='Business portfolio or phone-number id.'),
    sa.Column('alert_type', sa.String(length=128), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('severity', sa.String(length=32), nullable=True, comment='CRITICAL, WARNING, INFORMATIONAL.'),
    sa.Column('status', sa.String(length=16), nullable=True, comment='ACTIVE (open) or NONE (cleared).'),
    sa.Column('description', sa.Text(), nullable=True, comment='alert_description, to show the customer.'),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True, comment="Order column: Meta's entry.time."),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_account_alerts_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('waba_id', 'entity_type', 'entity_id', 'alert_type', name=op.f('pk_whatsapp_account_alerts'))
    )
    with op.batch_alter_table('whatsapp_account_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_account_alerts_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_number_health',
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('display_phone_number', sa.String(length=32), nullable=False, comment='Digits only, as Meta names the number here.'),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=True, comment='Our whatsapp_configs number with these digits, when bound.'),
    sa.Column('quality_event', sa.String(length=32), nullable=True, comment='phone_number_quality_update event (ONBOARDING, THROUGHPUT_UPGRADE, FLAGGED…).'),
    sa.Column('messaging_limit', sa.String(length=32), nullable=True, comment='max_daily_conversations_per_business (TIER_250…TIER_UNLIMITED).'),
    sa.Column('current_limit', sa.String(length=32), nullable=True, comment='Legacy current_limit, while Meta still sends it.'),
    sa.Column('old_limit', sa.String(length=32), nullable=True, comment='Legacy old_limit.'),
    sa.Column('quality_event_at', sa.DateTime(timezone=True), nullable=True, comment='Order column of the quality columns.'),
    sa.Column('throughput_level', sa.String(length=16), nullable=True, comment="'high' (1,000 mps) after THROUGHPUT_UPGRADE."),
    sa.Column('throughput_event_at', sa.DateTime(timezone=True), nullable=True, comment='Order column of throughput_level.'),
    sa.Column('name_decision', sa.String(length=32), nullable=True, comment='phone_number_name_update decision.'),
    sa.Column('requested_verified_name', sa.String(length=255), nullable=True),
    sa.Column('name_rejection_reason', sa.String(length=64), nullable=True),
    sa.Column('name_event_at', sa.DateTime(timezone=True), nullable=True, comment='Order column of the name columns.'),
    sa.Column('username_decision', sa.String(length=32), nullable=True, comment='phone_number_username_update decision.'),
    sa.Column('requested_username', sa.String(length=255), nullable=True),
    sa.Column('username_rejection_reasons', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('username_event_at', sa.DateTime(timezone=True), nullable=True, comment='Order column of the username columns.'),
    sa.Column('pin_event', sa.String(length=32), nullable=True, comment='Last security event: PIN_CHANGED, PIN_RESET_REQUEST, PIN_REQUEST_SUCCESS.'),
    sa.Column('pin_event_at', sa.DateTime(timezone=True), nullable=True, comment='Order column of pin_event.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_number_health_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('waba_id', 'display_phone_number', name=op.f('pk_whatsapp_number_health'))
    )
    with op.batch_alter_table('whatsapp_number_health', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_number_health_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_template_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('template_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False, comment='status, quality, category, components.'),
    sa.Column('value', sa.String(length=64), nullable=True, comment='The new status, quality or category.'),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('event_key', sa.String(length=96), nullable=False, comment='Event time and a digest of the change: unique per template.'),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's entry.time (UTC); NULL when Meta sent none."),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False, comment='Our arrival time of the first delivery.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_template_events_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_template_events')),
    sa.UniqueConstraint('waba_id', 'template_id', 'event_key', name=op.f('uq_whatsapp_template_events_waba_id_template_id_event_key'))
    )
    with op.batch_alter_table('whatsapp_template_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_template_events_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_templates',
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('template_id', sa.String(length=64), nullable=False, comment="Meta's numeric template id, as a string."),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=True),
    sa.Column('language', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=True, comment='message_template_status_update event: APPROVED, REJECTED, PAUSED…'),
    sa.Column('status_reason', sa.Text(), nullable=True, comment='reason (INVALID_FORMAT…), or other_info.title for pauses.'),
    sa.Column('status_details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True, comment='rejection_info, other_info, disable_info as sent.'),
    sa.Column('status_event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the status applied (order column)."),
    sa.Column('category', sa.String(length=32), nullable=True, comment='Current category (UTILITY, MARKETING, AUTHENTICATION).'),
    sa.Column('previous_category', sa.String(length=32), nullable=True),
    sa.Column('pending_category', sa.String(length=32), nullable=True, comment='Impending template_category_update: the category it will become.'),
    sa.Column('category_change_at', sa.DateTime(timezone=True), nullable=True, comment='When the impending category change takes effect (category_update_timestamp).'),
    sa.Column('category_event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the category applied (order column)."),
    sa.Column('quality', sa.String(length=16), nullable=True, comment='GREEN, YELLOW, RED, UNKNOWN.'),
    sa.Column('previous_quality', sa.String(length=16), nullable=True),
    sa.Column('quality_event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the quality applied (order column)."),
    sa.Column('components', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True, comment='Last message_template_components_update: title, body, footer, buttons.'),
    sa.Column('components_event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the components applied (order column)."),
    sa.Column('last_event', sa.String(length=64), nullable=True, comment='Field (and event) of the newest change.'),
    sa.Column('last_event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the newest change, whatever its field."),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_templates_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('waba_id', 'template_id', name=op.f('pk_whatsapp_templates'))
    )
    with op.batch_alter_table('whatsapp_templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_templates_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_waba_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False, comment='The webhook field (phone_number_quality_update, security…).'),
    sa.Column('subject', sa.String(length=64), nullable=False, comment='Display number, alert entity id, or the WABA id.'),
    sa.Column('event', sa.String(length=128), nullable=True, comment='The event, decision or alert type.'),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('event_key', sa.String(length=96), nullable=False, comment='Event time and a digest of the change.'),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's entry.time (UTC); NULL when Meta sent none."),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False, comment='Our arrival time of the first delivery.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_waba_events_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_waba_events')),
    sa.UniqueConstraint('waba_id', 'field', 'subject', 'event_key', name=op.f('uq_whatsapp_waba_events_waba_id_field_subject_event_key'))
    )
    with op.batch_alter_table('whatsapp_waba_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_waba_events_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_waba_health',
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('review_decision', sa.String(length=32), nullable=True, comment='account_review_update: APPROVED, REJECTED, PENDING, DEFERRED.'),
    sa.Column('review_event_at', sa.DateTime(timezone=True), nullable=True, comment='Order column of review_decision.'),
    sa.Column('business_limit', sa.String(length=32), nullable=True, comment='max_daily_conversations_per_business (a TIER_* or a number, as text).'),
    sa.Column('per_phone_limit', sa.String(length=32), nullable=True, comment='max_daily_conversation_per_phone (removed by Meta in Feb 2026).'),
    sa.Column('max_phone_numbers_per_business', sa.Integer(), nullable=True),
    sa.Column('max_phone_numbers_per_waba', sa.Integer(), nullable=True),
    sa.Column('capability_event_at', sa.DateTime(timezone=True), nullable=True, comment='Order column of the capability columns.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_waba_health_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('waba_id', name=op.f('pk_whatsapp_waba_health'))
    )
    with op.batch_alter_table('whatsapp_waba_health', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_waba_health_organization_id'), ['organization_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_waba_health', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_waba_health_organization_id'))

    op.drop_table('whatsapp_waba_health')
    with op.batch_alter_table('whatsapp_waba_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_waba_events_organization_id'))

    op.drop_table('whatsapp_waba_events')
    with op.batch_alter_table('whatsapp_templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_templates_organization_id'))

    op.drop_table('whatsapp_templates')
    with op.batch_alter_table('whatsapp_template_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_template_events_organization_id'))

    op.drop_table('whatsapp_template_events')
    with op.batch_alter_table('whatsapp_number_health', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_number_health_organization_id'))

    op.drop_table('whatsapp_number_health')
    with op.batch_alter_table('whatsapp_account_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_account_alerts_organization_id'))

    op.drop_table('whatsapp_account_alerts')
