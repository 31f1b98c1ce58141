"""Set-based writes of a batch's planned items: each table in one or two statements.

Order follows the dependencies: contacts (of messages and of contact syncs, in item order,
:mod:`.contacts`), then messages, then what
refers to messages by wamid (placeholders filled, statuses, reactions, revisions). Every
write is keyed exactly like the per-item writes in :mod:`.store`, so applying a batch twice,
or two overlapping batches at once, leaves one row per key:

- messages on (``phone_number_id``, wamid), ``ON CONFLICT DO NOTHING``; the first item of a
  key in the batch is the one inserted, as item-by-item order would have it;
- statuses on (``phone_number_id``, wamid, status), ``DO NOTHING``;
- reactions on (``phone_number_id``, target wamid, reactor): the batch's reactions of a key
  are folded in Meta's order first, then one upsert that only replaces an older reaction;
- revisions on (``phone_number_id``, revision wamid), ``DO NOTHING``;
- the other fields' rows (:class:`~.state.StatePlan`) by their own keys and order column
  (:func:`~.state.write_rows`).

Rows are sorted by key so that concurrent batches take row locks in the same order.

After the writes have committed, :func:`settle_messages` brings the messages the batch
touched up to date in one pass: ``current_status`` becomes the highest status in the
message's history (ranks only move forward; ``failed`` is terminal), and the message's
revisions are applied. Doing it after the commit is what makes it right under any
interleaving: of two runs that race (one stores a message, the other its status), the one
that commits second sees both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import (
    utcnow,
    whatsapp_message_reactions,
    whatsapp_message_revisions,
    whatsapp_message_statuses,
    whatsapp_messages,
)

from wa_core.events.outbox import add_events
from wa_core.events.produce import message_event, revision_event, status_event

from .bulk import chunks, is_postgres, keys_source, pg_from, pg_insert, sqlite_insert
from .contacts import resolve_contacts
from .records import ContactPlan, MessagePlan, Plan, RevisionPlan, StatePlan, StatusPlan
from .state import write_rows
from .store import STATUS_RANK, reaction_supersedes, revision_updates

MESSAGE_COLUMNS = tuple(col.name for col in whatsapp_messages.columns if col.name not in ("id", "edited_at", "revoked_at"))
STATUS_COLUMNS = tuple(col.name for col in whatsapp_message_statuses.columns if col.name != "id")
REACTION_COLUMNS = tuple(col.name for col in whatsapp_message_reactions.columns if col.name != "id")
REVISION_COLUMNS = tuple(col.name for col in whatsapp_message_revisions.columns if col.name not in ("id", "applied_at"))
_REACTION_SET = ("emoji", "reaction_wamid", "provider_timestamp", "updated_at")


def _first_per_key(rows: Iterable[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """The first row of each key, sorted by key (lock order)."""
    seen: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(tuple(row[k] for k in key), row)
    return [seen[k] for k in sorted(seen)]


def _insert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]], names: Sequence[str], conflict: Sequence[str]) -> None:
    if not rows:
        return
    if is_postgres(conn):
        pg_insert(conn, table, rows, names, f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING")
    else:
        sqlite_insert(conn, table, rows, names, conflict)


def write_plans(conn: Connection, plans: Sequence[Plan]) -> None:
    """Write ``plans`` (in item order) on ``conn`` within the caller's transaction.

    Raises :class:`~.contacts.ContactConflict` and database errors; the caller rolls back and
    applies the part that failed item by item.
    """
    messages = [p for p in plans if isinstance(p, MessagePlan)]
    with_contact = [p for p in plans if not isinstance(p, (StatusPlan, StatePlan)) and p.contact is not None]
    ids = resolve_contacts(conn, [p.contact for p in with_contact])
    contact_of = {id(p): contact_id for p, contact_id in zip(with_contact, ids)}
    now = utcnow()
    rows = _first_per_key(({**p.values, "contact_id": contact_of.get(id(p)), "created_at": now} for p in messages), ("phone_number_id", "wamid"))
    fills = _first_per_key((p.values for p in messages if p.fill_placeholder), ("phone_number_id", "wamid"))
    inserted: dict[tuple[str, str], Any] = {}
    if rows and is_postgres(conn):
        inserted = {(p, w): i for i, p, w in pg_insert(conn, whatsapp_messages, rows, MESSAGE_COLUMNS,
                                                       "ON CONFLICT (phone_number_id, wamid) DO NOTHING RETURNING id, phone_number_id, wamid")}
        first = {(r["phone_number_id"], r["wamid"]): r for r in rows}
        # a fill matters for a message stored before, or inserted by this batch as a placeholder
        fills = [f for f in fills if (key := (f["phone_number_id"], f["wamid"])) not in inserted or first[key]["type"] == "media_placeholder"]
    elif rows:
        before = _message_ids(conn, [(r["phone_number_id"], r["wamid"]) for r in rows])
        _insert(conn, whatsapp_messages, rows, MESSAGE_COLUMNS, ("phone_number_id", "wamid"))
        new_keys = [(r["phone_number_id"], r["wamid"]) for r in rows if (r["phone_number_id"], r["wamid"]) not in before]
        inserted = _message_ids(conn, new_keys)
    if inserted:
        by_key = {(r["phone_number_id"], r["wamid"]): r for r in rows}
        order = dict.fromkeys((p.values["phone_number_id"], p.values["wamid"]) for p in messages)  # item order
        for key in order:  # each event with the webhook that stored its message (the explorer's trace)
            if key in inserted and (event := message_event(by_key[key], inserted[key])) is not None:
                add_events(conn, (event,), by_key[key].get("webhook_log_id"))
    if fills:
        _fill_placeholders(conn, fills)
    statuses = [p.values for p in plans if isinstance(p, StatusPlan)]
    _insert(conn, whatsapp_message_statuses, _first_per_key(statuses, ("phone_number_id", "wamid", "status")), STATUS_COLUMNS,
            ("phone_number_id", "wamid", "status"))
    reactions = _fold_reactions(p.reaction for p in messages if p.reaction is not None)
    if reactions:
        _upsert_reactions(conn, reactions)
    revisions = [p.revision for p in plans if isinstance(p, RevisionPlan)]
    _insert(conn, whatsapp_message_revisions, _first_per_key(revisions, ("phone_number_id", "revision_wamid")), REVISION_COLUMNS,
            ("phone_number_id", "revision_wamid"))
    # the other fields' state (templates, number health, calls…), after the messages it may refer to
    states = [p for p in plans if isinstance(p, StatePlan)]
    moved = write_rows(conn, (w for p in plans for w in _state_rows(p)), [p.gate for p in states if p.gate is not None])
    for p in states:  # events and alerts only for a gate that moved its row (see .state)
        p.moved = p.gate is None or id(p.gate) in moved


def _message_ids(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """SQLite: the ids of the stored messages among ``keys`` (phone_number_id, wamid)."""
    m = whatsapp_messages.c
    found: dict[tuple[str, str], Any] = {}
    for part in chunks(list(keys)):
        for i, p, w in conn.execute(sa.select(m.id, m.phone_number_id, m.wamid).where(sa.tuple_(m.phone_number_id, m.wamid).in_(list(part)))):
            found[(p, w)] = i
    return found


def _state_rows(plan: Plan) -> list[Any]:
    if isinstance(plan, StatePlan):
        return plan.rows
    return plan.extra if isinstance(plan, (MessagePlan, ContactPlan)) else []


def _fill_placeholders(conn: Connection, fills: list[dict[str, Any]]) -> None:
    m = whatsapp_messages.c
    if is_postgres(conn):
        pg_from(
            conn,
            "UPDATE whatsapp_messages AS m SET type = v.type, body = v.body, raw = v.raw::jsonb FROM {source}"
            " WHERE m.phone_number_id = v.phone_number_id AND m.wamid = v.wamid AND m.type = 'media_placeholder'",
            whatsapp_messages, fills, ("phone_number_id", "wamid", "type", "body", "raw"),
        )
        return
    stmt = (
        sa.update(whatsapp_messages)
        .where(m.phone_number_id == sa.bindparam("b_phone"), m.wamid == sa.bindparam("b_wamid"), m.type == "media_placeholder")
        .values(type=sa.bindparam("b_type"), body=sa.bindparam("b_body"), raw=sa.bindparam("b_raw", type_=m.raw.type))
    )
    conn.execute(stmt, [{"b_phone": f["phone_number_id"], "b_wamid": f["wamid"], "b_type": f["type"], "b_body": f["body"], "b_raw": f["raw"]} for f in fills])


def _fold_reactions(reactions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reaction each (number, target, reactor) ends with after the batch's reactions are
    applied one after the other (:func:`~.store.reaction_supersedes`)."""
    latest: dict[tuple, dict[str, Any]] = {}
    for reaction in reactions:
        key = (reaction["phone_number_id"], reaction["target_wamid"], reaction["reactor"])
        stored = latest.get(key)
        if stored is None or reaction_supersedes(stored["provider_timestamp"], reaction["provider_timestamp"]):
            latest[key] = reaction
    return [latest[k] for k in sorted(latest)]


def _upsert_reactions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    r = whatsapp_message_reactions.c
    conflict = ("phone_number_id", "target_wamid", "reactor")
    if is_postgres(conn):
        t = "whatsapp_message_reactions"
        pg_insert(
            conn, whatsapp_message_reactions, rows, REACTION_COLUMNS,
            f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _REACTION_SET)
            + f" WHERE excluded.provider_timestamp IS NULL OR {t}.provider_timestamp IS NULL"
            f" OR {t}.provider_timestamp <= excluded.provider_timestamp",
        )
        return
    from sqlalchemy.dialects.sqlite import insert

    excluded = insert(whatsapp_message_reactions).excluded
    newer = sa.or_(excluded.provider_timestamp.is_(None), r.provider_timestamp.is_(None), r.provider_timestamp <= excluded.provider_timestamp)
    sqlite_insert(conn, whatsapp_message_reactions, rows, REACTION_COLUMNS, conflict, _REACTION_SET, newer)


# --- after the commit ---------------------------------------------------------------------
_RANKS = ", ".join(f"('{name}', {rank})" for name, rank in STATUS_RANK.items())
_PG_STATUSES = f"""
UPDATE whatsapp_messages AS m SET current_status = b.status, status_rank = b.rank
FROM (
  SELECT DISTINCT ON (s.phone_number_id, s.wamid) s.phone_number_id, s.wamid, s.status, r.rank,
    coalesce(s.provider_timestamp, s.received_at) AS at, s.webhook_log_id
  FROM {{keys}} JOIN whatsapp_message_statuses s ON s.phone_number_id = k.a AND s.wamid = k.b
  JOIN (VALUES {_RANKS}) AS r(status, rank) ON r.status = s.status
  ORDER BY s.phone_number_id, s.wamid, r.rank DESC
) AS b
WHERE m.phone_number_id = b.phone_number_id AND m.wamid = b.wamid AND m.status_rank < b.rank
RETURNING m.organization_id, m.id, m.phone_number_id, m.wamid, b.status, b.at, b.webhook_log_id
"""
_PG_REVISIONS = """
SELECT m.id AS message_id, r.id, r.kind, r.body, r.provider_timestamp, r.received_at, r.applied_at,
  m.organization_id, m.phone_number_id, m.wamid, r.revision_wamid
FROM {keys} JOIN whatsapp_message_revisions r ON r.phone_number_id = k.a AND r.original_wamid = k.b
JOIN whatsapp_messages m ON m.phone_number_id = k.a AND m.wamid = k.b
ORDER BY m.id, r.provider_timestamp IS NULL, r.provider_timestamp, r.id
"""


def settle_messages(conn: Connection, status_keys: set[tuple[str, str]], revision_keys: set[tuple[str, str]]) -> None:
    """Bring the messages the batch touched up to date, from what is committed now:
    ``current_status`` from ``whatsapp_message_statuses`` for ``status_keys`` and the
    revisions of ``revision_keys`` (both (``phone_number_id``, wamid) pairs)."""
    if status_keys:
        _recompute_statuses(conn, sorted(status_keys))
    if revision_keys:
        _apply_revisions(conn, sorted(revision_keys))


def _recompute_statuses(conn: Connection, keys: list[tuple[str, str]]) -> None:
    if is_postgres(conn):
        source, params = keys_source(conn, keys)
        moved = conn.exec_driver_sql(_PG_STATUSES.replace("{keys}", source), params).all()
        _status_events(conn, moved)
        return
    st, m = whatsapp_message_statuses.c, whatsapp_messages.c
    best: dict[tuple[str, str], str] = {}
    at: dict[tuple[str, str], Any] = {}
    for part in chunks(keys):
        for phone, wamid, status, provider_timestamp, received_at, webhook_log_id in conn.execute(
            sa.select(st.phone_number_id, st.wamid, st.status, st.provider_timestamp, st.received_at, st.webhook_log_id)
            .where(sa.tuple_(st.phone_number_id, st.wamid).in_(list(part)))
        ):
            rank = STATUS_RANK.get(status, 0)
            if rank and rank > STATUS_RANK.get(best.get((phone, wamid), ""), 0):
                best[(phone, wamid)] = status
                at[(phone, wamid)] = (provider_timestamp or received_at, webhook_log_id)
    if best:
        # one writer on SQLite: what moves is what is below its best status now
        moved = []
        for part in chunks(list(best)):
            for org, message_id, phone, wamid, rank in conn.execute(
                sa.select(m.organization_id, m.id, m.phone_number_id, m.wamid, m.status_rank)
                .where(sa.tuple_(m.phone_number_id, m.wamid).in_(list(part)))
            ):
                if rank < STATUS_RANK[best[(phone, wamid)]]:
                    moved.append((org, message_id, phone, wamid, best[(phone, wamid)], *at[(phone, wamid)]))
        _status_events(conn, moved)
        stmt = (
            sa.update(whatsapp_messages)
            .where(m.phone_number_id == sa.bindparam("b_phone"), m.wamid == sa.bindparam("b_wamid"), m.status_rank < sa.bindparam("b_rank"))
            .values(current_status=sa.bindparam("b_status"), status_rank=sa.bindparam("b_rank"))
        )
        conn.execute(stmt, [{"b_phone": p, "b_wamid": w, "b_status": s, "b_rank": STATUS_RANK[s]} for (p, w), s in best.items()])


def _status_events(conn: Connection, moved: Sequence[Any]) -> None:
    """``message.status_updated`` for each (organization, message id, phone, wamid, status, time,
    webhook) whose current status moved, in time order."""
    for org, mid, phone, wamid, status, when, webhook_log_id in sorted(moved, key=lambda r: (r[5] is None, r[5] or 0, r[2], r[3])):
        add_events(conn, [status_event(org, mid, phone, wamid, status, when)], webhook_log_id)


def _apply_revisions(conn: Connection, keys: list[tuple[str, str]]) -> None:
    if is_postgres(conn):
        source, params = keys_source(conn, keys)
        found = conn.exec_driver_sql(_PG_REVISIONS.replace("{keys}", source), params).all()
    else:
        v, m = whatsapp_message_revisions.c, whatsapp_messages.c
        found = []
        for part in chunks(keys):
            found += conn.execute(
                sa.select(m.id.label("message_id"), v.id, v.kind, v.body, v.provider_timestamp, v.received_at, v.applied_at,
                          m.organization_id, m.phone_number_id, m.wamid, v.revision_wamid)
                .join(whatsapp_messages, sa.and_(m.phone_number_id == v.phone_number_id, m.wamid == v.original_wamid))
                .where(sa.tuple_(v.phone_number_id, v.original_wamid).in_(list(part)))
                .order_by(m.id, v.provider_timestamp.is_(None), v.provider_timestamp, v.id)
            ).all()
    if not found:
        return
    by_message: dict[int, list[Any]] = defaultdict(list)
    for row in found:
        by_message[row.message_id].append(row)
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for message_id, revisions in by_message.items():
        updates = revision_updates(revisions)
        if updates:
            by_shape[tuple(sorted(updates))].append({"b_id": message_id, **{f"b_{k}": val for k, val in updates.items()}})
    m = whatsapp_messages.c
    for shape, params in by_shape.items():
        stmt = sa.update(whatsapp_messages).where(m.id == sa.bindparam("b_id")).values({k: sa.bindparam(f"b_{k}", type_=m[k].type) for k in shape})
        conn.execute(stmt, params)
    pending = sorted(row.id for row in found if row.applied_at is None)
    add_events(conn, (
        revision_event(r.organization_id, r.message_id, r.phone_number_id, r.wamid, r.revision_wamid, r.kind, r.provider_timestamp or r.received_at)
        for r in found if r.applied_at is None and r.kind in ("edit", "revoke")
    ))
    if pending:
        applied: datetime = utcnow()
        v = whatsapp_message_revisions.c
        for part in chunks(pending):
            conn.execute(sa.update(whatsapp_message_revisions).where(v.id.in_(list(part))).values(applied_at=applied))


__all__ = ["MESSAGE_COLUMNS", "settle_messages", "write_plans"]
