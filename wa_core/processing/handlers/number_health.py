"""Phone-number health fields → ``whatsapp_number_health`` (one row per WABA + display
number) and ``whatsapp_waba_events`` (history): ``phone_number_quality_update``,
``phone_number_name_update``, ``phone_number_username_update``; ``security`` lives in
:mod:`.security` and writes the same row's PIN columns.

Source: Meta, WhatsApp Cloud API webhook references "phone_number_quality_update", "phone_number_name_update". These items name the number only by
``display_phone_number`` (digits); the row is keyed by (WABA, digits) so a number still
registering (``ONBOARDING``) is kept too, and ``phone_number_id`` is filled when one of our
numbers has those digits. Each field updates its own columns with its own order column
(``quality_event_at``, ``throughput_event_at``, ``name_event_at``, ``username_event_at``).
The limits: ``max_daily_conversations_per_business`` (the portfolio tier) and the legacy
``current_limit``/``old_limit`` while Meta still sends them; any ``event`` value is accepted
(older docs list ``UPGRADE``/``DOWNGRADE``/``FLAGGED``/``UNFLAGGED``, §10.8).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wa_core.db.schema_waba_state import display_digits, whatsapp_number_health

from ..context import ChangeContext, Unit
from ..errors import InvalidPayload
from ..records import Planned
from ..state import StatePlan
from .waba_state import WabaChange, alert, event, event_key, history, number_id, text, upsert, waba_change

NUMBER_FIELDS = ("phone_number_quality_update", "phone_number_name_update", "phone_number_username_update")
#: phone_number_quality_update events that alert (quality drop or flag)
QUALITY_ALERTS = {"FLAGGED": "error", "DOWNGRADE": "warning"}


def number_key(change: WabaChange, value: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(row key, extra columns) of the number a WABA-family item names: the key is (WABA,
    display digits); the extra holds ``phone_number_id`` when one of ours has the digits.
    Raises :class:`InvalidPayload` without a usable ``display_phone_number``."""
    display = display_digits(value.get("display_phone_number"))
    if display is None or len(display) > 32:
        raise InvalidPayload(f"{change.ctx.field} without display_phone_number")
    found = number_id(change, display)
    return {"waba_id": change.waba_id, "display_phone_number": display}, ({"phone_number_id": found} if found else {})


def _quality(change: WabaChange, value: dict[str, Any], plan: StatePlan, key: dict[str, Any], extra: dict[str, Any]) -> str | None:
    event_name = text(value.get("event"))
    columns = {
        "quality_event": event_name,
        "messaging_limit": text(value.get("max_daily_conversations_per_business")),
        "current_limit": text(value.get("current_limit")),
        "old_limit": text(value.get("old_limit")),
    }
    plan.rows.append(upsert(change, whatsapp_number_health, key, {**extra, **columns}, "quality_event_at"))
    if event_name == "THROUGHPUT_UPGRADE":
        plan.rows.append(upsert(change, whatsapp_number_health, key, {"throughput_level": "high"}, "throughput_event_at"))
    if event_name in QUALITY_ALERTS:
        plan.alerts.append(
            alert(change, "number_quality", f"{key['display_phone_number']}:{event_name}", f"phone number of WABA {change.waba_id}: {event_name} (limit {columns['messaging_limit'] or columns['current_limit'] or 'unknown'})",
                  QUALITY_ALERTS[event_name], phone_number_id=extra.get("phone_number_id"), event=event_name)
        )
    return event_name


def _name(change: WabaChange, value: dict[str, Any], plan: StatePlan, key: dict[str, Any], extra: dict[str, Any]) -> str | None:
    decision = text(value.get("decision"))
    reason = text(value.get("rejection_reason"))
    columns = {"name_decision": decision, "requested_verified_name": text(value.get("requested_verified_name")), "name_rejection_reason": reason}
    plan.rows.append(upsert(change, whatsapp_number_health, key, {**extra, **columns}, "name_event_at"))
    if decision == "REJECTED":
        plan.alerts.append(alert(change, "name_rejected", f"{key['display_phone_number']}:name", f"display name rejected for a number of WABA {change.waba_id} ({reason or 'no reason'})",
                                 phone_number_id=extra.get("phone_number_id"), reason=reason))
    return decision


def _username(change: WabaChange, value: dict[str, Any], plan: StatePlan, key: dict[str, Any], extra: dict[str, Any]) -> str | None:
    decision = text(value.get("decision"))
    reasons = value.get("rejection_reasons")
    reasons = [r for r in (text(x) for x in reasons) if r] if isinstance(reasons, list) else None
    columns = {"username_decision": decision, "requested_username": text(value.get("requested_username")), "username_rejection_reasons": reasons or None}
    plan.rows.append(upsert(change, whatsapp_number_health, key, {**extra, **columns}, "username_event_at"))
    if decision == "REJECTED":
        plan.alerts.append(alert(change, "name_rejected", f"{key['display_phone_number']}:username", f"username rejected for a number of WABA {change.waba_id} ({', '.join(reasons or []) or 'no reason'})",
                                 phone_number_id=extra.get("phone_number_id")))
    return decision


_PLANNERS = {"phone_number_quality_update": _quality, "phone_number_name_update": _name, "phone_number_username_update": _username}
_DETAILS = {
    "phone_number_quality_update": ("max_daily_conversations_per_business", "current_limit", "old_limit"),
    "phone_number_name_update": ("requested_verified_name", "rejection_reason"),
    "phone_number_username_update": ("requested_username", "rejection_reasons"),
}


def plan_number_health(ctx: ChangeContext) -> StatePlan:
    """The rows, the ``number.health_changed`` event and the alerts of one number-health
    change. Raises :class:`InvalidPayload` without ``display_phone_number``,
    :class:`~wa_core.processing.errors.Unroutable` for a WABA nobody has."""
    value = ctx.value
    change = waba_change(ctx)
    key, extra = number_key(change, value)
    plan = StatePlan([])
    new = _PLANNERS[ctx.field](change, value, plan, key, extra)
    plan.gate = plan.rows[0]  # a late, older change keeps its history row but announces nothing
    details = {k: value[k] for k in _DETAILS[ctx.field] if value.get(k) is not None}
    plan.rows.append(history(change, ctx.field, key["display_phone_number"], new, details, value))
    aspect = ctx.field.removeprefix("phone_number_").removesuffix("_update")
    payload = {"display_phone_number": key["display_phone_number"], "phone_number_id": extra.get("phone_number_id"), "aspect": aspect, "value": new}
    plan.events.append(event(change, "number.health_changed", f"{key['display_phone_number']}:{event_key(change, ctx.field, value)}", payload))
    return plan


def handle_number_health(ctx: ChangeContext) -> Iterable[Unit]:
    """One planned unit per number-health change (any of :data:`NUMBER_FIELDS`)."""
    yield (ctx.field, Planned(lambda: plan_number_health(ctx)))


__all__ = ["NUMBER_FIELDS", "QUALITY_ALERTS", "handle_number_health", "number_key", "plan_number_health"]
