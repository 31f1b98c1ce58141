"""Dashboard assets computed from the app tables.

``org_whatsapp_status``: per organization, active connections, messages received in the
last 24 h, and webhooks processed and failed in the last 24 h. Figures are recorded as
materialisation metadata so the Dagster UI plots them over time.
"""


from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from sqlalchemy.engine import Connection

from wa_webhook.db.schema import (
    organizations,
    utcnow,
    whatsapp_connections,
    whatsapp_messages,
    whatsapp_webhook_logs,
)
from wa_pipelines.assets.tables import RAW_WEBHOOKS
from wa_pipelines.resources import AppDatabase


@dataclass(frozen=True)
class OrgStatus:
    """One organization's row of the ``org_whatsapp_status`` dashboard."""

    organization: str
    active_connections: int
    messages_in_24h: int
    webhooks_processed_24h: int
    webhooks_failed_24h: int


def compute_org_status(conn: Connection, now: datetime | None = None) -> list[OrgStatus]:
    """Per-organization figures; the 24 h window ends at ``now`` (UTC, default: now).

    "Failed" counts webhook rows in ``failed`` or ``dead`` state received in the window.
    Webhooks not yet routed to an organization are not counted per organization.
    """
    now = now or utcnow()
    since = now - timedelta(hours=24)
    org = organizations.c
    active = (
        sa.select(whatsapp_connections.c.organization_id, sa.func.count().label("n"))
        .where(whatsapp_connections.c.status == "active")
        .group_by(whatsapp_connections.c.organization_id)
        .subquery()
    )
    inbound = (
        sa.select(whatsapp_messages.c.organization_id, sa.func.count().label("n"))
        .where(whatsapp_messages.c.direction == "inbound", whatsapp_messages.c.received_at >= since)
        .group_by(whatsapp_messages.c.organization_id)
        .subquery()
    )
    logs = whatsapp_webhook_logs.c
    hooks = (
        sa.select(
            logs.organization_id,
            sa.func.sum(sa.case((logs.status == "processed", 1), else_=0)).label("processed"),
            sa.func.sum(sa.case((logs.status.in_(("failed", "dead")), 1), else_=0)).label("failed"),
        )
        .where(logs.received_at >= since, logs.organization_id.is_not(None))
        .group_by(logs.organization_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(
            org.name,
            sa.func.coalesce(active.c.n, 0),
            sa.func.coalesce(inbound.c.n, 0),
            sa.func.coalesce(hooks.c.processed, 0),
            sa.func.coalesce(hooks.c.failed, 0),
        )
        .select_from(organizations)
        .outerjoin(active, active.c.organization_id == org.id)
        .outerjoin(inbound, inbound.c.organization_id == org.id)
        .outerjoin(hooks, hooks.c.organization_id == org.id)
        .order_by(org.name)
    ).all()
    return [OrgStatus(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def _markdown(rows: list[OrgStatus]) -> str:
    lines = [
        "| organization | active connections | messages in (24 h) | webhooks processed (24 h) | webhooks failed (24 h) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.organization} | {r.active_connections} | {r.messages_in_24h} | {r.webhooks_processed_24h} | {r.webhooks_failed_24h} |"
        for r in rows
    ]
    return "\n".join(lines)


@asset(
    group_name="dashboards",
    deps=[AssetKey("whatsapp_connections"), AssetKey("whatsapp_messages"), RAW_WEBHOOKS.key],
    kinds={"sql"},
    description="Per organization: active connections, messages in and webhooks processed/failed over the last 24 h.",
)
def org_whatsapp_status(context: AssetExecutionContext, app_db: AppDatabase) -> MaterializeResult:
    """Compute the per-organization dashboard and record totals and the table as metadata."""
    with app_db.get_engine().connect() as conn:
        rows = compute_org_status(conn)
    context.log.info(f"org_whatsapp_status: {len(rows)} organizations")
    return MaterializeResult(
        metadata={
            "organizations": len(rows),
            "active_connections": sum(r.active_connections for r in rows),
            "messages_in_24h": sum(r.messages_in_24h for r in rows),
            "webhooks_processed_24h": sum(r.webhooks_processed_24h for r in rows),
            "webhooks_failed_24h": sum(r.webhooks_failed_24h for r in rows),
            "by_organization": MetadataValue.md(_markdown(rows)),
            "rows": MetadataValue.json([asdict(r) for r in rows]),
        }
    )


#: every dashboard asset, in the order the lineage graph shows them
DASHBOARD_ASSETS = [org_whatsapp_status]
