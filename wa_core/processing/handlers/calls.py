"""``calls``: a call's lifecycle (connect → status → terminate), and the call permission a
user gives in a ``messages`` item (``interactive.call_permission_reply``).

Source: Meta, WhatsApp Cloud API "Calling" reference (call webhooks). ``calls[]`` items carry ``event: connect`` (with
``session.sdp_type``) or ``event: terminate`` (``status: COMPLETED|FAILED``, and
``start_time``/``end_time``/``duration`` when answered, integers or strings); statuses of a
business-initiated call arrive as ``statuses[{type: call, status: RINGING|ACCEPTED|REJECTED}]``
under the same field. 2026 (BSUID): ``from_user_id``/``to_user_id``, ``from``/``to`` may be
empty.

State: one ``whatsapp_calls`` row per call id, whose lifecycle columns only move forward in
``lifecycle_order`` (rank connect 1 < status 2 < terminate 3, then Meta's time), so a late
connect or status never undoes a terminate; the facts an event brings (direction, parties,
start/end/duration, errors) are set whenever they are given. Every event is also kept once
in ``whatsapp_call_events`` (redelivery adds nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wa_core.db.schema_phone import whatsapp_call_events, whatsapp_call_permissions, whatsapp_calls

from ..context import ChangeContext, Route, Unit
from ..errors import InvalidPayload
from ..records import Planned
from ..state import EventSpec, RowWrite, StatePlan
from ..timeparse import meta_time
from .messages import _raise_invalid, first_error
from .phone_common import contact_key, contact_units, event, fill, int32, items, required_id, text, upsert

#: lifecycle rank of an event: the order column is rank × RANK_SPAN + Meta's unix seconds
RANK = {"connect": 1, "status": 2, "terminate": 3}
RANK_SPAN = 10**11
_KEY = ("phone_number_id", "call_id")
_STATE = ("state", "last_event", "lifecycle_order", "event_at", "updated_at")
_FACTS = (
    "direction", "from_id", "to_id", "from_user_id", "to_user_id", "connected_at", "sdp_type", "started_at", "ended_at",
    "duration_seconds", "terminate_status", "error_code", "error_title", "biz_opaque_callback_data",
)


def _short(value: Any, limit: int) -> str | None:
    found = text(value)
    return found[:limit] if found else None


def call_plan(ctx: ChangeContext, route: Route, item: dict[str, Any], kind: str) -> StatePlan:
    """The plan of one ``calls[]`` item (``kind`` ``call``) or call ``statuses[]`` item
    (``kind`` ``status``): the call's state (ordered), the facts it brings, its history row
    and a ``call.<event>`` event, announced only when the state write moved the call's row. Raises :class:`InvalidPayload` without an id, or for a
    ``calls[]`` item whose ``event`` is neither connect nor terminate."""
    call_id = required_id(item, "id", "call")
    event_at = meta_time(item.get("timestamp"))
    status = _short(item.get("status"), 32)
    if kind == "status":
        if status is None:
            raise InvalidPayload("call status has no status")
        name, state = "status", status.lower()
    else:
        name = text(item.get("event"))
        if name not in ("connect", "terminate"):
            raise InvalidPayload("call event is neither connect nor terminate")
        state = "connect" if name == "connect" else (status or "terminated").lower()
    order = RANK[name] * RANK_SPAN + (int(event_at.timestamp()) if event_at else 0)
    code, title = first_error(item)
    if code is None and title is None and name == "terminate":
        code, title = first_error(ctx.value)  # a failed call's errors may sit in value.errors[]
    session = item.get("session") if isinstance(item.get("session"), dict) else {}
    facts: dict[str, Any] = {
        "direction": _short(item.get("direction"), 32),
        "from_id": _short(item.get("from"), 64),
        "to_id": _short(item.get("to") if kind == "call" else item.get("recipient_id"), 64),
        "from_user_id": _short(item.get("from_user_id"), 128),
        "to_user_id": _short(item.get("to_user_id") if kind == "call" else item.get("recipient_user_id"), 128),
        "connected_at": event_at if name == "connect" else None,
        "sdp_type": _short(session.get("sdp_type"), 16) if name == "connect" else None,
        "started_at": meta_time(item.get("start_time")) if name == "terminate" else None,
        "ended_at": meta_time(item.get("end_time")) if name == "terminate" else None,
        "duration_seconds": int32(item.get("duration")) if name == "terminate" else None,
        "terminate_status": status if name == "terminate" else None,
        "error_code": code,
        "error_title": title,
        "biz_opaque_callback_data": text(item.get("biz_opaque_callback_data")),
    }
    base = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "call_id": call_id,
        "state": state[:32],
        "last_event": name,
        "lifecycle_order": order,
        "event_at": event_at,
        "created_at": ctx.received_at,
        "updated_at": ctx.received_at,
    }
    state_write = upsert(ctx, whatsapp_calls, {**base, **facts}, _KEY, _STATE, "lifecycle_order")
    rows: list[RowWrite] = [state_write]
    facts_write = fill(ctx, whatsapp_calls, base, _KEY, facts)
    if facts_write is not None:
        rows.append(facts_write)
    event_key = name if name == "connect" else f"{name}:{(status or '').upper()}"
    history = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "call_id": call_id,
        "event_key": event_key[:64],
        "event_at": event_at,
        "raw": item,
        "received_at": ctx.received_at,
        "webhook_log_id": ctx.webhook_log_id,
    }
    rows.append(upsert(ctx, whatsapp_call_events, history, ("phone_number_id", "call_id", "event_key")))
    payload = {"call_id": call_id, "state": base["state"], "direction": facts["direction"], "from": facts["from_id"], "to": facts["to_id"],
               "duration_seconds": facts["duration_seconds"]}
    # gated on the state write: a late, older event (a ringing status after the terminate) keeps
    # its history row and facts but announces nothing, the feed's last word is the call's state
    return StatePlan(rows, events=[event(route, f"call.{name}", f"{call_id}:{event_key}", payload, event_at, ctx)], gate=state_write)


def handle_calls(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per ``contacts[]`` entry, ``calls[]`` item and ``statuses[]`` item; a
    ``value.errors[]`` entry is kept in the body (terminate items read it). Raises
    :class:`~wa_core.processing.errors.Unroutable` for a number no organization has."""
    route = ctx.route_phone_number()
    value = ctx.value
    calls, statuses = items(value, "calls"), items(value, "statuses")
    yield from contact_units(ctx, route, value)
    for label, found, kind in (("calls", calls, "call"), ("statuses", statuses, "status")):
        for k, item in enumerate(found):
            if not isinstance(item, dict):
                yield (f"{label}[{k}]", _raise_invalid(f"{label[:-1]} is not an object"))
                continue
            yield (f"{label}[{k}]", Planned(lambda i=item, t=kind: call_plan(ctx, route, i, t)))


# --- call permission replies (a ``messages`` item) -------------------------------------------
def permission_reply(ctx: ChangeContext, route: Route, message: dict[str, Any], wa_id: Any, user_id: Any) -> tuple[list[RowWrite], list[EventSpec]]:
    """The rows and event of an ``interactive.call_permission_reply`` message, or ``([], [])``
    for any other message and for a reply without a sender or a ``response`` (the message is
    still stored): the sender's (``wa_id``/``user_id``) call permission, ordered by the
    message's Meta time. Source: §10.5 "Call permission" (``response: accept|reject``,
    ``is_permanent``, ``expiration_timestamp``, ``response_source``; ``context.id`` is the
    request's wamid or a missed call's wacid)."""
    interactive = message.get("interactive")
    if message.get("type") != "interactive" or not isinstance(interactive, dict) or interactive.get("type") != "call_permission_reply":
        return [], []
    reply = interactive.get("call_permission_reply")
    key, wa_id, user_id = contact_key(wa_id, user_id)
    response = text(reply.get("response")) if isinstance(reply, dict) else None
    if key is None or response is None:
        return [], []
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    replied_at = meta_time(message.get("timestamp"))
    permanent = reply.get("is_permanent")
    row = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "contact_key": key,
        "wa_id": wa_id,
        "user_id": user_id,
        "response": response.lower()[:16],
        "is_permanent": permanent if isinstance(permanent, bool) else None,
        "expires_at": meta_time(reply.get("expiration_timestamp")),
        "response_source": _short(reply.get("response_source"), 32),
        "context_id": _short(context.get("id"), 255),
        "message_wamid": message["id"],
        "replied_at": replied_at,
        "updated_at": ctx.received_at,
    }
    update = tuple(k for k in row if k not in ("organization_id", "contact_key"))
    write = upsert(ctx, whatsapp_call_permissions, row, ("organization_id", "contact_key"), update, "replied_at")
    payload = {"wa_id": wa_id, "user_id": user_id, "response": row["response"], "is_permanent": row["is_permanent"],
               "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None, "message_wamid": message["id"]}
    return [write], [event(route, "call.permission_replied", str(message["id"]), payload, replied_at, ctx)]
