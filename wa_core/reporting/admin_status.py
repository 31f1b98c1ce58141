"""Read model of the admin status endpoint (``GET /api/admin/whatsapp/status``).

One answer per call, every section saying where its figures come from:

- **materialised** (``status``, ``timeline``, ``token_health``): the latest snapshots of the
  dashboard assets ``org_whatsapp_status``, ``onboarding_timeline`` and ``token_health``,
  read from ``dashboard_snapshots`` (written by the ``refresh_dashboards`` job every 15
  minutes and after processing runs). Aggregates over 24 h or 30 days do not need to be
  fresher than that, and recomputing them per call would be costly. Each says when it was
  computed and its age; a snapshot that does not exist yet is ``"materialised": null`` with
  a hint.
- **live** (``connections``, ``failed_webhooks``, ``backlog``): read from the app tables at
  the time of the call, because an operator acting on them (replaying a dead letter,
  reconnecting a number, watching a backlog drain) must see the effect at once.

Organization filter: an organization's id or its external id (the SaaS's own id). Snapshot
rows are kept when their ``organization_id`` or ``organization_external_id`` matches;
webhook rows and backlog lanes by their lane (the organization processing recorded, else
the one the webhook's WABA is bound to, see :mod:`wa_core.backlog`; the unrouted lane is
``organization_id`` null, shown as ``unrouted``). Claimable, in flight and waiting retry
are :mod:`wa_core.backlog`'s; token states :func:`wa_core.token_health.current_state`.

No Dagster import: the receiver process imports this module.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from wa_core.backlog import OrgBacklog, backlog_by_organization, lane_expression, lane_join
from wa_core.db.schema import (
    as_utc,
    organizations,
    utcnow,
    whatsapp_configs,
    whatsapp_connections,
    whatsapp_webhook_logs as logs,
)
from wa_core.organizations import InvalidOrganization, OrganizationRef, UnknownOrganization, resolve_organization
from wa_core.reporting.phone_fields import WebhookFieldsSection, webhook_fields
from wa_core.reporting.number_health import NumberHealthView, WabaHealthView, health_of, number_health, waba_health
from wa_core.reporting.snapshots import load_snapshot
from wa_core.token_health import current_state

__all__ = ["AdminStatus", "InvalidOrganization", "OrganizationRef", "UnknownOrganization", "admin_status", "resolve_organization"]

#: section name → dashboard asset key of the materialised sections
MATERIALISED_SECTIONS = {
    "status": "org_whatsapp_status",
    "timeline": "onboarding_timeline",
    "token_health": "token_health",
}
#: the Dagster job that writes the snapshots
REFRESH_JOB = "refresh_dashboards"


# --- response shape ----------------------------------------------------------------------------
class Snapshot(BaseModel):
    """A dashboard snapshot as stored by its asset's last materialisation."""

    computed_at: datetime = Field(description="when the asset computed it (UTC)")
    age_seconds: float = Field(description="seconds between computed_at and this answer")
    run_id: str | None = Field(description="the Dagster run that materialised it")
    totals: dict[str, Any] | None = Field(
        description="the dashboard's totals over all organizations; null when the answer is filtered on one"
    )
    rows: list[dict[str, Any]] = Field(description="the dashboard's rows (only the organization's with a filter)")


class MaterialisedSection(BaseModel):
    """A section read from a dashboard snapshot (``dashboard_snapshots``)."""

    source: Literal["materialised"] = "materialised"
    asset_key: str
    materialised: Snapshot | None = Field(description="null: the asset has not been materialised yet")
    hint: str | None = Field(default=None, description="what to do when the snapshot is missing or has no row for the organization")


class PhoneNumberView(BaseModel):
    """A phone number of a connection, with its business token's state now."""

    phone_number_id: str
    display_phone_number: str | None
    verified_name: str | None
    is_coexistence: bool
    status: str
    token_health: str = Field(
        description="the token's state now (wa_core.token_health.current_state): as recorded by the nightly debug_token "
        "check or a Graph error, re-read against its expiry; not_checked = not checked yet"
    )
    token_health_reason: str | None
    token_checked_at: datetime | None
    token_expires_at: datetime | None = Field(description="null = never expires (or not known)")
    health: NumberHealthView | None = Field(default=None, description="Meta's last number-health reports (wa_core.reporting.number_health); null before any")


class ConnectionView(BaseModel):
    """A WABA connection (never its token)."""

    id: uuid.UUID
    organization_id: uuid.UUID
    organization_external_id: str
    waba_id: str
    status: str
    status_reason: str | None
    last_event: str | None
    last_event_at: datetime | None
    connected_at: datetime | None
    disconnected_at: datetime | None
    subscribed_at: datetime | None
    has_business_token: bool
    token_expires_at: datetime | None
    health: WabaHealthView | None = Field(default=None, description="review decision, capabilities, open Meta account alerts, templates per status")
    phone_numbers: list[PhoneNumberView]


class ConnectionsSection(BaseModel):
    """Connections and phone numbers, read live from ``whatsapp_connections``/``whatsapp_configs``."""

    source: Literal["live"] = "live"
    counts: dict[str, int] = Field(description="connections per status")
    connections: list[ConnectionView]


class FailedCount(BaseModel):
    """How many webhooks are in this state with this error kind."""

    status: str
    error_kind: str | None
    count: int


class FailedWebhook(BaseModel):
    """A failed or dead webhook row (metadata only: never its body)."""

    id: int
    status: str
    error_kind: str | None
    attempts: int
    received_at: datetime
    next_attempt_at: datetime | None = Field(description="failed rows: when the next attempt is due (UTC)")
    organization_id: uuid.UUID | None = Field(description="the row's lane (wa_core.backlog); null = unrouted")
    fields: str | None
    replay_count: int
    body_purged: bool


class FailedWebhooksSection(BaseModel):
    """Failed and dead webhooks, read live from ``whatsapp_webhook_logs``."""

    source: Literal["live"] = "live"
    counts: list[FailedCount]
    unrouted: int = Field(description="failed and dead rows of the unrouted lane (no organization), all of them")
    webhooks: list[FailedWebhook] = Field(description="the latest failed and dead rows, newest first")


class BacklogSection(BaseModel):
    """The processing backlog per organization, computed live (:mod:`wa_core.backlog`)."""

    source: Literal["live"] = "live"
    lanes: list[OrgBacklog] = Field(
        description="wa_core.backlog.OrgBacklog of each lane with anything waiting, in flight or claimed in the last minute; "
        "longest wait first; organization_id null = unrouted"
    )


class AdminStatus(BaseModel):
    """The answer of ``GET /api/admin/whatsapp/status``."""

    generated_at: datetime = Field(description="when this answer was read (UTC); live sections are as of this time")
    organization: OrganizationRef | None = Field(description="the filter; null = all organizations")
    status: MaterialisedSection
    timeline: MaterialisedSection
    token_health: MaterialisedSection
    connections: ConnectionsSection
    failed_webhooks: FailedWebhooksSection
    backlog: BacklogSection
    webhook_fields: WebhookFieldsSection = Field(description="per-field webhook counts; unknown fields (stored, marked ignored) first")


# --- reading ---------------------------------------------------------------------------------
def _row_matches(row: dict[str, Any], org: OrganizationRef) -> bool:
    org_id = row.get("organization_id")
    if org_id is not None:
        try:
            if uuid.UUID(str(org_id)) == org.id:
                return True
        except ValueError:
            pass
    return row.get("organization_external_id") == org.external_id


def materialised_section(conn: Connection, asset_key: str, org: OrganizationRef | None, now: datetime) -> MaterialisedSection:
    """The latest snapshot of ``asset_key``, its rows filtered on ``org``.

    ``now`` (aware, UTC) gives ``age_seconds``. A missing snapshot gives ``materialised``
    None and a hint to run ``refresh_dashboards``; a payload that does not follow the
    snapshot contract (``{"computed_at", "totals", "rows"}``) is read as far as it does
    (no totals, no rows) rather than failing the whole answer.
    """
    found = load_snapshot(conn, asset_key)
    if found is None:
        return MaterialisedSection(
            asset_key=asset_key,
            materialised=None,
            hint=(
                f"{asset_key} has not been materialised yet: launch the {REFRESH_JOB} job in the Dagster UI "
                "(it also runs every 15 minutes and after processing runs)"
            ),
        )
    payload = found["payload"] if isinstance(found["payload"], dict) else {}
    rows = [r for r in payload.get("rows") or [] if isinstance(r, dict)]
    totals = payload.get("totals") if isinstance(payload.get("totals"), dict) else None
    computed_at = found["computed_at"]
    hint = None
    if org is not None:
        rows = [r for r in rows if _row_matches(r, org)]
        totals = None
        if not rows:
            hint = (
                f"no row for {org.external_id!r} in the snapshot computed at {computed_at.isoformat()}: "
                f"nothing to show, or the organization is newer than the snapshot ({REFRESH_JOB} refreshes it)"
            )
    snapshot = Snapshot(
        computed_at=computed_at,
        age_seconds=round(max(0.0, (now - computed_at).total_seconds()), 1),
        run_id=found["run_id"],
        totals=totals,
        rows=rows,
    )
    return MaterialisedSection(asset_key=asset_key, materialised=snapshot, hint=hint)


def live_connections(
    conn: Connection, org: OrganizationRef | None, now: datetime, expiring_soon: timedelta = timedelta(days=7)
) -> ConnectionsSection:
    """Connections (oldest first) with their phone numbers and each token's state at ``now``
    (:func:`wa_core.token_health.current_state`), from the live tables; each with its
    health (:mod:`wa_core.reporting.number_health`)."""
    c, cfg, o = whatsapp_connections.c, whatsapp_configs.c, organizations.c
    query = (
        sa.select(whatsapp_connections, o.external_id.label("organization_external_id"))
        .join(organizations, o.id == c.organization_id)
        .order_by(c.created_at, c.waba_id)
    )
    numbers_query = sa.select(whatsapp_configs).order_by(cfg.phone_number_id)
    if org is not None:
        query = query.where(c.organization_id == org.id)
        numbers_query = numbers_query.where(cfg.organization_id == org.id)
    numbers: dict[uuid.UUID, list[PhoneNumberView]] = {}
    found = conn.execute(query).mappings().all()
    wabas = [r["waba_id"] for r in found]
    health, numbers_health = waba_health(conn, wabas), number_health(conn, wabas)
    for n in conn.execute(numbers_query):
        numbers.setdefault(n.connection_id, []).append(
            PhoneNumberView(
                phone_number_id=n.phone_number_id,
                display_phone_number=n.display_phone_number,
                verified_name=n.verified_name,
                is_coexistence=bool(n.is_coexistence),
                status=n.status,
                token_health=current_state(n.token_health, n.token_expires_at, now, expiring_soon),
                token_health_reason=n.token_health_reason,
                token_checked_at=as_utc(n.token_checked_at),
                token_expires_at=as_utc(n.token_expires_at),
                health=health_of(numbers_health, n.waba_id, n.display_phone_number),
            )
        )
    connections = [
        ConnectionView(
            **{name: as_utc(r[name]) if isinstance(r[name], datetime) else r[name] for name in _CONNECTION_COLUMNS},
            has_business_token=r["business_token_encrypted"] is not None,
            health=health.get(r["waba_id"]),
            phone_numbers=numbers.get(r["id"], []),
        )
        for r in found
    ]
    counts: dict[str, int] = {}
    for item in connections:
        counts[item.status] = counts.get(item.status, 0) + 1
    return ConnectionsSection(counts=counts, connections=connections)


#: the ConnectionView fields read as they are stored
_CONNECTION_COLUMNS = [name for name in ConnectionView.model_fields if name not in ("has_business_token", "health", "phone_numbers")]


def failed_rows(
    conn: Connection, columns: list[Any], *, statuses: tuple[str, ...] = ("failed", "dead"), org: OrganizationRef | None = None, limit: int = 50
) -> tuple[list[FailedCount], list[Any]]:
    """Failed/dead webhook rows in ``statuses``, ``org``'s lane only when given: the counts
    by state and error kind (all rows), and ``columns`` (plus ``lane``) of the latest
    ``limit`` rows, newest first."""
    lane = lane_expression()
    where: list[Any] = [logs.c.status.in_(statuses)]
    if org is not None:
        where.append(lane == org.id)
    counts = conn.execute(
        sa.select(logs.c.status, logs.c.error_kind, sa.func.count())
        .select_from(lane_join())
        .where(*where)
        .group_by(logs.c.status, logs.c.error_kind)
        .order_by(logs.c.status, logs.c.error_kind)
    ).all()
    latest = conn.execute(
        sa.select(*columns, lane.label("lane")).select_from(lane_join()).where(*where).order_by(logs.c.id.desc()).limit(limit)
    ).all()
    return [FailedCount(status=s, error_kind=k, count=n) for s, k, n in counts], latest


def unrouted_failed(conn: Connection, statuses: tuple[str, ...] = ("failed", "dead")) -> int:
    """Webhook rows in ``statuses`` of the unrouted lane (no organization)."""
    return conn.execute(
        sa.select(sa.func.count()).select_from(lane_join()).where(logs.c.status.in_(statuses), lane_expression().is_(None))
    ).scalar_one()


def live_failed_webhooks(conn: Connection, org: OrganizationRef | None, limit: int) -> FailedWebhooksSection:
    """Counts of failed and dead webhooks by state and error kind, and the latest ``limit`` rows."""
    c = logs.c
    columns = [c.id, c.status, c.error_kind, c.attempts, c.received_at, c.next_attempt_at, c.fields, c.replay_count]
    counts, latest = failed_rows(conn, [*columns, c.body.is_(None).label("body_purged")], org=org, limit=limit)
    return FailedWebhooksSection(
        counts=counts,
        unrouted=0 if org is not None else unrouted_failed(conn),
        webhooks=[
            FailedWebhook(
                id=r.id,
                status=r.status,
                error_kind=r.error_kind,
                attempts=r.attempts,
                received_at=as_utc(r.received_at),
                next_attempt_at=as_utc(r.next_attempt_at) if r.status == "failed" else None,
                organization_id=r.lane,
                fields=r.fields,
                replay_count=r.replay_count,
                body_purged=bool(r.body_purged),
            )
            for r in latest
        ],
    )


def live_backlog(conn: Connection, org: OrganizationRef | None, now: datetime) -> BacklogSection:
    """The processing backlog per lane at ``now`` (UTC), only ``org``'s lane with a filter."""
    return BacklogSection(lanes=[b for b in backlog_by_organization(conn, now=now) if org is None or b.organization_id == org.id])


def admin_status(
    conn: Connection, organization: str | None = None, *, limit: int = 50, now: datetime | None = None, expiring_soon_days: float = 7.0
) -> AdminStatus:
    """The whole status answer, read on ``conn`` (one transaction; on Postgres pass a
    REPEATABLE READ connection for one consistent view of the live tables).

    ``organization``: id or external id, None = all organizations. ``limit``: failed/dead
    rows listed (the counts cover all of them). ``now``: aware UTC time of the answer
    (default now). ``expiring_soon_days``: ``TOKEN_EXPIRING_SOON_DAYS`` (token states).
    Raises :class:`~wa_core.organizations.InvalidOrganization` and
    :class:`~wa_core.organizations.UnknownOrganization`.
    """
    now = now or utcnow()
    org = resolve_organization(conn, organization) if organization is not None else None
    sections = {name: materialised_section(conn, key, org, now) for name, key in MATERIALISED_SECTIONS.items()}
    return AdminStatus(
        generated_at=now,
        organization=org,
        **sections,
        connections=live_connections(conn, org, now, timedelta(days=expiring_soon_days)),
        failed_webhooks=live_failed_webhooks(conn, org, limit),
        backlog=live_backlog(conn, org, now),
        webhook_fields=webhook_fields(conn),
    )
