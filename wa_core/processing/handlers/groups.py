"""Group fields: ``group_lifecycle_update``, ``group_participants_update`` (also spelled
``group_participant_update``), ``group_settings_update``, ``group_status_update``.

Source: Meta, WhatsApp Cloud API "Groups" reference and "Webhooks for Groups API" (the field and type names differ between
Meta pages, so both spellings are accepted, and an item is read by its ``type``, not by the
field it came in). Common shape: ``groups[{timestamp, group_id, type, [request_id], …}]``;
``timestamp`` is an integer or a string (a placeholder in some of Meta's examples: then no
time). The shapes of ``group_settings_update`` and ``group_status_update`` items are not
confirmed by Meta's text: the ``subject``/``description`` keys and
YCloud's ``settings[{name, text, updateSuccessful}]`` are both read; ``group_suspend`` /
``group_suspend_cleared`` set the suspended flag.

State: ``whatsapp_groups`` (one row per group, three facets each ordered by its own Meta
time: lifecycle, subject/description, suspension; the invite link and join mode, which
only the creation brings, are set when given), ``whatsapp_group_participants`` (one row per
participant, ordered by Meta's time: a late add never undoes a newer removal) and every item
once in ``whatsapp_group_events``. Group messages already thread by ``group_id``
(``whatsapp_messages.group_id``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from wa_core.db.schema_phone import whatsapp_group_events, whatsapp_group_participants, whatsapp_groups

from ..context import ChangeContext, Route, Unit
from ..errors import InvalidPayload
from ..records import Planned
from ..state import RowWrite, StatePlan
from ..timeparse import meta_time
from .messages import _raise_invalid, first_error
from .phone_common import contact_key, event, fill, items, required_id, text, upsert

#: the field names Meta uses for groups (both spellings of the participants field)
GROUP_FIELDS = ("group_lifecycle_update", "group_participants_update", "group_participant_update", "group_settings_update", "group_status_update")
LIFECYCLE = {"group_create": "created", "group_delete": "deleted"}
#: participant item types (both spellings) → (state of the listed participants, the list key)
PARTICIPANTS = {
    "group_participants_add": ("member", "added_participants"),
    "group_add_participants": ("member", "added_participants"),
    "group_participants_remove": ("removed", "removed_participants"),
    "group_remove_participants": ("removed", "removed_participants"),
}
JOIN_REQUESTS = {"group_join_request_created": "join_requested", "group_join_request_revoked": "join_request_revoked"}
SUSPENSION = {"group_suspend": True, "group_suspend_cleared": False}
_GROUP_KEY = ("phone_number_id", "group_id")
_PARTICIPANT_KEY = ("phone_number_id", "group_id", "participant_key")
_SETTINGS = ("subject", "description", "invite_link", "join_approval_mode")
_ORDERED_SETTINGS = ("subject", "description")


def _event_key(kind: str, event_at: Any, request_id: str | None, item: dict[str, Any]) -> str:
    """Stable for one item (a redelivery gives the same key), distinct for two items."""
    digest = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode("utf-8", "replace")).hexdigest()[:16]
    stamp = int(event_at.timestamp()) if event_at else "-"
    return f"{kind[:64]}:{stamp}:{(request_id or '')[:128]}:{digest}"


def _settings(item: dict[str, Any], kind: str) -> dict[str, Any]:
    """The group settings an item gives (only those it names)."""
    given: dict[str, Any] = {}
    for name in _SETTINGS:
        value = item.get(name)
        if isinstance(value, str):
            given[name] = value[:32] if name == "join_approval_mode" else value
    for setting in item.get("settings") if isinstance(item.get("settings"), list) else ():  # YCloud's normalized copy
        if isinstance(setting, dict) and setting.get("name") in ("subject", "description") and setting.get("updateSuccessful") is not False:
            if isinstance(setting.get("text"), str):
                given[setting["name"]] = setting["text"]
    return given if kind in ("group_create", "group_settings_update") else {}


def _participant_rows(ctx: ChangeContext, base: dict[str, Any], people: list[Any], state: str, item: dict[str, Any], event_at: Any) -> tuple[list[RowWrite], list[str]]:
    rows, keys = [], []
    for person in people:
        if not isinstance(person, dict):
            continue
        key, wa_id, user_id = contact_key(person.get("wa_id"), person.get("user_id"))
        if key is None:
            continue
        row = {
            **base,
            "participant_key": key,
            "state": state,
            "reason": (text(item.get("reason")) or "")[:64] or None,
            "initiated_by": (text(item.get("initiated_by")) or "")[:32] or None,
            "join_request_id": (text(item.get("join_request_id")) or "")[:255] or None,
            "event_at": event_at,
            "updated_at": ctx.received_at,
        }
        ids = {"wa_id": wa_id, "user_id": user_id, "username": text(person.get("username")), "country_code": text(person.get("country_code"))}
        rows.append(upsert(ctx, whatsapp_group_participants, {**row, **ids}, _PARTICIPANT_KEY,
                           ("state", "reason", "initiated_by", "join_request_id", "event_at", "updated_at"), "event_at"))
        ids_write = fill(ctx, whatsapp_group_participants, {**row, **dict.fromkeys(ids)}, _PARTICIPANT_KEY, ids)
        if ids_write is not None:
            rows.append(ids_write)
        keys.append(key)
    return rows, keys


def group_plan(ctx: ChangeContext, route: Route, item: dict[str, Any]) -> StatePlan:
    """The plan of one ``groups[]`` item: the group's facet the item's ``type`` changes (or
    its participants), its history row and a ``group.updated`` or
    ``group.participants_changed`` event, announced only when the item's first ordered write
    (lifecycle, subject/description, suspension, first participant; else the history row)
    moved its row. An unknown ``type`` writes only the history row.
    Raises :class:`~wa_core.processing.errors.InvalidPayload` without ``group_id`` or
    ``type``."""
    group_id = required_id(item, "group_id", "group")
    kind = text(item.get("type"))
    if kind is None:
        raise InvalidPayload("group item has no type")
    event_at = meta_time(item.get("timestamp"))
    request_id = text(item.get("request_id"))
    base = {"organization_id": route.organization_id, "phone_number_id": route.phone_number_id, "group_id": group_id}
    group = {**base, "created_at": ctx.received_at, "updated_at": ctx.received_at}
    rows: list[RowWrite] = []
    facets: list[RowWrite] = []  # the ordered writes whose move the event announces (first: its gate)
    payload: dict[str, Any] = {"group_id": group_id, "type": kind, "request_id": request_id}
    event_type = "group.updated"
    code, title = first_error(item)
    if kind in LIFECYCLE:
        lifecycle = "create_failed" if kind == "group_create" and code is not None else LIFECYCLE[kind]
        values = {**group, "lifecycle": lifecycle, "lifecycle_at": event_at, "request_id": (request_id or "")[:255] or None,
                  "error_code": code, "error_title": title}
        facets.append(upsert(ctx, whatsapp_groups, values, _GROUP_KEY,
                             ("lifecycle", "lifecycle_at", "request_id", "error_code", "error_title", "updated_at"), "lifecycle_at"))
        rows.append(facets[-1])
        payload["lifecycle"] = lifecycle
    settings = _settings(item, kind) if code is None or kind == "group_settings_update" else {}
    ordered = {k: v for k, v in settings.items() if k in _ORDERED_SETTINGS}
    if ordered:  # what a settings update changes: ordered by settings_at
        values = {**group, **ordered, "settings_at": event_at}
        facets.append(upsert(ctx, whatsapp_groups, values, _GROUP_KEY, (*sorted(ordered), "settings_at", "updated_at"), "settings_at"))
        rows.append(facets[-1])
    link = fill(ctx, whatsapp_groups, group, _GROUP_KEY, {k: v for k, v in settings.items() if k not in _ORDERED_SETTINGS})
    if link is not None:  # the invite link and join mode only come with the creation: set when given
        rows.append(link)
    if settings:
        payload["settings"] = sorted(settings)
    if kind in SUSPENSION:
        values = {**group, "suspended": SUSPENSION[kind], "status_at": event_at}
        facets.append(upsert(ctx, whatsapp_groups, values, _GROUP_KEY, ("suspended", "status_at", "updated_at"), "status_at"))
        rows.append(facets[-1])
        payload["suspended"] = SUSPENSION[kind]
    if kind in PARTICIPANTS or kind in JOIN_REQUESTS:
        rows.append(upsert(ctx, whatsapp_groups, group, _GROUP_KEY))  # the group, created once if unknown yet
        if kind in PARTICIPANTS:
            state, list_key = PARTICIPANTS[kind]
            people = items(item, list_key)
        else:
            state, people = JOIN_REQUESTS[kind], [item]
        participant_rows, keys = _participant_rows(ctx, base, people, state, item, event_at)
        rows += participant_rows
        facets += [w for w in participant_rows if w.newer]  # the ordered state rows, not the ids fills
        payload.update(state=state, participants=keys)
        event_type = "group.participants_changed"
    event_key = _event_key(kind, event_at, request_id, item)
    history = {**base, "field": ctx.field[:64], "type": kind[:64], "event_key": event_key, "request_id": (request_id or "")[:255] or None,
               "event_at": event_at, "raw": item, "received_at": ctx.received_at, "webhook_log_id": ctx.webhook_log_id}
    rows.append(upsert(ctx, whatsapp_group_events, history, ("phone_number_id", "group_id", "event_key")))
    facets.append(rows[-1])  # no ordered write (an invite link only): announced once, with the history row
    known = kind in LIFECYCLE or kind in PARTICIPANTS or kind in JOIN_REQUESTS or kind in SUSPENSION or kind == "group_settings_update"
    events = [event(route, event_type, f"{group_id}:{event_key}", payload, event_at, ctx)] if known else []
    # gated: a late, older item (an add after the newer removal) keeps its history row but
    # announces nothing; of several participants, the first one's row decides
    return StatePlan(rows, events=events, gate=facets[0])


def handle_groups(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per ``groups[]`` item of any group field (:data:`GROUP_FIELDS`). Raises
    :class:`~wa_core.processing.errors.Unroutable` for a number no organization has."""
    route = ctx.route_phone_number()
    for k, item in enumerate(items(ctx.value, "groups")):
        if not isinstance(item, dict):
            yield (f"groups[{k}]", _raise_invalid("group item is not an object"))
            continue
        yield (f"groups[{k}]", Planned(lambda i=item: group_plan(ctx, route, i)))
