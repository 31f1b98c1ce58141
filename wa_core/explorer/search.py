"""Search landed webhooks: by the ids in their bodies, their state, error kind and time.

One statement per search, newest first, keyset-paginated on the webhook id (``before_id``,
never ``OFFSET``). The id filters go through ``whatsapp_webhook_keys`` (primary key
``(kind, value, webhook_log_id)``: the most selective id filter drives, read newest first
from the index; every further id filter is one index probe per candidate); state, error kind
and time are columns of ``whatsapp_webhook_logs`` (indexes ``(status, next_attempt_at)``,
partial ``(error_kind, id)`` and ``(received_at)``). A time window is also turned into a range
of ids (ids follow arrival, within :data:`ARRIVAL_SLACK`): two one-row probes of the
``received_at`` index, so a wide window is read newest first by id instead of sorting every
row in it. ``bench/explorer.py`` measures every
search kind at 1M landed rows (docs/benchmarks.md, "Webhook explorer").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import WEBHOOK_STATES, as_utc, whatsapp_webhook_logs as logs
from wa_core.db.schema_explorer import whatsapp_webhook_keys as keys
from wa_core.dead_letters import error_kind_matches
from wa_core.timebounds import shifted

#: id filters, most selective first (the first one given drives the search)
KEY_FILTERS = ("wamid", "wa_id", "user_id", "phone_number_id", "waba_id", "field")
MAX_LIMIT = 500


class InvalidSearch(ValueError):
    """A filter that cannot be one (unknown state, inverted time window, limit out of range)."""


@dataclass(frozen=True)
class WebhookSearch:
    """Filters of a webhook search; all combine with AND, none is required.

    - ``wamid``, ``wa_id``, ``user_id``, ``phone_number_id``, ``waba_id`` (any ``entry[].id``),
      ``field`` (any ``changes[].field``): exact values found in the body (keys extracted when
      the webhook was processed, :mod:`wa_core.explorer.keys`).
    - ``status``: webhook states (``pending``, ``processed``, ``failed``, ``dead``).
    - ``error_kind``: one of the row's error kinds (e.g. ``unroutable``).
    - ``received_from`` (inclusive) / ``received_to`` (exclusive): arrival time, UTC.
    - ``before_id``: the cursor, only webhooks with a smaller id (the next page).
    """

    wamid: str | None = None
    wa_id: str | None = None
    user_id: str | None = None
    phone_number_id: str | None = None
    waba_id: str | None = None
    field: str | None = None
    status: tuple[str, ...] = ()
    error_kind: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    before_id: int | None = None

    def describe(self) -> dict[str, Any]:
        """The filters given, for echoing back (JSON-ready)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in (None, ()):
                out[f.name] = value.isoformat() if isinstance(value, datetime) else list(value) if isinstance(value, tuple) else value
        return out


#: columns of a search hit (no body)
SUMMARY_COLUMNS = (
    "id", "received_at", "status", "attempts", "fields", "error_kind", "last_error", "waba_id", "organization_id",
    "body_size", "signature_status", "request_id", "items_received", "items_processed", "items_ignored", "items_failed",
    "processed_at", "replay_count",
)


def summary(row: Any) -> dict[str, Any]:
    """A JSON-ready summary of a ``whatsapp_webhook_logs`` row (no body; times UTC ISO)."""
    out = {}
    for name in SUMMARY_COLUMNS:
        value = row._mapping[name]
        if isinstance(value, datetime):
            value = as_utc(value).isoformat()
        elif name == "organization_id" and value is not None:
            value = str(value)
        out[name] = value
    out["body_kept"] = row._mapping["body_kept"]
    return out


#: how far apart in arrival time two rows can land in the other order of their ids (a landing
#: takes ``received_at`` just before its insert, which commits within ``DB_TIMEOUT_SECONDS``)
ARRIVAL_SLACK = timedelta(minutes=5)


def _first_id_from(at: datetime) -> sa.ScalarSelect:
    """Id of the first row received at or after ``at`` (index ``received_at``, one row)."""
    return sa.select(logs.c.id).where(logs.c.received_at >= at).order_by(logs.c.received_at, logs.c.id).limit(1).scalar_subquery()


def _last_id_before(at: datetime) -> sa.ScalarSelect:
    """Id of the last row received before ``at`` (index ``received_at``, one row)."""
    return sa.select(logs.c.id).where(logs.c.received_at < at).order_by(logs.c.received_at.desc(), logs.c.id.desc()).limit(1).scalar_subquery()


def search_statement(search: WebhookSearch, limit: int) -> sa.Select:
    """The SELECT of :func:`search_webhooks` (exposed for ``EXPLAIN`` in the bench)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidSearch(f"limit must be 1..{MAX_LIMIT}")
    bad = [s for s in search.status if s not in WEBHOOK_STATES]
    if bad:
        raise InvalidSearch(f"unknown state {bad[0]!r}: one of {', '.join(WEBHOOK_STATES)}")
    if search.received_from and search.received_to and search.received_from >= search.received_to:
        raise InvalidSearch("received_from must be before received_to")
    columns = [logs.c[name] for name in SUMMARY_COLUMNS] + [logs.c.body.is_not(None).label("body_kept")]
    wanted = [(kind, getattr(search, kind)) for kind in KEY_FILTERS if getattr(search, kind)]
    where: list[Any] = []
    if wanted:
        drive = keys.alias("k0")
        id_column = drive.c.webhook_log_id
        source = drive.join(logs, logs.c.id == id_column)
        where += [drive.c.kind == wanted[0][0], drive.c.value == wanted[0][1]]
        for n, (kind, value) in enumerate(wanted[1:], 1):
            other = keys.alias(f"k{n}")
            source = source.join(other, sa.and_(other.c.kind == kind, other.c.value == value, other.c.webhook_log_id == id_column))
    else:
        id_column = logs.c.id
        source = logs
    if search.status:
        where.append(logs.c.status.in_(search.status))
    if search.error_kind:
        where.append(error_kind_matches(search.error_kind))
    # id bounds go on both sides of a key join: the planner then bounds both index scans (a
    # merge join would otherwise read the logs' primary key from the newest row down)
    sides = {id_column, logs.c.id}
    if search.received_from:
        first = _first_id_from(shifted(search.received_from, -ARRIVAL_SLACK))
        where += [logs.c.received_at >= search.received_from, *(side >= first for side in sides)]
    if search.received_to:
        last = _last_id_before(shifted(search.received_to, ARRIVAL_SLACK))
        where += [logs.c.received_at < search.received_to, *(side <= last for side in sides)]
    if search.before_id is not None:
        where += [side < search.before_id for side in sides]
    return sa.select(*columns).select_from(source).where(*where).order_by(id_column.desc()).limit(limit + 1)


def search_webhooks(conn: Connection, search: WebhookSearch, limit: int = 50) -> dict[str, Any]:
    """Landed webhooks matching ``search``, newest first.

    Returns ``{"webhooks": [summary…], "next_before_id": int | None, "filters": {…}}``:
    pass ``next_before_id`` as ``before_id`` for the next page (None: no more). Raises
    :class:`InvalidSearch` for a malformed filter.
    """
    found = conn.execute(search_statement(search, limit)).all()
    more = len(found) > limit
    hits = [summary(row) for row in found[:limit]]
    return {"webhooks": hits, "next_before_id": hits[-1]["id"] if more else None, "filters": search.describe()}


__all__ = ["InvalidSearch", "KEY_FILTERS", "MAX_LIMIT", "WebhookSearch", "search_statement", "search_webhooks", "summary"]
