"""The processing backlog per organization: what waits, what is in flight, what was claimed.

A webhook's organization is known before processing through its routing hint: the WABA id
the receiver stored (:mod:`wa_core.routing`) joined to the WABA's binding
(``whatsapp_connections.waba_id``), or the ``organization_id`` processing recorded on an
earlier attempt. Rows whose WABA is not bound to anyone and that processing recorded no
organization for share the **unrouted** lane (``organization_id`` ``None``, shown as
:data:`UNROUTED_LANE`). A row whose WABA is bound after it landed counts under that
organization from then on, everywhere. The same lane expression drives the fair claim in
``wa_core.processing.claim``, the admin status API, the dashboards, their checks and
``wa-onboarding status``.

Every open row (``pending`` or ``failed``) is exactly one of: **claimable**
(:func:`claimable_condition`), **in flight** (:func:`in_flight_condition`) or **waiting
retry** (:func:`waiting_retry_condition`). Every count of these, in any view, uses these
conditions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc, utcnow, whatsapp_connections, whatsapp_webhook_logs as logs

#: the window of the per-organization claim quota (seconds)
QUOTA_WINDOW_SECONDS = 60
#: how the unrouted lane (no organization) is shown, in every view: CLI, run metadata,
#: dashboards, checks and the admin API
UNROUTED_LANE = "unrouted"


def lane_label(organization_id: uuid.UUID | str | None, name: str | None) -> str:
    """How a lane is shown: :data:`UNROUTED_LANE` for no organization, else ``name`` (an
    organization's name or external id; its id when ``name`` is None). An organization whose
    ``name`` is spelled like the unrouted lane is shown with its id, so the two never read
    the same."""
    if organization_id is None:
        return UNROUTED_LANE
    if not name:
        return str(organization_id)
    return f"{name} ({organization_id})" if name == UNROUTED_LANE else name


def lane_expression() -> sa.ColumnElement:
    """SQL expression of a webhook row's organization lane (needs :func:`lane_join`)."""
    return sa.func.coalesce(logs.c.organization_id, whatsapp_connections.c.organization_id)


def lane_join() -> sa.FromClause:
    """``whatsapp_webhook_logs`` left-joined to the binding of its WABA."""
    return logs.outerjoin(whatsapp_connections, whatsapp_connections.c.waba_id == logs.c.waba_id)


def claimable_condition(now: datetime) -> sa.ColumnElement[bool]:
    """Rows a processing run may claim at ``now`` (UTC): ``pending``, or ``failed`` with its
    retry time passed, and not under a live lease."""
    return sa.and_(
        sa.or_(logs.c.status == "pending", sa.and_(logs.c.status == "failed", logs.c.next_attempt_at <= now)),
        sa.or_(logs.c.locked_until.is_(None), logs.c.locked_until < now),
    )


def in_flight_condition(now: datetime) -> sa.ColumnElement[bool]:
    """Rows leased by a live processing run at ``now``."""
    return sa.and_(logs.c.status.in_(("pending", "failed")), logs.c.locked_until >= now)


def waiting_retry_condition(now: datetime) -> sa.ColumnElement[bool]:
    """``failed`` rows whose retry is not due at ``now`` (``next_attempt_at`` later, or NULL:
    not retried) and that no live run leases: neither claimable nor in flight."""
    return sa.and_(
        logs.c.status == "failed",
        sa.or_(logs.c.next_attempt_at.is_(None), logs.c.next_attempt_at > now),
        sa.or_(logs.c.locked_until.is_(None), logs.c.locked_until < now),
    )


def lane_of_row() -> sa.ColumnElement:
    """The same lane as :func:`lane_expression`, as a correlated subquery on
    ``whatsapp_webhook_logs`` alone (for statements that cannot join, such as an UPDATE's
    WHERE). NULL = unrouted."""
    bound = (
        sa.select(whatsapp_connections.c.organization_id)
        .where(whatsapp_connections.c.waba_id == logs.c.waba_id)
        .scalar_subquery()
    )
    return sa.func.coalesce(logs.c.organization_id, bound)


@dataclass(frozen=True)
class OrgBacklog:
    """One organization's lane (``organization_id`` ``None`` = webhooks of unbound WABAs).

    ``claimable``: rows a run could claim now (:func:`claimable_condition`);
    ``waiting_retry``: failed rows whose retry time has not come
    (:func:`waiting_retry_condition`); ``in_flight``: rows leased by a running claim;
    ``claimed_last_minute``: claims in the quota window (:data:`QUOTA_WINDOW_SECONDS`);
    ``oldest_claimable_at``: arrival (UTC) of the oldest claimable row, ``None`` when there
    is none, and ``oldest_claimable_age_seconds`` its age (seconds, rounded to the
    millisecond); ``organization``: the lane as shown (:func:`lane_label` of the
    organization's name; :data:`UNROUTED_LANE` for no organization).
    """

    organization_id: uuid.UUID | None
    organization_external_id: str | None
    claimable: int
    waiting_retry: int
    in_flight: int
    claimed_last_minute: int
    oldest_claimable_at: datetime | None
    organization: str = UNROUTED_LANE
    oldest_claimable_age_seconds: float | None = None

    def as_dict(self) -> dict:
        """JSON-ready form (ids as strings, times as ISO 8601 UTC)."""
        return {
            "organization_id": str(self.organization_id) if self.organization_id else None,
            "organization_external_id": self.organization_external_id,
            "claimable": self.claimable,
            "waiting_retry": self.waiting_retry,
            "in_flight": self.in_flight,
            "claimed_last_minute": self.claimed_last_minute,
            "oldest_claimable_at": self.oldest_claimable_at.isoformat() if self.oldest_claimable_at else None,
            "oldest_claimable_age_seconds": self.oldest_claimable_age_seconds,
            "organization": self.organization,
        }


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def backlog_by_organization(conn: Connection, now: datetime | None = None) -> list[OrgBacklog]:
    """Per-lane backlog at ``now`` (UTC, default now), lanes with any figure above zero only,
    ordered by oldest claimable row first (the lanes that wait longest come first)."""
    from wa_core.db.schema import organizations

    now = now or utcnow()
    lane = lane_expression().label("lane")
    window_start = now - timedelta(seconds=QUOTA_WINDOW_SECONDS)
    claimable = claimable_condition(now)
    rows = conn.execute(
        sa.select(
            lane,
            _count_if(claimable).label("claimable"),
            _count_if(waiting_retry_condition(now)).label("waiting_retry"),
            _count_if(in_flight_condition(now)).label("in_flight"),
            _count_if(logs.c.claimed_at >= window_start).label("claimed"),
            sa.func.min(sa.case((claimable, logs.c.received_at), else_=None)).label("oldest"),
        )
        .select_from(lane_join())
        .where(sa.or_(logs.c.status.in_(("pending", "failed")), logs.c.claimed_at >= window_start))
        .group_by(lane)
    ).all()
    lanes = [r.lane for r in rows if r.lane is not None]
    o = organizations.c
    names = {r.id: r for r in conn.execute(sa.select(o.id, o.external_id, o.name).where(o.id.in_(lanes)))} if lanes else {}
    found = []
    for r in rows:
        if not (r.claimable or r.waiting_retry or r.in_flight or r.claimed):
            continue
        org, oldest = names.get(r.lane), as_utc(r.oldest)
        found.append(
            OrgBacklog(
                r.lane,
                org.external_id if org else None,
                int(r.claimable),
                int(r.waiting_retry),
                int(r.in_flight),
                int(r.claimed),
                oldest,
                lane_label(r.lane, org.name if org else None),
                round(max(0.0, (now - oldest).total_seconds()), 3) if oldest else None,
            )
        )
    far = datetime.max.replace(tzinfo=now.tzinfo)
    return sorted(found, key=lambda b: (b.oldest_claimable_at or far, str(b.organization_id)))
