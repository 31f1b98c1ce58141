"""The ``failed_webhooks`` dashboard: failed and dead webhook rows by lane and error kind."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import lane_expression, lane_join
from wa_core.db.schema import as_utc, utcnow, whatsapp_webhook_logs
from wa_core.organizations import organizations_by_id
from wa_core.reporting.common import WINDOW, lane_columns, markdown
from wa_core.reporting.snapshots import Dashboard


@dataclass(frozen=True)
class FailedWebhookGroup:
    """Failed and dead webhook rows of one lane (an organization, or unrouted) and error kind.

    ``error_kind`` is the row's stored kinds (comma separated when several, ``(none)`` when
    empty); ``failed`` rows wait for a retry, ``dead`` ones for an operator.
    ``oldest_received_at``/``newest_received_at``: arrival times (UTC) of the group's rows.
    """

    organization_id: str | None
    organization_external_id: str | None
    organization: str
    error_kind: str
    failed: int
    dead: int
    total: int
    dead_24h: int
    oldest_received_at: datetime
    newest_received_at: datetime


def compute_failed_webhooks(conn: Connection, now: datetime | None = None) -> Dashboard:
    """The ``failed_webhooks`` dashboard at ``now`` (UTC, default now): every webhook row now
    ``failed`` or ``dead``, whatever its age, under its lane (:mod:`wa_core.backlog`).

    ``rows``: :class:`FailedWebhookGroup` per (lane, error kind), most rows first.
    ``totals``: ``failed``, ``dead``, ``total``, ``unrouted`` (rows of the unrouted lane),
    ``dead_24h`` (dead rows received in the 24 h before ``now``), ``groups``,
    ``organizations`` (organizations affected) and ``by_error_kind`` ({kind: rows}).
    """
    now = now or utcnow()
    since = now - WINDOW
    logs = whatsapp_webhook_logs.c
    lane = lane_expression().label("lane")
    kind = sa.func.coalesce(logs.error_kind, "(none)").label("kind")
    dead_in_window = sa.and_(logs.status == "dead", logs.received_at >= since, logs.received_at <= now)
    stmt = (
        sa.select(
            lane,
            kind,
            sa.func.sum(sa.case((logs.status == "failed", 1), else_=0)).label("failed"),
            sa.func.sum(sa.case((logs.status == "dead", 1), else_=0)).label("dead"),
            sa.func.sum(sa.case((dead_in_window, 1), else_=0)).label("dead_24h"),
            sa.func.min(logs.received_at).label("oldest"),
            sa.func.max(logs.received_at).label("newest"),
        )
        .select_from(lane_join())
        .where(logs.status.in_(("failed", "dead")))
        .group_by(lane, kind)
    )
    orgs = organizations_by_id(conn)
    rows = []
    for r in conn.execute(stmt):
        failed, dead = int(r.failed or 0), int(r.dead or 0)
        rows.append(
            FailedWebhookGroup(
                **lane_columns(orgs, r.lane),
                error_kind=r.kind,
                failed=failed,
                dead=dead,
                total=failed + dead,
                dead_24h=int(r.dead_24h or 0),
                oldest_received_at=as_utc(r.oldest),
                newest_received_at=as_utc(r.newest),
            )
        )
    rows.sort(key=lambda g: (-g.total, g.organization, g.error_kind))
    by_kind: Counter = Counter()
    for g in rows:
        by_kind[g.error_kind] += g.total
    totals = {
        "failed": sum(g.failed for g in rows),
        "dead": sum(g.dead for g in rows),
        "total": sum(g.total for g in rows),
        "unrouted": sum(g.total for g in rows if g.organization_id is None),
        "dead_24h": sum(g.dead_24h for g in rows),
        "groups": len(rows),
        "organizations": len({g.organization_id for g in rows if g.organization_id is not None}),
        "by_error_kind": dict(sorted(by_kind.items())),
    }
    return Dashboard(computed_at=now, totals=totals, rows=rows)


def failed_markdown(rows: list[FailedWebhookGroup]) -> str:
    """The ``by_organization_and_error_kind`` table of ``failed_webhooks``."""
    return markdown(
        ["organization", "error kind", "failed", "dead", "dead (24 h)", "oldest received", "newest received"],
        (
            [g.organization, g.error_kind, g.failed, g.dead, g.dead_24h, *(t.isoformat(timespec="seconds") for t in (g.oldest_received_at, g.newest_received_at))]
            for g in rows
        ),
        numeric_from=2,
    )
