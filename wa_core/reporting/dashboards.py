"""The six dashboards, as data: what each computes, its table, the app tables it reads.

The Dagster assets (``wa_pipelines.defs.dashboards.assets``) are made from this list by one
factory; anything else (a test, a script) computes a dashboard with
:meth:`DashboardSpec.compute` without Dagster. Each ``compute_*`` function returns a
:class:`~wa_core.reporting.snapshots.Dashboard`; its payload is what the asset stores in
``dashboard_snapshots`` for the admin API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from wa_core.reporting.failed_webhooks import compute_failed_webhooks, failed_markdown
from wa_core.reporting.lag import compute_webhook_lag, lag_markdown
from wa_core.reporting.number_health import compute_number_health, number_health_markdown
from wa_core.reporting.onboarding_timeline import (
    FUNNEL_DAYS,
    LATEST_ONBOARDINGS,
    compute_onboarding_timeline,
    timeline_markdown,
)
from wa_core.reporting.org_status import compute_org_status, org_status_markdown
from wa_core.reporting.snapshots import Dashboard
from wa_core.reporting.tokens import compute_token_health, token_markdown


@dataclass(frozen=True)
class DashboardSpec:
    """One dashboard: ``key`` (the asset key and snapshot key), ``figures`` (its
    ``compute_*`` function), ``markdown`` (its rows as a Markdown table, recorded as the
    metadata entry ``table_name``), ``tables`` (the app tables it reads: its lineage),
    ``description``, and ``expiring_soon`` (the function takes ``expiring_soon_days``, from
    ``TOKEN_EXPIRING_SOON_DAYS``)."""

    key: str
    figures: Callable[..., Dashboard]
    markdown: Callable[[list[Any]], str]
    table_name: str
    tables: tuple[str, ...]
    description: str
    expiring_soon: bool = False

    def compute(self, conn: Connection, settings: Any, now: datetime | None = None) -> Dashboard:
        """The dashboard at ``now`` (UTC, default now) with the service ``settings``."""
        if self.expiring_soon:
            return self.figures(conn, now, expiring_soon_days=settings.token_expiring_soon_days)
        return self.figures(conn, now)


#: every dashboard, in the order the lineage graph shows them
DASHBOARDS = (
    DashboardSpec(
        "org_whatsapp_status",
        compute_org_status,
        org_status_markdown,
        "by_organization",
        ("whatsapp_onboarding", "whatsapp_connections", "whatsapp_configs", "whatsapp_messages", "whatsapp_webhook_logs"),
        "Per organization: completed onboardings, active connections, phone numbers by state, messages in and out, "
        "webhooks processed, failed and dead over the last 24 h, the claimable backlog, and token health counts.",
        expiring_soon=True,
    ),
    DashboardSpec(
        "onboarding_timeline",
        compute_onboarding_timeline,
        timeline_markdown,
        "funnel_by_organization",
        ("whatsapp_onboarding", "whatsapp_connections"),
        f"Per organization: the onboarding funnel over {FUNNEL_DAYS} days (started, session posted, token exchanged, confirmed, "
        f"completed, expired, failed, cancelled; where failed and cancelled ones stopped) and the latest {LATEST_ONBOARDINGS} onboardings.",
    ),
    DashboardSpec(
        "failed_webhooks",
        compute_failed_webhooks,
        failed_markdown,
        "by_organization_and_error_kind",
        ("whatsapp_webhook_logs",),
        "Failed and dead webhook rows by organization (unrouted when none) and error kind, with oldest and newest arrival.",
    ),
    DashboardSpec(
        "token_health",
        compute_token_health,
        token_markdown,
        "by_phone_number",
        ("whatsapp_configs",),
        "Per phone number: the business token's state (valid, expiring soon, expired, invalid, missing permission, "
        "unknown, not checked yet) and days to expiry.",
        expiring_soon=True,
    ),
    DashboardSpec(
        "webhook_lag",
        compute_webhook_lag,
        lag_markdown,
        "by_hour",
        ("whatsapp_messages", "whatsapp_message_statuses", "whatsapp_webhook_logs"),
        "Meta → arrival and arrival → processed delays (p50/p95 per hour, last 24 h) and the claimable backlog and its age.",
    ),
    DashboardSpec(
        "number_health",
        compute_number_health,
        number_health_markdown,
        "by_phone_number",
        ("whatsapp_number_health", "whatsapp_waba_health", "whatsapp_account_alerts", "whatsapp_templates"),
        "Per phone number Meta reported on: messaging limit, throughput, quality event, display-name and username decisions, "
        "PIN events, the WABA's review decision, open account alerts and templates paused, rejected, disabled or flagged.",
    ),
)
#: the dashboards by key
DASHBOARDS_BY_KEY = {spec.key: spec for spec in DASHBOARDS}
