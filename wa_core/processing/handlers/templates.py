"""The four template fields → ``whatsapp_templates`` (current state per WABA + template id)
and ``whatsapp_template_events`` (append-only history).

Source: Meta, WhatsApp Cloud API webhook references "message_template_status_update", "message_template_quality_update", "template_category_update". ``message_template_id`` arrives as a JSON number and is
stored as text. Meta's own quality example is labelled ``message_template_status_update``, so
the kind of change is told by the value's keys (``new_quality_score``, ``event``,
``message_template_element``, ``new_category``…) before the field name. Each kind updates its
own columns with its own order column (``status_event_at``, ``quality_event_at``,
``category_event_at``, ``components_event_at``); ``last_event``/``last_event_at`` follow the
newest change of any kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wa_core.db.schema_waba_state import whatsapp_template_events, whatsapp_templates

from ..context import ChangeContext, Unit
from ..errors import InvalidPayload
from ..records import Planned, prepare
from ..state import RowWrite, StatePlan
from ..timeparse import meta_time
from .waba_state import WabaChange, alert, event, event_key, text, upsert, waba_change

TEMPLATE_FIELDS = (
    "message_template_status_update",
    "message_template_quality_update",
    "message_template_components_update",
    "template_category_update",
)
#: status events that alert the operator (severity)
STATUS_ALERTS = {"PAUSED": "warning", "REJECTED": "warning", "DISABLED": "error", "FLAGGED": "warning"}
#: quality scores from best to worst; a move to the right (or RED) alerts
QUALITY_RANK = {"GREEN": 0, "YELLOW": 1, "RED": 2}
_FIELD_KIND = {
    "message_template_status_update": "status",
    "message_template_quality_update": "quality",
    "message_template_components_update": "components",
    "template_category_update": "category",
}


def template_kind(field: str, value: dict[str, Any]) -> str:
    """``status``, ``quality``, ``components`` or ``category``: by the keys present (Meta
    labels its quality example as a status update, §0), else by ``field``."""
    if "new_quality_score" in value or "previous_quality_score" in value:
        return "quality"
    if "event" in value:
        return "status"
    if "message_template_element" in value or "message_template_buttons" in value:
        return "components"
    if "new_category" in value or "correct_category" in value or "previous_category" in value:
        return "category"
    return _FIELD_KIND.get(field, "status")


def _status(value: dict[str, Any]) -> tuple[dict[str, Any], str | None, dict | None]:
    status = text(value.get("event"))
    if status is None:
        raise InvalidPayload("message_template_status_update without event")
    reason = text(value.get("reason"))
    other = value.get("other_info") if isinstance(value.get("other_info"), dict) else {}
    if reason in (None, "NONE") and text(other.get("title")):
        reason = text(other.get("title"))  # a pause says why in other_info.title
    details = {k: value[k] for k in ("rejection_info", "other_info", "disable_info") if isinstance(value.get(k), dict)} or None
    return {"status": status, "status_reason": reason, "status_details": details}, reason, details


def _category(value: dict[str, Any]) -> dict[str, Any]:
    if "correct_category" in value:  # impending: new_category is the CURRENT one (§10.1)
        return {
            "category": text(value.get("new_category")),
            "pending_category": text(value.get("correct_category")),
            "category_change_at": meta_time(value.get("category_update_timestamp")),
        }
    return {"category": text(value.get("new_category")), "previous_category": text(value.get("previous_category")), "pending_category": None, "category_change_at": None}


def _components(value: dict[str, Any]) -> dict[str, Any]:
    buttons = value.get("message_template_buttons")
    return {
        "components": {
            "title": value.get("message_template_title"),
            "body": value.get("message_template_element"),
            "footer": value.get("message_template_footer"),
            "buttons": buttons if isinstance(buttons, list) else [],
        }
    }


def plan_template(ctx: ChangeContext) -> StatePlan:
    """The rows, events and alerts of one template change (see the module doc).

    Raises :class:`InvalidPayload` without ``message_template_id`` (or a status without
    ``event``), :class:`~wa_core.processing.errors.Unroutable` for a WABA nobody has."""
    value = ctx.value
    change = waba_change(ctx)
    template_id = text(value.get("message_template_id"))
    if template_id is None:
        raise InvalidPayload(f"{ctx.field} without message_template_id")
    kind = template_kind(ctx.field, value)
    key = {"waba_id": change.waba_id, "template_id": template_id}
    named = {c: text(value.get(f"message_template_{c}")) for c in ("name", "language")}
    named = {c: v for c, v in named.items() if v is not None}
    plan = StatePlan([])
    reason, details, new = None, None, None
    if kind == "status":
        columns, reason, details = _status(value)
        new = columns["status"]
        plan.rows.append(upsert(change, whatsapp_templates, key, {**named, **columns}, "status_event_at"))
        category = text(value.get("message_template_category"))
        if category is not None:  # the category as of this status event, ordered as a category
            plan.rows.append(upsert(change, whatsapp_templates, key, {"category": category}, "category_event_at"))
    elif kind == "quality":
        new, old = text(value.get("new_quality_score")), text(value.get("previous_quality_score"))
        plan.rows.append(upsert(change, whatsapp_templates, key, {**named, "quality": new, "previous_quality": old}, "quality_event_at"))
    elif kind == "category":
        columns = _category(value)
        new = columns["category"]
        details = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in columns.items() if v is not None} or None
        plan.rows.append(upsert(change, whatsapp_templates, key, {**named, **columns}, "category_event_at"))
    else:
        columns = _components(value)
        details = columns["components"]
        plan.rows.append(upsert(change, whatsapp_templates, key, {**named, **columns}, "components_event_at"))
    last = f"{ctx.field}:{new}" if kind == "status" and new else ctx.field
    plan.rows.append(upsert(change, whatsapp_templates, key, {"last_event": last[:64]}, "last_event_at"))
    history_key = event_key(change, kind, value)
    history = {
        **key, "organization_id": change.organization_id, "kind": kind, "value": new, "reason": reason, "details": details,
        "event_key": history_key, "event_at": change.event_at, "received_at": ctx.received_at,
    }
    history = prepare(whatsapp_template_events.name, history, ("waba_id", "template_id"), ctx.clean)
    plan.rows.append(RowWrite(whatsapp_template_events, history, ("waba_id", "template_id", "event_key")))
    plan.gate = plan.rows[0]  # a late, older change keeps its history row but announces nothing
    _events_and_alerts(plan, change, kind, template_id, named, value, new, reason, history_key)
    return plan


def _events_and_alerts(
    plan: StatePlan, change: WabaChange, kind: str, template_id: str, named: dict[str, Any], value: dict[str, Any], new: Any, reason: Any, key: str
) -> None:
    ids = {"template_id": template_id, **named}
    label = f"template {named.get('name') or template_id} ({named.get('language') or '?'})"
    if kind == "status":
        plan.events.append(event(change, "template.status_changed", key, {**ids, "status": new, "reason": reason}))
        if new in STATUS_ALERTS:
            plan.alerts.append(alert(change, "template_status", f"{template_id}:{new}", f"{label} is {new} (reason {reason or 'none'})", STATUS_ALERTS[new], template_id=template_id, reason=reason))
    elif kind == "quality":
        old = text(value.get("previous_quality_score"))
        plan.events.append(event(change, "template.quality_changed", key, {**ids, "quality": new, "previous_quality": old}))
        if new in QUALITY_RANK and (new == "RED" or (old in QUALITY_RANK and QUALITY_RANK[new] > QUALITY_RANK[old])):
            severity = "error" if new == "RED" else "warning"
            plan.alerts.append(alert(change, "template_quality", f"{template_id}:{new}", f"{label} quality dropped to {new} (was {old or 'unknown'})", severity, template_id=template_id))
    elif kind == "category":
        plan.events.append(event(change, "template.category_changed", key, {**ids, "category": new, "pending_category": text(value.get("correct_category")), "previous_category": text(value.get("previous_category"))}))
    else:
        plan.events.append(event(change, "template.components_updated", key, ids))


def handle_template(ctx: ChangeContext) -> Iterable[Unit]:
    """One planned unit per template change (any of :data:`TEMPLATE_FIELDS`)."""
    yield (ctx.field or "template", Planned(lambda: plan_template(ctx)))


__all__ = ["QUALITY_RANK", "STATUS_ALERTS", "TEMPLATE_FIELDS", "handle_template", "plan_template", "template_kind"]
