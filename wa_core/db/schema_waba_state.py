"""Tables of the WABA-family state fields: templates, number health, WABA health, account
alerts, and their append-only histories (Meta, WhatsApp Business Management API webhooks: ``message_template_status_update``,
``phone_number_quality_update``, ``account_update``, ``account_alerts``).

Each current-state table is written by :class:`~wa_core.processing.state.RowWrite` upserts
ordered by Meta's event time (``entry.time``, UTC). Where different fields update different
columns of one row, each group of columns has its own order column (``*_event_at``), so a
newer name decision never blocks an older quality update. History rows are insert-once,
unique by (WABA, subject, ``event_key``) where ``event_key`` is the event time plus a digest
of the change's value: a redelivered webhook adds nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .schema import BigId, JsonDoc, metadata


def display_digits(value: Any) -> str | None:
    """The key of a number in ``whatsapp_number_health``: the digits of a display phone
    number (``"+1 555-000-0001"`` → ``"15550000001"``; a JSON number's digits too); None for
    a missing, boolean, object or array value or one without digits."""
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    out = "".join(ch for ch in str(value) if ch.isascii() and ch.isdigit())
    return out or None


def _org() -> sa.Column:
    return sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True)


def _at(name: str, comment: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), comment=comment)


whatsapp_templates = sa.Table(
    "whatsapp_templates",
    metadata,
    sa.Column("waba_id", sa.String(64), primary_key=True),
    sa.Column("template_id", sa.String(64), primary_key=True, comment="Meta's numeric template id, as a string."),
    _org(),
    sa.Column("name", sa.String(512)),
    sa.Column("language", sa.String(32)),
    sa.Column("status", sa.String(32), comment="message_template_status_update event: APPROVED, REJECTED, PAUSED…"),
    sa.Column("status_reason", sa.Text(), comment="reason (INVALID_FORMAT…), or other_info.title for pauses."),
    sa.Column("status_details", JsonDoc, comment="rejection_info, other_info, disable_info as sent."),
    _at("status_event_at", "Meta's time of the status applied (order column)."),
    sa.Column("category", sa.String(32), comment="Current category (UTILITY, MARKETING, AUTHENTICATION)."),
    sa.Column("previous_category", sa.String(32)),
    sa.Column("pending_category", sa.String(32), comment="Impending template_category_update: the category it will become."),
    _at("category_change_at", "When the impending category change takes effect (category_update_timestamp)."),
    _at("category_event_at", "Meta's time of the category applied (order column)."),
    sa.Column("quality", sa.String(16), comment="GREEN, YELLOW, RED, UNKNOWN."),
    sa.Column("previous_quality", sa.String(16)),
    _at("quality_event_at", "Meta's time of the quality applied (order column)."),
    sa.Column("components", JsonDoc, comment="Last message_template_components_update: title, body, footer, buttons."),
    _at("components_event_at", "Meta's time of the components applied (order column)."),
    sa.Column("last_event", sa.String(64), comment="Field (and event) of the newest change."),
    _at("last_event_at", "Meta's time of the newest change, whatever its field."),
)

whatsapp_template_events = sa.Table(
    "whatsapp_template_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    sa.Column("waba_id", sa.String(64), nullable=False),
    sa.Column("template_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, comment="status, quality, category, components."),
    sa.Column("value", sa.String(64), comment="The new status, quality or category."),
    sa.Column("reason", sa.Text()),
    sa.Column("details", JsonDoc),
    sa.Column("event_key", sa.String(96), nullable=False, comment="Event time and a digest of the change: unique per template."),
    _at("event_at", "Meta's entry.time (UTC); NULL when Meta sent none."),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, comment="Our arrival time of the first delivery."),
    sa.UniqueConstraint("waba_id", "template_id", "event_key"),
)

whatsapp_number_health = sa.Table(
    "whatsapp_number_health",
    metadata,
    sa.Column("waba_id", sa.String(64), primary_key=True),
    sa.Column("display_phone_number", sa.String(32), primary_key=True, comment="Digits only, as Meta names the number here."),
    _org(),
    sa.Column("phone_number_id", sa.String(64), comment="Our whatsapp_configs number with these digits, when bound."),
    sa.Column("quality_event", sa.String(32), comment="phone_number_quality_update event (ONBOARDING, THROUGHPUT_UPGRADE, FLAGGED…)."),
    sa.Column("messaging_limit", sa.String(32), comment="max_daily_conversations_per_business (TIER_250…TIER_UNLIMITED)."),
    sa.Column("current_limit", sa.String(32), comment="Legacy current_limit, while Meta still sends it."),
    sa.Column("old_limit", sa.String(32), comment="Legacy old_limit."),
    _at("quality_event_at", "Order column of the quality columns."),
    sa.Column("throughput_level", sa.String(16), comment="'high' (1,000 mps) after THROUGHPUT_UPGRADE."),
    _at("throughput_event_at", "Order column of throughput_level."),
    sa.Column("name_decision", sa.String(32), comment="phone_number_name_update decision."),
    sa.Column("requested_verified_name", sa.String(255)),
    sa.Column("name_rejection_reason", sa.String(64)),
    _at("name_event_at", "Order column of the name columns."),
    sa.Column("username_decision", sa.String(32), comment="phone_number_username_update decision."),
    sa.Column("requested_username", sa.String(255)),
    sa.Column("username_rejection_reasons", JsonDoc),
    _at("username_event_at", "Order column of the username columns."),
    sa.Column("pin_event", sa.String(32), comment="Last security event: PIN_CHANGED, PIN_RESET_REQUEST, PIN_REQUEST_SUCCESS."),
    _at("pin_event_at", "Order column of pin_event."),
)

whatsapp_waba_health = sa.Table(
    "whatsapp_waba_health",
    metadata,
    sa.Column("waba_id", sa.String(64), primary_key=True),
    _org(),
    sa.Column("review_decision", sa.String(32), comment="account_review_update: APPROVED, REJECTED, PENDING, DEFERRED."),
    _at("review_event_at", "Order column of review_decision."),
    sa.Column("business_limit", sa.String(32), comment="max_daily_conversations_per_business (a TIER_* or a number, as text)."),
    sa.Column("per_phone_limit", sa.String(32), comment="max_daily_conversation_per_phone (removed by Meta in Feb 2026)."),
    sa.Column("max_phone_numbers_per_business", sa.Integer()),
    sa.Column("max_phone_numbers_per_waba", sa.Integer()),
    _at("capability_event_at", "Order column of the capability columns."),
)

whatsapp_account_alerts = sa.Table(
    "whatsapp_account_alerts",
    metadata,
    sa.Column("waba_id", sa.String(64), primary_key=True),
    sa.Column("entity_type", sa.String(32), primary_key=True, comment="BUSINESS, PHONE_NUMBER, CURRENT_STATUS_ID."),
    sa.Column("entity_id", sa.String(64), primary_key=True, comment="Business portfolio or phone-number id."),
    sa.Column("alert_type", sa.String(128), primary_key=True),
    _org(),
    sa.Column("severity", sa.String(32), comment="CRITICAL, WARNING, INFORMATIONAL."),
    sa.Column("status", sa.String(16), comment="ACTIVE (open) or NONE (cleared)."),
    sa.Column("description", sa.Text(), comment="alert_description, to show the customer."),
    _at("event_at", "Order column: Meta's entry.time."),
)

whatsapp_waba_events = sa.Table(
    "whatsapp_waba_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _org(),
    sa.Column("waba_id", sa.String(64), nullable=False),
    sa.Column("field", sa.String(64), nullable=False, comment="The webhook field (phone_number_quality_update, security…)."),
    sa.Column("subject", sa.String(64), nullable=False, comment="Display number, alert entity id, or the WABA id."),
    sa.Column("event", sa.String(128), comment="The event, decision or alert type."),
    sa.Column("details", JsonDoc),
    sa.Column("event_key", sa.String(96), nullable=False, comment="Event time and a digest of the change."),
    _at("event_at", "Meta's entry.time (UTC); NULL when Meta sent none."),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, comment="Our arrival time of the first delivery."),
    sa.UniqueConstraint("waba_id", "field", "subject", "event_key"),
)

__all__ = [
    "display_digits",
    "whatsapp_account_alerts",
    "whatsapp_number_health",
    "whatsapp_template_events",
    "whatsapp_templates",
    "whatsapp_waba_events",
    "whatsapp_waba_health",
]
