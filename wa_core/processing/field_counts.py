"""Per-field webhook counts (``whatsapp_webhook_fields``): an operator sees a new field arrive.

After a batch's outcomes have committed, the ``changes[].field`` values of its finished rows
(processed or dead) are counted into ``whatsapp_webhook_fields`` with one upsert
(``webhooks``: rows carrying the field, ``changes``: changes with it; a redelivered row counts
again). A field seen for the first time is logged, and when no handler knows it (its changes
are stored and marked ignored) a ``new_webhook_field`` alert is raised once per field (the
notifier groups by fingerprint). The counts run in their own short transaction after the
outcomes: they are observability, so a failure there is logged and never fails the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.alerts import Alert, get_notifier
from wa_core.db.schema_phone import whatsapp_webhook_fields as fields_table
from wa_core.settings import Settings

from .bulk import is_postgres, pg_insert
from .dispatch import WebhookOutcome, printable
from .handlers import HANDLERS

log = logging.getLogger("wa_core.processing")
_FINAL = ("processed", "dead")
_NAMES = ("field", "webhooks", "changes", "first_seen_at", "last_seen_at", "first_webhook_log_id")
_PG_TAIL = (
    "ON CONFLICT (field) DO UPDATE SET webhooks = whatsapp_webhook_fields.webhooks + excluded.webhooks,"
    " changes = whatsapp_webhook_fields.changes + excluded.changes,"
    " last_seen_at = greatest(whatsapp_webhook_fields.last_seen_at, excluded.last_seen_at)"
    " RETURNING field, (xmax = 0) AS inserted"
)


def field_rows(outcomes: Iterable[WebhookOutcome], now: datetime) -> list[dict]:
    """One count row per field of the finished ``outcomes`` (sorted by field: lock order)."""
    rows: dict[str, dict] = {}
    for outcome in outcomes:
        if outcome.status not in _FINAL:
            continue
        for name, changes in outcome.fields.items():
            name = printable(name)[:255]
            row = rows.setdefault(name, {"field": name, "webhooks": 0, "changes": 0, "first_seen_at": now, "last_seen_at": now,
                                         "first_webhook_log_id": outcome.webhook_log_id})
            row["webhooks"] += 1
            row["changes"] += changes
            row["first_webhook_log_id"] = min(row["first_webhook_log_id"], outcome.webhook_log_id)
    return [rows[k] for k in sorted(rows)]


def count_fields(conn: Connection, outcomes: Sequence[WebhookOutcome], now: datetime) -> list[str]:
    """Add ``outcomes``' fields to the counts within the caller's transaction; returns the
    fields seen for the first time. Database errors propagate."""
    rows = field_rows(outcomes, now)
    if not rows:
        return []
    if is_postgres(conn):
        return [name for name, inserted in pg_insert(conn, fields_table, rows, _NAMES, _PG_TAIL) if inserted]
    c = fields_table.c
    known = set(conn.execute(sa.select(c.field).where(c.field.in_([r["field"] for r in rows]))).scalars())
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(fields_table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["field"],
        set_={"webhooks": c.webhooks + stmt.excluded.webhooks, "changes": c.changes + stmt.excluded.changes, "last_seen_at": stmt.excluded.last_seen_at},
    )
    conn.execute(stmt, rows)
    return [r["field"] for r in rows if r["field"] not in known]


def record_fields(engine: Engine, settings: Settings, outcomes: Sequence[WebhookOutcome], now: datetime) -> list[str]:
    """Count ``outcomes``' fields in a transaction of their own, then log each first-seen
    field and alert (``new_webhook_field``, key = the field) for those no handler knows.
    Returns the first-seen fields; never raises (a failure is logged)."""
    try:
        with engine.begin() as conn:
            new = count_fields(conn, outcomes, now)
    except Exception as exc:  # noqa: BLE001 - counts are observability: never fail the batch
        log.warning("webhook field counts not updated: %s", type(exc).__name__)
        return []
    from wa_core.doctor.callback import PROBE_FIELD

    for name in new:
        if name in HANDLERS or name == PROBE_FIELD:  # the doctor's own test delivery is no news
            log.info("webhook field %r seen for the first time", name)
            continue
        log.warning("new webhook field %r: stored and marked ignored (no handler); see whatsapp_webhook_fields", name)
        get_notifier(settings, engine).notify(
            Alert(
                "new_webhook_field",
                name,
                f"webhook field {name!r} arrived for the first time and no handler knows it: its changes are stored and marked ignored",
                severity="warning",
                details={"field": name},
            )
        )
    return new


__all__ = ["count_fields", "field_rows", "record_fields"]
