"""Claiming landed webhook rows for a processing run: work-conserving and fair per lane.

A claim takes up to ``limit`` claimable rows and leases them: it sets ``locked_until``,
stamps ``claimed_at`` and counts the attempt. Claimable means ``pending``, or ``failed`` with
``next_attempt_at`` passed, not under a live lease, and not paused (see
:mod:`wa_core.backlog`). A run that dies leaves its leases to expire
(``PROCESSING_LEASE_SECONDS``): the rows become claimable again.

**Fair share, and nobody throttled while capacity is idle.** The rows of a claim are dealt
round-robin over the lanes with claimable rows (organizations, and the shared unrouted lane):
the oldest row of every lane, then the second oldest of every lane, and so on, until the
batch is full. One organization alone gets the whole batch; with others waiting each lane
gets an equal share of the batch, so a flood delays another organization's webhook by at
most about one batch. Within a lane rows come oldest first (by id), which keeps a WABA's
``account_update`` events in arrival order.

**Opt-in caps.** ``PROCESSING_ORG_MAX_IN_FLIGHT`` (rows leased at once) and
``PROCESSING_ORG_WEBHOOKS_PER_MINUTE`` (claims per rolling minute) are off by default (0);
set, they bind every lane, and ``processing_org_controls`` overrides them per organization
(``NULL`` = the global value, 0 = no cap). Rows over a cap wait; nothing is refused.

**Shards.** ``claim_batch(..., shard=i, shards=N)`` only claims lanes that
:func:`wa_core.backlog.lane_shard` maps to ``i``, so N claimers never claim the same lane and
together claim every lane. Every claimer must use the same N.

Claims of one shard are serialized so caps hold exactly: on Postgres by a transaction-level
advisory lock keyed by (:data:`CLAIM_LOCK_KEY`, shard) (claims take milliseconds; the
receiver's inserts never wait for it), on SQLite by the ``BEGIN IMMEDIATE`` write
transaction the engine uses. A pause committed while a claim is running may still let that
claim take the lane's rows; every later claim waits for the resume.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.backlog import (
    PAUSED_ORG_SQL,
    PAUSED_WABA_SQL,
    QUOTA_WINDOW_SECONDS,
    claimable_condition,
    in_flight_condition,
    lane_expression,
    lane_join,
    lane_shard,
    lane_shard_sql,
    paused_condition,
)
from wa_core.db.schema import as_utc, processing_org_controls, utcnow, whatsapp_webhook_logs as logs

#: key of the Postgres advisory lock that serializes claims ("wacl"), with the shard as second key
CLAIM_LOCK_KEY = 0x7761636C
#: lanes with claimable rows seen by this process's last claim, per shard: the first per-lane
#: depth of the next Postgres candidate query is the batch divided by it (a hint only, see
#: :func:`_deal`; 8 before the first claim)
_LANES_SEEN: dict[int, int] = {}

__all__ = ["ClaimedRow", "Claim", "claim_batch", "claimable_condition", "count_claimable", "claimable_by_shard"]


@dataclass(frozen=True)
class ClaimedRow:
    """A leased webhook row: id, exact body bytes, arrival time (UTC) and attempt number."""

    id: int
    body: bytes | None
    received_at: datetime
    attempts: int
    lease_expired: bool = False  # the previous claim never finished: its run died
    #: claimed from the unrouted lane (no organization known before processing): the engine
    #: hands it back if its items belong to a paused or another shard's lane (:mod:`.relane`)
    unrouted: bool = False
    #: put back in line by an operator's replay at least once (``replay_count`` > 0)
    replayed: bool = False

    @property
    def first_attempt(self) -> bool:
        """No earlier claim of this row can have stored an outcome (first attempt, never replayed)."""
        return self.attempts == 1 and not self.replayed


class Claim(list):
    """The rows of one claim (a list of :class:`ClaimedRow`) in the order they were dealt:
    every lane's oldest row, then every lane's second oldest, …; so each lane's rows are
    oldest first and a run applying them in order starts with the lanes that have few.
    Plus ``held_back``:
    how many claimable rows were left waiting because their lane was at a cap (a lower
    bound; 0 without caps). Paused rows are not counted: they are not work until resumed."""

    held_back: int = 0


def _check_shard(shard: int, shards: int) -> None:
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..shards-1 and shards >= 1 (got shard={shard}, shards={shards})")


def _window_candidates(conn: Connection, now: datetime, k: int, shard: int = 0, shards: int = 1) -> list:
    """The ``k`` oldest claimable, unpaused rows of each lane of ``shard`` (id, lane,
    locked_until, rank), ordered by id: one window query over every claimable row, simple and
    fine at SQLite's scale (its cost grows with the backlog, see docs/benchmarks.md). The
    shard is applied to whole lanes after ranking, so it does not change any lane's ranks."""
    lane = lane_expression()
    ranked = (
        sa.select(
            logs.c.id,
            lane.label("lane"),
            logs.c.locked_until,
            sa.func.row_number().over(partition_by=lane, order_by=logs.c.id).label("rank"),
        )
        .select_from(lane_join(pauses=True))
        .where(claimable_condition(now), sa.not_(paused_condition()))
        .subquery()
    )
    rows = conn.execute(
        sa.select(ranked.c.id, ranked.c.lane, ranked.c.locked_until, ranked.c.rank)
        .where(ranked.c.rank <= k)
        .order_by(ranked.c.id)
    ).all()
    return rows if shards == 1 else [r for r in rows if lane_shard(r.lane, shards) == shard]


_CLAIMABLE_OPEN = (
    "NOT (l.status = 'failed' AND (l.next_attempt_at IS NULL OR l.next_attempt_at > :now)) "
    "AND (l.locked_until IS NULL OR l.locked_until < :now)"
)
_ROW_LANE_OK = f"({lane_shard_sql('l.organization_id')} = :shard AND NOT {PAUSED_ORG_SQL.format(lane='l.organization_id')})"

#: Postgres: the same answer as :func:`_window_candidates` without reading the whole backlog.
#: The WABAs with open rows are enumerated by a skip scan (a recursive CTE, one probe of
#: ``ix_whatsapp_webhook_logs_open_by_waba`` per WABA) and joined to their binding once: a
#: bound WABA's rows are all in its organization's lane, so pause and shard are decided per
#: WABA before any of its rows is read. Each remaining WABA's ``k`` oldest claimable rows come
#: from the same index; only rows of unbound WABAs and rows without a routing hint (whose lane
#: is the organization processing recorded, usually none) are tested one by one. Then the few
#: rows found are ranked per lane. Claimable is written as "not (failed and not yet due)"
#: within the index's ``status IN ('pending', 'failed')`` so the planner walks the index in
#: id order. Rows without a routing hint are taken ``k`` at a time for all their lanes
#: together, so such a lane may get fewer than ``k`` candidates in one claim, never more.
_PG_CANDIDATES = f"""
WITH RECURSIVE wabas(waba_id) AS (
  SELECT min(waba_id) FROM whatsapp_webhook_logs WHERE status IN ('pending', 'failed')
  UNION ALL
  SELECT (SELECT min(l.waba_id) FROM whatsapp_webhook_logs l
          WHERE l.status IN ('pending', 'failed') AND l.waba_id > w.waba_id)
  FROM wabas w WHERE w.waba_id IS NOT NULL
), lanes AS (
  SELECT w.waba_id, c.organization_id AS lane FROM wabas w
  LEFT JOIN whatsapp_connections c ON c.waba_id = w.waba_id
  WHERE w.waba_id IS NOT NULL AND NOT {PAUSED_WABA_SQL.format(waba='w.waba_id')}
    AND (c.organization_id IS NULL
         OR ({lane_shard_sql('c.organization_id')} = :shard AND NOT {PAUSED_ORG_SQL.format(lane='c.organization_id')}))
), firsts AS (
  SELECT t.id, coalesce(w.lane, t.organization_id) AS lane, t.locked_until FROM lanes w CROSS JOIN LATERAL (
    SELECT l.id, l.organization_id, l.locked_until FROM whatsapp_webhook_logs l
    WHERE l.status IN ('pending', 'failed') AND l.waba_id = w.waba_id AND {_CLAIMABLE_OPEN}
      AND (w.lane IS NOT NULL OR {_ROW_LANE_OK})
    ORDER BY l.id LIMIT :k) t
  UNION ALL
  (SELECT l.id, l.organization_id, l.locked_until FROM whatsapp_webhook_logs l
   WHERE l.status IN ('pending', 'failed') AND l.waba_id IS NULL AND {_CLAIMABLE_OPEN} AND {_ROW_LANE_OK}
   ORDER BY l.id LIMIT :k)
)
SELECT id, lane, locked_until, rank FROM (
  SELECT id, lane, locked_until, row_number() OVER (PARTITION BY lane ORDER BY id) AS rank FROM firsts) r
WHERE rank <= :k ORDER BY id
"""


class _Candidate(NamedTuple):
    id: int
    lane: Any
    locked_until: datetime | None
    rank: int


#: :data:`_PG_CANDIDATES` in the driver's paramstyle, run without SQLAlchemy's result layer
#: (a claim reads up to a batch of rows; plain tuples cost a fraction of ``Row`` objects)
_PG_CANDIDATES_SQL = re.sub(r"(?<!:):(now|k|shard|shards)\b", r"%(\1)s", _PG_CANDIDATES.replace("%", "%%"))


def _pg_candidates(conn: Connection, now: datetime, k: int, shard: int = 0, shards: int = 1) -> list:
    """:data:`_PG_CANDIDATES` for ``k`` rows per lane of ``shard``: (id, lane, locked_until, rank) by id."""
    cursor = conn.exec_driver_sql(_PG_CANDIDATES_SQL, {"now": now, "k": k, "shard": shard, "shards": shards}).cursor
    return [_Candidate(*r) for r in cursor.fetchall()]


#: the lease of the chosen rows (Postgres), re-checking claimability under the row lock: a
#: replay, purge or another claimer may have changed a row since it was chosen
_PG_LEASE = """
UPDATE whatsapp_webhook_logs SET locked_until = %(until)s, claimed_at = %(now)s, attempts = attempts + 1, updated_at = %(now)s
WHERE id = ANY(%(ids)s) AND (status = 'pending' OR (status = 'failed' AND next_attempt_at <= %(now)s))
  AND (locked_until IS NULL OR locked_until < %(now)s)
RETURNING id, body, received_at, attempts, replay_count
"""


def _lane_counts(
    conn: Connection, condition: sa.ColumnElement[bool], lanes: Sequence | None = None, pauses: bool = False
) -> Counter:
    lane = lane_expression()
    where = [condition] if lanes is None else [condition, lane.in_(lanes)]
    rows = conn.execute(
        sa.select(lane.label("lane"), sa.func.count()).select_from(lane_join(pauses)).where(*where).group_by(lane)
    ).all()
    return Counter({r[0]: int(r[1]) for r in rows})


def _allowances(conn: Connection, now: datetime, max_in_flight: int, per_minute: int) -> Callable[[object], float]:
    """``allowance(lane)``: how many more rows the lane may be given now under its caps
    (``math.inf`` without caps). Counts rows in flight and claims of the last minute only for
    lanes that have a cap, and not at all when nobody has one (the default)."""
    o = processing_org_controls.c
    overrides = conn.execute(
        sa.select(o.organization_id, o.max_in_flight, o.webhooks_per_minute).where(
            sa.or_(o.max_in_flight.is_not(None), o.webhooks_per_minute.is_not(None))
        )
    ).all()
    caps = []  # (cap of a lane, counts of the lanes that have one)
    for default, column, condition in (
        (max_in_flight, 1, in_flight_condition(now)),
        (per_minute, 2, logs.c.claimed_at >= now - timedelta(seconds=QUOTA_WINDOW_SECONDS)),
    ):
        own = {r[0]: r[column] for r in overrides if r[column] is not None}

        def cap(lane, own=own, default=default) -> int:
            return own.get(lane, default) if lane is not None else default

        capped = [lane for lane, value in own.items() if value > 0]
        if default > 0:
            caps.append((cap, _lane_counts(conn, condition)))
        elif capped:
            caps.append((cap, _lane_counts(conn, condition, capped)))

    def allowance(lane) -> float:
        left = math.inf
        for cap, counts in caps:
            if cap(lane) > 0:
                left = min(left, max(0, cap(lane) - counts[lane]))
        return left

    return allowance


def _deal(
    fetch: Callable[[int], list], limit: int, allowance: Callable[[object], float], first_depth: int
) -> tuple[list, int, int]:
    """Round-robin over the lanes: ``(chosen candidates, held back by caps, lanes seen)``.

    ``fetch(k)`` returns the ``k`` oldest claimable rows of every lane (with their rank in the
    lane). The rows are dealt by (rank, id): every lane's oldest row first, then every lane's
    second, …, each lane up to its allowance, until ``limit``. Only the rows of rank <= k are
    known; that is enough when they fill the batch, or when no lane has k rows and room for
    more. Otherwise the depth grows to what the lanes that may still want more need
    (water-filling), at least doubling, at most ``limit``. Starting from the batch divided by
    the lanes of the previous claim, a claim is usually one query and reads about ``limit``
    rows, not ``limit`` per lane."""
    k = max(1, min(limit, first_depth))
    while True:
        candidates = fetch(k)
        by_lane: dict = defaultdict(list)
        for c in candidates:
            by_lane[c.lane].append(c)
        takes = {lane: min(len(rows), allowance(lane)) for lane, rows in by_lane.items()}
        hungry = [lane for lane, rows in by_lane.items() if len(rows) >= k and allowance(lane) > k]
        total = sum(takes.values())
        if total >= limit or not hungry or k >= limit:
            break
        settled = total - k * len(hungry)
        k = min(limit, max(2 * k, math.ceil((limit - settled) / len(hungry))))
    chosen = sorted((c for c in candidates if c.rank <= allowance(c.lane)), key=lambda c: (c.rank, c.id))[:limit]
    held_back = sum(int(max(0, len(rows) - allowance(lane))) for lane, rows in by_lane.items())
    return chosen, held_back, len(by_lane)


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
    """Lease up to ``limit`` claimable rows of ``shard``'s lanes, dealt round-robin over the
    lanes within their caps, and return them in that order (see :class:`Claim`).

    ``org_max_in_flight`` / ``org_per_minute``: the global caps (0 = no cap), default the
    settings ``PROCESSING_ORG_MAX_IN_FLIGHT`` / ``PROCESSING_ORG_WEBHOOKS_PER_MINUTE``;
    per-organization values in ``processing_org_controls`` override them. ``shard`` /
    ``shards``: claim only lanes with ``lane_shard(lane, shards) == shard``. Returns an empty
    :class:`Claim` when nothing is claimable or every lane with work is at a cap (then
    ``held_back`` > 0). Raises ``ValueError`` for a shard outside 0..shards-1; database
    errors propagate.
    """
    _check_shard(shard, shards)
    if org_max_in_flight is None or org_per_minute is None:
        from wa_core.settings import get_settings

        settings = get_settings()
        org_max_in_flight = settings.processing_org_max_in_flight if org_max_in_flight is None else org_max_in_flight
        org_per_minute = settings.processing_org_webhooks_per_minute if org_per_minute is None else org_per_minute
    now = utcnow()
    claim = Claim()
    with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK_KEY, shard)))
        allowance = _allowances(conn, now, org_max_in_flight, org_per_minute)
        if postgres:
            first_depth = math.ceil(limit / max(1, _LANES_SEEN.get(shard, 8)))
            chosen, claim.held_back, seen = _deal(lambda k: _pg_candidates(conn, now, k, shard, shards), limit, allowance, first_depth)
            if seen:  # an idle claim keeps the last hint
                _LANES_SEEN[shard] = seen
        else:  # the window query reads every claimable row anyway: rank them all at once
            chosen, claim.held_back, _ = _deal(lambda k: _window_candidates(conn, now, k, shard, shards), limit, allowance, limit)
        if not chosen:
            return claim
        expired = {c.id for c in chosen if c.locked_until is not None}
        until = now + timedelta(seconds=lease_seconds)
        if postgres:
            params = {"ids": [c.id for c in chosen], "now": now, "until": until}
            rows = conn.exec_driver_sql(_PG_LEASE, params).cursor.fetchall()
        else:
            rows = conn.execute(
                sa.update(logs)
                # re-checked under the row lock: a replay, purge or another claimer may have changed the row since
                .where(logs.c.id.in_([c.id for c in chosen]), claimable_condition(now))
                .values(locked_until=until, claimed_at=now, attempts=logs.c.attempts + 1, updated_at=now)
                .returning(logs.c.id, logs.c.body, logs.c.received_at, logs.c.attempts, logs.c.replay_count)
            ).all()
    position = {c.id: i for i, c in enumerate(chosen)}
    unrouted = {c.id for c in chosen if c.lane is None}
    claim.extend(
        sorted(
            (ClaimedRow(rid, body, as_utc(received_at), attempts, rid in expired, rid in unrouted, replay_count > 0)
             for rid, body, received_at, attempts, replay_count in rows),
            key=lambda r: position[r.id],
        )
    )
    return claim


def claimable_by_shard(conn: Connection, shards: int = 1, now: datetime | None = None) -> list[int]:
    """Rows a run could claim right now (caps aside, pauses respected), per shard: a list of
    ``shards`` counts, index = shard. One ``GROUP BY`` lane; the shard of each lane is
    :func:`wa_core.backlog.lane_shard`."""
    _check_shard(0, shards)
    counts = [0] * shards
    condition = sa.and_(claimable_condition(now or utcnow()), sa.not_(paused_condition()))
    for lane, n in _lane_counts(conn, condition, pauses=True).items():
        counts[lane_shard(lane, shards)] += n
    return counts


def count_claimable(conn: Connection, shard: int | None = None, shards: int = 1) -> int:
    """How many rows a run could claim right now (caps aside, pauses respected): of ``shard``
    (of ``shards``), or of every shard when ``shard`` is ``None``. Raises ``ValueError`` for a
    shard outside 0..shards-1."""
    if shard is not None:
        _check_shard(shard, shards)
    counts = claimable_by_shard(conn, shards)
    return sum(counts) if shard is None else counts[shard]
