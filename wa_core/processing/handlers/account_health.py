"""WABA-level health fields → ``whatsapp_waba_health`` (one row per WABA),
``whatsapp_account_alerts`` (one row per alert entity and type) and ``whatsapp_waba_events``
(history): ``account_review_update``, ``business_capability_update``, ``account_alerts``.

Source: Meta, WhatsApp Cloud API webhook references "account_review_update", "business_capability_update", "account_alerts". ``business_capability_update``'s
``max_daily_conversations_per_business`` is a ``TIER_*`` string in the table but the number
``2000`` in Meta's example: both are kept as text. ``account_alerts``' ``entity_id`` is a
business portfolio or phone-number id, not the WABA: routed by ``entry.id``, the alert is
kept under its entity. Review and capabilities have their own order columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wa_core.db.schema_waba_state import whatsapp_account_alerts, whatsapp_waba_health

from ..context import ChangeContext, Unit
from ..errors import InvalidPayload
from ..records import Planned
from ..state import StatePlan
from .waba_state import WabaChange, alert, event, event_key, history, text, upsert, waba_change

ACCOUNT_FIELDS = ("account_review_update", "business_capability_update", "account_alerts")
#: account_alerts severities that alert the operator while ACTIVE
ALERT_SEVERITY = {"CRITICAL": "critical", "WARNING": "warning"}


def _count(value: Any) -> int | None:
    """A phone-number cap as an integer (a JSON number or digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 12:
        return int(value.strip())
    return None


def _review(change: WabaChange, value: dict[str, Any], plan: StatePlan) -> None:
    decision = text(value.get("decision"))
    if decision is None:
        raise InvalidPayload("account_review_update without decision")
    plan.rows.append(upsert(change, whatsapp_waba_health, {"waba_id": change.waba_id}, {"review_decision": decision}, "review_event_at"))
    plan.rows.append(history(change, "account_review_update", change.waba_id, decision, None, value))
    plan.events.append(event(change, "account.review_updated", event_key(change, "review", value), {"decision": decision}))
    if decision == "REJECTED":
        plan.alerts.append(alert(change, "account_review", "review", f"WABA {change.waba_id} account review REJECTED: it cannot use the APIs", "error"))


def _capability(change: WabaChange, value: dict[str, Any], plan: StatePlan) -> None:
    columns = {
        "business_limit": text(value.get("max_daily_conversations_per_business")),
        "per_phone_limit": text(value.get("max_daily_conversation_per_phone")),
        "max_phone_numbers_per_business": _count(value.get("max_phone_numbers_per_business")),
        "max_phone_numbers_per_waba": _count(value.get("max_phone_numbers_per_waba")),
    }
    plan.rows.append(upsert(change, whatsapp_waba_health, {"waba_id": change.waba_id}, columns, "capability_event_at"))
    details = {k: v for k, v in columns.items() if v is not None}
    plan.rows.append(history(change, "business_capability_update", change.waba_id, columns["business_limit"], details, value))
    plan.events.append(event(change, "number.health_changed", event_key(change, "capability", value), {"aspect": "capability", **details}))


def _alert(change: WabaChange, value: dict[str, Any], plan: StatePlan) -> None:
    info = value.get("alert_info")
    if not isinstance(info, dict):
        raise InvalidPayload("account_alerts without alert_info")
    entity_type = text(value.get("entity_type")) or "UNKNOWN"
    entity_id = text(value.get("entity_id")) or change.waba_id
    alert_type = text(info.get("alert_type")) or "UNKNOWN"
    severity, status = text(info.get("alert_severity")), text(info.get("alert_status"))
    description = info.get("alert_description") if isinstance(info.get("alert_description"), str) else None
    key = {"waba_id": change.waba_id, "entity_type": entity_type, "entity_id": entity_id, "alert_type": alert_type}
    plan.rows.append(upsert(change, whatsapp_account_alerts, key, {"severity": severity, "status": status, "description": description}, "event_at"))
    details = {"entity_type": entity_type, "severity": severity, "status": status, "description": description}
    plan.rows.append(history(change, "account_alerts", entity_id, alert_type, details, value))
    ids = {"entity_type": entity_type, "entity_id": entity_id, "alert_type": alert_type, "severity": severity, "status": status}
    plan.events.append(event(change, "account.alert", f"{entity_id}:{event_key(change, 'alert', value)}", ids))
    if status == "ACTIVE" and severity in ALERT_SEVERITY:
        plan.alerts.append(alert(change, "account_alert", f"{entity_id}:{alert_type}", f"Meta account alert {alert_type} ({severity}) on {entity_type.lower()} {entity_id}", ALERT_SEVERITY[severity], entity_type=entity_type))


_PLANNERS = {"account_review_update": _review, "business_capability_update": _capability, "account_alerts": _alert}


def plan_account_health(ctx: ChangeContext) -> StatePlan:
    """The rows, events and alerts of one WABA-level change (any of :data:`ACCOUNT_FIELDS`).
    Raises :class:`InvalidPayload` for a review without ``decision`` or an alert without
    ``alert_info``, :class:`~wa_core.processing.errors.Unroutable` for a WABA nobody has."""
    value = ctx.value
    change = waba_change(ctx)
    plan = StatePlan([])
    _PLANNERS[ctx.field](change, value, plan)
    plan.gate = plan.rows[0]  # the state upsert: a late, older change announces nothing
    return plan


def handle_account_health(ctx: ChangeContext) -> Iterable[Unit]:
    """One planned unit per change."""
    yield (ctx.field, Planned(lambda: plan_account_health(ctx)))


__all__ = ["ACCOUNT_FIELDS", "ALERT_SEVERITY", "handle_account_health", "plan_account_health"]
