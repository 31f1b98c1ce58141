"""``partner_solutions`` (multi-partner solution status) and ``automatic_events``
(Click-to-WhatsApp lead and purchase conversions), stored as typed records.

Source: Meta, WhatsApp Cloud API webhook reference "partner_solutions". ``partner_solutions``: ``entry.id`` is the
partner's **business portfolio** (no WABA, no organization: the solution is the partner's
own), ``entry.time`` orders the events, value ``{event, solution_id, solution_status}``.
``automatic_events`` (phone family): ``automatic_events[{id: <wamid>, event_name,
timestamp: <int>, ctwa_clid, [custom_data{currency, value}]}]``, kept once per (message,
event name).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from wa_core.db.schema_phone import whatsapp_ad_conversions, whatsapp_partner_solutions

from ..context import ChangeContext, Route, Unit
from ..errors import InvalidPayload
from ..records import Planned
from ..state import StatePlan
from ..store import clean_id
from ..timeparse import meta_time
from .messages import _raise_invalid
from .phone_common import event, items, required_id, text, upsert

#: a conversion value beyond this is not a price: kept only in ``raw``
MAX_VALUE = 10**15


def solution_plan(ctx: ChangeContext) -> StatePlan:
    """The plan of a ``partner_solutions`` change: the solution's status (upsert by
    ``solution_id``, ordered by ``entry.time``) and a ``partner_solution.updated`` event
    (organization None). Raises :class:`InvalidPayload` without ``solution_id`` or
    ``entry.id``."""
    value = ctx.value
    solution_id = required_id(value, "solution_id", "partner solution")
    business_id = clean_id(ctx.entry.get("id"))
    if business_id is None:
        raise InvalidPayload("partner solution without entry.id (the business portfolio)")
    event_at = meta_time(ctx.entry.get("time"))
    name = (text(value.get("event")) or "unknown")[:32]
    status = (text(value.get("solution_status")) or "")[:32] or None
    row = {"solution_id": solution_id, "business_id": business_id, "event": name, "solution_status": status, "event_at": event_at,
           "created_at": ctx.received_at, "updated_at": ctx.received_at}
    write = upsert(ctx, whatsapp_partner_solutions, row, ("solution_id",), ("business_id", "event", "solution_status", "event_at", "updated_at"),
                   "event_at")
    stamp = event_at.isoformat() if event_at else "-"
    spec = event(None, "partner_solution.updated", f"{solution_id}:{stamp}:{name}:{status}",
                 {"solution_id": solution_id, "business_id": business_id, "event": name, "solution_status": status}, event_at, ctx)
    return StatePlan([write], events=[spec], gate=write)  # a late, older status announces nothing


def handle_partner_solutions(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per change (the value is the solution)."""
    ctx.value  # noqa: B018 - raises InvalidPayload for a value that is not an object
    yield ("solution", Planned(lambda: solution_plan(ctx)))


def _amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return Decimal(str(value)) if abs(value) < MAX_VALUE else None


def conversion_plan(ctx: ChangeContext, route: Route, item: dict[str, Any]) -> StatePlan:
    """The plan of one ``automatic_events[]`` item: a ``whatsapp_ad_conversions`` row written
    once and an ``ads.conversion`` event. Raises :class:`InvalidPayload` without ``id`` or
    ``event_name``."""
    wamid = required_id(item, "id", "automatic event")
    name = text(item.get("event_name"))
    if name is None:
        raise InvalidPayload("automatic event has no event_name")
    custom = item.get("custom_data") if isinstance(item.get("custom_data"), dict) else {}
    event_at = meta_time(item.get("timestamp"))
    row = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "message_wamid": wamid,
        "event_name": name[:64],
        "ctwa_clid": (text(item.get("ctwa_clid")) or "")[:255] or None,
        "currency": (text(custom.get("currency")) or "")[:16] or None,
        "value": _amount(custom.get("value")),
        "event_at": event_at,
        "raw": item,
        "received_at": ctx.received_at,
        "webhook_log_id": ctx.webhook_log_id,
    }
    write = upsert(ctx, whatsapp_ad_conversions, row, ("phone_number_id", "message_wamid", "event_name"))
    payload = {"message_wamid": wamid, "event_name": row["event_name"], "ctwa_clid": row["ctwa_clid"], "currency": row["currency"],
               "value": str(row["value"]) if row["value"] is not None else None}
    # gated on the insert-once row: a redelivery (or a second run of the item) announces nothing
    return StatePlan([write], events=[event(route, "ads.conversion", f"{wamid}:{row['event_name']}", payload, event_at, ctx)], gate=write)


def handle_automatic_events(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per ``automatic_events[]`` item. Raises
    :class:`~wa_core.processing.errors.Unroutable` for a number no organization has."""
    route = ctx.route_phone_number()
    for k, item in enumerate(items(ctx.value, "automatic_events")):
        if not isinstance(item, dict):
            yield (f"automatic_events[{k}]", _raise_invalid("automatic event is not an object"))
            continue
        yield (f"automatic_events[{k}]", Planned(lambda i=item: conversion_plan(ctx, route, i)))
