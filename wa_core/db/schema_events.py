"""Tables of the event feed (issue "event feed"): the outbox, its per-organization cursors,
push endpoints, delivery attempts and replays. See :mod:`wa_core.events`."""

from __future__ import annotations

import sqlalchemy as sa

from .schema import BigId, JsonDoc, metadata, utcnow



def _org_fk() -> sa.ForeignKey:
    return sa.ForeignKey("organizations.id", ondelete="CASCADE")

whatsapp_events = sa.Table(
    "whatsapp_events",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True, comment="uuid5 of (organization, type, key): a redelivered webhook never makes a second event."),
    sa.Column("organization_id", sa.Uuid(), _org_fk(), nullable=False),
    sa.Column(
        "cursor",
        sa.BigInteger(),
        nullable=False,
        comment="Per organization, increasing in commit order (taken under the organization's whatsapp_event_cursors row lock).",
    ),
    sa.Column("type", sa.String(64), nullable=False, comment="e.g. message.received, message.status_updated, connection.connected."),
    sa.Column("key", sa.Text(), nullable=False, comment="What makes the event unique within its type (e.g. phone_number_id:wamid)."),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, comment="Meta's time of the change, else our arrival time (UTC)."),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=utcnow, comment="When the event was written (UTC)."),
    sa.Column("payload", JsonDoc, nullable=False, comment="Small JSON with the ids the SaaS needs; never the raw body."),
    sa.Column("webhook_log_id", sa.BigInteger(), comment="The landed webhook whose processing wrote it (NULL for onboarding and operator events)."),
    sa.UniqueConstraint("organization_id", "cursor", name="uq_whatsapp_events_org_cursor"),
    sa.Index("ix_whatsapp_events_created_at", "created_at"),
    sa.Index("ix_whatsapp_events_webhook_log_id", "webhook_log_id"),
)

whatsapp_event_cursors = sa.Table(
    "whatsapp_event_cursors",
    metadata,
    sa.Column("organization_id", sa.Uuid(), _org_fk(), primary_key=True),
    sa.Column("last_cursor", sa.BigInteger(), nullable=False, comment="Highest cursor handed out (gaps are allowed, order is not broken)."),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
)

whatsapp_event_endpoints = sa.Table(
    "whatsapp_event_endpoints",
    metadata,
    sa.Column("organization_id", sa.Uuid(), _org_fk(), primary_key=True),
    sa.Column("url", sa.Text(), nullable=False, comment="Where events are POSTed (Standard Webhooks)."),
    sa.Column("secret_encrypted", sa.Text(), nullable=False, comment="whsec_… secret, encrypted with TOKEN_ENCRYPTION_KEY (row id: organization)."),
    sa.Column("previous_secret_encrypted", sa.Text(), comment="The secret before the last rotation: deliveries are signed with both until it expires."),
    sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)),
    sa.Column("enabled", sa.Boolean(), nullable=False, default=True),
    sa.Column("disabled_at", sa.DateTime(timezone=True)),
    sa.Column("disabled_reason", sa.Text()),
    sa.Column("delivered_cursor", sa.BigInteger(), nullable=False, default=0, comment="Every event up to this cursor was accepted (2xx)."),
    sa.Column("failures", sa.Integer(), nullable=False, default=0, comment="Consecutive failed attempts."),
    sa.Column("first_failure_at", sa.DateTime(timezone=True), comment="Start of the current run of failures."),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), comment="Backoff: no attempt before this (NULL = now)."),
    sa.Column("leased_until", sa.DateTime(timezone=True), comment="A delivery run holds the endpoint until then (order per organization)."),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("last_success_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow),
)

whatsapp_event_deliveries = sa.Table(
    "whatsapp_event_deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), _org_fk(), nullable=False),
    sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("webhook_id", sa.String(80), nullable=False, comment="The webhook-id header sent (same on every retry of the same events)."),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("events", sa.Integer(), nullable=False, comment="Events in the request."),
    sa.Column("first_cursor", sa.BigInteger()),
    sa.Column("last_cursor", sa.BigInteger()),
    sa.Column("replay", sa.Boolean(), nullable=False, default=False),
    sa.Column("ok", sa.Boolean(), nullable=False),
    sa.Column("status_code", sa.Integer(), comment="HTTP status; NULL when no response came (timeout, refused)."),
    sa.Column("latency_ms", sa.Integer(), nullable=False),
    sa.Column("error", sa.Text(), comment="Why it failed (status, timeout, connection error); never the response body."),
    sa.Index("ix_whatsapp_event_deliveries_org_attempted", "organization_id", "attempted_at"),
    sa.Index("ix_whatsapp_event_deliveries_attempted_at", "attempted_at"),
)

whatsapp_event_replays = sa.Table(
    "whatsapp_event_replays",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), _org_fk(), nullable=False),
    sa.Column("event_id", sa.Uuid(), sa.ForeignKey("whatsapp_events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    sa.Column("delivered_at", sa.DateTime(timezone=True), comment="NULL while waiting (sent again at the endpoint's pace)."),
    sa.Index("ix_whatsapp_event_replays_pending", "organization_id", "delivered_at", "id"),
)
