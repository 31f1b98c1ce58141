"""Dashboard assets computed from the app tables.

Five software-defined assets, refreshed by the ``refresh_dashboards`` job (every 15 minutes
and after processing runs):

* ``org_whatsapp_status``: per organization, completed onboardings, active connections,
  phone numbers by state, messages in and out, webhooks processed, failed and dead (24 h),
  token health counts;
* ``onboarding_timeline``: per organization, the onboarding funnel (30 days) and the latest
  onboardings, with the step at which failed and cancelled ones stopped;
* ``failed_webhooks``: failed and dead webhook rows by organization and error kind;
* ``token_health``: per phone number, the business token's state and days to expiry;
* ``webhook_lag``: Meta → arrival and arrival → processed delays per hour (24 h) and the
  claimable backlog (see :mod:`wa_core.reporting.lag`).

Each figure comes from a plain ``compute_*(conn, now=None)`` function returning a
:class:`~wa_core.reporting.snapshots.Dashboard` (testable without Dagster). Each asset
records its totals as materialisation metadata (numbers, so the Dagster UI plots them), its
table as Markdown and its rows as JSON, and upserts the payload into ``dashboard_snapshots``
(:func:`~wa_core.reporting.snapshots.save_snapshot`) for the admin API. Every
per-organization row carries ``organization_id`` (UUID string, or None for webhooks not
routed to an organization), ``organization_external_id`` and ``organization`` (its name,
or ``"unrouted"``). Times are UTC.
"""


import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from sqlalchemy.engine import Connection

from wa_core.reporting.lag import compute_webhook_lag
from wa_core.reporting.snapshots import Dashboard, save_snapshot
from wa_pipelines.defs.ingest.tables import EXTERNAL_TABLES, PROCESSED_TABLES
from wa_pipelines.resources import AppDatabase
from wa_core.db.schema import (
    CONFIG_STATES,
    TOKEN_HEALTH_STATES,
    as_utc,
    organizations,
    utcnow,
    whatsapp_configs,
    whatsapp_connections,
    whatsapp_messages,
    whatsapp_onboarding,
    whatsapp_webhook_logs,
)

#: the 24 h window of the "…_24h" figures
WINDOW = timedelta(hours=24)
#: token states that need an operator whatever the expiry says
UNHEALTHY_TOKEN_STATES = ("expired", "invalid", "missing_permission")
#: onboardings listed per organization by ``onboarding_timeline``
LATEST_ONBOARDINGS = 20
#: the onboarding funnel counts onboardings created in the last this many days
FUNNEL_DAYS = 30
#: at most this many rows go into the metadata of one materialisation (the snapshot keeps all)
METADATA_ROWS_MAX = 200
#: label of webhook rows not routed to any organization
UNROUTED = "unrouted"


# --- shared helpers --------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgRef:
    """An organization as dashboards show it (``id`` None = not routed to one)."""

    id: str | None
    external_id: str | None
    name: str


def load_organizations(conn: Connection) -> dict[uuid.UUID, OrgRef]:
    """Every organization by id."""
    o = organizations.c
    return {r.id: OrgRef(str(r.id), r.external_id, r.name) for r in conn.execute(sa.select(o.id, o.external_id, o.name))}


def _org(orgs: dict[uuid.UUID, OrgRef], org_id: uuid.UUID | None) -> OrgRef:
    if org_id is None:
        return OrgRef(None, None, UNROUTED)
    return orgs.get(org_id) or OrgRef(str(org_id), None, str(org_id))  # deleted meanwhile


def token_state(recorded: str | None, expires_at: datetime | None, now: datetime, expiring_soon: timedelta) -> str:
    """A phone number's business-token state now (one of ``TOKEN_HEALTH_STATES``).

    ``recorded`` is ``whatsapp_configs.token_health`` (set by the nightly ``debug_token``
    check and by Graph errors), ``expires_at`` its ``token_expires_at`` (None = never or
    unknown). ``expired``/``invalid``/``missing_permission`` recorded stay as they are; a
    known expiry is re-read against ``now``: past → ``expired``, within ``expiring_soon`` →
    ``expiring_soon`` (a recorded ``expiring_soon`` whose expiry is further away → ``valid``).
    Never checked → ``unknown``.
    """
    if recorded in UNHEALTHY_TOKEN_STATES:
        return recorded
    expires_at = as_utc(expires_at)
    if expires_at is not None:
        if expires_at <= now:
            return "expired"
        if expires_at - now < expiring_soon:
            return "expiring_soon"
        if recorded == "expiring_soon":
            return "valid"
    return recorded or "unknown"


def days_to_expiry(expires_at: datetime | None, now: datetime) -> float | None:
    """Days from ``now`` to ``expires_at`` (negative once past, 2 decimals); None = never."""
    expires_at = as_utc(expires_at)
    return None if expires_at is None else round((expires_at - now).total_seconds() / 86400, 2)


def _escape(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(headers: list[str], rows: Iterable[Iterable[Any]], numeric_from: int = 1) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i < numeric_from else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(_escape(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --- org_whatsapp_status ------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgStatus:
    """One organization's row of ``org_whatsapp_status`` (24 h = the 24 h before ``computed_at``).

    ``phone_numbers``: count per ``whatsapp_configs.status`` (every state present, 0 when
    none); ``tokens``: count per token state (:func:`token_state`, every state present).
    Messages exclude history imports (old messages synced in, not exchanged in the window).
    """

    organization_id: str | None
    organization_external_id: str | None
    organization: str
    completed_onboardings: int
    active_connections: int
    phone_numbers: dict[str, int]
    messages_in_24h: int
    messages_out_24h: int
    webhooks_processed_24h: int
    webhooks_failed_24h: int
    webhooks_dead_24h: int
    tokens: dict[str, int]


def _grouped(conn: Connection, stmt: sa.Select) -> dict[Any, int]:
    """{key or (keys…): count} of a ``SELECT keys…, count`` statement."""
    out: dict[Any, int] = {}
    for row in conn.execute(stmt):
        *keys, n = row
        out[keys[0] if len(keys) == 1 else tuple(keys)] = int(n or 0)
    return out


def compute_org_status(conn: Connection, now: datetime | None = None, *, expiring_soon_days: float = 7.0) -> Dashboard:
    """The ``org_whatsapp_status`` dashboard at ``now`` (UTC, default now).

    ``rows``: one :class:`OrgStatus` per organization (all of them), by name.
    ``totals``: ``organizations``, the sums of the rows' counts, ``phone_numbers`` (total) and
    ``phone_numbers_<state>``, ``tokens_<state>`` and ``tokens_unhealthy`` (expired, invalid,
    missing permission), plus ``webhooks_unrouted_24h``: rows received in the window that no
    organization was found for (any state). Webhooks count by arrival (``received_at``) in
    the window; "failed" are rows waiting for a retry, "dead" rows given up on.
    ``expiring_soon_days``: see :func:`token_state`.
    """
    now = now or utcnow()
    since = now - WINDOW
    soon = timedelta(days=expiring_soon_days)
    o, c, cfg, m, logs = (
        whatsapp_onboarding.c,
        whatsapp_connections.c,
        whatsapp_configs.c,
        whatsapp_messages.c,
        whatsapp_webhook_logs.c,
    )
    n = sa.func.count()
    completed = _grouped(conn, sa.select(o.organization_id, n).where(o.status == "completed").group_by(o.organization_id))
    active = _grouped(conn, sa.select(c.organization_id, n).where(c.status == "active").group_by(c.organization_id))
    numbers = _grouped(conn, sa.select(cfg.organization_id, cfg.status, n).group_by(cfg.organization_id, cfg.status))
    tokens: dict[Any, Counter] = defaultdict(Counter)
    for row in conn.execute(sa.select(cfg.organization_id, cfg.token_health, cfg.token_expires_at)):
        tokens[row.organization_id][token_state(row.token_health, row.token_expires_at, now, soon)] += 1
    messages = _grouped(
        conn,
        sa.select(m.organization_id, m.direction, n)
        .where(m.received_at >= since, m.received_at <= now, m.source != "history")
        .group_by(m.organization_id, m.direction),
    )
    in_window = sa.and_(logs.received_at >= since, logs.received_at <= now)
    hooks = _grouped(
        conn,
        sa.select(logs.organization_id, logs.status, n)
        .where(in_window, logs.organization_id.is_not(None))
        .group_by(logs.organization_id, logs.status),
    )
    unrouted = conn.execute(sa.select(n).where(in_window, logs.organization_id.is_(None))).scalar_one()
    rows = []
    for org_id, ref in sorted(load_organizations(conn).items(), key=lambda kv: (kv[1].name, kv[1].external_id)):
        rows.append(
            OrgStatus(
                organization_id=ref.id,
                organization_external_id=ref.external_id,
                organization=ref.name,
                completed_onboardings=completed.get(org_id, 0),
                active_connections=active.get(org_id, 0),
                phone_numbers={state: numbers.get((org_id, state), 0) for state in CONFIG_STATES},
                messages_in_24h=messages.get((org_id, "inbound"), 0),
                messages_out_24h=messages.get((org_id, "outbound"), 0),
                webhooks_processed_24h=hooks.get((org_id, "processed"), 0),
                webhooks_failed_24h=hooks.get((org_id, "failed"), 0),
                webhooks_dead_24h=hooks.get((org_id, "dead"), 0),
                tokens={state: tokens[org_id][state] for state in TOKEN_HEALTH_STATES},
            )
        )
    totals: dict[str, Any] = {
        "organizations": len(rows),
        "completed_onboardings": sum(r.completed_onboardings for r in rows),
        "active_connections": sum(r.active_connections for r in rows),
        "phone_numbers": sum(sum(r.phone_numbers.values()) for r in rows),
    }
    totals.update({f"phone_numbers_{state}": sum(r.phone_numbers[state] for r in rows) for state in CONFIG_STATES})
    for name in ("messages_in_24h", "messages_out_24h", "webhooks_processed_24h", "webhooks_failed_24h", "webhooks_dead_24h"):
        totals[name] = sum(getattr(r, name) for r in rows)
    totals["webhooks_unrouted_24h"] = int(unrouted)
    totals.update({f"tokens_{state}": sum(r.tokens[state] for r in rows) for state in TOKEN_HEALTH_STATES})
    totals["tokens_unhealthy"] = sum(totals[f"tokens_{state}"] for state in UNHEALTHY_TOKEN_STATES)
    return Dashboard(computed_at=now, totals=totals, rows=rows)


def _org_status_markdown(rows: list[OrgStatus]) -> str:
    return _markdown(
        [
            "organization",
            "completed onboardings",
            "active connections",
            "numbers connected / all",
            "messages in (24 h)",
            "messages out (24 h)",
            "webhooks processed (24 h)",
            "failed (24 h)",
            "dead (24 h)",
            "tokens unhealthy / expiring soon",
        ],
        (
            [
                r.organization,
                r.completed_onboardings,
                r.active_connections,
                f"{r.phone_numbers['connected']} / {sum(r.phone_numbers.values())}",
                r.messages_in_24h,
                r.messages_out_24h,
                r.webhooks_processed_24h,
                r.webhooks_failed_24h,
                r.webhooks_dead_24h,
                f"{sum(r.tokens[s] for s in UNHEALTHY_TOKEN_STATES)} / {r.tokens['expiring_soon']}",
            ]
            for r in rows
        ),
    )


# --- onboarding_timeline --------------------------------------------------------------------------


@dataclass(frozen=True)
class OnboardingEntry:
    """One onboarding as the timeline lists it (no user agent, IP or Meta message text).

    ``status`` is the effective one (a pending onboarding past its expiry is ``expired``, as
    the status API shows it); ``step`` says where a failed or cancelled one stopped (see
    :func:`stopped_at`), None otherwise.
    """

    onboarding_id: str
    status: str
    waba_id: str | None
    is_coexistence: bool | None
    follow_up_status: str | None
    step: str | None
    error_code: str | None
    created_at: datetime
    updated_at: datetime
    session_posted_at: datetime | None
    confirmed_at: datetime | None
    completed_at: datetime | None


@dataclass
class OnboardingFunnel:
    """One organization's row of ``onboarding_timeline``.

    Funnel counts cover the onboardings created in the last ``FUNNEL_DAYS`` days: ``started``
    (all), then how many reached each step (``session_posted``: Embedded Signup finished and
    posted, ``token_exchanged``, ``confirmed``: Meta's PARTNER_ADDED, ``completed``), and the
    outcomes (``completed`` + ``expired`` + ``failed`` + ``cancelled`` + ``in_progress`` =
    ``started``). ``failed_by_step``/``cancelled_by_step``: outcome counts per step.
    ``latest``: the organization's latest onboardings, newest first, whatever their age.
    """

    organization_id: str | None
    organization_external_id: str | None
    organization: str
    started: int = 0
    session_posted: int = 0
    token_exchanged: int = 0
    confirmed: int = 0
    completed: int = 0
    expired: int = 0
    failed: int = 0
    cancelled: int = 0
    in_progress: int = 0
    failed_by_step: dict[str, int] = field(default_factory=dict)
    cancelled_by_step: dict[str, int] = field(default_factory=dict)
    latest: list[OnboardingEntry] = field(default_factory=list)


#: funnel counters (in order) shown as totals
FUNNEL_FIELDS = ("started", "session_posted", "token_exchanged", "confirmed", "completed", "expired", "failed", "cancelled", "in_progress")


def effective_onboarding_status(status: str, expires_at: datetime | None, now: datetime) -> str:
    """``status``, except a ``pending`` onboarding past ``expires_at`` is ``expired`` (the
    expiry schedule records it later; the page already shows it so)."""
    if status == "pending" and expires_at is not None and as_utc(expires_at) <= now:
        return "expired"
    return status


def stopped_at(row: Any) -> str | None:
    """Where a failed or cancelled onboarding stopped; None for other states.

    Cancelled: Embedded Signup's ``current_step`` the page posted (``cancel_step``), else
    ``signup_error`` when the page posted an error instead, else ``unknown``. Failed:
    ``follow_up`` when the Dagster follow-up failed (subscribe, numbers, register, syncs),
    ``code_exchange`` when it failed before the token was stored (exchange, debug_token,
    WABA not shared or taken), else ``unknown``.
    """
    if row.status == "cancelled":
        return row.cancel_step or ("signup_error" if row.error_code else "unknown")
    if row.status == "failed":
        if row.follow_up_status == "failed":
            return "follow_up"
        if row.token_exchanged_at is None:
            return "code_exchange"
        return "unknown"
    return None


def compute_onboarding_timeline(
    conn: Connection, now: datetime | None = None, *, latest: int = LATEST_ONBOARDINGS, funnel_days: int = FUNNEL_DAYS
) -> Dashboard:
    """The ``onboarding_timeline`` dashboard at ``now`` (UTC, default now).

    ``rows``: one :class:`OnboardingFunnel` per organization that has onboardings, by name,
    each with its ``latest`` onboardings (at most ``latest``, newest first).
    ``totals``: the funnel counts summed over organizations, ``failed_by_step`` and
    ``cancelled_by_step`` dicts, ``completion_rate`` (completed / started, None when none
    started), ``organizations`` and ``funnel_days``.
    """
    now = now or utcnow()
    since = now - timedelta(days=funnel_days)
    o = whatsapp_onboarding.c
    orgs = load_organizations(conn)
    rows: dict[Any, OnboardingFunnel] = {}

    def funnel(org_id: Any) -> OnboardingFunnel:
        if org_id not in rows:
            ref = _org(orgs, org_id)
            rows[org_id] = OnboardingFunnel(ref.id, ref.external_id, ref.name)
        return rows[org_id]

    cols = [
        o.organization_id,
        o.status,
        o.expires_at,
        o.session_posted_at,
        o.token_exchanged_at,
        o.confirmed_at,
        o.cancel_step,
        o.error_code,
        o.follow_up_status,
    ]
    for row in conn.execute(sa.select(*cols).where(o.created_at >= since, o.created_at <= now)):
        f = funnel(row.organization_id)
        status = effective_onboarding_status(row.status, row.expires_at, now)
        f.started += 1
        f.session_posted += int(row.session_posted_at is not None and status != "cancelled")
        f.token_exchanged += int(row.token_exchanged_at is not None)
        f.confirmed += int(row.confirmed_at is not None)
        if status in ("completed", "expired", "failed", "cancelled"):
            setattr(f, status, getattr(f, status) + 1)
        else:
            f.in_progress += 1
        step = stopped_at(row)
        if status == "failed":
            f.failed_by_step[step] = f.failed_by_step.get(step, 0) + 1
        elif status == "cancelled":
            f.cancelled_by_step[step] = f.cancelled_by_step.get(step, 0) + 1
    ranked = sa.select(
        whatsapp_onboarding,
        sa.func.row_number().over(partition_by=o.organization_id, order_by=(o.created_at.desc(), o.id.desc())).label("rank"),
    ).subquery()
    r = ranked.c
    for row in conn.execute(sa.select(ranked).where(r.rank <= latest).order_by(r.organization_id, r.rank)):
        funnel(row.organization_id).latest.append(
            OnboardingEntry(
                onboarding_id=str(row.id),
                status=effective_onboarding_status(row.status, row.expires_at, now),
                waba_id=row.waba_id,
                is_coexistence=row.is_coexistence,
                follow_up_status=row.follow_up_status,
                step=stopped_at(row),
                error_code=row.error_code,
                created_at=as_utc(row.created_at),
                updated_at=as_utc(row.updated_at),
                session_posted_at=as_utc(row.session_posted_at),
                confirmed_at=as_utc(row.confirmed_at),
                completed_at=as_utc(row.completed_at),
            )
        )
    ordered = sorted(rows.values(), key=lambda f: (f.organization, f.organization_external_id or ""))
    totals: dict[str, Any] = {name: sum(getattr(f, name) for f in ordered) for name in FUNNEL_FIELDS}
    totals["failed_by_step"] = dict(sum((Counter(f.failed_by_step) for f in ordered), Counter()))
    totals["cancelled_by_step"] = dict(sum((Counter(f.cancelled_by_step) for f in ordered), Counter()))
    totals["completion_rate"] = round(totals["completed"] / totals["started"], 4) if totals["started"] else None
    totals["organizations"] = len(ordered)
    totals["funnel_days"] = funnel_days
    return Dashboard(computed_at=now, totals=totals, rows=ordered)


def _timeline_markdown(rows: list[OnboardingFunnel]) -> str:
    def steps(counts: dict[str, int]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))

    return _markdown(
        ["organization", *FUNNEL_FIELDS, "failed at", "cancelled at"],
        ([f.organization, *(getattr(f, name) for name in FUNNEL_FIELDS), steps(f.failed_by_step), steps(f.cancelled_by_step)] for f in rows),
    )


# --- failed_webhooks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedWebhookGroup:
    """Failed and dead webhook rows of one organization (or ``unrouted``) and error kind.

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
    ``failed`` or ``dead``, whatever its age.

    ``rows``: :class:`FailedWebhookGroup` per (organization, error kind), most rows first.
    ``totals``: ``failed``, ``dead``, ``total``, ``unrouted`` (rows with no organization),
    ``dead_24h`` (dead rows received in the 24 h before ``now``), ``groups``,
    ``organizations`` (routed organizations affected) and ``by_error_kind`` ({kind: rows}).
    """
    now = now or utcnow()
    since = now - WINDOW
    logs = whatsapp_webhook_logs.c
    kind = sa.func.coalesce(logs.error_kind, "(none)").label("kind")
    stmt = (
        sa.select(
            logs.organization_id,
            kind,
            sa.func.sum(sa.case((logs.status == "failed", 1), else_=0)).label("failed"),
            sa.func.sum(sa.case((logs.status == "dead", 1), else_=0)).label("dead"),
            sa.func.sum(sa.case((sa.and_(logs.status == "dead", logs.received_at >= since, logs.received_at <= now), 1), else_=0)).label("dead_24h"),
            sa.func.min(logs.received_at).label("oldest"),
            sa.func.max(logs.received_at).label("newest"),
        )
        .where(logs.status.in_(("failed", "dead")))
        .group_by(logs.organization_id, kind)
    )
    orgs = load_organizations(conn)
    rows = []
    for r in conn.execute(stmt):
        ref = _org(orgs, r.organization_id)
        failed, dead = int(r.failed or 0), int(r.dead or 0)
        rows.append(
            FailedWebhookGroup(
                ref.id, ref.external_id, ref.name, r.kind, failed, dead, failed + dead, int(r.dead_24h or 0), as_utc(r.oldest), as_utc(r.newest)
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


def _failed_markdown(rows: list[FailedWebhookGroup]) -> str:
    return _markdown(
        ["organization", "error kind", "failed", "dead", "dead (24 h)", "oldest received", "newest received"],
        ([g.organization, g.error_kind, g.failed, g.dead, g.dead_24h, g.oldest_received_at.isoformat(timespec="seconds"), g.newest_received_at.isoformat(timespec="seconds")] for g in rows),
        numeric_from=2,
    )


# --- token_health ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenHealthRow:
    """One phone number's business token (ids only: no display number).

    ``state``: :func:`token_state` now; ``recorded_state``: ``whatsapp_configs.token_health``
    as last recorded (None = never checked); ``days_to_expiry``: days (2 decimals, negative
    once past), None = never expires (or not known); ``checked_at``: last ``debug_token``
    check (UTC); ``needs_action``: unhealthy or expiring soon.
    """

    organization_id: str | None
    organization_external_id: str | None
    organization: str
    waba_id: str
    phone_number_id: str
    number_status: str
    state: str
    recorded_state: str | None
    reason: str | None
    expires_at: datetime | None
    days_to_expiry: float | None
    checked_at: datetime | None
    needs_action: bool


def compute_token_health(conn: Connection, now: datetime | None = None, *, expiring_soon_days: float = 7.0) -> Dashboard:
    """The ``token_health`` dashboard at ``now`` (UTC, default now).

    ``rows``: :class:`TokenHealthRow` per phone number, by organization then phone_number_id.
    ``totals``: ``phone_numbers``, ``<state>`` count per token state, ``unhealthy``
    (expired, invalid, missing permission), ``needs_action`` (unhealthy or expiring soon),
    ``never_checked`` and ``min_days_to_expiry`` (None when no token has a known expiry).
    ``expiring_soon_days``: see :func:`token_state`.
    """
    now = now or utcnow()
    soon = timedelta(days=expiring_soon_days)
    orgs = load_organizations(conn)
    rows = []
    for r in conn.execute(sa.select(whatsapp_configs)):
        ref = _org(orgs, r.organization_id)
        state = token_state(r.token_health, r.token_expires_at, now, soon)
        rows.append(
            TokenHealthRow(
                organization_id=ref.id,
                organization_external_id=ref.external_id,
                organization=ref.name,
                waba_id=r.waba_id,
                phone_number_id=r.phone_number_id,
                number_status=r.status,
                state=state,
                recorded_state=r.token_health,
                reason=r.token_health_reason,
                expires_at=as_utc(r.token_expires_at),
                days_to_expiry=days_to_expiry(r.token_expires_at, now),
                checked_at=as_utc(r.token_checked_at),
                needs_action=state in UNHEALTHY_TOKEN_STATES or state == "expiring_soon",
            )
        )
    rows.sort(key=lambda t: (t.organization, t.phone_number_id))
    counts = Counter(t.state for t in rows)
    known = [t.days_to_expiry for t in rows if t.days_to_expiry is not None]
    totals: dict[str, Any] = {"phone_numbers": len(rows)}
    totals.update({state: counts.get(state, 0) for state in TOKEN_HEALTH_STATES})
    totals["unhealthy"] = sum(counts.get(state, 0) for state in UNHEALTHY_TOKEN_STATES)
    totals["needs_action"] = sum(1 for t in rows if t.needs_action)
    totals["never_checked"] = sum(1 for t in rows if t.checked_at is None)
    totals["min_days_to_expiry"] = min(known) if known else None
    return Dashboard(computed_at=now, totals=totals, rows=rows)


def _token_markdown(rows: list[TokenHealthRow]) -> str:
    return _markdown(
        ["organization", "WABA", "phone_number_id", "number", "token", "days to expiry", "checked at"],
        (
            [
                t.organization,
                t.waba_id,
                t.phone_number_id,
                t.number_status,
                t.state,
                "never" if t.days_to_expiry is None else t.days_to_expiry,
                t.checked_at.isoformat(timespec="seconds") if t.checked_at else "never",
            ]
            for t in rows
        ),
        numeric_from=5,
    )


# --- webhook_lag (computed in wa_core.reporting.lag) -----------------------------------------------------


def _lag_markdown(rows: list[Any]) -> str:
    def s(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    return _markdown(
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


# --- assets ----------------------------------------------------------------------------------------------

#: the app tables declared as assets (tables.py); dashboards depend only on keys that exist
_TABLE_KEYS = {spec.key for spec in EXTERNAL_TABLES} | {AssetKey(name) for name in PROCESSED_TABLES}


def table_deps(*names: str) -> list[AssetKey]:
    """Asset keys of the tables a dashboard reads, keeping only tables declared as assets in
    :mod:`wa_pipelines.defs.ingest.tables` (a table declared there later joins the lineage
    without touching this module)."""
    return [AssetKey(name) for name in names if AssetKey(name) in _TABLE_KEYS]


def metadata_for(dashboard: Dashboard, table_md: str, table_name: str) -> dict[str, Any]:
    """Materialisation metadata of a dashboard: each numeric total as a number (the UI plots
    it), dict totals as JSON, the table as Markdown and the rows as JSON (both cut at
    :data:`METADATA_ROWS_MAX` rows; the snapshot keeps them all). None totals are left out."""
    meta: dict[str, Any] = {}
    for name, value in dashboard.totals.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            meta[name] = value
        elif isinstance(value, dict):
            meta[name] = MetadataValue.json(value)
    payload = dashboard.payload()
    meta[table_name] = MetadataValue.md(table_md)
    meta["rows"] = MetadataValue.json(payload["rows"][:METADATA_ROWS_MAX])
    if len(payload["rows"]) > METADATA_ROWS_MAX:
        meta["rows_truncated"] = True
    return meta


def _materialise(
    context: AssetExecutionContext,
    app_db: AppDatabase,
    asset_key: str,
    compute: Callable[[Connection], Dashboard],
    markdown: Callable[[list[Any]], str],
    table_name: str,
) -> MaterializeResult:
    """Compute one dashboard, store its snapshot, and return its metadata."""
    engine = app_db.get_engine()
    with engine.connect() as conn:
        dashboard = compute(conn)
    with engine.begin() as conn:
        save_snapshot(conn, asset_key, dashboard.payload(), context.run.run_id)
    context.log.info(f"{asset_key}: {len(dashboard.rows)} rows; snapshot saved")
    return MaterializeResult(metadata=metadata_for(dashboard, markdown(dashboard.rows[:METADATA_ROWS_MAX]), table_name))


@asset(
    group_name="dashboards",
    deps=table_deps("whatsapp_onboarding", "whatsapp_connections", "whatsapp_configs", "whatsapp_messages", "whatsapp_webhook_logs"),
    kinds={"sql"},
    description=(
        "Per organization: completed onboardings, active connections, phone numbers by state, messages in and out, "
        "webhooks processed, failed and dead over the last 24 h, and token health counts."
    ),
)
def org_whatsapp_status(context: AssetExecutionContext, app_db: AppDatabase) -> MaterializeResult:
    """Materialise :func:`compute_org_status`."""
    days = app_db.settings.token_expiring_soon_days
    return _materialise(
        context, app_db, "org_whatsapp_status", lambda conn: compute_org_status(conn, expiring_soon_days=days), _org_status_markdown, "by_organization"
    )


@asset(
    group_name="dashboards",
    deps=table_deps("whatsapp_onboarding", "whatsapp_connections"),
    kinds={"sql"},
    description=(
        f"Per organization: the onboarding funnel over {FUNNEL_DAYS} days (started, session posted, token exchanged, confirmed, "
        f"completed, expired, failed, cancelled; where failed and cancelled ones stopped) and the latest {LATEST_ONBOARDINGS} onboardings."
    ),
)
def onboarding_timeline(context: AssetExecutionContext, app_db: AppDatabase) -> MaterializeResult:
    """Materialise :func:`compute_onboarding_timeline`."""
    return _materialise(context, app_db, "onboarding_timeline", compute_onboarding_timeline, _timeline_markdown, "funnel_by_organization")


@asset(
    group_name="dashboards",
    deps=table_deps("whatsapp_webhook_logs"),
    kinds={"sql"},
    description="Failed and dead webhook rows by organization (unrouted when none) and error kind, with oldest and newest arrival.",
)
def failed_webhooks(context: AssetExecutionContext, app_db: AppDatabase) -> MaterializeResult:
    """Materialise :func:`compute_failed_webhooks`."""
    return _materialise(context, app_db, "failed_webhooks", compute_failed_webhooks, _failed_markdown, "by_organization_and_error_kind")


@asset(
    group_name="dashboards",
    deps=table_deps("whatsapp_configs"),
    kinds={"sql"},
    description="Per phone number: the business token's state (valid, expiring soon, expired, invalid, missing permission, unknown) and days to expiry.",
)
def token_health(context: AssetExecutionContext, app_db: AppDatabase) -> MaterializeResult:
    """Materialise :func:`compute_token_health`."""
    days = app_db.settings.token_expiring_soon_days
    return _materialise(
        context, app_db, "token_health", lambda conn: compute_token_health(conn, expiring_soon_days=days), _token_markdown, "by_phone_number"
    )


@asset(
    group_name="dashboards",
    deps=table_deps("whatsapp_messages", "whatsapp_message_statuses", "whatsapp_webhook_logs"),
    kinds={"sql"},
    description="Meta → arrival and arrival → processed delays (p50/p95 per hour, last 24 h) and the age of the claimable backlog.",
)
def webhook_lag(context: AssetExecutionContext, app_db: AppDatabase) -> MaterializeResult:
    """Materialise :func:`~wa_core.reporting.lag.compute_webhook_lag`."""
    return _materialise(context, app_db, "webhook_lag", compute_webhook_lag, _lag_markdown, "by_hour")


#: every dashboard asset, in the order the lineage graph shows them
DASHBOARD_ASSETS = [org_whatsapp_status, onboarding_timeline, failed_webhooks, token_health, webhook_lag]
