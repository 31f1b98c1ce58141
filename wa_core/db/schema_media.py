"""Inbound media files (Meta, WhatsApp Cloud API "Media": a media URL lives 5 minutes): one row per media id a message brought.

Rows are created by the processing engine (insert-once, key ``(phone_number_id, media_id)``)
when an inbound or history media message is applied, and moved through
``pending → stored | failed | expired`` by the downloader (:mod:`wa_core.media.download`).
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import BigId, _check_in, metadata, utcnow

#: ``pending``: waiting for (another) download attempt; ``stored``: the verified file is in
#: storage; ``failed``: permanent (sha/size mismatch after retries, over the cap, attempts
#: used up); ``expired``: Meta says the media id is gone, or it is older than 7 days (§9.1).
MEDIA_STATES = ("pending", "stored", "failed", "expired")

whatsapp_media = sa.Table(
    "whatsapp_media",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("connection_id", sa.Uuid(), sa.ForeignKey("whatsapp_connections.id", ondelete="SET NULL"),
              comment="The connection whose business token downloads it."),
    sa.Column("phone_number_id", sa.String(64), nullable=False),
    sa.Column("wamid", sa.String(255), nullable=False, comment="The message that brought it."),
    sa.Column("media_id", sa.String(128), nullable=False, comment="Meta's media id (lives 7 days for inbound media)."),
    sa.Column("kind", sa.String(16), nullable=False, comment="image, audio, video, document or sticker."),
    sa.Column("source", sa.String(32), nullable=False, comment="cloud_api (messages) or history (coexistence)."),
    sa.Column("mime_type", sa.String(255), comment="From the webhook, then from GET /{media-id}."),
    sa.Column("sha256", sa.String(128), comment="As the webhook gave it; once stored, the verified file's hex SHA-256."),
    sa.Column("filename", sa.Text(), comment="Documents: the file name the sender gave."),
    sa.Column("file_size", sa.BigInteger(), comment="Bytes, from GET /{media-id}."),
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), comment="Pending: due then (also the claim's lease)."),
    sa.Column("error_kind", sa.String(32)),
    sa.Column("last_error", sa.Text()),
    sa.Column("storage_key", sa.Text(), comment="Key under MEDIA_STORAGE_URL once stored."),
    sa.Column("stored_at", sa.DateTime(timezone=True)),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False, comment="When the webhook reached us (UTC)."),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, comment="first_seen_at + 7 days: Meta forgets the id then."),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=utcnow),
    sa.UniqueConstraint("phone_number_id", "media_id", name="uq_whatsapp_media_phone_media"),
    _check_in("state", MEDIA_STATES, "state"),
    sa.Index(
        "ix_whatsapp_media_due",
        "next_attempt_at",
        postgresql_where=sa.text("state = 'pending'"),
        sqlite_where=sa.text("state = 'pending'"),
    ),
    sa.Index("ix_whatsapp_media_org_media", "organization_id", "media_id"),
)

__all__ = ["MEDIA_STATES", "whatsapp_media"]
