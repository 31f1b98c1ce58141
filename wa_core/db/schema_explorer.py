"""Tables of the webhook explorer (issue 13): search keys and item outcomes of each landed
webhook, written by the processing batch, and the deliveries the receiver rejected.

Nothing here is written by the landing insert (the receiver's hot path): keys and items are
written set-based with the batch's outcomes (:mod:`wa_core.explorer.keys`), rejections by a
buffered recorder off the request path (:mod:`wa_core.explorer.rejections`).
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import BigId, metadata, utcnow, whatsapp_messages, whatsapp_webhook_logs

#: kinds of search keys extracted from a webhook body (``whatsapp_webhook_keys.kind``)
KEY_KINDS = ("wamid", "wa_id", "user_id", "phone_number_id", "waba_id", "field")
#: item results (``whatsapp_webhook_items.result``)
ITEM_RESULTS = ("processed", "ignored", "failed")

whatsapp_webhook_keys = sa.Table(
    "whatsapp_webhook_keys",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True, comment="wamid, wa_id, user_id, phone_number_id, waba_id or field."),
    sa.Column("value", sa.String(255), primary_key=True),
    sa.Column(
        "webhook_log_id", BigId, primary_key=True,
        comment="The webhook whose body names this value (no foreign key: a derived index, checked by nothing on the hot path).",
    ),
    sa.CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in KEY_KINDS) + ")", name="kind"),
)

whatsapp_webhook_items = sa.Table(
    "whatsapp_webhook_items",
    metadata,
    sa.Column("webhook_log_id", BigId, sa.ForeignKey("whatsapp_webhook_logs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer(), primary_key=True, comment="Item order in the body (0-based)."),
    sa.Column("place", sa.String(255), comment="Where it is, e.g. entry[0].changes[1].messages[0]."),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("error_kind", sa.String(64)),
    sa.Column("error", sa.Text(), comment="The failure's message (never payload values)."),
    sa.Column("phone_number_id", sa.String(64), comment="A message or status item: the number it belongs to."),
    sa.Column("wamid", sa.String(255), comment="A message or status item: its wamid (the trace's rows are found by it)."),
    sa.Column("attempt", sa.Integer(), nullable=False, comment="whatsapp_webhook_logs.attempts of the claim that wrote it."),
    sa.CheckConstraint("result IN (" + ", ".join(f"'{r}'" for r in ITEM_RESULTS) + ")", name="result"),
)

whatsapp_webhook_rejections = sa.Table(
    "whatsapp_webhook_rejections",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, default=utcnow,
              comment="Arrival (UTC); for an aggregate row, the start of its minute."),
    sa.Column("reason", sa.String(32), nullable=False, comment="missing, malformed, mismatch (signature) or too_large."),
    sa.Column("ip", sa.String(64), comment="Client address; NULL on an aggregate row."),
    sa.Column("body_size", sa.BigInteger(), comment="Bytes read (too_large: the declared or read size); aggregate: total."),
    sa.Column("body_sha256", sa.String(64), comment="Hex SHA-256 of the body (never the body); NULL when not fully read."),
    sa.Column("request_id", sa.String(64)),
    sa.Column("count", sa.Integer(), nullable=False, default=1,
              comment="1 for a recorded delivery; >1 for the deliveries past the per-minute cap, aggregated."),
    sa.Index("ix_whatsapp_webhook_rejections_received_at", "received_at"),
)

# searches of the explorer over the landed rows (wa_core/explorer/search.py)
sa.Index("ix_whatsapp_webhook_logs_received_at", whatsapp_webhook_logs.c.received_at)
sa.Index(
    "ix_whatsapp_webhook_logs_error_kind",
    whatsapp_webhook_logs.c.error_kind,
    whatsapp_webhook_logs.c.id,
    postgresql_where=sa.text("error_kind IS NOT NULL"),
    sqlite_where=sa.text("error_kind IS NOT NULL"),
)

# the read API's group threads (wa_core/read/); partial: only group messages are in it
sa.Index(
    "ix_whatsapp_messages_group_thread",
    whatsapp_messages.c.organization_id,
    whatsapp_messages.c.group_id,
    postgresql_where=sa.text("group_id IS NOT NULL"),
    sqlite_where=sa.text("group_id IS NOT NULL"),
)

# the read API's conversation list: the organization's messages newest first (Meta's time)
sa.Index(
    "ix_whatsapp_messages_org_sort_time",
    whatsapp_messages.c.organization_id,
    sa.func.coalesce(whatsapp_messages.c.provider_timestamp, whatsapp_messages.c.received_at),
    whatsapp_messages.c.id,
)
