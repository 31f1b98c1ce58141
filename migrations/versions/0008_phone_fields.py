"""phone-family fields: preferences, calls, call permissions, groups, partner solutions, ad conversions, webhook field counts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:01:11.394479
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('whatsapp_partner_solutions',
    sa.Column('solution_id', sa.String(length=64), nullable=False),
    sa.Column('business_id', sa.String(length=64), nullable=False, comment="entry.id: the partner's business portfolio, not a WABA."),
    sa.Column('event', sa.String(length=32), nullable=False, comment='SOLUTION_CREATED or SOLUTION_UPDATED.'),
    sa.Column('solution_status', sa.String(length=32), nullable=True, comment='ACTIVE, DEACTIVATED, DRAFT, INITIATED, PENDING_DEACTIVATION, REJECTED.'),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True, comment='entry.time (order column).'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='Our time of the last change.'),
    sa.PrimaryKeyConstraint('solution_id', name=op.f('pk_whatsapp_partner_solutions'))
    )
    op.create_table('whatsapp_webhook_fields',
    sa.Column('field', sa.String(length=255), nullable=False, comment='changes[].field as Meta sent it.'),
    sa.Column('webhooks', sa.BigInteger(), nullable=False, comment='Webhook rows finished with this field (a redelivery counts again).'),
    sa.Column('changes', sa.BigInteger(), nullable=False, comment='changes[] items with this field in those rows.'),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_webhook_log_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True, comment='The first row seen with it (no foreign key: retention may delete it).'),
    sa.PrimaryKeyConstraint('field', name=op.f('pk_whatsapp_webhook_fields'))
    )
    op.create_table('whatsapp_call_permissions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False, comment='The business number it arrived on (metadata.phone_number_id).'),
    sa.Column('contact_key', sa.String(length=128), nullable=False, comment='wa_id when given, else user_id.'),
    sa.Column('wa_id', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.String(length=128), nullable=True),
    sa.Column('response', sa.String(length=16), nullable=False, comment='accept or reject.'),
    sa.Column('is_permanent', sa.Boolean(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True, comment='expiration_timestamp of a temporary permission.'),
    sa.Column('response_source', sa.String(length=32), nullable=True, comment='user_action or automatic.'),
    sa.Column('context_id', sa.String(length=255), nullable=True, comment="The permission request's wamid, or a missed call's wacid."),
    sa.Column('message_wamid', sa.String(length=255), nullable=False),
    sa.Column('replied_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the reply (order column)."),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='Our time of the last change.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_call_permissions_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_call_permissions')),
    sa.UniqueConstraint('organization_id', 'contact_key', name='uq_whatsapp_call_permissions_contact')
    )
    with op.batch_alter_table('whatsapp_call_permissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_call_permissions_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_calls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False, comment='The business number it arrived on (metadata.phone_number_id).'),
    sa.Column('call_id', sa.String(length=255), nullable=False, comment="Meta's call id (wacid.…)."),
    sa.Column('direction', sa.String(length=32), nullable=True, comment='USER_INITIATED or BUSINESS_INITIATED.'),
    sa.Column('from_id', sa.String(length=64), nullable=True),
    sa.Column('to_id', sa.String(length=64), nullable=True),
    sa.Column('from_user_id', sa.String(length=128), nullable=True),
    sa.Column('to_user_id', sa.String(length=128), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False, comment='connect, ringing/accepted/rejected (statuses), completed/failed (terminate).'),
    sa.Column('last_event', sa.String(length=16), nullable=False, comment='connect, status or terminate: the latest in lifecycle order.'),
    sa.Column('lifecycle_order', sa.BigInteger(), nullable=False, comment="rank (connect 1, status 2, terminate 3) × 10^11 + Meta's unix seconds: a late connect never undoes a terminate."),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of that event."),
    sa.Column('connected_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the connect event."),
    sa.Column('sdp_type', sa.String(length=16), nullable=True, comment='offer (user-initiated) or answer (business-initiated).'),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Integer(), nullable=True),
    sa.Column('terminate_status', sa.String(length=32), nullable=True, comment='COMPLETED or FAILED.'),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error_title', sa.Text(), nullable=True),
    sa.Column('biz_opaque_callback_data', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='Our time of the last change.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_calls_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_calls')),
    sa.UniqueConstraint('phone_number_id', 'call_id', name='uq_whatsapp_calls_phone_call')
    )
    with op.batch_alter_table('whatsapp_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_calls_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_group_participants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False, comment='The business number it arrived on (metadata.phone_number_id).'),
    sa.Column('group_id', sa.String(length=255), nullable=False),
    sa.Column('participant_key', sa.String(length=128), nullable=False, comment='wa_id when given, else user_id.'),
    sa.Column('wa_id', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.String(length=128), nullable=True),
    sa.Column('username', sa.String(length=255), nullable=True),
    sa.Column('country_code', sa.String(length=16), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False, comment='member, removed, join_requested or join_request_revoked.'),
    sa.Column('reason', sa.String(length=64), nullable=True, comment='e.g. invite_link.'),
    sa.Column('initiated_by', sa.String(length=32), nullable=True, comment='business or participant (removals).'),
    sa.Column('join_request_id', sa.String(length=255), nullable=True),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time (order column)."),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='Our time of the last change.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_group_participants_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_group_participants')),
    sa.UniqueConstraint('phone_number_id', 'group_id', 'participant_key', name='uq_whatsapp_group_participants_key')
    )
    with op.batch_alter_table('whatsapp_group_participants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_group_participants_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_groups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False, comment='The business number it arrived on (metadata.phone_number_id).'),
    sa.Column('group_id', sa.String(length=255), nullable=False, comment='Opaque group id (never parsed).'),
    sa.Column('lifecycle', sa.String(length=32), nullable=True, comment='created, create_failed or deleted.'),
    sa.Column('lifecycle_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the lifecycle event (its order column)."),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('invite_link', sa.Text(), nullable=True),
    sa.Column('join_approval_mode', sa.String(length=32), nullable=True),
    sa.Column('settings_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the settings last applied (their order column)."),
    sa.Column('suspended', sa.Boolean(), nullable=True),
    sa.Column('status_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the suspension state (its order column)."),
    sa.Column('request_id', sa.String(length=255), nullable=True, comment='request_id of the lifecycle event (echoes our API call).'),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error_title', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='Our time of the last change.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_groups_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_groups')),
    sa.UniqueConstraint('phone_number_id', 'group_id', name='uq_whatsapp_groups_phone_group')
    )
    with op.batch_alter_table('whatsapp_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_groups_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_user_preferences',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False, comment='The business number it arrived on (metadata.phone_number_id).'),
    sa.Column('contact_key', sa.String(length=128), nullable=False, comment='wa_id when given, else user_id (BSUID).'),
    sa.Column('wa_id', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.String(length=128), nullable=True),
    sa.Column('category', sa.String(length=64), nullable=False, comment='e.g. marketing_messages.'),
    sa.Column('value', sa.String(length=32), nullable=False, comment="Meta's value: stop, resume (signup seen in third-party data)."),
    sa.Column('opted_out', sa.Boolean(), nullable=True, comment='True after stop, False after resume, NULL for other values.'),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's time of the preference (order column)."),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='Our time of the last change.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_user_preferences_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_user_preferences')),
    sa.UniqueConstraint('organization_id', 'contact_key', 'category', name='uq_whatsapp_user_preferences_contact_category')
    )
    with op.batch_alter_table('whatsapp_user_preferences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_user_preferences_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_ad_conversions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False, comment='The business number it arrived on (metadata.phone_number_id).'),
    sa.Column('message_wamid', sa.String(length=255), nullable=False, comment='automatic_events[].id: the message the event was detected in.'),
    sa.Column('event_name', sa.String(length=64), nullable=False, comment='LeadSubmitted or Purchase.'),
    sa.Column('ctwa_clid', sa.String(length=255), nullable=True, comment='The Click-to-WhatsApp click id (the ad).'),
    sa.Column('currency', sa.String(length=16), nullable=True),
    sa.Column('value', sa.Numeric(), nullable=True, comment='custom_data.value as sent (a number; NULL when not a finite number).'),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('webhook_log_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_ad_conversions_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['webhook_log_id'], ['whatsapp_webhook_logs.id'], name=op.f('fk_whatsapp_ad_conversions_webhook_log_id_whatsapp_webhook_logs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_ad_conversions')),
    sa.UniqueConstraint('phone_number_id', 'message_wamid', 'event_name', name='uq_whatsapp_ad_conversions_key')
    )
    with op.batch_alter_table('whatsapp_ad_conversions', schema=None) as batch_op:
        batch_op.create_index('ix_whatsapp_ad_conversions_ctwa_clid', ['ctwa_clid'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_ad_conversions_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_call_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False, comment='The business number it arrived on (metadata.phone_number_id).'),
    sa.Column('call_id', sa.String(length=255), nullable=False),
    sa.Column('event_key', sa.String(length=64), nullable=False, comment='connect, status:<STATUS> or terminate:<STATUS>.'),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, comment='The calls[]/statuses[] item as Meta sent it.'),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('webhook_log_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_call_events_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['webhook_log_id'], ['whatsapp_webhook_logs.id'], name=op.f('fk_whatsapp_call_events_webhook_log_id_whatsapp_webhook_logs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_call_events')),
    sa.UniqueConstraint('phone_number_id', 'call_id', 'event_key', name='uq_whatsapp_call_events_key')
    )
    with op.batch_alter_table('whatsapp_call_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_call_events_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_group_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False, comment='The business number it arrived on (metadata.phone_number_id).'),
    sa.Column('group_id', sa.String(length=255), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False, comment='The webhook field (either spelling Meta uses).'),
    sa.Column('type', sa.String(length=64), nullable=False, comment='groups[].type, e.g. group_create, group_participants_add.'),
    sa.Column('event_key', sa.String(length=255), nullable=False, comment='type:unix seconds:request_id, unique per group.'),
    sa.Column('request_id', sa.String(length=255), nullable=True),
    sa.Column('event_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, comment='The groups[] item as Meta sent it.'),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('webhook_log_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_group_events_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['webhook_log_id'], ['whatsapp_webhook_logs.id'], name=op.f('fk_whatsapp_group_events_webhook_log_id_whatsapp_webhook_logs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_group_events')),
    sa.UniqueConstraint('phone_number_id', 'group_id', 'event_key', name='uq_whatsapp_group_events_key')
    )
    with op.batch_alter_table('whatsapp_group_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_group_events_organization_id'), ['organization_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_group_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_group_events_organization_id'))

    op.drop_table('whatsapp_group_events')
    with op.batch_alter_table('whatsapp_call_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_call_events_organization_id'))

    op.drop_table('whatsapp_call_events')
    with op.batch_alter_table('whatsapp_ad_conversions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_ad_conversions_organization_id'))
        batch_op.drop_index('ix_whatsapp_ad_conversions_ctwa_clid')

    op.drop_table('whatsapp_ad_conversions')
    with op.batch_alter_table('whatsapp_user_preferences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_user_preferences_organization_id'))

    op.drop_table('whatsapp_user_preferences')
    with op.batch_alter_table('whatsapp_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_groups_organization_id'))

    op.drop_table('whatsapp_groups')
    with op.batch_alter_table('whatsapp_group_participants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_group_participants_organization_id'))

    op.drop_table('whatsapp_group_participants')
    with op.batch_alter_table('whatsapp_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_calls_organization_id'))

    op.drop_table('whatsapp_calls')
    with op.batch_alter_table('whatsapp_call_permissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_call_permissions_organization_id'))

    op.drop_table('whatsapp_call_permissions')
    op.drop_table('whatsapp_webhook_fields')
    op.drop_table('whatsapp_partner_solutions')
