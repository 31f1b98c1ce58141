"""``security`` → the number's PIN columns in ``whatsapp_number_health``, a history row in
``whatsapp_waba_events``, an event and an operator alert.

Source: Meta, WhatsApp Cloud API webhook reference "security" (``{display_phone_number, event: PIN_CHANGED|PIN_RESET_REQUEST|
PIN_REQUEST_SUCCESS, [requester]}``; ``requester`` is the Business Suite user id, on reset
requests) and §5.2: after ``PIN_CHANGED`` our stored two-step-verification PIN
(``REGISTER_PIN``) is stale, so a later ``/register`` needs the new one: the operator is
alerted for ``PIN_CHANGED`` and ``PIN_RESET_REQUEST``.
"""

from __future__ import annotations

from collections.abc import Iterable

from wa_core.db.schema_waba_state import whatsapp_number_health

from ..context import ChangeContext, Unit
from ..records import Planned
from ..state import StatePlan
from .number_health import number_key
from .waba_state import alert, event, event_key, history, text, upsert, waba_change

#: security event → (event type for the feed, alert severity, alert summary)
SECURITY_EVENTS = {
    "PIN_CHANGED": ("security.pin_changed", "warning", "two-step verification PIN changed: the stored REGISTER_PIN is stale, re-registration needs the new PIN"),
    "PIN_RESET_REQUEST": ("security.pin_reset_requested", "warning", "two-step verification PIN reset requested"),
}


def plan_security(ctx: ChangeContext) -> StatePlan:
    """The rows, event and alert of one ``security`` item. ``PIN_REQUEST_SUCCESS`` and
    unknown events are recorded without an event or alert. Raises
    :class:`~wa_core.processing.errors.InvalidPayload` without ``display_phone_number``,
    :class:`~wa_core.processing.errors.Unroutable` for a WABA nobody has."""
    value = ctx.value
    change = waba_change(ctx)
    key, extra = number_key(change, value)
    name = text(value.get("event"))
    requester = text(value.get("requester"))
    plan = StatePlan([
        upsert(change, whatsapp_number_health, key, {**extra, "pin_event": name}, "pin_event_at"),
        history(change, "security", key["display_phone_number"], name, {"requester": requester} if requester else None, value),
    ])
    # no gate: a PIN change or reset request is an occurrence worth its event and alert even
    # when it arrives after a newer one (the feed's other WABA-family events announce state)
    known = SECURITY_EVENTS.get(name or "")
    if known:
        type_, severity, summary = known
        number = extra.get("phone_number_id")
        ids = {"display_phone_number": key["display_phone_number"], "phone_number_id": number, "requester": requester}
        plan.events.append(event(change, type_, f"{key['display_phone_number']}:{event_key(change, 'security', value)}", ids))
        plan.alerts.append(alert(change, "pin_security", f"{key['display_phone_number']}:{name}", f"{summary} (WABA {change.waba_id}, number {number or key['display_phone_number']})", severity, phone_number_id=number, event=name))
    return plan


def handle_security(ctx: ChangeContext) -> Iterable[Unit]:
    """One planned unit per ``security`` change."""
    yield ("security", Planned(lambda: plan_security(ctx)))


__all__ = ["SECURITY_EVENTS", "handle_security", "plan_security"]
