"""Coexistence fields: ``history``, ``smb_message_echoes`` and ``smb_app_state_sync``.

Source: Meta webhooks reference, "history", "smb_message_echoes", "smb_app_state_sync";
"Onboarding WhatsApp Business app users" (coexistence). Echoes are messages the business
sent from the WhatsApp Business app: stored as outbound, never treated as inbound.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wa_core.coexistence_sync import contacts_received, record_history_chunk, record_history_declined
from wa_core.db.engine import insert_ignore
from wa_core.db.schema import whatsapp_history_chunks
from wa_core.events.outbox import add_events
from wa_core.events.produce import history_event
from wa_core.media.rows import media_write

from ..context import ChangeContext, Route, Unit
from ..errors import InvalidPayload
from ..records import ContactPlan, MessagePlan, Planned, RevisionPlan, ignored, prepare
from ..store import STATUS_RANK
from ..timeparse import meta_time
from .messages import _raise_invalid, _str, contact_plan, context_wamid, list_field, message_errors, render_body, revision_plan


def stored_plan(
    ctx: ChangeContext,
    route: Route,
    message: dict[str, Any],
    *,
    source: str,
    direction: str,
    counterpart: str | None,
    counterpart_user_id: str | None = None,
) -> MessagePlan | RevisionPlan:
    """The plan of a history message or an echo: the message (its history status as its
    current status, its ``errors[]`` kept) and the customer as a contact (``counterpart``
    phone, else its business-scoped ``counterpart_user_id``, §2.5). A later item with the
    media of an earlier ``media_placeholder`` (same wamid) fills it. An echoed ``edit`` or
    ``revoke`` (made in the WhatsApp Business app) is a :class:`RevisionPlan` of the
    original, as an inbound one is. A history media message also brings its
    ``whatsapp_media`` row (§9.5)."""
    wamid = message.get("id")
    if not isinstance(wamid, str) or not wamid:
        raise InvalidPayload("message has no id (wamid)")
    contact = contact_plan(ctx, route, wa_id=counterpart, user_id=counterpart_user_id)
    if message.get("type") in ("edit", "revoke"):
        return revision_plan(ctx, route, message, contact)
    code, title, errors = message_errors(message)
    history_context = message.get("history_context")
    history_status = history_context.get("status") if isinstance(history_context, dict) else None
    # a status Meta does not send (or an absurd one) is not a current status: stored as none
    history_status = history_status.lower() if isinstance(history_status, str) and len(history_status) <= 16 else None
    mtype = message.get("type")
    values: dict[str, Any] = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "wamid": wamid,
        "direction": direction,
        "source": source,
        "type": mtype[:64] if isinstance(mtype, str) and mtype else "unknown",  # as inbound messages
        "body": render_body(message),
        "context_wamid": context_wamid(message),
        "raw": message,
        "error_code": code,
        "error_title": title,
        "errors": errors,
        "current_status": history_status,
        "status_rank": STATUS_RANK.get(history_status or "", 0),
        "provider_timestamp": meta_time(message.get("timestamp")),
        "received_at": ctx.received_at,
        "webhook_log_id": ctx.webhook_log_id,
    }
    values = prepare("whatsapp_messages", values, ("wamid",), ctx.clean)
    plan = MessagePlan(values, contact, fill_placeholder=values["type"] != "media_placeholder")
    media = None if source != "history" else media_write(  # history media: downloaded like inbound media (§9.5)
        organization_id=route.organization_id, connection_id=route.connection_id, phone_number_id=route.phone_number_id,
        wamid=wamid, message=message, source=source, received_at=ctx.received_at, clean=ctx.clean,
    )
    if media is not None:
        plan.extra.append(media)
    return plan


def handle_smb_message_echoes(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per ``message_echoes[]`` item: an outbound message (an edit or revoke: a
    revision of the original), the contact taken from ``to``, else ``to_user_id``."""
    route = ctx.route_phone_number()
    echoes = list_field(ctx.value, "message_echoes")
    if not echoes:
        yield ("message_echoes", ignored)
        return
    for k, echo in enumerate(echoes):
        if not isinstance(echo, dict):
            yield (f"message_echoes[{k}]", _raise_invalid("echo is not an object"))
            continue
        yield (
            f"message_echoes[{k}]",
            Planned(lambda e=echo: stored_plan(ctx, route, e, source="business_app_echo", direction="outbound",
                                               counterpart=_str(e.get("to")), counterpart_user_id=_str(e.get("to_user_id")))),
        )


def handle_history(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per history message, walking chunks in ``chunk_order``.

    A message is outbound when it has ``to`` or its ``from`` is the business number; the
    contact is the thread id. Media placeholders are kept as ``media_placeholder`` rows. A
    declined history (``errors`` with 2593109) is one ignored unit. A media asset webhook
    (``value.messages[]`` instead of ``history[]``, §9.5) is one unit per message.
    """
    route = ctx.route_phone_number()
    chunks = list_field(ctx.value, "history")
    assets = list_field(ctx.value, "messages")  # a history media asset: value.messages[] (§9.5)
    if not chunks and not assets:
        yield ("history", ignored)
        return
    for k, message in enumerate(assets):
        yield _history_unit(ctx, route, f"messages[{k}]", message, thread_id=None)
    def order(chunk: Any) -> int:
        meta = chunk.get("metadata") if isinstance(chunk, dict) else None
        value = meta.get("chunk_order") if isinstance(meta, dict) else None
        return value if isinstance(value, int) else 0

    for c, chunk in sorted(enumerate(chunks), key=lambda pair: order(pair[1])):
        if not isinstance(chunk, dict):
            yield (f"history[{c}]", _raise_invalid("history chunk is not an object"))
            continue
        if chunk.get("errors"):
            yield (f"history[{c}].errors", lambda ch=chunk: _history_declined(ctx, route, ch))
            continue
        if isinstance(chunk.get("metadata"), dict):
            yield (f"history[{c}].metadata", lambda ch=chunk: _history_chunk(ctx, route, ch))
        try:
            media, threads = list_field(chunk, "messages"), list_field(chunk, "threads")
        except InvalidPayload as exc:
            yield (f"history[{c}]", _raise_invalid(str(exc)))
            continue
        for k, message in enumerate(media):
            yield _history_unit(ctx, route, f"history[{c}].messages[{k}]", message, thread_id=None)
        for t, thread in enumerate(threads):
            if not isinstance(thread, dict):
                yield (f"history[{c}].threads[{t}]", _raise_invalid("thread is not an object"))
                continue
            thread_id = _str(thread.get("id"))
            try:
                messages = list_field(thread, "messages")
            except InvalidPayload as exc:
                yield (f"history[{c}].threads[{t}]", _raise_invalid(str(exc)))
                continue
            for k, message in enumerate(messages):
                yield _history_unit(ctx, route, f"history[{c}].threads[{t}].messages[{k}]", message, thread_id=thread_id)


def _history_unit(ctx: ChangeContext, route: Route, label: str, message: Any, *, thread_id: str | None) -> Unit:
    """One history message as a unit: outbound when it has ``to`` or comes from the business
    number; the contact is the thread id, else the other party."""
    if not isinstance(message, dict):
        return (label, _raise_invalid("message is not an object"))
    business = route.display_phone_number
    outbound = bool(message.get("to")) or (business is not None and message.get("from") == business)
    counterpart = thread_id or _str(message.get("to") if outbound else message.get("from"))
    return (
        label,
        Planned(lambda: stored_plan(ctx, route, message, source="history", direction="outbound" if outbound else "inbound", counterpart=counterpart)),
    )


def _history_chunk(ctx: ChangeContext, route: Route, chunk: dict[str, Any]) -> str:
    """Record a chunk (idempotency key: phone number, phase, ``chunk_order``) and the number's
    history sync state (:func:`~wa_core.coexistence_sync.record_history_chunk`: receiving;
    ``progress == 100`` marks it complete)."""
    meta = chunk["metadata"]
    phase, order, progress = meta.get("phase"), meta.get("chunk_order"), meta.get("progress")
    if not isinstance(phase, int) or not isinstance(order, int):
        raise InvalidPayload("history metadata without integer phase and chunk_order")
    progress = progress if isinstance(progress, int) and 0 <= progress <= 100 else None
    threads = chunk.get("threads") if isinstance(chunk.get("threads"), list) else []
    count = sum(len(t.get("messages") or []) for t in threads if isinstance(t, dict) and isinstance(t.get("messages"), list))
    recorded = insert_ignore(
        ctx.conn,
        whatsapp_history_chunks,
        {
            "organization_id": route.organization_id,
            "phone_number_id": route.phone_number_id,
            "phase": phase,
            "chunk_order": order,
            "progress": progress,
            "messages": count,
            "received_at": ctx.received_at,
            "webhook_log_id": ctx.webhook_log_id,
        },
        ["phone_number_id", "phase", "chunk_order"],
    )
    if recorded:
        add_events(ctx.conn, [history_event(route.organization_id, route.phone_number_id, phase, order, progress, count, ctx.received_at)])
    record_history_chunk(ctx.conn, route.organization_id, route.phone_number_id, progress, ctx.received_at)
    return "processed"


def _history_declined(ctx: ChangeContext, route: Route, chunk: dict[str, Any]) -> str:
    """The business declined to share its chat history (error 2593109): the number's history
    sync is declined (:func:`~wa_core.coexistence_sync.record_history_declined`)."""
    errors = chunk.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    reason = f"{first.get('code', '?')}: {first.get('title') or first.get('message') or 'history not shared'}"
    record_history_declined(ctx.conn, route.organization_id, route.phone_number_id, reason, ctx.received_at)
    return "processed"


def handle_smb_app_state_sync(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per ``state_sync[]`` item: contact ``add`` (also an edit) or ``remove``."""
    route = ctx.route_phone_number()
    items = list_field(ctx.value, "state_sync")
    if not items:
        yield ("state_sync", ignored)
        return
    for k, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") != "contact" or not isinstance(item.get("contact"), dict):
            yield (f"state_sync[{k}]", ignored)
            continue
        yield (f"state_sync[{k}]", Planned(lambda i=item: contact_sync_plan(ctx, route, i)))


def contact_sync_plan(ctx: ChangeContext, route: Route, item: dict[str, Any]) -> ContactPlan | None:
    """The plan of one ``state_sync[]`` contact: ``add`` (also an edit) puts the contact in the
    address book with its names, ``remove`` takes it out; another action is ignored (None).
    Either way the number's contact sync is ``receiving``
    (:func:`~wa_core.coexistence_sync.contacts_received`)."""
    contact = item["contact"]
    phone = _str(contact.get("phone_number"))
    if not phone:
        raise InvalidPayload("state_sync contact has no phone_number")
    action = item.get("action")
    metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    seen_at = meta_time(metadata.get("timestamp")) or ctx.received_at
    state = [contacts_received(route.organization_id, route.phone_number_id, ctx.received_at)]
    if action == "remove":
        return ContactPlan(contact_plan(ctx, route, wa_id=phone, in_address_book=False, seen_at=seen_at), state)
    if action == "add":
        return ContactPlan(
            contact_plan(
                ctx,
                route,
                wa_id=phone,
                profile_name=_str(contact.get("full_name")),
                first_name=_str(contact.get("first_name")),
                in_address_book=True,
                seen_at=seen_at,
            ),
            state,
        )
    return None
