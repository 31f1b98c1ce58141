"""One trace per landed webhook: arrival, processing, each item's outcome, the rows it wrote.

:func:`trace_webhook` builds the trace from :data:`TRACE_SECTIONS`, an ordered list of
``(name, function)``: each function takes ``(conn, row, keys)`` (the ``whatsapp_webhook_logs``
row and the webhook's search keys ``{kind: [values]}``, None once the body is purged) and returns that section's JSON-ready
value. A concern adds its own section (e.g. the events the webhook produced) by appending
one function. The raw body is a separate, opt-in part (:func:`trace_webhook` ``include_body``)
that the admin API shows to the admin token only, and only while retention keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc, metadata, whatsapp_message_statuses, whatsapp_messages, whatsapp_webhook_logs as logs
from wa_core.db.schema_explorer import whatsapp_webhook_items as items, whatsapp_webhook_keys as keys_table
from wa_core.explorer.keys import extract_keys, unit_row

#: rows listed per table in the ``rows`` section at most
MAX_ROWS_PER_TABLE = 200


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
        return str(value)
    return value


def _columns(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: _json(row._mapping[name]) for name in names}


def arrival(conn: Connection, row: Any, keys: dict[str, list[str]] | None) -> dict[str, Any]:
    """What the receiver knew: time (UTC), size in bytes, body hash, signature result,
    request id, and the routing WABA read from the envelope."""
    return _columns(row, ("received_at", "body_size", "body_sha256", "signature_status", "request_id", "waba_id"))


def processing(conn: Connection, row: Any, keys: dict[str, list[str]] | None) -> dict[str, Any]:
    """The row's state and outcome counts (see ``whatsapp_webhook_logs``)."""
    out = _columns(row, (
        "status", "attempts", "fields", "organization_id", "items_received", "items_processed", "items_ignored",
        "items_failed", "items_dead", "error_kind", "last_error", "next_attempt_at", "processed_at", "replay_count",
        "replayed_at", "body_purged_at",
    ))
    out["body_kept"] = row.body is not None
    return out


def _item_rows(conn: Connection, row: Any) -> list[dict[str, Any]]:
    """The webhook's item rows: stored ones (a webhook with an ignored or failed item), else,
    for a webhook whose every item was processed (stored without item rows, see
    :func:`~wa_core.explorer.keys.item_rows`), its items listed again from the body by the
    same parse processing does (routing look-ups only; nothing written); [] once retention
    removed the body."""
    stored = [dict(r._mapping) for r in conn.execute(sa.select(items).where(items.c.webhook_log_id == row.id).order_by(items.c.position))]
    if stored or row.status != "processed" or not row.items_received or row.items_processed != row.items_received or row.body is None:
        return stored
    from wa_core.processing.dispatch import parse_webhook

    parsed = parse_webhook(conn, row.id, bytes(row.body), as_utc(row.received_at))
    if len(parsed.units) != row.items_received or any(isinstance(unit.result, tuple) for unit in parsed.units):
        # parsed today it would not be what processing applied (routing changed since, e.g. the
        # number unbound): no made-up items; the counts stand, and its rows are found by its keys
        return []
    out = []
    for n, unit in enumerate(parsed.units):
        item = unit_row(row.id, row.attempts, n, unit)
        item["result"] = "processed"  # what this webhook's outcome says of every item
        out.append(item)
    return out


def item_outcomes(conn: Connection, row: Any, keys: dict[str, list[str]] | None) -> list[dict[str, Any]]:
    """Each item of the latest processing attempt: place in the body, result, error kind and
    message (empty until the webhook has been processed once; a fully processed webhook's items
    are listed from its body while retention keeps it, :func:`_item_rows`)."""
    return [{name: _json(item[name]) for name in ("position", "place", "result", "error_kind", "error", "attempt")} for item in _item_rows(conn, row)]


def search_keys(conn: Connection, row: Any, keys: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
    """The ids in the body, by kind (what the explorer finds the webhook by), extracted again
    from the body; None once retention removed it (the search still finds it)."""
    return keys


def _item_wamids(conn: Connection, row: Any) -> set[tuple[str, str]]:
    pairs = {(item["phone_number_id"], item["wamid"]) for item in _item_rows(conn, row) if item["wamid"] is not None and item["phone_number_id"] is not None}
    if pairs:
        return pairs
    # no item names one (body purged, or items not listable again): the stored search keys still
    # name its numbers and wamids (a (number, wamid) pair not in the body finds nothing more)
    stored: dict[str, set[str]] = {"wamid": set(), "phone_number_id": set()}
    stmt = sa.select(keys_table.c.kind, keys_table.c.value).where(
        keys_table.c.webhook_log_id == row.id, keys_table.c.kind.in_(tuple(stored))
    )
    for kind, value in conn.execute(stmt):
        stored[kind].add(value)
    return {(p, w) for p in stored["phone_number_id"] for w in stored["wamid"]}


def _by_wamid(conn: Connection, table: sa.Table, row: Any, pairs: set[tuple[str, str]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    wamids, numbers = sorted({w for _, w in pairs}), sorted({p for p, _ in pairs})
    if not wamids or not numbers:
        return []
    stmt = (
        sa.select(*(table.c[n] for n in names), table.c.webhook_log_id)
        .where(table.c.phone_number_id.in_(numbers), table.c.wamid.in_(wamids[:1000]))
        .order_by(table.c.id)
        .limit(MAX_ROWS_PER_TABLE)
    )
    out = []
    for r in conn.execute(stmt):
        if (r.phone_number_id, r.wamid) not in pairs:
            continue
        item = _columns(r, names)
        item["written_by"] = r.webhook_log_id
        item["written_by_this_webhook"] = r.webhook_log_id == row.id
        out.append(item)
    return out


def _indexed_by_webhook(table: sa.Table) -> bool:
    return "webhook_log_id" in table.c and any(list(ix.columns)[0].name == "webhook_log_id" for ix in table.indexes)


def rows_written(conn: Connection, row: Any, keys: dict[str, list[str]] | None) -> dict[str, list[dict[str, Any]]]:
    """Rows of the domain tables that carry this webhook's ids: messages and statuses by the
    (``phone_number_id``, ``wamid``) of its items (``whatsapp_webhook_items``), with ``written_by`` (the webhook that stored the row:
    another id means this delivery found it already stored), and the rows of every other
    table with an index on ``webhook_log_id``. At most :data:`MAX_ROWS_PER_TABLE` per table."""
    pairs = _item_wamids(conn, row)
    out = {
        "whatsapp_messages": _by_wamid(conn, whatsapp_messages, row, pairs, (
            "id", "phone_number_id", "wamid", "direction", "source", "type", "current_status", "provider_timestamp", "edited_at", "revoked_at",
        )),
        "whatsapp_message_statuses": _by_wamid(conn, whatsapp_message_statuses, row, pairs, (
            "id", "phone_number_id", "wamid", "status", "error_code", "provider_timestamp",
        )),
    }
    skip = {"whatsapp_messages", "whatsapp_message_statuses", items.name, keys_table.name, "whatsapp_events"}
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        if table.name in skip or not _indexed_by_webhook(table):
            continue
        names = tuple(c.name for c in table.columns if not isinstance(c.type, (sa.JSON, sa.LargeBinary)))[:12]
        stmt = sa.select(*(table.c[n] for n in names)).where(table.c.webhook_log_id == row.id).limit(MAX_ROWS_PER_TABLE)
        out[table.name] = [_columns(r, names) for r in conn.execute(stmt)]
    return out


def events_produced(conn: Connection, row: Any, keys: dict[str, list[str]] | None) -> list[dict[str, Any]]:
    """The event-feed events this webhook's processing wrote (``whatsapp_events`` by
    ``webhook_log_id``), in cursor order: id, organization, type, cursor, times and payload;
    at most :data:`MAX_ROWS_PER_TABLE`. A redelivery that changed nothing produced none."""
    from wa_core.db.schema_events import whatsapp_events as ev

    stmt = (
        sa.select(ev.c.id, ev.c.organization_id, ev.c.type, ev.c.cursor, ev.c.occurred_at, ev.c.created_at, ev.c.payload)
        .where(ev.c.webhook_log_id == row.id)
        .order_by(ev.c.organization_id, ev.c.cursor)
        .limit(MAX_ROWS_PER_TABLE)
    )
    return [_columns(r, ("id", "organization_id", "type", "cursor", "occurred_at", "created_at", "payload")) for r in conn.execute(stmt)]


Section = Callable[[Connection, Any, dict[str, list[str]] | None], Any]
#: the trace's sections, in order; append ``(name, function)`` to add one
TRACE_SECTIONS: list[tuple[str, Section]] = [
    ("arrival", arrival),
    ("processing", processing),
    ("items", item_outcomes),
    ("keys", search_keys),
    ("rows", rows_written),
    ("events", events_produced),
]


def webhook_keys(row: Any) -> dict[str, list[str]] | None:
    """The search keys of one webhook row, ``{kind: [values, sorted]}``, read from its body
    (:func:`~wa_core.explorer.keys.extract_keys`, as processing does); None without a body or
    for a body that is not JSON."""
    from wa_core.processing.records import parse_body

    if row.body is None:
        return None
    try:
        payload, _ = parse_body(bytes(row.body))
    except (ValueError, RecursionError):
        return None
    out: dict[str, list[str]] = {}
    for kind, value in sorted(extract_keys(payload)):
        out.setdefault(kind, []).append(value)
    return out


def trace_webhook(conn: Connection, webhook_log_id: int, *, include_body: bool = False) -> dict[str, Any] | None:
    """The trace of one webhook: ``{"id", <section>: …, "body": …}``, None when no such row.

    ``body`` is only present with ``include_body``: ``{"kept": true, "text": …}`` (the bytes
    decoded as UTF-8, undecodable bytes replaced) while retention keeps the body, else
    ``{"kept": false, "purged_at": …}``.
    """
    row = conn.execute(sa.select(logs).where(logs.c.id == webhook_log_id)).one_or_none()
    if row is None:
        return None
    keys = webhook_keys(row)
    trace: dict[str, Any] = {"id": row.id}
    for name, section in TRACE_SECTIONS:
        trace[name] = section(conn, row, keys)
    if include_body:
        if row.body is None:
            trace["body"] = {"kept": False, "purged_at": _json(row.body_purged_at)}
        else:
            trace["body"] = {"kept": True, "text": bytes(row.body).decode("utf-8", "replace")}
    return trace


__all__ = ["MAX_ROWS_PER_TABLE", "TRACE_SECTIONS", "Section", "trace_webhook", "webhook_keys"]
