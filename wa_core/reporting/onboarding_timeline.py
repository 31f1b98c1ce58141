"""The ``onboarding_timeline`` dashboard: per organization, the onboarding funnel (30 days)
and the latest onboardings, with the step at which failed and cancelled ones stopped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc, utcnow, whatsapp_onboarding
from wa_core.organizations import organizations_by_id
from wa_core.reporting.common import lane_columns, markdown
from wa_core.reporting.snapshots import Dashboard

#: onboardings listed per organization by ``onboarding_timeline``
LATEST_ONBOARDINGS = 20
#: the onboarding funnel counts onboardings created in the last this many days
FUNNEL_DAYS = 30


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
    orgs = organizations_by_id(conn)
    rows: dict[Any, OnboardingFunnel] = {}

    def funnel(org_id: Any) -> OnboardingFunnel:
        if org_id not in rows:
            rows[org_id] = OnboardingFunnel(**lane_columns(orgs, org_id))
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


def timeline_markdown(rows: list[OnboardingFunnel]) -> str:
    """The ``funnel_by_organization`` table of ``onboarding_timeline``."""

    def steps(counts: dict[str, int]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))

    return markdown(
        ["organization", *FUNNEL_FIELDS, "failed at", "cancelled at"],
        ([f.organization, *(getattr(f, name) for name in FUNNEL_FIELDS), steps(f.failed_by_step), steps(f.cancelled_by_step)] for f in rows),
    )
