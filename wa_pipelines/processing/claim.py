"""Claiming landed webhook rows for a processing run.

A claim takes up to ``limit`` claimable rows, oldest first, and leases them: it sets
``locked_until`` and counts the attempt. Claimable means ``pending``, or ``failed`` with
``next_attempt_at`` passed, and not under a live lease. On Postgres the claim uses
``FOR UPDATE SKIP LOCKED`` so concurrent runs take disjoint rows; on SQLite the claim runs
in a ``BEGIN IMMEDIATE`` write transaction, which serializes claimers. A run that dies
leaves its leases to expire (``PROCESSING_LEASE_SECONDS``): the rows become claimable again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_webhook.db.schema import as_utc, utcnow, whatsapp_webhook_logs as logs


@dataclass(frozen=True)
class ClaimedRow:
    """A leased webhook row: id, exact body bytes, arrival time (UTC) and attempt number."""

    id: int
    body: bytes | None
    received_at: datetime
    attempts: int
    lease_expired: bool = False  # the previous claim never finished: its run died


def claimable_condition(now: datetime) -> sa.ColumnElement[bool]:
    """SQL condition for rows a run may claim at ``now``."""
    return sa.and_(
        sa.or_(logs.c.status == "pending", sa.and_(logs.c.status == "failed", logs.c.next_attempt_at <= now)),
        sa.or_(logs.c.locked_until.is_(None), logs.c.locked_until < now),
    )


def claim_batch(engine: Engine, limit: int, lease_seconds: float) -> list[ClaimedRow]:
    """Lease up to ``limit`` claimable rows and return them (empty list when none)."""
    now = utcnow()
    with engine.begin() as conn:
        candidates = sa.select(logs.c.id, logs.c.locked_until).where(claimable_condition(now)).order_by(logs.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        found = conn.execute(candidates).all()
        if not found:
            return []
        ids = [r.id for r in found]
        expired = {r.id for r in found if r.locked_until is not None}
        rows = conn.execute(
            sa.update(logs)
            .where(logs.c.id.in_(ids))
            .values(locked_until=now + timedelta(seconds=lease_seconds), attempts=logs.c.attempts + 1, updated_at=now)
            .returning(logs.c.id, logs.c.body, logs.c.received_at, logs.c.attempts)
        ).all()
    return sorted(
        (ClaimedRow(r.id, r.body, as_utc(r.received_at), r.attempts, r.id in expired) for r in rows),
        key=lambda r: r.id,
    )


def count_claimable(conn: Connection) -> int:
    """How many rows a run could claim right now."""
    return conn.execute(sa.select(sa.func.count()).select_from(logs).where(claimable_condition(utcnow()))).scalar_one()
