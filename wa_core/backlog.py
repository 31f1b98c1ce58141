"""The processing backlog per organization lane: what waits, what is paused, in flight, claimed.

A webhook's **lane** is known before processing through its routing hint: the WABA id the
receiver stored (:mod:`wa_core.routing`) joined to the WABA's binding
(``whatsapp_connections.waba_id``); when that WABA is bound to no one, the
``organization_id`` processing recorded on an earlier attempt, if any. Rows with neither
share the **unrouted** lane (``organization_id`` ``None``, shown as :data:`UNROUTED_LANE`).
The binding comes first so that every webhook of a bound WABA is in one lane: the claim
(``wa_core.processing.claim``) can then decide pause and shard once per WABA, and a row whose
WABA is bound after it landed counts under that organization from then on, everywhere. The
same lane expression drives the fair claim, ``wa-onboarding status``, the admin status API,
the dashboards and their checks.

Every open row (``pending`` or ``failed``) is exactly one of: **claimable**
(:func:`claimable_condition` and not paused), **waiting paused** (claimable but held by a
pause), **in flight** (:func:`in_flight_condition`) or **waiting retry**
(:func:`waiting_retry_condition`). Every count of these, in any view, uses these conditions.

**Pause** (``wa_core.processing.controls``): a row waits while its WABA (routing hint) is
paused or its lane's organization is paused. It keeps landing, is not claimable and is
counted as ``waiting_paused``; a resume makes it claimable again.

**Shard**: with ``PROCESSING_SHARDS`` = N, a lane belongs to shard
``int(md5(str(organization_id))[:8], 16) % N`` (the first 32 bits of the MD5 of the id's
canonical text, lower-case with dashes); the unrouted lane to shard :data:`UNROUTED_SHARD`.
:func:`lane_shard` (Python) and :func:`lane_shard_sql` (Postgres) are the two spellings of
that one rule, checked against each other by a test. MD5 rather than the UUID's own bits:
the spread stays even for ids that are not random (imported or time-ordered ids).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import (
    as_utc,
    processing_org_controls,
    processing_waba_controls,
    utcnow,
    whatsapp_connections,
    whatsapp_webhook_logs as logs,
)

#: the window of the per-organization per-minute cap (seconds)
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
#: the shard that owns the unrouted lane
UNROUTED_SHARD = 0


def lane_expression() -> sa.ColumnElement:
    """SQL expression of a webhook row's organization lane (needs :func:`lane_join`)."""
    return sa.func.coalesce(whatsapp_connections.c.organization_id, logs.c.organization_id)


#: the pause controls as :func:`lane_join` joins them (``pauses=True``): only pauses in force
_paused_wabas = processing_waba_controls.alias("paused_wabas")
_paused_orgs = processing_org_controls.alias("paused_orgs")


def lane_join(pauses: bool = False) -> sa.FromClause:
    """``whatsapp_webhook_logs`` left-joined to the binding of its WABA; with ``pauses`` also to
    the pause in force of its WABA and of its lane (at most one row each: primary keys), which
    :func:`paused_condition` reads. Joins, not correlated ``EXISTS``: the planner hashes the
    few control rows instead of probing them once per webhook row."""
    joined = logs.outerjoin(whatsapp_connections, whatsapp_connections.c.waba_id == logs.c.waba_id)
    if pauses:
        w, o = _paused_wabas.c, _paused_orgs.c
        joined = joined.outerjoin(_paused_wabas, sa.and_(w.waba_id == logs.c.waba_id, w.paused_at.is_not(None)))
        joined = joined.outerjoin(_paused_orgs, sa.and_(o.organization_id == lane_expression(), o.paused_at.is_not(None)))
    return joined


def claimable_condition(now: datetime) -> sa.ColumnElement[bool]:
    """Rows a processing run may claim at ``now`` (UTC) unless paused: ``pending``, or
    ``failed`` with its retry time passed, and not under a live lease."""
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
    return sa.func.coalesce(bound, logs.c.organization_id)


def paused_condition() -> sa.ColumnElement[bool]:
    """Rows held by a pause: their WABA is paused or their lane's organization is (needs
    ``lane_join(pauses=True)``). The Postgres claim spells the same test in SQL text
    (:data:`PAUSED_WABA_SQL`, :data:`PAUSED_ORG_SQL`); a test checks both agree."""
    return sa.or_(_paused_wabas.c.waba_id.is_not(None), _paused_orgs.c.organization_id.is_not(None))


#: SQL text (format with ``waba=``): the WABA ``{waba}`` is paused
PAUSED_WABA_SQL = "EXISTS (SELECT 1 FROM processing_waba_controls p WHERE p.waba_id = {waba} AND p.paused_at IS NOT NULL)"
#: SQL text (format with ``lane=``): the organization ``{lane}`` is paused
PAUSED_ORG_SQL = (
    "EXISTS (SELECT 1 FROM processing_org_controls o WHERE o.organization_id = {lane} AND o.paused_at IS NOT NULL)"
)


def lane_shard(organization_id: uuid.UUID | None, shards: int) -> int:
    """The shard (0 … ``shards`` - 1) that owns the lane of ``organization_id`` (``None`` =
    the unrouted lane: :data:`UNROUTED_SHARD`). Stable across processes and releases."""
    if organization_id is None:
        return UNROUTED_SHARD
    return int(hashlib.md5(str(organization_id).encode("ascii")).hexdigest()[:8], 16) % shards


def lane_shard_sql(lane: str) -> str:
    """Postgres SQL text of :func:`lane_shard` for the uuid SQL expression ``lane``; the shard
    count is the bind parameter ``:shards``."""
    return (
        f"(CASE WHEN {lane} IS NULL THEN {UNROUTED_SHARD} "
        f"ELSE (('x' || left(md5(({lane})::text), 8))::bit(32)::bigint % :shards)::int END)"
    )


@dataclass(frozen=True)
class OrgBacklog:
    """One organization's lane (``organization_id`` ``None`` = webhooks of unbound WABAs).

    ``claimable``: rows a run could claim now (:func:`claimable_condition`, not paused);
    ``waiting_retry``: failed rows whose retry time has not come
    (:func:`waiting_retry_condition`); ``in_flight``: rows leased by a running claim;
    ``claimed_last_minute``: claims in the cap window (:data:`QUOTA_WINDOW_SECONDS`);
    ``oldest_claimable_at``: arrival (UTC) of the oldest claimable row, ``None`` when there
    is none, and ``oldest_claimable_age_seconds`` its age (seconds, rounded to the
    millisecond); ``organization``: the lane as shown (:func:`lane_label` of the
    organization's name; :data:`UNROUTED_LANE` for no organization); ``paused``: the
    organization is paused; ``waiting_paused``: rows that would be claimable but wait for a
    resume (of the organization or of their WABA, not counted in ``claimable``);
    ``paused_wabas``: paused WABAs of this lane (bound to the organization, or unbound for the
    unrouted lane), sorted.
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
    paused: bool = False
    waiting_paused: int = 0
    paused_wabas: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready form (ids as strings, times as ISO 8601 UTC, ``paused_wabas`` a list)."""
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
            "paused": self.paused,
            "waiting_paused": self.waiting_paused,
            "paused_wabas": list(self.paused_wabas),
        }


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def paused_lanes(conn: Connection) -> tuple[set, dict]:
    """The paused organizations (set of ids) and the paused WABAs by lane (``{lane: [waba_id,
    …]}``, lane = the organization the WABA is bound to, ``None`` if unbound)."""
    o, w, c = processing_org_controls.c, processing_waba_controls.c, whatsapp_connections.c
    orgs = set(conn.execute(sa.select(o.organization_id).where(o.paused_at.is_not(None))).scalars())
    wabas: dict = {}
    for waba_id, lane in conn.execute(
        sa.select(w.waba_id, c.organization_id)
        .select_from(processing_waba_controls.outerjoin(whatsapp_connections, c.waba_id == w.waba_id))
        .where(w.paused_at.is_not(None))
        .order_by(w.waba_id)
    ):
        wabas.setdefault(lane, []).append(waba_id)
    return orgs, wabas


def backlog_by_organization(conn: Connection, now: datetime | None = None) -> list[OrgBacklog]:
    """Per-lane backlog at ``now`` (UTC, default now): lanes with any figure above zero, and
    paused lanes (or lanes with a paused WABA) even when nothing waits; ordered by oldest
    claimable row first (the lanes that wait longest come first), then by id."""
    from wa_core.db.schema import organizations

    now = now or utcnow()
    lane = lane_expression().label("lane")
    window_start = now - timedelta(seconds=QUOTA_WINDOW_SECONDS)
    claimable = claimable_condition(now)
    paused = paused_condition()
    open_claimable = sa.and_(claimable, sa.not_(paused))
    rows = {
        r.lane: r
        for r in conn.execute(
            sa.select(
                lane,
                _count_if(open_claimable).label("claimable"),
                _count_if(waiting_retry_condition(now)).label("waiting_retry"),
                _count_if(in_flight_condition(now)).label("in_flight"),
                _count_if(logs.c.claimed_at >= window_start).label("claimed"),
                sa.func.min(sa.case((open_claimable, logs.c.received_at), else_=None)).label("oldest"),
                _count_if(sa.and_(claimable, paused)).label("waiting_paused"),
            )
            .select_from(lane_join(pauses=True))
            .where(sa.or_(logs.c.status.in_(("pending", "failed")), logs.c.claimed_at >= window_start))
            .group_by(lane)
        )
    }
    paused_orgs, paused_wabas = paused_lanes(conn)
    lanes = set(rows) | paused_orgs | set(paused_wabas)
    ids = [x for x in lanes if x is not None]
    o = organizations.c
    names = {r.id: r for r in conn.execute(sa.select(o.id, o.external_id, o.name).where(o.id.in_(ids)))} if ids else {}
    found = []
    for key in lanes:
        r = rows.get(key)
        figures = (int(r.claimable), int(r.waiting_retry), int(r.in_flight), int(r.claimed)) if r else (0, 0, 0, 0)
        org, oldest = names.get(key), as_utc(r.oldest) if r else None
        item = OrgBacklog(
            key,
            org.external_id if org else None,
            *figures,
            oldest,
            organization=lane_label(key, org.name if org else None),
            oldest_claimable_age_seconds=round(max(0.0, (now - oldest).total_seconds()), 3) if oldest else None,
            paused=key in paused_orgs,
            waiting_paused=int(r.waiting_paused) if r else 0,
            paused_wabas=tuple(paused_wabas.get(key, ())),
        )
        if any(figures) or item.paused or item.waiting_paused or item.paused_wabas:
            found.append(item)
    far = datetime.max.replace(tzinfo=now.tzinfo)
    return sorted(found, key=lambda b: (b.oldest_claimable_at or far, str(b.organization_id)))
