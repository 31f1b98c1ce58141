"""The events of the core changes, built from the rows the writers wrote (no SQL).

Every builder returns an :class:`~wa_core.processing.state.EventSpec` whose ``key`` names the
change, so the same change always makes the same event id (:func:`~.outbox.event_id`). The
payloads hold ids and small facts only, never the raw body or message text (the SaaS reads
the rest through the API). Event types and keys:

=============================  ==========================================  =====================================
type                           key                                          when
=============================  ==========================================  =====================================
``message.received``           ``<phone_number_id>:<wamid>``                an inbound message (live or history) is stored
``message.sent``               ``<phone_number_id>:<wamid>``                an outbound one (echo, history) is stored
``message.reaction``           ``<phone_number_id>:<reaction wamid>``       a reaction message is stored
``message.status_updated``     ``<phone_number_id>:<wamid>:<status>``       ``current_status`` moves forward
``message.edited``/``revoked`` ``<phone_number_id>:<revision wamid>``       an edit or revoke is applied to its message
``contact.updated``            ``<contact id>:<seen at>``                   a contact is created or its ids/names/address book change
``connection.*``               ``<connection id>:<event>:<event time>``     an ``account_update`` moves a connection
``onboarding.*``               ``<onboarding id>:<status>``                 an onboarding completes, fails or expires
``history.progress``           ``<phone_number_id>:<phase>:<chunk_order>``  a history chunk is recorded
=============================  ==========================================  =====================================
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wa_core.processing.state import EventSpec

#: account_update connection status → event type
CONNECTION_EVENTS = {
    "active": "connection.connected",
    "offboarded": "connection.offboarded",
    "inactive": "connection.disconnected",
    "disabled": "connection.disconnected",
    "deleted": "connection.disconnected",
}


def message_event(row: dict[str, Any], message_id: Any) -> EventSpec | None:
    """The event of a newly stored ``whatsapp_messages`` row (``message_id``: its id); None
    for an edit or revoke message (its event comes when it is applied: :func:`revision_event`)."""
    mtype = row.get("type")
    if mtype in ("edit", "revoke"):
        return None
    phone, wamid = row["phone_number_id"], row["wamid"]
    payload = {
        "message_id": message_id,
        "wamid": wamid,
        "phone_number_id": phone,
        "contact_id": row.get("contact_id"),
        "direction": row.get("direction"),
        "source": row.get("source"),
        "message_type": mtype,
        "timestamp": row.get("provider_timestamp"),
    }
    if row.get("group_id"):
        payload["group_id"] = row["group_id"]
    if row.get("context_wamid"):
        payload["context_wamid"] = row["context_wamid"]
    if mtype == "reaction":
        kind = "message.reaction"
        payload["target_wamid"] = payload.pop("context_wamid", None)
        payload["emoji"] = row.get("body")
    else:
        kind = "message.received" if row.get("direction") == "inbound" else "message.sent"
    occurred = row.get("provider_timestamp") or row.get("received_at")
    return EventSpec(row["organization_id"], kind, f"{phone}:{wamid}", payload, occurred)


def status_event(
    organization_id: Any, message_id: Any, phone_number_id: str, wamid: str, status: str, occurred_at: datetime | None
) -> EventSpec:
    """``message.status_updated``: the message's ``current_status`` became ``status``."""
    payload = {"message_id": message_id, "wamid": wamid, "phone_number_id": phone_number_id, "status": status, "timestamp": occurred_at}
    return EventSpec(organization_id, "message.status_updated", f"{phone_number_id}:{wamid}:{status}", payload, occurred_at)


def revision_event(
    organization_id: Any, message_id: Any, phone_number_id: str, wamid: str, revision_wamid: str, kind: str, occurred_at: datetime | None
) -> EventSpec:
    """``message.edited`` / ``message.revoked``: a revision was applied to message ``wamid``."""
    payload = {"message_id": message_id, "wamid": wamid, "revision_wamid": revision_wamid, "phone_number_id": phone_number_id, "timestamp": occurred_at}
    kind_name = "message.edited" if kind == "edit" else "message.revoked"
    return EventSpec(organization_id, kind_name, f"{phone_number_id}:{revision_wamid}", payload, occurred_at)


def contact_event(
    organization_id: Any, contact_id: Any, wa_id: str | None, user_id: str | None, created: bool, changed: list[str], seen_at: datetime
) -> EventSpec:
    """``contact.updated``: a contact was created (``created``) or ``changed`` names what moved."""
    payload = {"contact_id": contact_id, "wa_id": wa_id, "user_id": user_id, "created": created, "changed": sorted(changed)}
    return EventSpec(organization_id, "contact.updated", f"{contact_id}:{seen_at.isoformat()}", payload, seen_at)


def connection_event(
    organization_id: Any, connection_id: Any, waba_id: str, status: str, meta_event: str, event_at: datetime
) -> EventSpec | None:
    """``connection.connected`` / ``disconnected`` / ``offboarded`` after an ``account_update``."""
    kind = CONNECTION_EVENTS.get(status)
    if kind is None:
        return None
    payload = {"connection_id": connection_id, "waba_id": waba_id, "status": status, "meta_event": meta_event}
    return EventSpec(organization_id, kind, f"{connection_id}:{meta_event}:{event_at.isoformat()}", payload, event_at)


def onboarding_event(organization_id: Any, onboarding_id: Any, status: str, at: datetime, **extra: Any) -> EventSpec:
    """``onboarding.completed`` / ``failed`` / ``expired`` (``extra``: e.g. connection_id, error_code)."""
    payload = {"onboarding_id": onboarding_id, "status": status, **extra}
    return EventSpec(organization_id, f"onboarding.{status}", f"{onboarding_id}:{status}", payload, at)


def history_event(organization_id: Any, phone_number_id: str, phase: int, chunk_order: int, progress: int | None, messages: int, at: datetime) -> EventSpec:
    """``history.progress``: a coexistence history chunk was recorded."""
    payload = {"phone_number_id": phone_number_id, "phase": phase, "chunk_order": chunk_order, "progress": progress, "messages": messages}
    return EventSpec(organization_id, "history.progress", f"{phone_number_id}:{phase}:{chunk_order}", payload, at)


__all__ = [
    "CONNECTION_EVENTS", "connection_event", "contact_event", "history_event", "message_event", "onboarding_event",
    "revision_event", "status_event",
]
