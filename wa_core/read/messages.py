"""A conversation's messages, newest first, keyset-paginated, with what happened to them:
delivery statuses (outbound), reactions, revisions (edits and revokes) and media links.

Pages are read with ``(coalesce(provider_timestamp, received_at), id) < cursor`` over the
thread's messages (index ``contact_id`` for 1:1 threads, partial ``group_id`` for groups);
the statuses, reactions and revisions of a page are three indexed look-ups keyed by
(``phone_number_id``, wamid), whatever the page size.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import (
    as_utc,
    whatsapp_message_reactions as reactions,
    whatsapp_message_revisions as revisions,
    whatsapp_message_statuses as statuses,
    whatsapp_messages as messages,
)

from .conversations import MAX_LIMIT, BadCursor, NotFound, Thread, decode_cursor, encode_cursor, sort_time

#: message types whose payload names a Meta media id (Meta, WhatsApp Cloud API "Media")
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
#: where a message's media is streamed from (``GET /api/v1/whatsapp/media/{id}``)
MEDIA_PATH = "/api/v1/whatsapp/media/{id}"


def _iso(value: Any) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def media_link(message_type: str, raw: Any) -> dict[str, Any] | None:
    """``{"media_id", "mime_type", "url"}`` for a media message (``raw[type].id``), else None."""
    if message_type not in MEDIA_TYPES or not isinstance(raw, dict):
        return None
    media = raw.get(message_type)
    if not isinstance(media, dict) or not isinstance(media.get("id"), (str, int)):
        return None
    media_id = str(media["id"])
    return {"media_id": media_id, "mime_type": media.get("mime_type"), "url": MEDIA_PATH.format(id=media_id)}


def _by_key(conn: Connection, table: sa.Table, wamid_column: str, keys: set[tuple[str, str]], order: Any) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = defaultdict(list)
    if not keys:
        return out
    numbers = sorted({k[0] for k in keys})
    wamids = sorted({k[1] for k in keys})
    column = table.c[wamid_column]
    for row in conn.execute(sa.select(table).where(table.c.phone_number_id.in_(numbers), column.in_(wamids)).order_by(*order)):
        key = (row.phone_number_id, row._mapping[wamid_column])
        if key in keys:
            out[key].append(row)
    return out


def list_messages(
    conn: Connection, organization_id: uuid.UUID, conversation_id: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """One page of a conversation's messages, newest first.

    Each message: ``id``, ``wamid``, ``phone_number_id``, ``direction``, ``source``, ``type``,
    ``body``, ``context_wamid``, ``group_id``, ``contact_id``, ``at`` (Meta's time, UTC),
    ``received_at``, ``current_status``, ``error_code``/``error_title``, ``edited_at``,
    ``revoked_at``, ``statuses`` (``[{status, at, error_code, error_title}]`` in time order),
    ``reactions`` (``[{reactor, emoji, at}]``, current ones only), ``revisions``
    (``[{kind, body, at, applied}]``) and ``media`` (:func:`media_link`).
    Returns ``{"conversation_id", "messages", "next_cursor"}``. Raises :class:`NotFound` when
    the conversation has no message in the organization (another organization's included)
    and :class:`BadCursor` for a malformed id or cursor.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise BadCursor(f"limit must be 1..{MAX_LIMIT}")
    thread = Thread.parse(conversation_id)
    ts = sort_time()
    stmt = sa.select(messages, ts.label("ts")).where(messages.c.organization_id == organization_id, thread.condition())
    if cursor:
        at, row_id = decode_cursor(cursor)
        stmt = stmt.where(sa.or_(ts < at, sa.and_(ts == at, messages.c.id < row_id)))
    found = conn.execute(stmt.order_by(ts.desc(), messages.c.id.desc()).limit(limit + 1)).all()
    if not found and not cursor:
        exists = conn.execute(sa.select(messages.c.id).where(messages.c.organization_id == organization_id, thread.condition()).limit(1)).first()
        if exists is None:
            raise NotFound("no such conversation")
    page = found[:limit]
    keys = {(r.phone_number_id, r.wamid) for r in page}
    by_status = _by_key(conn, statuses, "wamid", keys, (statuses.c.provider_timestamp, statuses.c.id))
    by_reaction = _by_key(conn, reactions, "target_wamid", keys, (reactions.c.provider_timestamp, reactions.c.id))
    by_revision = _by_key(conn, revisions, "original_wamid", keys, (revisions.c.provider_timestamp, revisions.c.id))
    out = []
    for r in page:
        key = (r.phone_number_id, r.wamid)
        out.append({
            "id": r.id, "wamid": r.wamid, "phone_number_id": r.phone_number_id, "direction": r.direction, "source": r.source,
            "type": r.type, "body": r.body, "context_wamid": r.context_wamid, "group_id": r.group_id,
            "contact_id": str(r.contact_id) if r.contact_id else None, "at": _iso(r.ts), "received_at": _iso(r.received_at),
            "current_status": r.current_status, "error_code": r.error_code, "error_title": r.error_title,
            "edited_at": _iso(r.edited_at), "revoked_at": _iso(r.revoked_at),
            "statuses": [
                {"status": s.status, "at": _iso(s.provider_timestamp), "error_code": s.error_code, "error_title": s.error_title}
                for s in by_status.get(key, ())
            ],
            "reactions": [
                {"reactor": x.reactor, "emoji": x.emoji, "at": _iso(x.provider_timestamp)} for x in by_reaction.get(key, ()) if x.emoji
            ],
            "revisions": [
                {"kind": v.kind, "body": v.body, "at": _iso(v.provider_timestamp), "applied": v.applied_at is not None}
                for v in by_revision.get(key, ())
            ],
            "media": media_link(r.type, r.raw),
        })
    next_cursor = encode_cursor(found[limit - 1].ts, found[limit - 1].id) if len(found) > limit else None
    return {"conversation_id": thread.id, "messages": out, "next_cursor": next_cursor}


__all__ = ["MEDIA_PATH", "list_messages", "media_link", "NotFound", "BadCursor"]
