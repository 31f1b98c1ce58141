"""Conversations of an organization: one per contact (1:1 thread) or per group thread.

A conversation's id is ``contact:<contact uuid>`` or ``group:<group_id>`` (Meta's group id,
Meta, WhatsApp Cloud API "Groups" reference). A message belongs to the group thread when it has a
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
        if kind == "group" and 0 < len(value) <= 255 and value.isprintable():  # no NUL or control characters
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
        if type(row_id) is not int or not 0 <= row_id < 2**63 or parsed.tzinfo is None:  # a bigint id, not a bool
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


#: messages read per step of the newest-first scan that finds a page's threads
SCAN_STEP = 500


def _thread_of(row: Any) -> Thread:
    return Thread(group_id=row.group_id) if row.group_id is not None else Thread(contact_id=row.contact_id)


def _threads_condition(threads: list[Thread]) -> sa.ColumnElement[bool]:
    groups = [t.group_id for t in threads if t.group_id is not None]
    people = [t.contact_id for t in threads if t.group_id is None]
    parts = []
    if groups:
        parts.append(messages.c.group_id.in_(groups))
    if people:
        parts.append(sa.and_(messages.c.contact_id.in_(people), messages.c.group_id.is_(None)))
    return sa.and_(sa.or_(*parts), messages.c.type.not_in(ANNOTATION_TYPES))


def _in_conversations(organization_id: uuid.UUID) -> list[sa.ColumnElement[bool]]:
    m = messages.c
    return [m.organization_id == organization_id, sa.or_(m.group_id.is_not(None), m.contact_id.is_not(None)), m.type.not_in(ANNOTATION_TYPES)]


def _before(at: datetime, row_id: int) -> sa.ColumnElement[bool]:
    ts = sort_time()
    return sa.or_(ts < at, sa.and_(ts == at, messages.c.id < row_id))


def _page_threads(conn: Connection, organization_id: uuid.UUID, limit: int, cursor: tuple[datetime, int] | None) -> list[tuple[Thread, datetime, int]]:
    """Up to ``limit + 1`` threads whose last message is before ``cursor``, most recent first:
    the organization's messages are scanned newest first (index ``(organization_id, sort
    time, id)``) in steps of :data:`SCAN_STEP`; a thread's first message met is its last one,
    unless (after a cursor) the thread has a newer message and so was on an earlier page."""
    m = messages.c
    ts = sort_time().label("ts")
    found: list[tuple[Thread, datetime, int]] = []
    seen: set[Thread] = set()
    position = cursor
    while len(found) <= limit:
        stmt = sa.select(m.id, m.group_id, m.contact_id, ts).where(*_in_conversations(organization_id))
        if position is not None:
            stmt = stmt.where(_before(*position))
        batch = conn.execute(stmt.order_by(sort_time().desc(), m.id.desc()).limit(SCAN_STEP)).all()
        if not batch:
            break
        fresh: list[tuple[Thread, datetime, int]] = []
        for row in batch:
            thread = _thread_of(row)
            if thread not in seen:
                seen.add(thread)
                fresh.append((thread, row.ts, row.id))
        if cursor is not None and fresh:  # drop the threads an earlier page showed
            newer = {_thread_of(r) for r in conn.execute(
                sa.select(m.group_id, m.contact_id).where(*_in_conversations(organization_id), _threads_condition([t for t, _, _ in fresh]),
                                                          sa.not_(_before(*cursor))).distinct()
            )}
            fresh = [f for f in fresh if f[0] not in newer]
        found.extend(fresh)
        last = batch[-1]
        position = (last.ts, last.id)
        if len(batch) < SCAN_STEP:
            break
    return found[: limit + 1]


def list_conversations(conn: Connection, organization_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """The organization's conversations, the most recent last message first.

    Each: ``id``, ``kind`` (``contact``/``group``), ``contact`` (1:1 threads), ``group_id``,
    ``phone_number_id`` and ``last_message`` (``id``, ``wamid``, ``direction``, ``type``,
    ``body``, ``at``), ``messages`` (count), ``unread_inbound`` (see the module doc),
    ``last_outbound_status`` (``current_status`` of the latest outbound message, None without
    one). Returns ``{"conversations": […], "next_cursor": str | None}``. Raises
    :class:`BadCursor`. Cost: a newest-first index scan until the page's threads are found,
    then three statements over those threads' messages (indexes ``contact_id`` and
    ``(organization_id, group_id)``), never a pass over all the organization's messages.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise BadCursor(f"limit must be 1..{MAX_LIMIT}")
    found = _page_threads(conn, organization_id, limit, decode_cursor(cursor) if cursor else None)
    page = found[:limit]
    if not page:
        return {"conversations": [], "next_cursor": None}
    m = messages.c
    threads = [t for t, _, _ in page]
    in_page = sa.and_(m.organization_id == organization_id, _threads_condition(threads))
    ts = sort_time()
    group_key = m.group_id
    contact_key = sa.case((m.group_id.is_(None), m.contact_id), else_=None)
    aggregate = (
        sa.select(group_key.label("g"), contact_key.label("c"), sa.func.count().label("total"),
                  sa.func.max(sa.case((m.direction == "outbound", ts), else_=None)).label("last_out_ts"))
        .where(in_page).group_by(group_key, contact_key).subquery("a")
    )
    a = aggregate.c
    same_thread = sa.or_(m.group_id == a.g, sa.and_(a.g.is_(None), m.group_id.is_(None), m.contact_id == a.c))
    unread = sa.and_(m.direction == "inbound", sa.or_(a.last_out_ts.is_(None), ts > a.last_out_ts))
    stats: dict[Thread, list[Any]] = {}
    per_thread = (
        sa.select(a.g, a.c, a.total, sa.func.sum(sa.case((unread, 1), else_=0)).label("unread"))
        .select_from(aggregate.join(messages, same_thread)).where(in_page).group_by(a.g, a.c, a.total)
    )
    for r in conn.execute(per_thread):
        stats[Thread(group_id=r.g) if r.g is not None else Thread(contact_id=r.c)] = [int(r.total), None, int(r.unread or 0), None]
    last_outbound = (
        sa.select(m.id, m.group_id, m.contact_id, m.current_status)
        .select_from(aggregate.join(messages, same_thread))
        .where(in_page, m.direction == "outbound", ts == a.last_out_ts)
        .order_by(m.id)
    )
    for r in conn.execute(last_outbound):  # the highest id among equal times wins
        entry = stats.get(_thread_of(r))
        if entry is not None:
            entry[3] = r.current_status
    last_rows = {r.id: r for r in conn.execute(
        sa.select(m.id, m.wamid, m.direction, m.type, m.body, m.phone_number_id).where(m.id.in_([i for _, _, i in page]))
    )}
    people = {r.id: r for r in conn.execute(sa.select(contacts).where(contacts.c.id.in_([t.contact_id for t in threads if t.contact_id])))}
    conversations = []
    for thread, at, row_id in page:
        r = last_rows[row_id]
        total, _, unread, out_status = stats.get(thread, [0, None, 0, None])
        conversations.append({
            "id": thread.id,
            "kind": "group" if thread.group_id is not None else "contact",
            "group_id": thread.group_id,
            "contact": contact_json(people.get(thread.contact_id)) if thread.group_id is None else None,
            "phone_number_id": r.phone_number_id,
            "last_message": {"id": row_id, "wamid": r.wamid, "direction": r.direction, "type": r.type, "body": r.body, "at": _iso(at)},
            "messages": total,
            "unread_inbound": unread,
            "last_outbound_status": out_status,
        })
    next_cursor = encode_cursor(page[-1][1], page[-1][2]) if len(found) > limit else None
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
