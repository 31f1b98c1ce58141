"""Database schema: SQLAlchemy Core tables shared by the receiver, the pipelines and Alembic.

Names are snake_case versions of the seed schema's. Times are ``timestamp with time zone``
in UTC. Meta's own time (``provider_timestamp``) and our arrival time (``received_at``) are
kept apart everywhere. Enumerations are stored as short strings with CHECK constraints so
that SQLite and Postgres behave alike.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: 64-bit ids on Postgres; SQLite only auto-increments ``INTEGER PRIMARY KEY``.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: JSON documents: ``jsonb`` on Postgres (queryable, indexed), JSON text on SQLite.
JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (SQLite returns naive ones; we store only UTC)."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)


def _uuid_pk() -> sa.Column:
    return sa.Column("id", sa.Uuid(), primary_key=True, default=uuid.uuid4)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow),
    ]


def _check_in(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=name)


# --- enumerations --------------------------------------------------------------------
WEBHOOK_STATES = ("pending", "processed", "failed", "dead")
ONBOARDING_STATES = ("pending", "session_posted", "token_exchanged", "completed", "failed", "expired", "cancelled")
#: business-token health per phone number (its own type; the connection status is not overloaded)
TOKEN_HEALTH_STATES = ("valid", "expiring_soon", "expired", "invalid", "missing_permission", "unknown")
#: follow-up (finish_onboarding) progress of an onboarding whose token exchange succeeded
FOLLOW_UP_STATES = ("waiting", "running", "done", "failed")
CONNECTION_STATES = ("awaiting_confirmation", "active", "inactive", "offboarded", "disabled", "deleted")
CONFIG_STATES = ("pending", "connected", "disconnected", "offboarded", "disabled")
MESSAGE_DIRECTIONS = ("inbound", "outbound")
MESSAGE_SOURCES = ("cloud_api", "business_app_echo", "history")

organizations = sa.Table(
    "organizations",
    metadata,
    _uuid_pk(),
    sa.Column("external_id", sa.String(255), nullable=False, unique=True, comment="The SaaS's own organization id."),
    sa.Column("name", sa.String(255), nullable=False),
    *_timestamps(),
)

whatsapp_onboarding = sa.Table(
    "whatsapp_onboarding",
    metadata,
    _uuid_pk(),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("tracking_code", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(32), nullable=False, default="pending"),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("user_agent", sa.Text()),
    sa.Column("ip_address", sa.String(64)),
    sa.Column("waba_id", sa.String(64), index=True),
    sa.Column("phone_number_id", sa.String(64)),
    sa.Column("business_id", sa.String(64)),
    sa.Column("signup_event", sa.String(64), comment="WA_EMBEDDED_SIGNUP event, e.g. FINISH or CANCEL."),
    sa.Column("cancel_step", sa.String(64)),
    sa.Column("error_code", sa.String(32)),
    sa.Column("error_message", sa.Text()),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("connection_id", sa.Uuid(), sa.ForeignKey("whatsapp_connections.id", ondelete="SET NULL")),
    sa.Column("is_coexistence", sa.Boolean(), comment="FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING: the number stays on the Business app."),
    sa.Column("signup_data", JsonDoc, comment="The WA_EMBEDDED_SIGNUP event data the page posted."),
    sa.Column("session_posted_at", sa.DateTime(timezone=True)),
    sa.Column("token_exchanged_at", sa.DateTime(timezone=True)),
    sa.Column("follow_up_status", sa.String(16), comment="finish_onboarding progress: waiting, running, done, failed."),
    sa.Column("follow_up_attempts", sa.Integer(), nullable=False, default=0, server_default="0"),
    sa.Column("follow_up_next_at", sa.DateTime(timezone=True)),
    sa.Column("follow_up_done_at", sa.DateTime(timezone=True)),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), comment="When PARTNER_ADDED confirmed the WABA."),
    *_timestamps(),
    _check_in("status", ONBOARDING_STATES, "status"),
)

whatsapp_connections = sa.Table(
    "whatsapp_connections",
    metadata,
    _uuid_pk(),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("waba_id", sa.String(64), nullable=False, unique=True),
    sa.Column("owner_business_id", sa.String(64), index=True),
    sa.Column("status", sa.String(32), nullable=False, default="awaiting_confirmation"),
    sa.Column("status_reason", sa.Text()),
    sa.Column("last_event", sa.String(64), comment="Last account_update event applied."),
    sa.Column("last_event_at", sa.DateTime(timezone=True), comment="Meta's entry.time of that event (UTC)."),
    sa.Column("connected_at", sa.DateTime(timezone=True)),
    sa.Column("disconnected_at", sa.DateTime(timezone=True)),
    sa.Column("disconnected_by", sa.String(255), comment="Who disconnected (JWT subject) or the Meta event."),
    sa.Column("business_token_encrypted", sa.Text(), comment="v1:<key id>:<AES-256-GCM>; associated data binds this row's id."),
    sa.Column("token_obtained_at", sa.DateTime(timezone=True)),
    sa.Column("token_expires_at", sa.DateTime(timezone=True), comment="NULL = never (or unknown)."),
    sa.Column("subscribed_at", sa.DateTime(timezone=True), comment="App subscribed to the WABA's webhooks."),
    *_timestamps(),
    _check_in("status", CONNECTION_STATES, "status"),
)

whatsapp_configs = sa.Table(
    "whatsapp_configs",
    metadata,
    _uuid_pk(),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("connection_id", sa.Uuid(), sa.ForeignKey("whatsapp_connections.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("waba_id", sa.String(64), nullable=False),
    sa.Column("phone_number_id", sa.String(64), nullable=False, unique=True),
    sa.Column("display_phone_number", sa.String(32)),
    sa.Column("verified_name", sa.String(255)),
    sa.Column("is_coexistence", sa.Boolean(), nullable=False, default=False),
    sa.Column("status", sa.String(32), nullable=False, default="pending"),
    sa.Column("registered_at", sa.DateTime(timezone=True), comment="POST /register done (never for coexistence numbers)."),
    sa.Column("sync_deadline_at", sa.DateTime(timezone=True), comment="Coexistence: syncs are accepted only until 24 h after onboarding."),
    # the contact and history syncs' state is in whatsapp_coexistence_syncs (schema_coexistence)
    sa.Column("token_health", sa.String(32), comment="valid, expiring_soon, expired, invalid, missing_permission, unknown."),
    sa.Column("token_health_reason", sa.Text()),
    sa.Column("token_checked_at", sa.DateTime(timezone=True)),
    sa.Column("token_expires_at", sa.DateTime(timezone=True), comment="From debug_token; NULL = never expires."),
    sa.Column("token_data_access_expires_at", sa.DateTime(timezone=True)),
    sa.Column("token_scopes", JsonDoc),
    *_timestamps(),
    _check_in("status", CONFIG_STATES, "status"),
    sa.CheckConstraint(
        "token_health IS NULL OR token_health IN (" + ", ".join(f"'{v}'" for v in TOKEN_HEALTH_STATES) + ")",
        name="token_health",
    ),
)

whatsapp_contacts = sa.Table(
    "whatsapp_contacts",
    metadata,
    _uuid_pk(),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("wa_id", sa.String(64), comment="Phone-based WhatsApp id; may be absent for username users."),
    sa.Column("user_id", sa.String(128), comment="Business-scoped user id (BSUID)."),
    sa.Column("profile_name", sa.String(255)),
    sa.Column("first_name", sa.String(255)),
    sa.Column("in_address_book", sa.Boolean(), comment="Coexistence: contact present in the Business app."),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    *_timestamps(),
    sa.UniqueConstraint("organization_id", "wa_id", name="uq_whatsapp_contacts_org_wa_id"),
    sa.UniqueConstraint("organization_id", "user_id", name="uq_whatsapp_contacts_org_user_id"),
    sa.CheckConstraint("wa_id IS NOT NULL OR user_id IS NOT NULL", name="has_identity"),
)

whatsapp_webhook_logs = sa.Table(
    "whatsapp_webhook_logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    sa.Column("body", sa.LargeBinary(), comment="Exact request bytes as Meta signed them."),
    sa.Column("body_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("body_size", sa.Integer(), nullable=False),
    sa.Column("signature_status", sa.String(32), nullable=False, comment="How X-Hub-Signature-256 verified, e.g. 'valid'."),
    sa.Column("request_id", sa.String(64)),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="SET NULL"), index=True,
              comment="Filled during processing; the receiver cannot know it."),
    sa.Column("waba_id", sa.String(64),
              comment="Routing hint: entry[0].id read by the receiver from the envelope; NULL if not found."),
    sa.Column("claimed_at", sa.DateTime(timezone=True), index=True, comment="Last claim; drives per-organization quotas."),
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), comment="When a failed row is retried; NULL = not retried."),
    sa.Column("locked_until", sa.DateTime(timezone=True), comment="Lease of the run working on the row."),
    sa.Column("last_error", sa.Text()),
    sa.Column("error_kind", sa.String(64)),
    sa.Column("fields", sa.String(255), comment="changes[].field values seen, comma separated."),
    sa.Column("items_received", sa.Integer()),
    sa.Column("items_processed", sa.Integer()),
    sa.Column("items_ignored", sa.Integer()),
    sa.Column("items_failed", sa.Integer()),
    sa.Column("items_dead", sa.Integer(), comment="Failed items that can never succeed (permanent errors)."),
    sa.Column("processed_at", sa.DateTime(timezone=True)),
    sa.Column("replay_count", sa.Integer(), nullable=False, default=0, server_default="0"),
    sa.Column("replayed_at", sa.DateTime(timezone=True), comment="Last time an operator put the row back in line."),
    sa.Column("body_purged_at", sa.DateTime(timezone=True), comment="When retention removed the body."),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow),
    _check_in("status", WEBHOOK_STATES, "status"),
    sa.Index("ix_whatsapp_webhook_logs_claimable", "status", "next_attempt_at"),
    sa.Index("ix_whatsapp_webhook_logs_locked_until", "locked_until"),
    # the fair claim's per-WABA probes (wa_core/processing/claim.py); open rows only
    sa.Index(
        "ix_whatsapp_webhook_logs_open_by_waba",
        "waba_id",
        "id",
        postgresql_where=sa.text("status IN ('pending', 'failed')"),
        sqlite_where=sa.text("status IN ('pending', 'failed')"),
    ),
)

whatsapp_messages = sa.Table(
    "whatsapp_messages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("phone_number_id", sa.String(64), nullable=False),
    sa.Column("wamid", sa.String(255), nullable=False),
    sa.Column("contact_id", sa.Uuid(), sa.ForeignKey("whatsapp_contacts.id", ondelete="SET NULL"), index=True),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("source", sa.String(32), nullable=False, default="cloud_api"),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("body", sa.Text(), comment="Text, caption or a short rendering of the message."),
    sa.Column("context_wamid", sa.String(255), comment="Message this one replies or reacts to."),
    sa.Column("group_id", sa.String(255), comment="Group thread of a group message (the sender is the participant)."),
    sa.Column("edited_at", sa.DateTime(timezone=True), comment="Meta's time of the latest edit applied."),
    sa.Column("revoked_at", sa.DateTime(timezone=True), comment="Meta's time of the revoke (message deleted by its sender)."),
    sa.Column("raw", JsonDoc, nullable=False, comment="The message item exactly as Meta sent it (parsed)."),
    sa.Column("error_code", sa.Integer()),
    sa.Column("error_title", sa.Text()),
    sa.Column("errors", JsonDoc, comment="Every errors[] object of the message and of its value (each with scope message|value)."),
    sa.Column("current_status", sa.String(16), comment="Outbound: highest status seen (forward only)."),
    sa.Column("status_rank", sa.SmallInteger(), nullable=False, default=0),
    sa.Column("provider_timestamp", sa.DateTime(timezone=True), comment="Meta's timestamp (UTC)."),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, comment="When the webhook reached us (UTC)."),
    sa.Column("webhook_log_id", BigId, sa.ForeignKey("whatsapp_webhook_logs.id", ondelete="SET NULL")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    sa.UniqueConstraint("phone_number_id", "wamid", name="uq_whatsapp_messages_phone_wamid"),
    _check_in("direction", MESSAGE_DIRECTIONS, "direction"),
    sa.Index("ix_whatsapp_messages_wamid", "wamid"),
    sa.Index("ix_whatsapp_messages_org_received", "organization_id", "received_at"),
)

whatsapp_message_statuses = sa.Table(
    "whatsapp_message_statuses",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("phone_number_id", sa.String(64), nullable=False),
    sa.Column("wamid", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("recipient_id", sa.String(64)),
    sa.Column("recipient_user_id", sa.String(128)),
    sa.Column("error_code", sa.Integer()),
    sa.Column("error_title", sa.Text()),
    sa.Column("pricing", JsonDoc),
    sa.Column("raw", JsonDoc, nullable=False),
    sa.Column("provider_timestamp", sa.DateTime(timezone=True)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("webhook_log_id", BigId, sa.ForeignKey("whatsapp_webhook_logs.id", ondelete="SET NULL")),
    sa.UniqueConstraint("phone_number_id", "wamid", "status", name="uq_whatsapp_message_statuses_phone_wamid_status"),
)

whatsapp_message_reactions = sa.Table(
    "whatsapp_message_reactions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("phone_number_id", sa.String(64), nullable=False),
    sa.Column("target_wamid", sa.String(255), nullable=False, comment="The message reacted to (may be unknown to us)."),
    sa.Column("reactor", sa.String(128), nullable=False, comment="wa_id or user_id of who reacted."),
    sa.Column("emoji", sa.String(64), comment="Current emoji; NULL once the reaction was removed."),
    sa.Column("reaction_wamid", sa.String(255), nullable=False, comment="The latest reaction message applied."),
    sa.Column("provider_timestamp", sa.DateTime(timezone=True), comment="Meta's time of that reaction."),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    sa.UniqueConstraint("phone_number_id", "target_wamid", "reactor", name="uq_whatsapp_message_reactions_target_reactor"),
)

whatsapp_message_revisions = sa.Table(
    "whatsapp_message_revisions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("phone_number_id", sa.String(64), nullable=False),
    sa.Column("original_wamid", sa.String(255), nullable=False),
    sa.Column("revision_wamid", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("body", sa.Text(), comment="New text of an edit; NULL for a revoke."),
    sa.Column("raw", JsonDoc, nullable=False),
    sa.Column("provider_timestamp", sa.DateTime(timezone=True)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), comment="NULL while parked: the original is not stored yet."),
    sa.UniqueConstraint("phone_number_id", "revision_wamid", name="uq_whatsapp_message_revisions_revision"),
    sa.Index("ix_whatsapp_message_revisions_original", "phone_number_id", "original_wamid"),
    _check_in("kind", ("edit", "revoke"), "kind"),
)

whatsapp_history_chunks = sa.Table(
    "whatsapp_history_chunks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("phone_number_id", sa.String(64), nullable=False),
    sa.Column("phase", sa.SmallInteger(), nullable=False),
    sa.Column("chunk_order", sa.Integer(), nullable=False),
    sa.Column("progress", sa.SmallInteger()),
    sa.Column("messages", sa.Integer(), nullable=False, default=0),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("webhook_log_id", BigId, sa.ForeignKey("whatsapp_webhook_logs.id", ondelete="SET NULL")),
    sa.UniqueConstraint("phone_number_id", "phase", "chunk_order", name="uq_whatsapp_history_chunks_key"),
)


# --- operations --------------------------------------------------------------------------
ALERT_SEVERITIES = ("info", "warning", "error", "critical")

dashboard_snapshots = sa.Table(
    "dashboard_snapshots",
    metadata,
    sa.Column("asset_key", sa.String(128), primary_key=True, comment="Dagster asset key, e.g. 'org_whatsapp_status'."),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False, comment="When the materialisation computed it (UTC)."),
    sa.Column("run_id", sa.String(64), comment="Dagster run that materialised it."),
    sa.Column("payload", JsonDoc, nullable=False, comment="The dashboard's rows and totals, as the asset computed them."),
)

ops_alerts = sa.Table(
    "ops_alerts",
    metadata,
    sa.Column("fingerprint", sa.String(255), primary_key=True, comment="kind:key; repeated alerts with it are grouped."),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text(), nullable=False),
    sa.Column("details", JsonDoc),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="SET NULL")),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_sent_at", sa.DateTime(timezone=True), comment="Last time the sinks were called for it."),
    sa.Column("occurrences", sa.Integer(), nullable=False, default=1),
    sa.Column("resolved_at", sa.DateTime(timezone=True), comment="Set when the cause cleared; a new occurrence reopens it."),
    _check_in("severity", ALERT_SEVERITIES, "severity"),
)


# --- processing controls (wa_core/processing/controls.py) --------------------------------------
processing_org_controls = sa.Table(
    "processing_org_controls",
    metadata,
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("paused_at", sa.DateTime(timezone=True), comment="Set while the organization's lane is paused; NULL = running."),
    sa.Column("paused_reason", sa.Text(), comment="Why an operator paused it (free text)."),
    sa.Column("resumed_at", sa.DateTime(timezone=True), comment="Last resume."),
    sa.Column("max_in_flight", sa.Integer(), comment="Cap on rows leased at once; NULL = PROCESSING_ORG_MAX_IN_FLIGHT, 0 = no cap."),
    sa.Column(
        "webhooks_per_minute",
        sa.Integer(),
        comment="Cap on claims per rolling minute; NULL = PROCESSING_ORG_WEBHOOKS_PER_MINUTE, 0 = no cap.",
    ),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow),
    sa.CheckConstraint("max_in_flight IS NULL OR max_in_flight >= 0", name="max_in_flight"),
    sa.CheckConstraint("webhooks_per_minute IS NULL OR webhooks_per_minute >= 0", name="webhooks_per_minute"),
)

processing_waba_controls = sa.Table(
    "processing_waba_controls",
    metadata,
    sa.Column("waba_id", sa.String(64), primary_key=True, comment="Matched against whatsapp_webhook_logs.waba_id (the routing hint)."),
    sa.Column("paused_at", sa.DateTime(timezone=True), comment="Set while the WABA's webhooks are paused; NULL = running."),
    sa.Column("paused_reason", sa.Text(), comment="Why an operator paused it (free text)."),
    sa.Column("resumed_at", sa.DateTime(timezone=True), comment="Last resume."),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow),
)


# --- tables of the other concerns, in their own modules on the same metadata ----------------
# (imported last so that they can use the tables above; one line per module)
from . import schema_phone  # noqa: E402,F401  (H2: phone-family fields, webhook field counts)
from . import schema_coexistence  # noqa: E402,F401  whatsapp_coexistence_syncs
from . import schema_events  # noqa: E402,F401  (event feed: wa_core.events)
from . import schema_waba_state  # noqa: E402,F401  (templates, number health, WABA health, account alerts)
from . import schema_media  # noqa: E402,F401  (whatsapp_media)
from . import schema_explorer  # noqa: E402,F401  webhook explorer (wa_core/explorer/)
