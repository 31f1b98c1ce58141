"""Coexistence sync state: one row per phone number and sync type (contacts, history).

Source: Meta, WhatsApp Embedded Signup "Onboarding WhatsApp Business app users"
(coexistence). ``POST /{phone-number-id}/smb_app_data`` with ``sync_type``
``smb_app_state_sync`` (contacts) or ``history`` answers only that the request was accepted;
the data then arrives by webhook (``smb_app_state_sync``, ``history`` chunks with
``progress``, or a decline 2593109). Each type can be requested once and only within 24 h
of onboarding (2593107, 2593108).

States (``status``):

- ``requested``: a request was sent (Meta accepted it, or its answer was lost) and no data
  arrived yet;
- ``receiving``: data arrived (history chunks with progress < 100, or contact syncs; Meta
  sends no end marker for contacts, so a contact sync stays ``receiving``);
- ``complete``: a history chunk reported ``progress`` 100;
- ``declined``: the business declined to share its history (2593109);
- ``stalled``: Meta accepted a history request but no history webhook arrived within
  ``HISTORY_STALL_HOURS`` (an alert was raised; data arriving later moves it on);
- ``failed``: the request was refused or could not be sent (``request_error``).
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import BigId, metadata, utcnow

#: ``smb_app_data`` sync types, as Meta names them (§4)
SYNC_TYPES = ("smb_app_state_sync", "history")
SYNC_STATES = ("requested", "receiving", "complete", "declined", "stalled", "failed")

whatsapp_coexistence_syncs = sa.Table(
    "whatsapp_coexistence_syncs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("phone_number_id", sa.String(64), nullable=False),
    sa.Column("sync_type", sa.String(32), nullable=False, comment="smb_app_state_sync (contacts) or history."),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(255), comment="Meta's request_id of the last accepted request."),
    sa.Column("requested_at", sa.DateTime(timezone=True), comment="Last request that Meta accepted or may have received (UTC)."),
    sa.Column("request_count", sa.Integer(), nullable=False, default=0, comment="Requests sent (the onboarding's and operators')."),
    sa.Column("request_error", sa.Text(), comment="Why the last request failed (Meta's code and message)."),
    sa.Column("progress", sa.SmallInteger(), comment="History: highest progress seen (0-100)."),
    sa.Column("last_data_at", sa.DateTime(timezone=True), comment="Latest sync webhook (our arrival time)."),
    sa.Column("completed_at", sa.DateTime(timezone=True), comment="History: when a chunk reported progress 100."),
    sa.Column("declined_at", sa.DateTime(timezone=True), comment="History: when the business declined (2593109)."),
    sa.Column("declined_reason", sa.Text()),
    sa.Column("stalled_at", sa.DateTime(timezone=True), comment="When the stall check found no data after HISTORY_STALL_HOURS."),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    sa.UniqueConstraint("phone_number_id", "sync_type", name="uq_whatsapp_coexistence_syncs_key"),
    sa.CheckConstraint("sync_type IN (" + ", ".join(f"'{v}'" for v in SYNC_TYPES) + ")", name="sync_type"),
    sa.CheckConstraint("status IN (" + ", ".join(f"'{v}'" for v in SYNC_STATES) + ")", name="status"),
)
