"""``user_preferences``: a user stops or resumes marketing messages (phone family).

Source: Meta, WhatsApp Cloud API webhook reference "user_preferences" (``user_preferences[{wa_id, [user_id], detail,
category, value: stop|resume, timestamp:<int>}]``, ``contacts[]``; no ``entry.time``; 2026:
``wa_id`` may be empty, ``user_id`` added). One row per (organization, contact, category) in
``whatsapp_user_preferences``, ordered by Meta's ``timestamp``: a late ``resume`` older than
a ``stop`` never re-subscribes the user.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wa_core.db.schema_phone import whatsapp_user_preferences

from ..context import ChangeContext, Route, Unit
from ..errors import InvalidPayload
from ..records import Planned
from ..state import StatePlan
from ..timeparse import meta_time
from .messages import _raise_invalid
from .phone_common import contact_key, contact_units, event, items, text, upsert

#: Meta's value → the opt-out flag (other values, e.g. ``signup``, keep it unknown)
OPTED_OUT = {"stop": True, "resume": False}
_UPDATE = ("phone_number_id", "wa_id", "user_id", "value", "opted_out", "detail", "event_at", "updated_at")


def preference_plan(ctx: ChangeContext, route: Route, item: dict[str, Any]) -> StatePlan:
    """The plan of one ``user_preferences[]`` item: the contact's preference for the category
    (upsert ordered by ``event_at``) and a ``contact.preferences_updated`` event. Raises
    :class:`InvalidPayload` without a ``wa_id``/``user_id`` or a ``value``."""
    key, wa_id, user_id = contact_key(item.get("wa_id"), item.get("user_id"))
    if key is None:
        raise InvalidPayload("user preference names no wa_id or user_id")
    value = text(item.get("value"))
    if value is None:
        raise InvalidPayload("user preference has no value")
    value = value.lower()[:32]
    category = (text(item.get("category")) or "marketing_messages")[:64]
    event_at = meta_time(item.get("timestamp"))
    row = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "contact_key": key,
        "wa_id": wa_id,
        "user_id": user_id,
        "category": category,
        "value": value,
        "opted_out": OPTED_OUT.get(value),
        "detail": text(item.get("detail")),
        "event_at": event_at,
        "updated_at": ctx.received_at,
    }
    write = upsert(ctx, whatsapp_user_preferences, row, ("organization_id", "contact_key", "category"), _UPDATE, "event_at")
    stamp = event_at.isoformat() if event_at else "-"
    spec = event(route, "contact.preferences_updated", f"{key}:{category}:{stamp}:{value}",
                 {"wa_id": wa_id, "user_id": user_id, "category": category, "value": value, "opted_out": OPTED_OUT.get(value)},
                 event_at, ctx)
    return StatePlan([write], events=[spec], gate=write)  # a late, older preference announces nothing


def handle_user_preferences(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per ``contacts[]`` entry (the contact found or created) and per
    ``user_preferences[]`` item. Raises :class:`~wa_core.processing.errors.Unroutable` for a
    number no organization has, :class:`InvalidPayload` for arrays of the wrong type."""
    route = ctx.route_phone_number()
    value = ctx.value
    preferences = items(value, "user_preferences")
    yield from contact_units(ctx, route, value)
    for k, item in enumerate(preferences):
        if not isinstance(item, dict):
            yield (f"user_preferences[{k}]", _raise_invalid("user preference is not an object"))
            continue
        yield (f"user_preferences[{k}]", Planned(lambda i=item: preference_plan(ctx, route, i)))
