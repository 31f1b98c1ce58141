"""Number and WABA health as the views show it: ``check-connection``, the admin status and
the ``number_health`` dashboard. Read from the tables the WABA-family state fields write
(:mod:`wa_core.db.schema_waba_state`; Meta's template, phone number and account webhook references).

A number's health row is keyed by (WABA, display digits), as Meta names the number; a
``whatsapp_configs`` number is matched by the digits of its ``display_phone_number``.
Every read is one query per table for all the WABAs asked (no per-number round trip).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc, utcnow
from wa_core.db.schema_waba_state import display_digits, whatsapp_account_alerts, whatsapp_number_health, whatsapp_templates, whatsapp_waba_health
from wa_core.organizations import organizations_by_id
from wa_core.reporting.common import lane_columns, markdown
from wa_core.reporting.snapshots import Dashboard

#: template statuses that need the customer's attention
TEMPLATE_ATTENTION = ("PAUSED", "REJECTED", "DISABLED", "FLAGGED")


class NumberHealthView(BaseModel):
    """A phone number's health as Meta last reported it (each part with Meta's time, UTC)."""

    display_phone_number: str = Field(description="digits, as Meta names the number")
    phone_number_id: str | None
    quality_event: str | None = Field(description="last phone_number_quality_update event (ONBOARDING, THROUGHPUT_UPGRADE, FLAGGED…)")
    messaging_limit: str | None = Field(description="max_daily_conversations_per_business (portfolio tier)")
    current_limit: str | None = Field(description="legacy current_limit, while Meta still sends it")
    quality_event_at: datetime | None
    throughput_level: str | None = Field(description="'high' (1,000 mps) after THROUGHPUT_UPGRADE; null = standard/unknown")
    name_decision: str | None
    requested_verified_name: str | None
    name_rejection_reason: str | None
    name_event_at: datetime | None
    username_decision: str | None
    requested_username: str | None
    username_rejection_reasons: list[str] | None
    pin_event: str | None = Field(description="last security event; PIN_CHANGED means the stored REGISTER_PIN is stale")
    pin_event_at: datetime | None


class AccountAlertView(BaseModel):
    """An open Meta account alert (``account_alerts`` with status ACTIVE)."""

    entity_type: str
    entity_id: str
    alert_type: str
    severity: str | None
    description: str | None
    event_at: datetime | None


class WabaHealthView(BaseModel):
    """A WABA's review, capabilities, open Meta alerts and template states."""

    review_decision: str | None = Field(description="account_review_update; the WABA cannot use the APIs unless APPROVED")
    business_limit: str | None = Field(description="business_capability_update max_daily_conversations_per_business")
    max_phone_numbers_per_waba: int | None
    max_phone_numbers_per_business: int | None
    open_alerts: list[AccountAlertView]
    templates: dict[str, int] = Field(description="templates per status (null status: quality or category known only)")


_NUMBER_FIELDS = [name for name in NumberHealthView.model_fields]


def _number_view(row: Any) -> NumberHealthView:
    values = {name: getattr(row, name) for name in _NUMBER_FIELDS}
    values = {k: as_utc(v) if isinstance(v, datetime) else v for k, v in values.items()}
    reasons = values["username_rejection_reasons"]
    values["username_rejection_reasons"] = [str(r) for r in reasons] if isinstance(reasons, list) else None
    return NumberHealthView(**values)


def number_health(conn: Connection, waba_ids: Iterable[str]) -> dict[tuple[str, str], NumberHealthView]:
    """{(waba_id, display digits): :class:`NumberHealthView`} of ``waba_ids``."""
    ids = sorted(set(waba_ids))
    if not ids:
        return {}
    rows = conn.execute(sa.select(whatsapp_number_health).where(whatsapp_number_health.c.waba_id.in_(ids))).all()
    return {(r.waba_id, r.display_phone_number): _number_view(r) for r in rows}


def waba_health(conn: Connection, waba_ids: Iterable[str]) -> dict[str, WabaHealthView]:
    """{waba_id: :class:`WabaHealthView`} for every one of ``waba_ids`` (empty parts when
    Meta reported nothing yet)."""
    ids = sorted(set(waba_ids))
    if not ids:
        return {}
    w, a, t = whatsapp_waba_health.c, whatsapp_account_alerts.c, whatsapp_templates.c
    health = {r.waba_id: r for r in conn.execute(sa.select(whatsapp_waba_health).where(w.waba_id.in_(ids)))}
    alerts: dict[str, list[AccountAlertView]] = {}
    for r in conn.execute(sa.select(whatsapp_account_alerts).where(a.waba_id.in_(ids), a.status == "ACTIVE").order_by(a.event_at.desc(), a.alert_type)):
        alerts.setdefault(r.waba_id, []).append(
            AccountAlertView(entity_type=r.entity_type, entity_id=r.entity_id, alert_type=r.alert_type, severity=r.severity, description=r.description, event_at=as_utc(r.event_at))
        )
    templates: dict[str, dict[str, int]] = {}
    for waba_id, status, n in conn.execute(sa.select(t.waba_id, t.status, sa.func.count()).where(t.waba_id.in_(ids)).group_by(t.waba_id, t.status)):
        templates.setdefault(waba_id, {})[status or "unknown"] = int(n)
    out = {}
    for waba_id in ids:
        h = health.get(waba_id)
        out[waba_id] = WabaHealthView(
            review_decision=h.review_decision if h else None,
            business_limit=h.business_limit if h else None,
            max_phone_numbers_per_waba=h.max_phone_numbers_per_waba if h else None,
            max_phone_numbers_per_business=h.max_phone_numbers_per_business if h else None,
            open_alerts=alerts.get(waba_id, []),
            templates=templates.get(waba_id, {}),
        )
    return out


def health_of(numbers: dict[tuple[str, str], NumberHealthView], waba_id: str, display_phone_number: Any) -> NumberHealthView | None:
    """The health of our number (by its display number's digits), or None."""
    digits = display_digits(display_phone_number)
    return numbers.get((waba_id, digits)) if digits else None


# --- the number_health dashboard ------------------------------------------------------------------
@dataclass(frozen=True)
class NumberHealthRow:
    """One number Meta reported health for (a number still registering included)."""

    organization_id: str | None
    organization_external_id: str | None
    organization: str
    waba_id: str
    display_phone_number: str
    phone_number_id: str | None
    messaging_limit: str | None
    throughput_level: str | None
    quality_event: str | None
    name_decision: str | None
    username_decision: str | None
    pin_event: str | None
    review_decision: str | None
    open_alerts: int
    templates_needing_attention: int
    needs_action: bool


def _needs_action(n: Any, review: str | None, alerts: int) -> bool:
    return (
        n.quality_event in ("FLAGGED", "DOWNGRADE") or n.name_decision == "REJECTED" or n.username_decision == "REJECTED"
        or n.pin_event in ("PIN_CHANGED", "PIN_RESET_REQUEST") or review == "REJECTED" or alerts > 0
    )


def compute_number_health(conn: Connection, now: datetime | None = None) -> Dashboard:
    """The ``number_health`` dashboard at ``now`` (UTC, default now).

    ``rows``: :class:`NumberHealthRow` per number with health, by organization then WABA
    and number. ``totals``: ``numbers``, ``needs_action``, ``throughput_high``,
    ``names_rejected``, ``pin_changes`` (PIN changed or reset requested), ``open_alerts``
    (ACTIVE account alerts), ``templates_needing_attention`` (paused, rejected, disabled
    or flagged), ``messaging_limits`` (numbers per tier) and ``templates_by_status``.
    """
    now = now or utcnow()
    orgs = organizations_by_id(conn)
    numbers = conn.execute(sa.select(whatsapp_number_health)).all()
    reviews = dict(conn.execute(sa.select(whatsapp_waba_health.c.waba_id, whatsapp_waba_health.c.review_decision)).all())
    a, t = whatsapp_account_alerts.c, whatsapp_templates.c
    alerts = Counter(dict(conn.execute(sa.select(a.waba_id, sa.func.count()).where(a.status == "ACTIVE").group_by(a.waba_id)).all()))
    attention = Counter(dict(conn.execute(sa.select(t.waba_id, sa.func.count()).where(t.status.in_(TEMPLATE_ATTENTION)).group_by(t.waba_id)).all()))
    by_status = Counter({s or "unknown": int(n) for s, n in conn.execute(sa.select(t.status, sa.func.count()).group_by(t.status))})
    rows = [
        NumberHealthRow(
            **lane_columns(orgs, n.organization_id),
            waba_id=n.waba_id, display_phone_number=n.display_phone_number, phone_number_id=n.phone_number_id,
            messaging_limit=n.messaging_limit or n.current_limit, throughput_level=n.throughput_level, quality_event=n.quality_event,
            name_decision=n.name_decision, username_decision=n.username_decision, pin_event=n.pin_event,
            review_decision=reviews.get(n.waba_id), open_alerts=int(alerts[n.waba_id]), templates_needing_attention=int(attention[n.waba_id]),
            needs_action=_needs_action(n, reviews.get(n.waba_id), int(alerts[n.waba_id])),
        )
        for n in numbers
    ]
    rows.sort(key=lambda r: (r.organization, r.waba_id, r.display_phone_number))
    totals: dict[str, Any] = {
        "numbers": len(rows),
        "needs_action": sum(r.needs_action for r in rows),
        "throughput_high": sum(r.throughput_level == "high" for r in rows),
        "names_rejected": sum(r.name_decision == "REJECTED" or r.username_decision == "REJECTED" for r in rows),
        "pin_changes": sum(r.pin_event in ("PIN_CHANGED", "PIN_RESET_REQUEST") for r in rows),
        "open_alerts": int(sum(alerts.values())),
        "templates_needing_attention": int(sum(attention.values())),
        "messaging_limits": dict(Counter(r.messaging_limit or "unknown" for r in rows)),
        "templates_by_status": dict(by_status),
    }
    return Dashboard(computed_at=now, totals=totals, rows=rows)


def number_health_markdown(rows: list[NumberHealthRow]) -> str:
    """The ``by_phone_number`` table of ``number_health``."""
    return markdown(
        ["organization", "WABA", "number", "phone_number_id", "limit", "throughput", "quality event", "name", "username", "PIN", "review", "open alerts", "templates to fix"],
        (
            [r.organization, r.waba_id, r.display_phone_number, r.phone_number_id, r.messaging_limit, r.throughput_level, r.quality_event,
             r.name_decision, r.username_decision, r.pin_event, r.review_decision, r.open_alerts, r.templates_needing_attention]
            for r in rows
        ),
        numeric_from=11,
    )


def connection_health(conn: Connection, waba_id: str) -> tuple[WabaHealthView, dict[tuple[str, str], NumberHealthView]]:
    """(the WABA's health, its numbers' health) for ``check-connection``."""
    return waba_health(conn, [waba_id])[waba_id], number_health(conn, [waba_id])


__all__ = [
    "AccountAlertView", "NumberHealthRow", "NumberHealthView", "TEMPLATE_ATTENTION", "WabaHealthView", "compute_number_health",
    "connection_health", "health_of", "number_health", "number_health_markdown", "waba_health",
]
