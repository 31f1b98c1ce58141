"""Conversations of an organization: one per contact (1:1 thread) or per group thread.

A conversation's id is ``contact:<contact uuid>`` or ``group:<group_id>`` (Meta's group id,
meta-platform.md §10 groups). A message belongs to the group thread when it has a
``group_id``, else to its contact's thread (messages with neither are in no conversation).
Reactions, edits and revokes are shown on the message they target (:mod:`.messages`), not
as messages of the thread. Messages are ordered by Meta's time, ``coalesce(provider_timestamp, received_at)`` (so a
history import of old messages does not become the "last message"), then by id.

**Unread inbound** (our definition; Meta sends no read receipt for the business reading a
customer's message): the inbound messages of the thread newer than its latest outbound
message. Answering counts as having read the thread; a thread never answered counts all its
inbound messages.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc, whatsapp_contacts as contacts, whatsapp_messages as messages

MAX_LIMIT = 200
#: message rows that annotate another message (shown on it, not as messages of the thread)
ANNOTATION_TYPES = ("reaction", "edit", "revoke")


class NotFound(LookupError):
    """No such conversation, contact or message in the caller's organization."""


class BadCursor(ValueError):
    """A pagination cursor this API did not hand out, or a malformed conversation id."""


@dataclass(frozen=True)
class Thread:
    """A conversation: ``group_id`` for a group thread, else ``contact_id``."""

    contact_id: uuid.UUID | None = None
    group_id: str | None = None

    @property
    def id(self) -> str:
        """``contact:<uuid>`` or ``group:<group_id>``."""
        return f"group:{self.group_id}" if self.group_id is not None else f"contact:{self.contact_id}"

    @classmethod
    def parse(cls, conversation_id: str) -> Thread:
        """The thread a conversation id names; raises :class:`BadCursor` when malformed."""
        kind, _, value = conversation_id.partition(":")
        if kind == "group" and 0 < len(value) <= 255:
            return cls(group_id=value)
        if kind == "contact":
            try:
                return cls(contact_id=uuid.UUID(value))
            except ValueError:
                pass
        raise BadCursor("conversation id must be contact:<uuid> or group:<group id>")

    def condition(self) -> sa.ColumnElement[bool]:
        """The thread's messages (within an organization filter; annotations excluded)."""
        shown = messages.c.type.not_in(ANNOTATION_TYPES)
        if self.group_id is not None:
            return sa.and_(messages.c.group_id == self.group_id, shown)
        return sa.and_(messages.c.contact_id == self.contact_id, messages.c.group_id.is_(None), shown)


def sort_time() -> sa.ColumnElement[datetime]:
    """A message's place in its thread: Meta's time, else our arrival time (UTC)."""
    return sa.func.coalesce(messages.c.provider_timestamp, messages.c.received_at)


def encode_cursor(at: datetime, row_id: int) -> str:
    """An opaque keyset cursor for (time, id)."""
    raw = json.dumps([as_utc(at).isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(time, id) of a cursor from :func:`encode_cursor`; raises :class:`BadCursor`."""
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        parsed = datetime.fromisoformat(at)
        if not isinstance(row_id, int) or parsed.tzinfo is None:
            raise ValueError
        return parsed, row_id
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadCursor("invalid cursor") from exc


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def contact_json(row: Any) -> dict[str, Any] | None:
    """The public shape of a ``whatsapp_contacts`` row (None stays None)."""
    if row is None or row.id is None:
        return None
    return {
        "id": str(row.id), "wa_id": row.wa_id, "user_id": row.user_id, "profile_name": row.profile_name,
        "first_name": row.first_name, "in_address_book": row.in_address_book,
        "first_seen_at": _iso(row.first_seen_at), "last_seen_at": _iso(row.last_seen_at),
    }


def list_conversations(conn: Connection, organization_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """The organization's conversations, the most recent last message first.

    Each: ``id``, ``kind`` (``contact``/``group``), ``contact`` (1:1 threads), ``group_id``,
    ``phone_number_id`` and ``last_message`` (``id``, ``wamid``, ``direction``, ``type``,
    ``body``, ``at``), ``messages`` (count), ``unread_inbound`` (see the module doc),
    ``last_outbound_status`` (``current_status`` of the latest outbound message, None without
    one). Returns ``{"conversations": […], "next_cursor": str | None}``. Raises
    :class:`BadCursor`. One statement over the organization's messages (window functions).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise BadCursor(f"limit must be 1..{MAX_LIMIT}")
    m = messages.c
    group_key = m.group_id.label("g")
    contact_key = sa.case((m.group_id.is_(None), m.contact_id), else_=None).label("c")
    ts = sort_time().label("ts")
    partition = (m.group_id, sa.case((m.group_id.is_(None), m.contact_id), else_=None))
    order = (sort_time().desc(), m.id.desc())
    per_message = (
        sa.select(
            m.id, group_key, contact_key, ts, m.direction,
            sa.func.row_number().over(partition_by=partition, order_by=order).label("rn"),
            sa.func.row_number().over(partition_by=(*partition, m.direction), order_by=order).label("rn_dir"),
            sa.func.max(sa.case((m.direction == "outbound", sort_time()), else_=None)).over(partition_by=partition).label("last_out_ts"),
        )
        .where(
            m.organization_id == organization_id,
            sa.or_(m.group_id.is_not(None), m.contact_id.is_not(None)),
            m.type.not_in(ANNOTATION_TYPES),
        )
        .subquery("pm")
    )
    p = per_message.c
    unread = sa.and_(p.direction == "inbound", sa.or_(p.last_out_ts.is_(None), p.ts > p.last_out_ts))
    threads = (
        sa.select(
            p.g, p.c,
            sa.func.max(sa.case((p.rn == 1, p.id), else_=None)).label("last_id"),
            sa.func.max(p.ts).label("last_ts"),
            sa.func.max(sa.case((sa.and_(p.direction == "outbound", p.rn_dir == 1), p.id), else_=None)).label("last_out_id"),
            sa.func.count().label("total"),
            sa.func.sum(sa.case((unread, 1), else_=0)).label("unread"),
        )
        .group_by(p.g, p.c)
        .subquery("t")
    )
    t = threads.c
    last = messages.alias("last")
    out = messages.alias("out")
    stmt = (
        sa.select(*t, last.c.wamid, last.c.direction, last.c.type, last.c.body, last.c.phone_number_id, out.c.current_status.label("out_status"),
                  contacts.c.id, contacts.c.wa_id, contacts.c.user_id, contacts.c.profile_name, contacts.c.first_name,
                  contacts.c.in_address_book, contacts.c.first_seen_at, contacts.c.last_seen_at)
        .select_from(threads.join(last, last.c.id == t.last_id).outerjoin(out, out.c.id == t.last_out_id).outerjoin(contacts, contacts.c.id == t.c))
    )
    if cursor:
        at, row_id = decode_cursor(cursor)
        stmt = stmt.where(sa.or_(t.last_ts < at, sa.and_(t.last_ts == at, t.last_id < row_id)))
    found = conn.execute(stmt.order_by(t.last_ts.desc(), t.last_id.desc()).limit(limit + 1)).all()
    conversations = []
    for r in found[:limit]:
        thread = Thread(group_id=r.g) if r.g is not None else Thread(contact_id=r.c)
        conversations.append({
            "id": thread.id,
            "kind": "group" if r.g is not None else "contact",
            "group_id": r.g,
            "contact": contact_json(r) if r.g is None else None,
            "phone_number_id": r.phone_number_id,
            "last_message": {"id": r.last_id, "wamid": r.wamid, "direction": r.direction, "type": r.type, "body": r.body, "at": _iso(r.last_ts)},
            "messages": int(r.total),
            "unread_inbound": int(r.unread or 0),
            "last_outbound_status": r.out_status,
        })
    more = len(found) > limit
    next_cursor = encode_cursor(found[limit - 1].last_ts, found[limit - 1].last_id) if more else None
    return {"conversations": conversations, "next_cursor": next_cursor}


def get_contact(conn: Connection, organization_id: uuid.UUID, contact_id: str) -> dict[str, Any]:
    """One contact of the organization with its conversation id; raises :class:`NotFound`
    (unknown, another organization's, or not a UUID)."""
    try:
        wanted = uuid.UUID(contact_id)
    except ValueError as exc:
        raise NotFound("no such contact") from exc
    row = conn.execute(sa.select(contacts).where(contacts.c.id == wanted, contacts.c.organization_id == organization_id)).one_or_none()
    if row is None:
        raise NotFound("no such contact")
    out = contact_json(row)
    out["conversation_id"] = Thread(contact_id=row.id).id
    return out


__all__ = ["BadCursor", "NotFound", "Thread", "decode_cursor", "encode_cursor", "get_contact", "list_conversations", "sort_time"]
