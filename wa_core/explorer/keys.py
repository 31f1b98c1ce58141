"""Search keys and item outcomes of processed webhooks, written set-based with the batch.

The landing insert stays one plain row (the receiver's hot path): what the explorer searches
by inside a body (wamids, ``wa_id`` / ``user_id``, ``phone_number_id``, WABA ids, fields) is
extracted while the processing batch parses the body anyway (:func:`extract_keys`, called by
:func:`~wa_core.processing.dispatch.parse_webhook`) and written with the row's outcome in the
same transaction (:func:`write_explorer_rows`): one ``COPY`` for the keys of the whole batch
and one for the item rows of its webhooks with an ignored or failed item (a retried or
replayed webhook's earlier rows are deleted first, so its rows are those of its latest
attempt). The keys table has no foreign key and no index but its primary key
``(kind, value, webhook_log_id)``: each costs the batch (docs/benchmarks.md). So a webhook is
searchable by the ids in its body once it has been processed (failed and dead rows included);
its state, error kind, time and routing WABA are searchable from the moment it lands.

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


def _usable(value: str) -> bool:
    # isprintable() is False for control characters (NUL, tab, newline...: no id Meta sends
    # holds one) and for lone surrogates (category Cs), so none of them ever reaches a key
    return 0 < len(value) <= 255 and value.isprintable()


#: dictionary key -> key kind, for string values not starting with ``wamid.``
_KIND_OF = {**dict.fromkeys(_WA_ID_KEYS, "wa_id"), **dict.fromkeys(_USER_ID_KEYS, "user_id"), "phone_number_id": "phone_number_id"}
def _walk(node: Any, out: dict[tuple[str, str], None], depth: int = 0) -> None:
    # the parsed tree, not the text: escapes, duplicate names and odd spacing are resolved
    # exactly as processing saw them; type checks by identity and the cheap tests first
    if depth > _MAX_DEPTH or len(out) >= MAX_KEYS_PER_WEBHOOK:
        return
    if type(node) is dict:
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                if value.startswith("wamid."):
                    if _usable(value):
                        out[("wamid", value)] = None
                else:
                    found = _KIND_OF.get(key)
                    if found is not None and _usable(value):
                        out[(found, value)] = None
            elif kind is dict or kind is list:
                _walk(value, out, depth + 1)
    elif type(node) is list:
        for value in node:
            kind = type(value)
            if kind is dict or kind is list:
                _walk(value, out, depth + 1)
            elif kind is str and value.startswith("wamid.") and _usable(value):
                out[("wamid", value)] = None


def extract_keys(payload: Any) -> list[tuple[str, str]]:
    """The search keys ``(kind, value)`` of a parsed webhook envelope, in body order, without
    duplicates, at most :data:`MAX_KEYS_PER_WEBHOOK`.

    Kinds: ``waba_id`` (each ``entry[].id``), ``field`` (each ``changes[].field``),
    ``phone_number_id`` (anywhere, e.g. ``value.metadata.phone_number_id``), ``wamid`` (any
    string value starting ``wamid.``: message, status, echo, context, reaction target),
    ``wa_id`` (values of ``wa_id``/``from``/``to``/``recipient_id``) and ``user_id`` (values of
    ``user_id``/``from_user_id``/``recipient_user_id``/``to_user_id``); Meta, WhatsApp Cloud API
    "messages" webhook reference and "Business-scoped user IDs" for where Meta puts them. Read from the parsed tree (what processing applied; a regular
    expression over the text was tried and disagreed with it on escaped names and duplicate
    keys). Values longer than 255 characters or holding control characters or lone
    surrogates are skipped. Never raises for any JSON value.
    """
    out: dict[tuple[str, str], None] = {}
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("id"), str) and _usable(entry["id"]):
            out[("waba_id", entry["id"])] = None
        changes = entry.get("changes")
        for change in changes if isinstance(changes, list) else ():
            if not isinstance(change, dict):
                continue
            if isinstance(change.get("field"), str) and _usable(change["field"]):
                out[("field", change["field"])] = None
            value = change.get("value")
            if type(value) is str and value.startswith("wamid.") and _usable(value):
                out[("wamid", value)] = None
            else:
                _walk(value, out)
            if len(out) >= MAX_KEYS_PER_WEBHOOK:
                return list(out)[:MAX_KEYS_PER_WEBHOOK]
    return list(out)


def item_rows(webhook_log_id: int, attempt: int, units: Sequence[Any], errors: Sequence[tuple[str, str, bool]], preset: bool) -> list[dict[str, Any]]:
    """``whatsapp_webhook_items`` rows of one webhook: one per item (``units`` of
    :class:`~wa_core.processing.dispatch.ParsedRow`), or one per error of a ``preset`` outcome
    (body purged, not JSON, a crashed claim). ``attempt``: the claim's ``attempts``. A message
    or status item carries its ``phone_number_id`` and ``wamid`` (values already checked by
    :func:`~wa_core.processing.records.prepare`).

    A webhook whose every item was processed gets no rows (``[]``): that is the common case,
    its counts say it all, and the trace lists its items again from the body
    (:func:`~wa_core.explorer.trace.item_outcomes`). Rows are kept for every webhook with an
    ignored or failed item."""
    from wa_core.processing.dispatch import printable

    rows: list[dict[str, Any]] = []
    if preset:
        for n, (kind, message, _) in enumerate(errors):
            rows.append(dict(webhook_log_id=webhook_log_id, position=n, place=None, result="failed", error_kind=printable(kind[:64]),
                             error=printable(message[:2000]), attempt=attempt, phone_number_id=None, wamid=None))
        return rows
    if not errors and all(unit.result == "processed" for unit in units):
        return rows
    for n, unit in enumerate(units):
        rows.append(unit_row(webhook_log_id, attempt, n, unit))
    return rows


def unit_row(webhook_log_id: int, attempt: int, position: int, unit: Any) -> dict[str, Any]:
    """The ``whatsapp_webhook_items`` row of one item (:class:`~wa_core.processing.dispatch.Unit`)."""
    from wa_core.processing.dispatch import printable

    place = unit.where if unit.label is None else f"{unit.where}.{unit.label}" if unit.where else unit.label
    result = unit.result
    values = getattr(unit.work, "values", None) if not callable(unit.work) else None
    pid, wamid = (values.get("phone_number_id"), values.get("wamid")) if isinstance(values, dict) else (None, None)
    row = dict(webhook_log_id=webhook_log_id, position=position, place=printable(place[:255]) if place else None,
               result="failed", error_kind=None, error=None, attempt=attempt,
               phone_number_id=pid if isinstance(pid, str) and len(pid) <= 64 else None,
               wamid=wamid if isinstance(wamid, str) and len(wamid) <= 255 else None)
    if result in ("processed", "ignored"):
        row["result"] = result
    elif isinstance(result, tuple):
        row.update(error_kind=printable(str(result[0])[:64]), error=printable(str(result[1])[:2000]))
    return row


_KEY_COLUMNS = ("kind", "value", "webhook_log_id")
_ITEM_COLUMNS = tuple(c.name for c in items_table.columns)


def write_explorer_rows(
    conn: Connection, keys: Iterable[tuple[int, list[tuple[str, str]]]], items: Sequence[dict[str, Any]], stale: Iterable[int] = ()
) -> None:
    """Write the batch's search keys (``(webhook_log_id, [(kind, value)])``, each list without
    duplicates) and item rows in the caller's transaction. ``stale``: ids of webhooks that may
    hold rows of an earlier attempt (retried, replayed): theirs are deleted first, so every
    row is a plain insert. On Postgres both tables are written with ``COPY`` (no ``ON
    CONFLICT``: about half the cost of an ``unnest`` upsert, docs/benchmarks.md); on SQLite
    with ``executemany``. Database errors propagate (a duplicate key included: a caller that
    did not name a webhook in ``stale`` although it had rows)."""
    from wa_core.processing.bulk import chunks, is_postgres, sqlite_insert

    stale = sorted(set(stale))
    if is_postgres(conn):
        if stale:
            conn.exec_driver_sql("DELETE FROM whatsapp_webhook_keys WHERE webhook_log_id = ANY(%(ids)s)", {"ids": stale})
            conn.exec_driver_sql("DELETE FROM whatsapp_webhook_items WHERE webhook_log_id = ANY(%(ids)s)", {"ids": stale})
        cursor = conn.connection.driver_connection.cursor()
        try:
            with cursor.copy(f"COPY whatsapp_webhook_keys ({', '.join(_KEY_COLUMNS)}) FROM STDIN") as copy:
                for wid, pairs in keys:
                    for kind, value in pairs:
                        copy.write_row((kind, value, wid))
            if items:
                with cursor.copy(f"COPY whatsapp_webhook_items ({', '.join(_ITEM_COLUMNS)}) FROM STDIN") as copy:
                    for row in items:
                        copy.write_row(tuple(row[c] for c in _ITEM_COLUMNS))
        finally:
            cursor.close()
        return
    key_rows = [{"kind": k, "value": v, "webhook_log_id": wid} for wid, pairs in keys for k, v in pairs]
    for part in chunks(stale):
        conn.execute(sa.delete(keys_table).where(keys_table.c.webhook_log_id.in_(list(part))))
        conn.execute(sa.delete(items_table).where(items_table.c.webhook_log_id.in_(list(part))))
    for part in chunks(key_rows):
        sqlite_insert(conn, keys_table, part, _KEY_COLUMNS, _KEY_COLUMNS)
    for part in chunks(list(items)):
        sqlite_insert(conn, items_table, part, _ITEM_COLUMNS, ("webhook_log_id", "position"), _ITEM_COLUMNS[2:])


__all__ = ["MAX_KEYS_PER_WEBHOOK", "extract_keys", "item_rows", "unit_row", "write_explorer_rows"]
