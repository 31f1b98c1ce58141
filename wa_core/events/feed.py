"""Reading the event feed after a cursor (the pull API, push delivery) and purging old events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc, utcnow
from wa_core.db.schema_events import whatsapp_event_deliveries, whatsapp_events

#: most events one read returns
MAX_LIMIT = 1000


def event_json(row: Any) -> dict[str, Any]:
    """The public shape of one ``whatsapp_events`` row: ``id``, ``cursor``, ``type``,
    ``occurred_at`` and ``created_at`` (ISO 8601, UTC) and ``data`` (the payload)."""
    return {
        "id": str(row.id),
        "cursor": row.cursor,
        "type": row.type,
        "occurred_at": as_utc(row.occurred_at).isoformat(),
        "created_at": as_utc(row.created_at).isoformat(),
        "data": row.payload,
    }


def read_events(
    conn: Connection, organization_id: uuid.UUID, after: int = 0, *, types: Sequence[str] = (), limit: int = 100, upto: int | None = None
) -> list[Any]:
    """The organization's events with ``cursor > after`` (and ``<= upto`` when given), in
    cursor order, at most ``limit`` (capped at :data:`MAX_LIMIT`), only ``types`` when given
    (exact names, or a prefix ending in ``.*`` such as ``message.*``). Every event below the
    highest cursor returned has committed already (see :mod:`.outbox`), so the next read
    continues after it without missing one."""
    e = whatsapp_events.c
    query = sa.select(whatsapp_events).where(e.organization_id == organization_id, e.cursor > after)
    if upto is not None:
        query = query.where(e.cursor <= upto)
    exact = [t for t in types if not t.endswith(".*")]
    prefixes = [t[:-1] for t in types if t.endswith(".*")]
    if types:
        query = query.where(sa.or_(e.type.in_(exact) if exact else sa.false(), *(e.type.startswith(p, autoescape=True) for p in prefixes)))
    return conn.execute(query.order_by(e.cursor).limit(max(1, min(limit, MAX_LIMIT)))).all()


def last_cursor(conn: Connection, organization_id: uuid.UUID) -> int:
    """The organization's highest committed cursor (0 without events)."""
    e = whatsapp_events.c
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(e.cursor), 0)).where(e.organization_id == organization_id)).scalar_one()


def purge_events(conn: Connection, retention_days: float, *, now: datetime | None = None, batch: int = 10_000) -> int:
    """Delete events (and delivery attempts) older than ``retention_days`` (``EVENT_RETENTION_DAYS``),
    ``batch`` rows a statement; returns how many events were deleted. Cursors are untouched
    (a consumer's position stays valid: it just finds nothing older)."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    e, d = whatsapp_events.c, whatsapp_event_deliveries.c
    total = 0
    while True:
        ids = sa.select(e.id).where(e.created_at < cutoff).limit(batch).scalar_subquery()
        deleted = conn.execute(sa.delete(whatsapp_events).where(e.id.in_(ids))).rowcount
        total += deleted
        if deleted < batch:
            break
    conn.execute(sa.delete(whatsapp_event_deliveries).where(d.attempted_at < cutoff))
    return total


__all__ = ["MAX_LIMIT", "event_json", "last_cursor", "purge_events", "read_events"]
