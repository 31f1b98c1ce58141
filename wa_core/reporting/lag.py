"""Webhook lag and backlog: how long Meta takes to reach us, and we take to process.

Two delays, in seconds, over the last 24 h, per hour of arrival (``received_at``, UTC):

* **Meta → arrival**: ``received_at − provider_timestamp`` of the messages (history imports
  excluded: their timestamps are the original, often months-old, send times) and statuses
  that arrived in the window. Meta's timestamps have one-second resolution, so a sample can
  be slightly negative when clocks disagree; samples down to ``-META_CLOCK_SKEW_SECONDS``
  (−300 s) are kept as they are. Implausible samples (a timestamp more than 300 s in the
  future, or more than ``META_MAX_LAG_SECONDS``, Meta's 7-day retry window, before arrival:
  1970, year 2286, a sender's wrong clock) are left out of the percentiles and counted in
  ``meta_to_arrival_excluded``.
* **arrival → processed**: ``processed_at − received_at`` of the webhook rows processed that
  arrived in the window (a replayed row counts from its first arrival).

Percentiles: :func:`wa_core.reporting.stats.percentile` (linear interpolation between the
two closest ranks, in Python, so that SQLite and Postgres give the same figures).

The **backlog** is split as :mod:`wa_core.backlog` splits every open row (``pending`` or
``failed``): **claimable** (:func:`~wa_core.backlog.claimable_condition`: ``pending``, or
``failed`` with its retry due, and not under a live lease; the figure the processing sensor
launches on), **in flight** (leased by a live run) and **waiting retry** (``failed``, retry
not due). A claimable row has been waiting since it arrived (pending), since an operator
replayed it (pending, replayed), or since its retry became due (failed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import claimable_condition, in_flight_condition, lane_join, paused_condition, waiting_retry_condition
from wa_core.db.schema import (
    as_utc,
    utcnow,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_webhook_logs,
)
from wa_core.reporting.common import markdown
from wa_core.reporting.snapshots import Dashboard
from wa_core.reporting.stats import percentile

#: the window the lag figures cover
LAG_WINDOW = timedelta(hours=24)
#: Meta → arrival samples more negative than this (seconds) are implausible: excluded
META_CLOCK_SKEW_SECONDS = 300.0
#: Meta → arrival samples longer than this (seconds; Meta retries a webhook for 7 days) are
#: implausible: excluded
META_MAX_LAG_SECONDS = 7 * 24 * 3600.0


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True)
class LagStats:
    """Count and percentiles (seconds, rounded to the millisecond; None without samples)."""

    count: int
    p50_seconds: float | None
    p95_seconds: float | None

    @classmethod
    def of(cls, samples: Sequence[float]) -> LagStats:
        """Stats of ``samples`` (seconds)."""
        return cls(len(samples), _rounded(percentile(samples, 50)), _rounded(percentile(samples, 95)))


@dataclass(frozen=True)
class HourLag:
    """One hour of arrivals (``hour``: its start, UTC) and its two delays."""

    hour: datetime
    meta_to_arrival_count: int
    meta_to_arrival_p50_seconds: float | None
    meta_to_arrival_p95_seconds: float | None
    arrival_to_processed_count: int
    arrival_to_processed_p50_seconds: float | None
    arrival_to_processed_p95_seconds: float | None


@dataclass(frozen=True)
class Backlog:
    """The open webhook rows at one time, split as :mod:`wa_core.backlog` splits them.

    ``pending`` and ``failed_due``: the claimable rows (not leased) in ``pending`` and in
    ``failed`` with their retry due; ``in_flight``: rows leased by a live run;
    ``waiting_retry``: ``failed`` rows whose retry is not due (not claimable, shown for
    context). ``oldest_waiting_since``: when the longest-waiting claimable row became
    claimable (UTC; None when nothing is claimable) and ``oldest_age_seconds`` how long ago
    that was; ``oldest_webhook_id`` is that row. ``waiting_paused``: rows that would be
    claimable but wait for a resume (their organization or WABA is paused), not claimable.
    """

    pending: int
    failed_due: int
    waiting_retry: int
    in_flight: int
    oldest_waiting_since: datetime | None
    oldest_age_seconds: float | None
    oldest_webhook_id: int | None
    waiting_paused: int = 0

    @property
    def claimable(self) -> int:
        """Rows a processing run could claim now (:func:`~wa_core.backlog.claimable_condition`)."""
        return self.pending + self.failed_due


def _hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def _samples(rows: Iterable[Any], hour_of: str = "later") -> list[tuple[datetime, float]]:
    """(hour, seconds) for rows of (later, earlier) times; the hour is the later time's (the
    arrival, for Meta → arrival) or the earlier one's (the arrival, for arrival → processed)."""
    out = []
    for later, earlier in rows:
        later, earlier = as_utc(later), as_utc(earlier)
        out.append((_hour(later if hour_of == "later" else earlier), (later - earlier).total_seconds()))
    return out


def compute_backlog(conn: Connection, now: datetime | None = None) -> Backlog:
    """The backlog at ``now`` (UTC, default now); see :class:`Backlog`. Claimable is
    :func:`wa_core.backlog.claimable_condition` and not paused (as the claim counts it): a row
    leased by a run in progress is in flight, not claimable (it becomes claimable again if its
    lease expires); a paused one is ``waiting_paused``."""
    now = now or utcnow()
    logs = whatsapp_webhook_logs.c
    paused = paused_condition()
    claimable = sa.and_(claimable_condition(now), sa.not_(paused))
    joined = lane_join(pauses=True)
    counts = conn.execute(
        sa.select(
            sa.func.count().filter(claimable, logs.status == "pending"),
            sa.func.count().filter(claimable, logs.status == "failed"),
            sa.func.count().filter(waiting_retry_condition(now)),
            sa.func.count().filter(in_flight_condition(now)),
            sa.func.count().filter(claimable_condition(now), paused),
        )
        .select_from(joined)
        .where(logs.status.in_(("pending", "failed")))
    ).one()
    *figures, waiting_paused = [int(n) for n in counts]
    # the oldest candidate of each kind of wait, then the oldest of those
    since_pending = sa.case((logs.replayed_at > logs.received_at, logs.replayed_at), else_=logs.received_at)
    candidates = [
        conn.execute(
            sa.select(logs.id, since_pending.label("since"))
            .select_from(joined)
            .where(claimable, logs.status == "pending")
            .order_by(since_pending, logs.id)
            .limit(1)
        ).first(),
        conn.execute(
            sa.select(logs.id, logs.next_attempt_at.label("since"))
            .select_from(joined)
            .where(claimable, logs.status == "failed")
            .order_by(logs.next_attempt_at, logs.id)
            .limit(1)
        ).first(),
    ]
    found = [(as_utc(c.since), c.id) for c in candidates if c is not None]
    if not found:
        return Backlog(*figures, None, None, None, waiting_paused)
    since, webhook_id = min(found)
    return Backlog(*figures, since, round((now - since).total_seconds(), 3), webhook_id, waiting_paused)


def compute_webhook_lag(conn: Connection, now: datetime | None = None) -> Dashboard:
    """The ``webhook_lag`` dashboard at ``now`` (UTC, default now).

    ``rows``: one :class:`HourLag` per arrival hour with samples in the 24 h before ``now``,
    oldest first. ``totals``: ``meta_to_arrival_count``/``_p50_seconds``/``_p95_seconds``,
    ``meta_to_arrival_excluded`` (implausible samples, below −``META_CLOCK_SKEW_SECONDS``
    or above ``META_MAX_LAG_SECONDS``, which no count or percentile, total or hourly,
    includes), the same for ``arrival_to_processed``, and the backlog (:func:`compute_backlog`):
    ``backlog_claimable`` (= ``backlog_pending`` + ``backlog_failed_due``),
    ``backlog_in_flight``, ``backlog_waiting_retry``, ``backlog_waiting_paused``, ``backlog_oldest_age_seconds`` (None when nothing waits),
    ``backlog_oldest_waiting_since`` and ``backlog_oldest_webhook_id``. Seconds are floats
    rounded to the millisecond; percentiles are None without samples.
    """
    now = now or utcnow()
    since = now - LAG_WINDOW
    m, st, logs = whatsapp_messages.c, whatsapp_message_statuses.c, whatsapp_webhook_logs.c
    meta = _samples(
        conn.execute(
            sa.select(m.received_at, m.provider_timestamp).where(
                m.received_at >= since, m.received_at <= now, m.provider_timestamp.is_not(None), m.source != "history"
            )
        )
    )
    meta += _samples(
        conn.execute(
            sa.select(st.received_at, st.provider_timestamp).where(
                st.received_at >= since, st.received_at <= now, st.provider_timestamp.is_not(None)
            )
        )
    )
    plausible = [(h, s) for h, s in meta if -META_CLOCK_SKEW_SECONDS <= s <= META_MAX_LAG_SECONDS]
    excluded, meta = len(meta) - len(plausible), plausible
    processed = _samples(
        conn.execute(
            sa.select(logs.processed_at, logs.received_at).where(
                logs.status == "processed", logs.processed_at.is_not(None), logs.received_at >= since, logs.received_at <= now
            )
        ),
        hour_of="earlier",
    )
    by_hour: dict[datetime, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for hour, seconds in meta:
        by_hour[hour][0].append(seconds)
    for hour, seconds in processed:
        by_hour[hour][1].append(seconds)
    hours = []
    for hour in sorted(by_hour):
        a, b = LagStats.of(by_hour[hour][0]), LagStats.of(by_hour[hour][1])
        hours.append(HourLag(hour, a.count, a.p50_seconds, a.p95_seconds, b.count, b.p50_seconds, b.p95_seconds))
    overall_meta, overall_processed = LagStats.of([s for _, s in meta]), LagStats.of([s for _, s in processed])
    backlog = compute_backlog(conn, now)
    totals = {
        "meta_to_arrival_count": overall_meta.count,
        "meta_to_arrival_p50_seconds": overall_meta.p50_seconds,
        "meta_to_arrival_p95_seconds": overall_meta.p95_seconds,
        "meta_to_arrival_excluded": excluded,
        "arrival_to_processed_count": overall_processed.count,
        "arrival_to_processed_p50_seconds": overall_processed.p50_seconds,
        "arrival_to_processed_p95_seconds": overall_processed.p95_seconds,
        "backlog_claimable": backlog.claimable,
        "backlog_pending": backlog.pending,
        "backlog_failed_due": backlog.failed_due,
        "backlog_waiting_retry": backlog.waiting_retry,
        "backlog_in_flight": backlog.in_flight,
        "backlog_waiting_paused": backlog.waiting_paused,
        "backlog_oldest_age_seconds": backlog.oldest_age_seconds,
        "backlog_oldest_waiting_since": backlog.oldest_waiting_since,
        "backlog_oldest_webhook_id": backlog.oldest_webhook_id,
    }
    return Dashboard(computed_at=now, totals=totals, rows=hours)


def lag_markdown(rows: list[HourLag]) -> str:
    """The ``by_hour`` table of ``webhook_lag``."""

    def s(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    return markdown(
        ["hour (UTC)", "Meta → arrival n", "p50 s", "p95 s", "arrival → processed n", "p50 s", "p95 s"],
        (
            [
                h.hour.strftime("%Y-%m-%d %H:00"),
                h.meta_to_arrival_count,
                s(h.meta_to_arrival_p50_seconds),
                s(h.meta_to_arrival_p95_seconds),
                h.arrival_to_processed_count,
                s(h.arrival_to_processed_p50_seconds),
                s(h.arrival_to_processed_p95_seconds),
            ]
            for h in rows
        ),
    )
