"""Writing the outcomes of a batch onto its webhook rows: one statement, guarded by the claim.

Each row's outcome (:func:`~.dispatch.outcome_values`) is written only while the row still
belongs to the claim that applied it (same id and ``attempts``; see :mod:`.lease`): a run
that lost its lease never overwrites the outcome of the run that claimed the row after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import whatsapp_webhook_logs as logs
from wa_core.settings import Settings

from .bulk import chunks, is_postgres, pg_from
from .claim import ClaimedRow
from .dispatch import WebhookOutcome, describe_error, outcome_values, printable

_COLUMNS = (
    "id", "attempts", "status", "items_received", "items_processed", "items_ignored", "items_failed", "items_dead",
    "fields", "error_kind", "last_error", "next_attempt_at", "organization_id", "processed_at", "updated_at",
)
_PG_OUTCOMES = """
UPDATE whatsapp_webhook_logs AS l SET status = v.status, items_received = v.items_received,
  items_processed = v.items_processed, items_ignored = v.items_ignored, items_failed = v.items_failed,
  items_dead = v.items_dead, fields = v.fields, error_kind = v.error_kind, last_error = v.last_error,
  next_attempt_at = v.next_attempt_at, locked_until = NULL, updated_at = v.updated_at,
  organization_id = coalesce(v.organization_id, l.organization_id), processed_at = coalesce(v.processed_at, l.processed_at)
FROM {source} WHERE l.id = v.id AND l.attempts = v.attempts RETURNING l.id
"""
#: error kind of a row whose outcome could not be stored (it is dead, alone)
UNSTORABLE = "outcome_unstorable"


def store_outcomes(
    conn: Connection, entries: Sequence[tuple[ClaimedRow, WebhookOutcome]], settings: Settings, now: datetime
) -> set[int]:
    """Write each outcome onto its row (one statement on Postgres) within the caller's
    transaction; sets every ``outcome.status``. Returns the ids written: a row another claim
    has taken since (``attempts`` moved on) is left alone. Database errors propagate."""
    if not entries:
        return set()
    rows = []
    for row, outcome in entries:
        values = outcome_values(outcome, row.attempts, settings, now)
        values.update(id=row.id, attempts=row.attempts)
        rows.append(values)
    rows.sort(key=lambda v: v["id"])  # lock order
    if is_postgres(conn):
        return {r[0] for r in pg_from(conn, _PG_OUTCOMES, logs, rows, _COLUMNS)}
    owned: set[int] = set()
    wanted = {(v["id"], v["attempts"]) for v in rows}
    for part in chunks([v["id"] for v in rows]):
        owned |= {r.id for r in conn.execute(sa.select(logs.c.id, logs.c.attempts).where(logs.c.id.in_(list(part)))) if (r.id, r.attempts) in wanted}
    params = [{f"b_{k}": v[k] for k in _COLUMNS} for v in rows if v["id"] in owned]
    if params:
        keep = {"organization_id", "processed_at"}
        stmt = (
            sa.update(logs)
            .where(logs.c.id == sa.bindparam("b_id"))
            .values(
                locked_until=None,
                **{k: sa.bindparam(f"b_{k}", type_=logs.c[k].type) for k in _COLUMNS if k not in ("id", "attempts", *keep)},
                **{k: sa.func.coalesce(sa.bindparam(f"b_{k}", type_=logs.c[k].type), logs.c[k]) for k in keep},
            )
        )
        conn.execute(stmt, params)
    return owned


def unstorable(outcome: WebhookOutcome, exc: BaseException) -> WebhookOutcome:
    """The outcome of a row whose own outcome could not be stored: dead, one failed item, a
    sanitised reason (the database's error, never payload values). Its items stay applied
    (idempotent): an operator replays it once the cause is fixed."""
    _, message, _ = describe_error(exc)
    dead = WebhookOutcome(outcome.webhook_log_id, items_received=1, received_at=outcome.received_at)
    dead.fail(UNSTORABLE, printable(f"the outcome of this webhook could not be stored ({message}); its items were applied"), False)
    return dead


def store_one_by_one(
    conn: Connection, entries: Sequence[tuple[ClaimedRow, WebhookOutcome]], settings: Settings, now: datetime
) -> tuple[set[int], dict[int, WebhookOutcome]]:
    """:func:`store_outcomes` row by row, each in a savepoint: a row whose outcome is refused
    gets :func:`unstorable` instead. Returns (ids written, replaced outcomes by id)."""
    stored: set[int] = set()
    replaced: dict[int, WebhookOutcome] = {}
    for row, outcome in entries:
        savepoint = conn.begin_nested()
        try:
            stored |= store_outcomes(conn, [(row, outcome)], settings, now)
            savepoint.commit()
        except sa.exc.OperationalError:
            savepoint.rollback()
            raise
        except Exception as exc:  # noqa: BLE001 - this row alone is dead, with the reason
            savepoint.rollback()
            dead = replaced[row.id] = unstorable(outcome, exc)
            stored |= store_outcomes(conn, [(row, dead)], settings, now)
    return stored, replaced


__all__ = ["UNSTORABLE", "store_one_by_one", "store_outcomes", "unstorable"]
