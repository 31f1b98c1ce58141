"""event feed: outbox, cursors, push endpoints, deliveries, replays

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 12:01:17.551913
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('whatsapp_event_cursors',
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('last_cursor', sa.BigInteger(), nullable=False, comment='Highest cursor handed out (gaps are allowed, order is not broken).'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_event_cursors_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('organization_id', name=op.f('pk_whatsapp_event_cursors'))
    )
    op.create_table('whatsapp_event_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('webhook_id', sa.String(length=80), nullable=False, comment='The webhook-id header sent (same on every retry of the same events).'),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False, comment='Events in the request.'),
    sa.Column('first_cursor', sa.BigInteger(), nullable=True),
    sa.Column('last_cursor', sa.BigInteger(), nullable=True),
    sa.Column('replay', sa.Boolean(), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True, comment='HTTP status; NULL when no response came (timeout, refused).'),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True, comment='Why it failed (status, timeout, connection error); never the response body.'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_event_deliveries_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_event_deliveries'))
    )
    with op.batch_alter_table('whatsapp_event_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_whatsapp_event_deliveries_attempted_at', ['attempted_at'], unique=False)
        batch_op.create_index('ix_whatsapp_event_deliveries_org_attempted', ['organization_id', 'attempted_at'], unique=False)

    op.create_table('whatsapp_event_endpoints',
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False, comment='Where events are POSTed (Standard Webhooks).'),
    sa.Column('secret_encrypted', sa.Text(), nullable=False, comment='whsec_… secret, encrypted with TOKEN_ENCRYPTION_KEY (row id: organization).'),
    sa.Column('previous_secret_encrypted', sa.Text(), nullable=True, comment='The secret before the last rotation: deliveries are signed with both until it expires.'),
    sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disabled_reason', sa.Text(), nullable=True),
    sa.Column('delivered_cursor', sa.BigInteger(), nullable=False, comment='Every event up to this cursor was accepted (2xx).'),
    sa.Column('failures', sa.Integer(), nullable=False, comment='Consecutive failed attempts.'),
    sa.Column('first_failure_at', sa.DateTime(timezone=True), nullable=True, comment='Start of the current run of failures.'),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True, comment='Backoff: no attempt before this (NULL = now).'),
    sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True, comment='A delivery run holds the endpoint until then (order per organization).'),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_event_endpoints_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('organization_id', name=op.f('pk_whatsapp_event_endpoints'))
    )
    op.create_table('whatsapp_events',
    sa.Column('id', sa.Uuid(), nullable=False, comment='uuid5 of (organization, type, key): a redelivered webhook never makes a second event.'),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('cursor', sa.BigInteger(), nullable=False, comment="Per organization, increasing in commit order (taken under the organization's whatsapp_event_cursors row lock)."),
    sa.Column('type', sa.String(length=64), nullable=False, comment='e.g. message.received, message.status_updated, connection.connected.'),
    sa.Column('key', sa.Text(), nullable=False, comment='What makes the event unique within its type (e.g. phone_number_id:wamid).'),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False, comment="Meta's time of the change, else our arrival time (UTC)."),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, comment='When the event was written (UTC).'),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, comment='Small JSON with the ids the SaaS needs; never the raw body.'),
    sa.Column('webhook_log_id', sa.BigInteger(), nullable=True, comment='The landed webhook whose processing wrote it (NULL for onboarding and operator events).'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_events_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_events')),
    sa.UniqueConstraint('organization_id', 'cursor', name='uq_whatsapp_events_org_cursor')
    )
    with op.batch_alter_table('whatsapp_events', schema=None) as batch_op:
        batch_op.create_index('ix_whatsapp_events_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_whatsapp_events_webhook_log_id', ['webhook_log_id'], unique=False)

    op.create_table('whatsapp_event_replays',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True, comment="NULL while waiting (sent again at the endpoint's pace)."),
    sa.ForeignKeyConstraint(['event_id'], ['whatsapp_events.id'], name=op.f('fk_whatsapp_event_replays_event_id_whatsapp_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_whatsapp_event_replays_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_event_replays'))
    )
    with op.batch_alter_table('whatsapp_event_replays', schema=None) as batch_op:
        batch_op.create_index('ix_whatsapp_event_replays_pending', ['organization_id', 'delivered_at', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_event_replays', schema=None) as batch_op:
        batch_op.drop_index('ix_whatsapp_event_replays_pending')

    op.drop_table('whatsapp_event_replays')
    with op.batch_alter_table('whatsapp_events', schema=None) as batch_op:
        batch_op.drop_index('ix_whatsapp_events_webhook_log_id')
        batch_op.drop_index('ix_whatsapp_events_created_at')

    op.drop_table('whatsapp_events')
    op.drop_table('whatsapp_event_endpoints')
    with op.batch_alter_table('whatsapp_event_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_whatsapp_event_deliveries_org_attempted')
        batch_op.drop_index('ix_whatsapp_event_deliveries_attempted_at')

    op.drop_table('whatsapp_event_deliveries')
    op.drop_table('whatsapp_event_cursors')
