"""Search keys and item outcomes of processed webhooks, written set-based with the batch.

The landing insert stays one plain row (the receiver's hot path): what the explorer searches
by inside a body (wamids, ``wa_id`` / ``user_id``, ``phone_number_id``, WABA ids, fields) is
extracted while the processing batch parses the body anyway (:func:`extract_keys`, called by
:func:`~wa_core.processing.dispatch.parse_webhook`) and written with the row's outcome in the
same transaction (:func:`write_explorer_rows`): one ``INSERT … ON CONFLICT DO NOTHING`` for
the keys of the whole batch and one upsert for its items (a retried or replayed webhook's
items are those of its latest attempt). The keys table has no foreign key and no index but
its primary key ``(kind, value, webhook_log_id)``: each costs the batch (docs/benchmarks.md). So a webhook is searchable by the
ids in its body once it has been processed (failed and dead rows included); its state, error
kind, time and routing WABA are searchable from the moment it lands.

Choice measured against a GIN index over the body (docs/benchmarks.md, "Webhook explorer"):
the body is ``bytea`` (exact bytes as Meta signed them) and can be purged by retention, so a
GIN index would need a second, parsed copy of every body written by the landing insert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema_explorer import whatsapp_webhook_items as items_table, whatsapp_webhook_keys as keys_table

#: keys kept per webhook at most (a 3 MB history webhook names thousands of wamids); the
#: first ones in body order are kept
MAX_KEYS_PER_WEBHOOK = 5000
#: dictionary keys whose string values are phone-based WhatsApp ids (Meta §3, §4)
_WA_ID_KEYS = frozenset({"wa_id", "from", "to", "recipient_id"})
#: dictionary keys whose string values are business-scoped user ids (BSUID)
_USER_ID_KEYS = frozenset({"user_id", "from_user_id", "recipient_user_id", "to_user_id"})
_MAX_DEPTH = 12


def _usable(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 255
        and "\x00" not in value
        and (value.isascii() or value.isprintable())
        and not any("\ud800" <= ch <= "\udfff" for ch in value)
    )


def _walk(node: Any, out: dict[tuple[str, str], None], depth: int = 0) -> None:
    if depth > _MAX_DEPTH or len(out) >= MAX_KEYS_PER_WEBHOOK:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                _walk(value, out, depth + 1)
            elif _usable(value):
                if value.startswith("wamid."):
                    out[("wamid", value)] = None
                elif key in _WA_ID_KEYS:
                    out[("wa_id", value)] = None
                elif key in _USER_ID_KEYS:
                    out[("user_id", value)] = None
                elif key == "phone_number_id":
                    out[("phone_number_id", value)] = None
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, (dict, list)):
                _walk(value, out, depth + 1)
            elif _usable(value) and value.startswith("wamid."):
                out[("wamid", value)] = None


def extract_keys(payload: Any) -> list[tuple[str, str]]:
    """The search keys ``(kind, value)`` of a parsed webhook envelope, in body order, without
    duplicates, at most :data:`MAX_KEYS_PER_WEBHOOK`.

    Kinds: ``waba_id`` (each ``entry[].id``), ``field`` (each ``changes[].field``),
    ``phone_number_id`` (anywhere, e.g. ``value.metadata.phone_number_id``), ``wamid`` (any
    string starting ``wamid.``: message, status, echo, context, reaction target), ``wa_id``
    (values of ``wa_id``/``from``/``to``/``recipient_id``) and ``user_id`` (values of
    ``user_id``/``from_user_id``/``recipient_user_id``/``to_user_id``); meta-platform.md §3–§4
    for where Meta puts them. Values longer than 255 characters or holding NUL/lone
    surrogates are skipped. Never raises for any JSON value.
    """
    out: dict[tuple[str, str], None] = {}
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if _usable(entry.get("id")):
            out[("waba_id", entry["id"])] = None
        changes = entry.get("changes")
        for change in changes if isinstance(changes, list) else ():
            if not isinstance(change, dict):
                continue
            if _usable(change.get("field")):
                out[("field", change["field"][:255])] = None
            _walk(change.get("value"), out)
            if len(out) >= MAX_KEYS_PER_WEBHOOK:
                return list(out)[:MAX_KEYS_PER_WEBHOOK]
    return list(out)


def item_rows(webhook_log_id: int, attempt: int, units: Sequence[Any], errors: Sequence[tuple[str, str, bool]], preset: bool) -> list[dict[str, Any]]:
    """``whatsapp_webhook_items`` rows of one webhook: one per item (``units`` of
    :class:`~wa_core.processing.dispatch.ParsedRow`), or one per error of a ``preset`` outcome
    (body purged, not JSON, a crashed claim). ``attempt``: the claim's ``attempts``. A message
    or status item carries its ``phone_number_id`` and ``wamid`` (values already checked by
    :func:`~wa_core.processing.records.prepare`)."""
    from wa_core.processing.dispatch import printable

    rows: list[dict[str, Any]] = []
    if preset:
        for n, (kind, message, _) in enumerate(errors):
            rows.append(dict(webhook_log_id=webhook_log_id, position=n, place=None, result="failed", error_kind=printable(kind[:64]),
                             error=printable(message[:2000]), attempt=attempt, phone_number_id=None, wamid=None))
        return rows
    for n, unit in enumerate(units):
        place = unit.where if unit.label is None else f"{unit.where}.{unit.label}" if unit.where else unit.label
        result = unit.result
        values = getattr(unit.work, "values", None) if not callable(unit.work) else None
        pid, wamid = (values.get("phone_number_id"), values.get("wamid")) if isinstance(values, dict) else (None, None)
        row = dict(webhook_log_id=webhook_log_id, position=n, place=printable(place[:255]) if place else None,
                   result="failed", error_kind=None, error=None, attempt=attempt,
                   phone_number_id=pid if isinstance(pid, str) and len(pid) <= 64 else None,
                   wamid=wamid if isinstance(wamid, str) and len(wamid) <= 255 else None)
        if result in ("processed", "ignored"):
            row["result"] = result
        elif isinstance(result, tuple):
            row.update(error_kind=printable(str(result[0])[:64]), error=printable(str(result[1])[:2000]))
        rows.append(row)
    return rows


_ITEM_UPDATE = ("place", "result", "error_kind", "error", "attempt", "phone_number_id", "wamid")


def write_explorer_rows(conn: Connection, keys: Iterable[tuple[int, list[tuple[str, str]]]], items: Sequence[dict[str, Any]]) -> None:
    """Write the batch's search keys (``(webhook_log_id, [(kind, value)])``; insert once) and
    item rows (upserted on ``(webhook_log_id, position)``; a retried webhook's, ``attempt`` > 1,
    are deleted first) in the caller's transaction: two statements on Postgres (``unnest``),
    three with retries; ``executemany`` on SQLite. Database errors propagate."""
    from wa_core.processing.bulk import chunks, is_postgres, pg_insert, sqlite_insert

    key_rows = [{"kind": k, "value": v, "webhook_log_id": wid} for wid, pairs in keys for k, v in pairs]
    retried = sorted({r["webhook_log_id"] for r in items if r["attempt"] > 1})
    names = [c.name for c in items_table.columns]
    if is_postgres(conn):
        if key_rows:
            pg_insert(conn, keys_table, key_rows, ("kind", "value", "webhook_log_id"), "ON CONFLICT DO NOTHING")
        if retried:
            conn.exec_driver_sql("DELETE FROM whatsapp_webhook_items WHERE webhook_log_id = ANY(%(ids)s)", {"ids": retried})
        if items:
            update = ", ".join(f"{c} = excluded.{c}" for c in _ITEM_UPDATE)
            pg_insert(conn, items_table, items, names, f"ON CONFLICT (webhook_log_id, position) DO UPDATE SET {update}")
        return
    for part in chunks(key_rows):
        sqlite_insert(conn, keys_table, part, ("kind", "value", "webhook_log_id"), ("kind", "value", "webhook_log_id"))
    for part in chunks(retried):
        conn.execute(sa.delete(items_table).where(items_table.c.webhook_log_id.in_(list(part))))
    for part in chunks(list(items)):
        sqlite_insert(conn, items_table, part, names, ("webhook_log_id", "position"), _ITEM_UPDATE)


__all__ = ["MAX_KEYS_PER_WEBHOOK", "extract_keys", "item_rows", "write_explorer_rows"]
