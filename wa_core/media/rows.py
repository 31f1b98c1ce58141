"""The ``whatsapp_media`` row an inbound or history media message brings (Meta, WhatsApp Cloud API "Media").

Planned by the message handlers into :attr:`MessagePlan.extra
<wa_core.processing.records.MessagePlan.extra>`: an insert-once :class:`RowWrite` keyed by
``(phone_number_id, media_id)``, so a redelivered webhook (or a history asset for a media id
already seen) adds nothing and never resets a download in progress.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from wa_core.db.schema_media import whatsapp_media
from wa_core.processing.records import prepare
from wa_core.processing.state import RowWrite

#: message types whose object carries a downloadable media id (§9.2)
MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
#: inbound media ids live 7 days (§9.1 "Retention")
MEDIA_ID_LIFETIME = timedelta(days=7)
#: what a media id may look like; anything else never reaches a URL path or a storage key
MEDIA_ID = re.compile(r"(?=[^A-Za-z0-9]*[A-Za-z0-9])[A-Za-z0-9._-]{1,128}")  # use fullmatch: never "." or "..", no newline


def media_write(
    *,
    organization_id: Any,
    connection_id: Any,
    phone_number_id: str,
    wamid: str,
    message: dict[str, Any],
    source: str,
    received_at: datetime,
    clean: bool,
) -> RowWrite | None:
    """The ``whatsapp_media`` row of ``message`` (a ``messages[]`` item), or None when it is
    not a media message or names no media id (a history ``media_placeholder`` has none, §9.5).

    ``received_at`` (UTC) is when we first saw the id: the row is due at once and expires
    7 days later. A media id that is not ``[A-Za-z0-9._-]{1,128}`` gives a ``failed`` row
    (visible, never fetched). Raises :class:`~wa_core.processing.records.InvalidValue` for
    values the database would refuse (the message then fails with its media).
    """
    kind = message.get("type")
    content = message.get(kind) if isinstance(kind, str) and kind in MEDIA_TYPES else None
    if not isinstance(content, dict):
        return None
    media_id = content.get("id")
    if isinstance(media_id, int) and not isinstance(media_id, bool):
        media_id = str(media_id)
    if not isinstance(media_id, str) or not media_id:
        return None
    usable = MEDIA_ID.fullmatch(media_id) is not None
    values = {
        "organization_id": organization_id,
        "connection_id": connection_id,
        "phone_number_id": phone_number_id,
        "wamid": wamid,
        "media_id": media_id if usable else media_id[:128],
        "kind": kind,
        "source": source,
        "mime_type": _text(content.get("mime_type"), 255),
        "sha256": _text(content.get("sha256"), 128),
        "filename": _text(content.get("filename"), 1000),
        "state": "pending" if usable else "failed",
        "attempts": 0,
        "next_attempt_at": received_at if usable else None,
        "error_kind": None if usable else "invalid_media_id",
        "last_error": None if usable else "media id is not [A-Za-z0-9._-]{1,128}",
        "first_seen_at": received_at,
        "expires_at": received_at + MEDIA_ID_LIFETIME,
        "updated_at": received_at,
    }
    values = prepare("whatsapp_media", values, ("phone_number_id", "media_id"), clean)
    return RowWrite(whatsapp_media, values, key=("phone_number_id", "media_id"))


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


__all__ = ["MEDIA_ID", "MEDIA_ID_LIFETIME", "MEDIA_TYPES", "media_write"]
