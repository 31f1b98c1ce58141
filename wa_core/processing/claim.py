"""Claiming landed webhook rows for a processing run, fairly per organization.

A claim takes up to ``limit`` claimable rows, oldest first, and leases them: it sets
``locked_until``, stamps ``claimed_at`` and counts the attempt. Claimable means ``pending``,
or ``failed`` with ``next_attempt_at`` passed, and not under a live lease. A run that dies
leaves its leases to expire (``PROCESSING_LEASE_SECONDS``): the rows become claimable again.

Fairness: each organization's lane (see :mod:`wa_core.backlog`; webhooks of unbound WABAs
share one "unrouted" lane) gets at most ``PROCESSING_ORG_MAX_IN_FLIGHT`` rows leased at once
and ``PROCESSING_ORG_WEBHOOKS_PER_MINUTE`` claims per rolling minute, across all runs. A flood
from one organization is then worked off at its quota while every other organization's
webhooks keep flowing; nothing is refused or dropped, rows over quota simply wait.

Claims are serialized so quotas hold exactly: on Postgres with a transaction-level advisory
lock (claims take milliseconds; the receiver's inserts never wait for it), on SQLite by the
``BEGIN IMMEDIATE`` write transaction the engine uses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.backlog import (
    QUOTA_WINDOW_SECONDS,
    claimable_condition,
    in_flight_condition,
    lane_expression,
    lane_join,
)
from wa_core.db.schema import as_utc, utcnow, whatsapp_webhook_logs as logs

#: key of the Postgres advisory lock that serializes claims ("wacl")
CLAIM_LOCK_KEY = 0x7761636C

__all__ = ["ClaimedRow", "Claim", "claim_batch", "claimable_condition", "count_claimable"]


@dataclass(frozen=True)
class ClaimedRow:
    """A leased webhook row: id, exact body bytes, arrival time (UTC) and attempt number."""

    id: int
    body: bytes | None
    received_at: datetime
    attempts: int
    lease_expired: bool = False  # the previous claim never finished: its run died


class Claim(list):
    """The rows of one claim (a list of :class:`ClaimedRow`, oldest first), plus ``held_back``:
    how many claimable rows were left waiting because their organization was at its quota
    (a lower bound: at most ``max_in_flight + 1`` per organization are looked at)."""

    held_back: int = 0


def _window_candidates(conn: Connection, now: datetime, k: int) -> list:
    """The ``k`` oldest claimable rows of each lane (id, lane, locked_until, rank), one window
    query over every claimable row: simple and fine at SQLite's scale (its cost grows with the
    backlog, ~20 ms at 10k rows, see docs/benchmarks.md)."""
    lane = lane_expression()
    ranked = (
        sa.select(
            logs.c.id,
            lane.label("lane"),
            logs.c.locked_until,
            sa.func.row_number().over(partition_by=lane, order_by=logs.c.id).label("rank"),
        )
        .select_from(lane_join())
        .where(claimable_condition(now))
        .subquery()
    )
    return conn.execute(
        sa.select(ranked.c.id, ranked.c.lane, ranked.c.locked_until, ranked.c.rank)
        .where(ranked.c.rank <= k)
        .order_by(ranked.c.id)
    ).all()


#: Postgres: the same answer as :func:`_window_candidates` without reading the whole backlog.
#: The WABAs with open rows are enumerated by a skip scan (a recursive CTE, one probe of
#: ``ix_whatsapp_webhook_logs_open_by_waba`` per WABA), each WABA's ``k`` oldest claimable
#: rows come from the same index, and only those (WABAs + 1) × k rows are joined to their
#: binding and ranked per lane. Measured 1-2 ms at any backlog against ~110 ms for the window
#: query at 100k claimable rows (bench/fairness.py). Claimable is written as "not (failed and
#: not yet due)" within the index's ``status IN ('pending', 'failed')`` so the planner walks
#: the index in id order. If one WABA's rows belong to two lanes (re-bound after some were
#: processed), a lane may get fewer than ``k`` candidates in one claim, never more.
_PG_CANDIDATES = sa.text(
    """
WITH RECURSIVE wabas(waba_id) AS (
  SELECT min(waba_id) FROM whatsapp_webhook_logs WHERE status IN ('pending', 'failed')
  UNION ALL
  SELECT (SELECT min(l.waba_id) FROM whatsapp_webhook_logs l
          WHERE l.status IN ('pending', 'failed') AND l.waba_id > w.waba_id)
  FROM wabas w WHERE w.waba_id IS NOT NULL
), firsts AS (
  SELECT t.id, t.organization_id, t.waba_id, t.locked_until FROM wabas w CROSS JOIN LATERAL (
    SELECT l.id, l.organization_id, l.waba_id, l.locked_until FROM whatsapp_webhook_logs l
    WHERE l.status IN ('pending', 'failed') AND l.waba_id = w.waba_id
      AND NOT (l.status = 'failed' AND (l.next_attempt_at IS NULL OR l.next_attempt_at > :now))
      AND (l.locked_until IS NULL OR l.locked_until < :now)
    ORDER BY l.id LIMIT :k) t
  WHERE w.waba_id IS NOT NULL
  UNION ALL
  (SELECT l.id, l.organization_id, l.waba_id, l.locked_until FROM whatsapp_webhook_logs l
   WHERE l.status IN ('pending', 'failed') AND l.waba_id IS NULL
     AND NOT (l.status = 'failed' AND (l.next_attempt_at IS NULL OR l.next_attempt_at > :now))
     AND (l.locked_until IS NULL OR l.locked_until < :now)
   ORDER BY l.id LIMIT :k)
)
SELECT id, lane, locked_until, rank FROM (
  SELECT f.id, coalesce(f.organization_id, c.organization_id) AS lane, f.locked_until,
         row_number() OVER (PARTITION BY coalesce(f.organization_id, c.organization_id) ORDER BY f.id) AS rank
  FROM firsts f LEFT JOIN whatsapp_connections c ON c.waba_id = f.waba_id) r
WHERE rank <= :k ORDER BY id
"""
).columns(sa.column("id"), sa.column("lane", sa.Uuid()), sa.column("locked_until"), sa.column("rank"))


def _lane_counts(conn: Connection, condition: sa.ColumnElement[bool]) -> Counter:
    lane = lane_expression().label("lane")
    rows = conn.execute(sa.select(lane, sa.func.count()).select_from(lane_join()).where(condition).group_by(lane)).all()
    return Counter({r[0]: int(r[1]) for r in rows})


def claim_batch(
    engine: Engine,
    limit: int,
    lease_seconds: float,
    *,
    org_max_in_flight: int | None = None,
    org_per_minute: int | None = None,
    shard: int = 0,
    shards: int = 1,
) -> Claim:
    """Lease up to ``limit`` claimable rows within each organization's quota and return them.

    ``shard``/``shards``: the processing shard asking (accepted for the sharded engine; this
    revision claims from every lane for any shard, which is safe because claims are
    serialized and leased).

    ``org_max_in_flight`` / ``org_per_minute`` default to the settings
    ``PROCESSING_ORG_MAX_IN_FLIGHT`` / ``PROCESSING_ORG_WEBHOOKS_PER_MINUTE``. Returns an empty
    :class:`Claim` when nothing is claimable or every organization with work is at its quota
    (then ``held_back`` > 0). Database errors propagate.
    """
    if org_max_in_flight is None or org_per_minute is None:
        from wa_core.settings import get_settings

        settings = get_settings()
        org_max_in_flight = org_max_in_flight or settings.processing_org_max_in_flight
        org_per_minute = org_per_minute or settings.processing_org_webhooks_per_minute
    now = utcnow()
    claim = Claim()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))
        in_flight = _lane_counts(conn, in_flight_condition(now))
        recent = _lane_counts(conn, logs.c.claimed_at >= now - timedelta(seconds=QUOTA_WINDOW_SECONDS))
        if conn.dialect.name == "postgresql":
            candidates = conn.execute(_PG_CANDIDATES, {"now": now, "k": org_max_in_flight + 1}).all()
        else:
            candidates = _window_candidates(conn, now, org_max_in_flight + 1)
        allowance = {
            c.lane: max(0, min(org_max_in_flight - in_flight[c.lane], org_per_minute - recent[c.lane])) for c in candidates
        }
        chosen = [c for c in candidates if c.rank <= allowance[c.lane]][:limit]
        claim.held_back = len(candidates) - len(chosen)
        if not chosen:
            return claim
        expired = {c.id for c in chosen if c.locked_until is not None}
        rows = conn.execute(
            sa.update(logs)
            # re-checked under the row lock: a replay or purge may have changed the row since
            .where(logs.c.id.in_([c.id for c in chosen]), claimable_condition(now))
            .values(
                locked_until=now + timedelta(seconds=lease_seconds),
                claimed_at=now,
                attempts=logs.c.attempts + 1,
                updated_at=now,
            )
            .returning(logs.c.id, logs.c.body, logs.c.received_at, logs.c.attempts)
        ).all()
    claim.extend(
        sorted(
            (ClaimedRow(r.id, r.body, as_utc(r.received_at), r.attempts, r.id in expired) for r in rows),
            key=lambda r: r.id,
        )
    )
    return claim


def count_claimable(conn: Connection) -> int:
    """How many rows a run could claim right now (quotas aside)."""
    return conn.execute(sa.select(sa.func.count()).select_from(logs).where(claimable_condition(utcnow()))).scalar_one()
