"""core schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-29 12:37:22.771983
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('organizations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False, comment="The SaaS's own organization id."),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organizations')),
    sa.UniqueConstraint('external_id', name=op.f('uq_organizations_external_id'))
    )
    op.create_table('whatsapp_connections',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('owner_business_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('last_event', sa.String(length=64), nullable=True, comment='Last account_update event applied.'),
    sa.Column('last_event_at', sa.DateTime(timezone=True), nullable=True, comment="Meta's entry.time of that event (UTC)."),
    sa.Column('connected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disconnected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('awaiting_confirmation', 'active', 'inactive', 'offboarded', 'disabled', 'deleted')", name=op.f('ck_whatsapp_connections_status')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_connections_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_connections')),
    sa.UniqueConstraint('waba_id', name=op.f('uq_whatsapp_connections_waba_id'))
    )
    with op.batch_alter_table('whatsapp_connections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_connections_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_connections_owner_business_id'), ['owner_business_id'], unique=False)

    op.create_table('whatsapp_contacts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('wa_id', sa.String(length=64), nullable=True, comment='Phone-based WhatsApp id; may be absent for username users.'),
    sa.Column('user_id', sa.String(length=128), nullable=True, comment='Business-scoped user id (BSUID).'),
    sa.Column('profile_name', sa.String(length=255), nullable=True),
    sa.Column('first_name', sa.String(length=255), nullable=True),
    sa.Column('in_address_book', sa.Boolean(), nullable=True, comment='Coexistence: contact present in the Business app.'),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('wa_id IS NOT NULL OR user_id IS NOT NULL', name=op.f('ck_whatsapp_contacts_has_identity')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_contacts_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_contacts')),
    sa.UniqueConstraint('organization_id', 'user_id', name='uq_whatsapp_contacts_org_user_id'),
    sa.UniqueConstraint('organization_id', 'wa_id', name='uq_whatsapp_contacts_org_wa_id')
    )
    op.create_table('whatsapp_onboarding',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('tracking_code', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('ip_address', sa.String(length=64), nullable=True),
    sa.Column('waba_id', sa.String(length=64), nullable=True),
    sa.Column('phone_number_id', sa.String(length=64), nullable=True),
    sa.Column('business_id', sa.String(length=64), nullable=True),
    sa.Column('signup_event', sa.String(length=64), nullable=True, comment='WA_EMBEDDED_SIGNUP event, e.g. FINISH or CANCEL.'),
    sa.Column('cancel_step', sa.String(length=64), nullable=True),
    sa.Column('error_code', sa.String(length=32), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'session_posted', 'token_exchanged', 'completed', 'failed', 'expired', 'cancelled')", name=op.f('ck_whatsapp_onboarding_status')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_onboarding_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_onboarding')),
    sa.UniqueConstraint('tracking_code', name=op.f('uq_whatsapp_onboarding_tracking_code'))
    )
    with op.batch_alter_table('whatsapp_onboarding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_onboarding_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_onboarding_waba_id'), ['waba_id'], unique=False)

    op.create_table('whatsapp_webhook_logs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=True, comment='Exact request bytes as Meta signed them.'),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('body_size', sa.Integer(), nullable=False),
    sa.Column('signature_status', sa.String(length=32), nullable=False, comment="How X-Hub-Signature-256 verified, e.g. 'valid'."),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('organization_id', sa.Uuid(), nullable=True, comment='Filled during processing; the receiver cannot know it.'),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True, comment='When a failed row is retried; NULL = not retried.'),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True, comment='Lease of the run working on the row.'),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('error_kind', sa.String(length=64), nullable=True),
    sa.Column('fields', sa.String(length=255), nullable=True, comment='changes[].field values seen, comma separated.'),
    sa.Column('items_received', sa.Integer(), nullable=True),
    sa.Column('items_processed', sa.Integer(), nullable=True),
    sa.Column('items_ignored', sa.Integer(), nullable=True),
    sa.Column('items_failed', sa.Integer(), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'processed', 'failed', 'dead')", name=op.f('ck_whatsapp_webhook_logs_status')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_webhook_logs_organization_id_organizations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_webhook_logs'))
    )
    with op.batch_alter_table('whatsapp_webhook_logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_webhook_logs_body_sha256'), ['body_sha256'], unique=False)
        batch_op.create_index('ix_whatsapp_webhook_logs_claimable', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_webhook_logs_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_configs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('display_phone_number', sa.String(length=32), nullable=True),
    sa.Column('verified_name', sa.String(length=255), nullable=True),
    sa.Column('is_coexistence', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'connected', 'disconnected', 'offboarded', 'disabled')", name=op.f('ck_whatsapp_configs_status')),
    sa.ForeignKeyConstraint(['connection_id'], ['whatsapp_connections.id'], name=op.f('fk_whatsapp_configs_connection_id_whatsapp_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_configs_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_configs')),
    sa.UniqueConstraint('phone_number_id', name=op.f('uq_whatsapp_configs_phone_number_id'))
    )
    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_configs_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_configs_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_message_statuses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('wamid', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('recipient_id', sa.String(length=64), nullable=True),
    sa.Column('recipient_user_id', sa.String(length=128), nullable=True),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error_title', sa.Text(), nullable=True),
    sa.Column('pricing', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('provider_timestamp', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('webhook_log_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_message_statuses_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['webhook_log_id'], ['whatsapp_webhook_logs.id'], name=op.f('fk_whatsapp_message_statuses_webhook_log_id_whatsapp_webhook_logs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_message_statuses')),
    sa.UniqueConstraint('phone_number_id', 'wamid', 'status', name='uq_whatsapp_message_statuses_phone_wamid_status')
    )
    with op.batch_alter_table('whatsapp_message_statuses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_message_statuses_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('wamid', sa.String(length=255), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=True),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=True, comment='Text, caption or a short rendering of the message.'),
    sa.Column('context_wamid', sa.String(length=255), nullable=True, comment='Message this one replies or reacts to.'),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, comment='The message item exactly as Meta sent it (parsed).'),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error_title', sa.Text(), nullable=True),
    sa.Column('current_status', sa.String(length=16), nullable=True, comment='Outbound: highest status seen (forward only).'),
    sa.Column('status_rank', sa.SmallInteger(), nullable=False),
    sa.Column('provider_timestamp', sa.DateTime(timezone=True), nullable=True, comment="Meta's timestamp (UTC)."),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False, comment='When the webhook reached us (UTC).'),
    sa.Column('webhook_log_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f('ck_whatsapp_messages_direction')),
    sa.ForeignKeyConstraint(['contact_id'], ['whatsapp_contacts.id'], name=op.f('fk_whatsapp_messages_contact_id_whatsapp_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_messages_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['webhook_log_id'], ['whatsapp_webhook_logs.id'], name=op.f('fk_whatsapp_messages_webhook_log_id_whatsapp_webhook_logs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_messages')),
    sa.UniqueConstraint('phone_number_id', 'wamid', name='uq_whatsapp_messages_phone_wamid')
    )
    with op.batch_alter_table('whatsapp_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_messages_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index('ix_whatsapp_messages_org_received', ['organization_id', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_messages_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index('ix_whatsapp_messages_wamid', ['wamid'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_whatsapp_messages_wamid')
        batch_op.drop_index(batch_op.f('ix_whatsapp_messages_organization_id'))
        batch_op.drop_index('ix_whatsapp_messages_org_received')
        batch_op.drop_index(batch_op.f('ix_whatsapp_messages_contact_id'))

    op.drop_table('whatsapp_messages')
    with op.batch_alter_table('whatsapp_message_statuses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_statuses_organization_id'))

    op.drop_table('whatsapp_message_statuses')
    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_configs_organization_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_configs_connection_id'))

    op.drop_table('whatsapp_configs')
    with op.batch_alter_table('whatsapp_webhook_logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_webhook_logs_organization_id'))
        batch_op.drop_index('ix_whatsapp_webhook_logs_claimable')
        batch_op.drop_index(batch_op.f('ix_whatsapp_webhook_logs_body_sha256'))

    op.drop_table('whatsapp_webhook_logs')
    with op.batch_alter_table('whatsapp_onboarding', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_onboarding_waba_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_onboarding_organization_id'))

    op.drop_table('whatsapp_onboarding')
    op.drop_table('whatsapp_contacts')
    with op.batch_alter_table('whatsapp_connections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_connections_owner_business_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_connections_organization_id'))

    op.drop_table('whatsapp_connections')
    op.drop_table('organizations')
