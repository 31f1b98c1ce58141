"""onboarding

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 13:47:45.162469
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('registered_at', sa.DateTime(timezone=True), nullable=True, comment='POST /register done (never for coexistence numbers).'))
        batch_op.add_column(sa.Column('contact_sync_request_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('contact_sync_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('history_sync_request_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('history_sync_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sync_deadline_at', sa.DateTime(timezone=True), nullable=True, comment='Coexistence: syncs are accepted only until 24 h after onboarding.'))
        batch_op.add_column(sa.Column('sync_error', sa.Text(), nullable=True))

    with op.batch_alter_table('whatsapp_connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disconnected_by', sa.String(length=255), nullable=True, comment='Who disconnected (JWT subject) or the Meta event.'))
        batch_op.add_column(sa.Column('business_token_encrypted', sa.Text(), nullable=True, comment="v1:<key id>:<AES-256-GCM>; associated data binds this row's id."))
        batch_op.add_column(sa.Column('token_obtained_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('token_expires_at', sa.DateTime(timezone=True), nullable=True, comment='NULL = never (or unknown).'))
        batch_op.add_column(sa.Column('subscribed_at', sa.DateTime(timezone=True), nullable=True, comment="App subscribed to the WABA's webhooks."))

    with op.batch_alter_table('whatsapp_onboarding', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connection_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('is_coexistence', sa.Boolean(), nullable=True, comment='FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING: the number stays on the Business app.'))
        batch_op.add_column(sa.Column('signup_data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True, comment='The WA_EMBEDDED_SIGNUP event data the page posted.'))
        batch_op.add_column(sa.Column('session_posted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('token_exchanged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('follow_up_status', sa.String(length=16), nullable=True, comment='finish_onboarding progress: waiting, running, done, failed.'))
        batch_op.add_column(sa.Column('follow_up_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('follow_up_next_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('follow_up_done_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True, comment='When PARTNER_ADDED confirmed the WABA.'))
        batch_op.create_foreign_key(batch_op.f('fk_whatsapp_onboarding_connection_id_whatsapp_connections'), 'whatsapp_connections', ['connection_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_onboarding', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_whatsapp_onboarding_connection_id_whatsapp_connections'), type_='foreignkey')
        batch_op.drop_column('confirmed_at')
        batch_op.drop_column('follow_up_done_at')
        batch_op.drop_column('follow_up_next_at')
        batch_op.drop_column('follow_up_attempts')
        batch_op.drop_column('follow_up_status')
        batch_op.drop_column('token_exchanged_at')
        batch_op.drop_column('session_posted_at')
        batch_op.drop_column('signup_data')
        batch_op.drop_column('is_coexistence')
        batch_op.drop_column('connection_id')

    with op.batch_alter_table('whatsapp_connections', schema=None) as batch_op:
        batch_op.drop_column('subscribed_at')
        batch_op.drop_column('token_expires_at')
        batch_op.drop_column('token_obtained_at')
        batch_op.drop_column('business_token_encrypted')
        batch_op.drop_column('disconnected_by')

    with op.batch_alter_table('whatsapp_configs', schema=None) as batch_op:
        batch_op.drop_column('sync_error')
        batch_op.drop_column('sync_deadline_at')
        batch_op.drop_column('history_sync_requested_at')
        batch_op.drop_column('history_sync_request_id')
        batch_op.drop_column('contact_sync_requested_at')
        batch_op.drop_column('contact_sync_request_id')
        batch_op.drop_column('registered_at')

