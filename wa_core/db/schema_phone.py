"""Tables of the phone-family state fields (issue 12): marketing preferences, calls and call
permissions, groups and their participants, partner solutions, Click-to-WhatsApp
conversions, and the per-field webhook counts (new fields an operator must see).

Written by the handlers in :mod:`wa_core.processing.handlers` through
:class:`~wa_core.processing.state.RowWrite` (order-safe upserts keyed below; ``*_events`` and
``whatsapp_ad_conversions`` are insert-once history). Contacts are keyed by ``contact_key`` =
``wa_id`` when given, else ``user_id`` (the BSUID): the rule ``whatsapp_contacts`` is looked
up by, so a row joins its contact on (organization_id, wa_id) or (organization_id, user_id).
Times are UTC; ``*_at`` columns named after an event hold Meta's time, ``updated_at`` ours.
Source: Meta, WhatsApp Cloud API webhooks reference (fields ``user_preferences``, ``calls``,
``group_*``, ``partner_solutions``, ad referrals).
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import BigId, JsonDoc, metadata, utcnow


def _org() -> sa.Column:
    return sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True)


def _phone() -> sa.Column:
    return sa.Column("phone_number_id", sa.String(64), nullable=False, comment="The business number it arrived on (metadata.phone_number_id).")


def _updated() -> sa.Column:
    return sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow, comment="Our time of the last change.")


whatsapp_user_preferences = sa.Table(
    "whatsapp_user_preferences",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    _phone(),
    sa.Column("contact_key", sa.String(128), nullable=False, comment="wa_id when given, else user_id (BSUID)."),
    sa.Column("wa_id", sa.String(64)),
    sa.Column("user_id", sa.String(128)),
    sa.Column("category", sa.String(64), nullable=False, comment="e.g. marketing_messages."),
    sa.Column("value", sa.String(32), nullable=False, comment="Meta's value: stop, resume (signup seen in third-party data)."),
    sa.Column("opted_out", sa.Boolean(), comment="True after stop, False after resume, NULL for other values."),
    sa.Column("detail", sa.Text()),
    sa.Column("event_at", sa.DateTime(timezone=True), comment="Meta's time of the preference (order column)."),
    _updated(),
    sa.UniqueConstraint("organization_id", "contact_key", "category", name="uq_whatsapp_user_preferences_contact_category"),
)

whatsapp_calls = sa.Table(
    "whatsapp_calls",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    _phone(),
    sa.Column("call_id", sa.String(255), nullable=False, comment="Meta's call id (wacid.…)."),
    sa.Column("direction", sa.String(32), comment="USER_INITIATED or BUSINESS_INITIATED."),
    sa.Column("from_id", sa.String(64)),
    sa.Column("to_id", sa.String(64)),
    sa.Column("from_user_id", sa.String(128)),
    sa.Column("to_user_id", sa.String(128)),
    sa.Column("state", sa.String(32), nullable=False, comment="connect, ringing/accepted/rejected (statuses), completed/failed (terminate)."),
    sa.Column("last_event", sa.String(16), nullable=False, comment="connect, status or terminate: the latest in lifecycle order."),
    sa.Column("lifecycle_order", sa.BigInteger(), nullable=False,
              comment="rank (connect 1, status 2, terminate 3) × 10^11 + Meta's unix seconds: a late connect never undoes a terminate."),
    sa.Column("event_at", sa.DateTime(timezone=True), comment="Meta's time of that event."),
    sa.Column("connected_at", sa.DateTime(timezone=True), comment="Meta's time of the connect event."),
    sa.Column("sdp_type", sa.String(16), comment="offer (user-initiated) or answer (business-initiated)."),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("duration_seconds", sa.Integer()),
    sa.Column("terminate_status", sa.String(32), comment="COMPLETED or FAILED."),
    sa.Column("error_code", sa.Integer()),
    sa.Column("error_title", sa.Text()),
    sa.Column("biz_opaque_callback_data", sa.Text()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    _updated(),
    sa.UniqueConstraint("phone_number_id", "call_id", name="uq_whatsapp_calls_phone_call"),
)

whatsapp_call_events = sa.Table(
    "whatsapp_call_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    _phone(),
    sa.Column("call_id", sa.String(255), nullable=False),
    sa.Column("event_key", sa.String(64), nullable=False, comment="connect, status:<STATUS> or terminate:<STATUS>."),
    sa.Column("event_at", sa.DateTime(timezone=True)),
    sa.Column("raw", JsonDoc, nullable=False, comment="The calls[]/statuses[] item as Meta sent it."),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("webhook_log_id", BigId, sa.ForeignKey("whatsapp_webhook_logs.id", ondelete="SET NULL")),
    sa.UniqueConstraint("phone_number_id", "call_id", "event_key", name="uq_whatsapp_call_events_key"),
)

whatsapp_call_permissions = sa.Table(
    "whatsapp_call_permissions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    _phone(),
    sa.Column("contact_key", sa.String(128), nullable=False, comment="wa_id when given, else user_id."),
    sa.Column("wa_id", sa.String(64)),
    sa.Column("user_id", sa.String(128)),
    sa.Column("response", sa.String(16), nullable=False, comment="accept or reject."),
    sa.Column("is_permanent", sa.Boolean()),
    sa.Column("expires_at", sa.DateTime(timezone=True), comment="expiration_timestamp of a temporary permission."),
    sa.Column("response_source", sa.String(32), comment="user_action or automatic."),
    sa.Column("context_id", sa.String(255), comment="The permission request's wamid, or a missed call's wacid."),
    sa.Column("message_wamid", sa.String(255), nullable=False),
    sa.Column("replied_at", sa.DateTime(timezone=True), comment="Meta's time of the reply (order column)."),
    _updated(),
    sa.UniqueConstraint("organization_id", "contact_key", name="uq_whatsapp_call_permissions_contact"),
)

whatsapp_groups = sa.Table(
    "whatsapp_groups",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    _phone(),
    sa.Column("group_id", sa.String(255), nullable=False, comment="Opaque group id (never parsed)."),
    sa.Column("lifecycle", sa.String(32), comment="created, create_failed or deleted."),
    sa.Column("lifecycle_at", sa.DateTime(timezone=True), comment="Meta's time of the lifecycle event (its order column)."),
    sa.Column("subject", sa.Text()),
    sa.Column("description", sa.Text()),
    sa.Column("invite_link", sa.Text()),
    sa.Column("join_approval_mode", sa.String(32)),
    sa.Column("settings_at", sa.DateTime(timezone=True), comment="Meta's time of the settings last applied (their order column)."),
    sa.Column("suspended", sa.Boolean()),
    sa.Column("status_at", sa.DateTime(timezone=True), comment="Meta's time of the suspension state (its order column)."),
    sa.Column("request_id", sa.String(255), comment="request_id of the lifecycle event (echoes our API call)."),
    sa.Column("error_code", sa.Integer()),
    sa.Column("error_title", sa.Text()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    _updated(),
    sa.UniqueConstraint("phone_number_id", "group_id", name="uq_whatsapp_groups_phone_group"),
)

whatsapp_group_participants = sa.Table(
    "whatsapp_group_participants",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    _phone(),
    sa.Column("group_id", sa.String(255), nullable=False),
    sa.Column("participant_key", sa.String(128), nullable=False, comment="wa_id when given, else user_id."),
    sa.Column("wa_id", sa.String(64)),
    sa.Column("user_id", sa.String(128)),
    sa.Column("username", sa.String(255)),
    sa.Column("country_code", sa.String(16)),
    sa.Column("state", sa.String(32), nullable=False, comment="member, removed, join_requested or join_request_revoked."),
    sa.Column("reason", sa.String(64), comment="e.g. invite_link."),
    sa.Column("initiated_by", sa.String(32), comment="business or participant (removals)."),
    sa.Column("join_request_id", sa.String(255)),
    sa.Column("event_at", sa.DateTime(timezone=True), comment="Meta's time (order column)."),
    _updated(),
    sa.UniqueConstraint("phone_number_id", "group_id", "participant_key", name="uq_whatsapp_group_participants_key"),
)

whatsapp_group_events = sa.Table(
    "whatsapp_group_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    _phone(),
    sa.Column("group_id", sa.String(255), nullable=False),
    sa.Column("field", sa.String(64), nullable=False, comment="The webhook field (either spelling Meta uses)."),
    sa.Column("type", sa.String(64), nullable=False, comment="groups[].type, e.g. group_create, group_participants_add."),
    sa.Column("event_key", sa.String(255), nullable=False, comment="type:unix seconds:request_id, unique per group."),
    sa.Column("request_id", sa.String(255)),
    sa.Column("event_at", sa.DateTime(timezone=True)),
    sa.Column("raw", JsonDoc, nullable=False, comment="The groups[] item as Meta sent it."),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("webhook_log_id", BigId, sa.ForeignKey("whatsapp_webhook_logs.id", ondelete="SET NULL")),
    sa.UniqueConstraint("phone_number_id", "group_id", "event_key", name="uq_whatsapp_group_events_key"),
)

whatsapp_partner_solutions = sa.Table(
    "whatsapp_partner_solutions",
    metadata,
    sa.Column("solution_id", sa.String(64), primary_key=True),
    sa.Column("business_id", sa.String(64), nullable=False, comment="entry.id: the partner's business portfolio, not a WABA."),
    sa.Column("event", sa.String(32), nullable=False, comment="SOLUTION_CREATED or SOLUTION_UPDATED."),
    sa.Column("solution_status", sa.String(32), comment="ACTIVE, DEACTIVATED, DRAFT, INITIATED, PENDING_DEACTIVATION, REJECTED."),
    sa.Column("event_at", sa.DateTime(timezone=True), comment="entry.time (order column)."),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    _updated(),
)

whatsapp_ad_conversions = sa.Table(
    "whatsapp_ad_conversions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    _phone(),
    sa.Column("message_wamid", sa.String(255), nullable=False, comment="automatic_events[].id: the message the event was detected in."),
    sa.Column("event_name", sa.String(64), nullable=False, comment="LeadSubmitted or Purchase."),
    sa.Column("ctwa_clid", sa.String(255), comment="The Click-to-WhatsApp click id (the ad)."),
    sa.Column("currency", sa.String(16)),
    sa.Column("value", sa.Numeric(), comment="custom_data.value as sent (a number; NULL when not a finite number)."),
    sa.Column("event_at", sa.DateTime(timezone=True)),
    sa.Column("raw", JsonDoc, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("webhook_log_id", BigId, sa.ForeignKey("whatsapp_webhook_logs.id", ondelete="SET NULL")),
    sa.UniqueConstraint("phone_number_id", "message_wamid", "event_name", name="uq_whatsapp_ad_conversions_key"),
    sa.Index("ix_whatsapp_ad_conversions_ctwa_clid", "ctwa_clid"),
)

whatsapp_webhook_fields = sa.Table(
    "whatsapp_webhook_fields",
    metadata,
    sa.Column("field", sa.String(255), primary_key=True, comment="changes[].field as Meta sent it."),
    sa.Column("webhooks", sa.BigInteger(), nullable=False, default=0, comment="Webhook rows finished with this field (a redelivery counts again)."),
    sa.Column("changes", sa.BigInteger(), nullable=False, default=0, comment="changes[] items with this field in those rows."),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("first_webhook_log_id", BigId, comment="The first row seen with it (no foreign key: retention may delete it)."),
)
