"""The outbox: events written in the same transaction as the change that produced them.

**Exactly once.** An event's id is ``uuid5(organization, type, key)``: a redelivered webhook,
a re-applied batch or two runs applying the same item plan the same id, and the insert is
``ON CONFLICT (id) DO NOTHING``. So an event exists if and only if its change committed.

**Cursors in commit order.** A ``bigserial`` given at insert is not a safe cursor: a
transaction holding cursor 7 can commit after another one holding cursor 8 was read by a
consumer, who then never sees 7. Here each organization has a counter row
(``whatsapp_event_cursors``); :func:`flush_events`, the last step of the writing
transaction, first locks the organization's counter row (an upsert that writes nothing),
then, in one statement, inserts the events whose id is not stored yet with the cursors
``old + 1 … new`` and moves the counter to ``new``. The lock is held until the transaction
ends, so a second transaction of the same organization only gets its (higher) cursors once
the first has committed or rolled back: cursors become visible in increasing order, and a
consumer reading ``cursor > n`` never misses one. Since the insert runs after the lock was
taken, it sees every committed event of the organization: a duplicate (a redelivered
webhook, two deliveries of one processed concurrently) takes no cursor, so the counter is
the newest stored cursor and an endpoint that delivered everything is not "behind".
Cursors are increasing (in practice without gaps; consumers must not rely on that). Locks
are taken in organization order (no deadlock between two batches); since it is the last step before the commit, the
lock is held for milliseconds. SQLite has one writer: the same statements, trivially ordered.

**Set-based.** Handlers and writers *add* events to the connection's pending list while the
transaction runs (:func:`add_events`, no SQL); :func:`flush_events` writes them all in two
statements per transaction: the counters' lock, then one ``INSERT … SELECT FROM unnest``
that also moves the counters and sends the ``pg_notify`` (of the organizations that got events).
A savepoint that rolls back drops the events added since :func:`mark` (:func:`discard`); a
rolled-back transaction drops them all (:func:`discard` with mark 0, also done on every
``rollback`` of the connection).

On Postgres the flush also sends ``NOTIFY wa_events, '<organization id>'`` (delivered at
commit) so long-polling consumers and the push delivery run wake at once.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection

from wa_core.db.engine import storable
from wa_core.db.schema import utcnow
from wa_core.db.schema_events import whatsapp_event_cursors, whatsapp_events
from wa_core.processing.bulk import JsonText, chunks, is_postgres, pg_from, sqlite_insert
from wa_core.processing.state import EventSpec

log = logging.getLogger("wa_core.events")
#: Postgres channel notified (payload: the organization id) when events commit
EVENTS_CHANNEL = "wa_events"
#: uuid5 namespace of event ids
EVENT_NAMESPACE = uuid.UUID("6f1d2c3e-8a4b-5c6d-9e0f-1a2b3c4d5e6f")
_PENDING = "wa_events_pending"
_COLUMNS = ("id", "organization_id", "cursor", "type", "key", "occurred_at", "created_at", "payload", "webhook_log_id")


def event_id(organization_id: Any, type_: str, key: str) -> uuid.UUID:
    """The stable id of an event: ``uuid5(EVENT_NAMESPACE, "<organization>|<type>|<key>")``."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{organization_id}|{type_}|{key}")


def jsonable(value: Any) -> Any:
    """``value`` with UUIDs as text and datetimes as ISO 8601 (UTC), recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


#: a run of digits long enough to be an integer at or beyond 2**63 (or a long digit string)
_LONG_DIGITS = re.compile(r"\d{19}")


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def payload_text(payload: Any) -> JsonText:
    """``payload`` serialised for a ``jsonb`` column: the same JSON as
    ``storable(jsonable(payload))``, in one ``orjson.dumps`` when nothing needs cleaning (the
    common case), else through :func:`jsonable` and :func:`~wa_core.db.engine.storable` (NUL
    characters, lone surrogates, keys that are not text, integers of 2**63 and up)."""
    try:
        # orjson writes UUIDs and (aware) datetimes as str() and isoformat() do, NaN as null,
        # and refuses lone surrogates, keys that are not text and ints beyond 64 bits
        # (TypeError); ints of 2**63 and up (a 19-digit run or longer) take the slow path too
        text = orjson.dumps(payload).decode()
        if "\\u0000" not in text and not _LONG_DIGITS.search(text):
            return JsonText(text)
    except TypeError:
        pass
    return JsonText(json.dumps(storable(jsonable(payload)), ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def _pending(conn: Connection) -> list[tuple[EventSpec, int | None]]:
    return conn.info.setdefault(_PENDING, [])


def add_events(conn: Connection, specs: Iterable[EventSpec], webhook_log_id: int | None = None) -> None:
    """Queue ``specs`` to be written by :func:`flush_events` in ``conn``'s transaction (no SQL)."""
    pending = _pending(conn)
    pending.extend((spec, webhook_log_id) for spec in specs if spec.organization_id is not None)


def mark(conn: Connection) -> int:
    """How many events are pending (a savepoint's starting point for :func:`discard`)."""
    return len(_pending(conn))


def discard(conn: Connection, since: int = 0) -> None:
    """Drop the events added after :func:`mark` returned ``since`` (their savepoint or
    transaction rolled back)."""
    del _pending(conn)[since:]


def stamp(conn: Connection, since: int, webhook_log_id: int) -> None:
    """Attribute the events added after ``since`` without a webhook to ``webhook_log_id``."""
    pending = _pending(conn)
    for i in range(since, len(pending)):
        if pending[i][1] is None:
            pending[i] = (pending[i][0], webhook_log_id)


@sa_event.listens_for(sa.engine.Engine, "rollback")
def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_PENDING, None)


@sa_event.listens_for(sa.engine.Engine, "commit")
def _on_commit(conn: Connection) -> None:
    # events still pending at a commit were never flushed: a bug, never carried into the
    # next transaction of this pooled connection
    if conn.info.pop(_PENDING, None):
        log.error("events added but not flushed before a commit were dropped")


def flush_events(conn: Connection) -> int:
    """Write the pending events of ``conn``'s transaction and clear them; call it as the last
    step before the commit (it takes the organizations' cursor locks). Returns how many
    events were inserted (an event whose id is stored already is skipped and takes no
    cursor). Database errors propagate."""
    pending = conn.info.pop(_PENDING, None)
    if not pending:
        return 0
    now = utcnow()
    postgres = is_postgres(conn)
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for spec, webhook_log_id in pending:
        # payload values come from webhooks: NUL bytes and lone surrogates made storable like
        # the rows they describe, so a strange value never fails its batch's transaction
        kind, key = storable(str(spec.type))[:64], storable(str(spec.key))
        eid = event_id(spec.organization_id, kind, key)
        if eid not in rows:
            rows[eid] = {
                "id": eid,
                "organization_id": spec.organization_id,
                "type": kind,
                "key": key,
                "occurred_at": spec.occurred_at or now,
                "created_at": now,
                "payload": payload_text(spec.payload) if postgres else storable(jsonable(spec.payload)),
                "webhook_log_id": webhook_log_id,
            }
    per_org: dict[Any, list[dict[str, Any]]] = {}
    for row in rows.values():
        per_org.setdefault(row["organization_id"], []).append(row)
    orgs = sorted(per_org, key=str)  # lock order
    if postgres:
        return _flush_postgres(conn, orgs, per_org)
    fresh = _new_rows(conn, orgs, per_org)  # SQLite has one writer: what is not stored yet stays new
    tops = _take_cursors(conn, [(org, len(fresh[org])) for org in orgs if fresh[org]])
    ordered = []
    for org in orgs:
        if fresh[org]:
            first = tops[org] - len(fresh[org]) + 1
            for offset, row in enumerate(fresh[org]):
                ordered.append({**row, "cursor": first + offset})
    for part in chunks(ordered):
        sqlite_insert(conn, whatsapp_events, part, _COLUMNS, ["id"])
    return len(ordered)


#: the events not stored yet get the cursors after their organization's counter (locked by
#: the statement before, so this statement's snapshot sees every committed event of it), the
#: counter moves to the highest one given, and the organizations that got events are notified
_PG_FLUSH = """
WITH fresh AS (
  SELECT v.*, row_number() OVER (PARTITION BY v.organization_id ORDER BY v.cursor) AS n FROM {source}
  WHERE NOT EXISTS (SELECT 1 FROM whatsapp_events e WHERE e.id = v.id)),
ins AS (
  INSERT INTO whatsapp_events (id, organization_id, cursor, type, key, occurred_at, created_at, payload, webhook_log_id)
  SELECT f.id, f.organization_id, c.last_cursor + f.n, f.type, f.key, f.occurred_at, f.created_at, f.payload::jsonb, f.webhook_log_id
  FROM fresh f JOIN whatsapp_event_cursors c ON c.organization_id = f.organization_id ORDER BY f.organization_id, f.n
  ON CONFLICT (id) DO NOTHING RETURNING organization_id, cursor),
tops AS (SELECT organization_id, max(cursor) AS top, count(*) AS n FROM ins GROUP BY organization_id),
moved AS (
  UPDATE whatsapp_event_cursors c SET last_cursor = t.top, updated_at = now() FROM tops t
  WHERE c.organization_id = t.organization_id RETURNING c.organization_id, t.n)
SELECT n, pg_notify('%s', organization_id::text) FROM moved
""" % EVENTS_CHANNEL


def _flush_postgres(conn: Connection, orgs: list[Any], per_org: dict[Any, list[dict[str, Any]]]) -> int:
    """Two statements: lock the organizations' counters (in ``orgs`` order, created at 0 when
    missing; ``DO UPDATE … WHERE false`` locks without writing), then :data:`_PG_FLUSH`.
    A duplicate event (its id stored already, e.g. a redelivered webhook processed twice)
    takes no cursor. Returns how many events were inserted."""
    conn.exec_driver_sql(
        "INSERT INTO whatsapp_event_cursors (organization_id, last_cursor, updated_at)"
        " SELECT o, 0, now() FROM unnest(%(o)b::uuid[]) WITH ORDINALITY AS v(o, i) ORDER BY i"
        " ON CONFLICT (organization_id) DO UPDATE SET updated_at = excluded.updated_at WHERE false",
        {"o": orgs},
    )
    ordered = []
    for org in orgs:  # "cursor" carries the order within the organization (planned order)
        ordered.extend({**row, "cursor": k} for k, row in enumerate(per_org[org], 1))
    found = pg_from(conn, _PG_FLUSH, whatsapp_events, ordered, _COLUMNS).all()
    return sum(n for n, _ in found)


def _new_rows(conn: Connection, orgs: list[Any], per_org: dict[Any, list[dict[str, Any]]]) -> dict[Any, list[dict[str, Any]]]:
    """The rows of ``per_org`` whose id is not stored yet (SQLite)."""
    ids = [row["id"] for org in orgs for row in per_org[org]]
    stored: set[Any] = set()
    for part in chunks(ids):
        stored.update(conn.execute(sa.select(whatsapp_events.c.id).where(whatsapp_events.c.id.in_(list(part)))).scalars())
    return {org: [row for row in per_org[org] if row["id"] not in stored] for org in orgs}


def _take_cursors(conn: Connection, counts: list[tuple[Any, int]]) -> dict[Any, int]:
    """SQLite: add ``count`` to each organization's counter (creating it), in the given order,
    and return the new top cursor of each (Postgres numbers its events in :data:`_PG_FLUSH`)."""
    from sqlalchemy.dialects.sqlite import insert

    tops = {}
    now = utcnow()
    for org, n in counts:
        stmt = insert(whatsapp_event_cursors).values(organization_id=org, last_cursor=n, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["organization_id"],
            set_={"last_cursor": whatsapp_event_cursors.c.last_cursor + stmt.excluded.last_cursor, "updated_at": now},
        ).returning(whatsapp_event_cursors.c.last_cursor)
        tops[org] = conn.execute(stmt).scalar_one()
    return tops


def write_events(conn: Connection, specs: Iterable[EventSpec], webhook_log_id: int | None = None) -> int:
    """Add ``specs`` and flush at once: for code outside the processing engine (onboarding,
    operator actions). Call it last in the transaction, just before the commit."""
    add_events(conn, specs, webhook_log_id)
    return flush_events(conn)


__all__ = [
    "EVENTS_CHANNEL", "EVENT_NAMESPACE", "add_events", "discard", "event_id", "flush_events", "jsonable", "mark", "stamp",
    "write_events",
]
