"""``messages`` field: inbound messages, outbound statuses and ``value.errors``.

Source: Meta webhooks reference, "messages" (value shape, message types, statuses) and
"business-scoped user IDs" (``from``/``wa_id`` optional, ``from_user_id``/``user_id``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from wa_core.db.engine import storable
from wa_core.media.rows import media_write

from ..context import ChangeContext, Route, Unit
from ..errors import InvalidPayload
from ..records import ContactRef, MessagePlan, Planned, RevisionPlan, StatusPlan, check_key, check_values, ignored, prepare
from ..store import clean_id
from ..timeparse import meta_time


def render_body(message: dict[str, Any]) -> str | None:
    """A short text rendering of a message for lists and search (None when it has none)."""
    mtype = message.get("type")
    content = message.get(mtype) if isinstance(mtype, str) else None
    if not isinstance(content, dict):
        content = {}
    if mtype == "text":
        return _str(content.get("body"))
    if mtype in ("image", "video", "document", "sticker", "audio"):
        return _str(content.get("caption")) or _str(content.get("filename"))
    if mtype == "location":
        parts = [_str(content.get("name")), _str(content.get("address"))]
        text = ", ".join(p for p in parts if p)
        return text or (f"{content.get('latitude')},{content.get('longitude')}" if "latitude" in content else None)
    if mtype == "interactive":
        kind = content.get("type")
        reply = content.get(kind) if isinstance(kind, str) else None
        if isinstance(reply, dict):
            return _str(reply.get("title")) or _str(reply.get("body")) or _str(reply.get("name"))
        return None
    if mtype == "button":
        return _str(content.get("text")) or _str(content.get("payload"))
    if mtype == "reaction":
        return _str(content.get("emoji"))
    if mtype == "edit":
        edited = content.get("message")
        return render_body(edited) if isinstance(edited, dict) else None
    if mtype == "system":
        return _str(content.get("body"))
    if mtype == "order":
        return _str(content.get("text"))
    if mtype == "contacts":
        cards = message.get("contacts")
        if isinstance(cards, list):
            names = [c.get("name", {}).get("formatted_name") for c in cards if isinstance(c, dict) and isinstance(c.get("name"), dict)]
            return ", ".join(n for n in names if isinstance(n, str)) or None
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def context_wamid(message: dict[str, Any]) -> str | None:
    """The wamid this message answers or reacts to (``context.id`` or ``reaction.message_id``)."""
    ctx = message.get("context")
    if isinstance(ctx, dict) and isinstance(ctx.get("id"), str):
        return ctx["id"]
    reaction = message.get("reaction")
    if isinstance(reaction, dict) and isinstance(reaction.get("message_id"), str):
        return reaction["message_id"]
    return None


def first_error(item: dict[str, Any]) -> tuple[int | None, str | None]:
    """``errors[0].code`` and ``title`` of a message or status, if any."""
    errors = item.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        title = errors[0].get("title") or errors[0].get("message")
        return _error_code(code), _str(title)
    return None, None


def message_errors(message: dict[str, Any], value_errors: list[Any] = ()) -> tuple[int | None, str | None, list[dict[str, Any]] | None]:
    """(code, title, errors) kept on a message: every ``errors[]`` object of the message
    (``scope: "message"``, Meta §2.4 case 2) and of the ``value`` beside it (``scope:
    "value"``, §2.4 case 1, e.g. 130429), each as Meta sent it plus its scope; None when
    there are none. ``code``/``title`` come from the message's first error, else from the
    value's first error."""
    own = message.get("errors") if isinstance(message.get("errors"), list) else []
    kept = [{"scope": "message", **e} for e in own if isinstance(e, dict)]
    kept += [{"scope": "value", **e} for e in value_errors if isinstance(e, dict)]
    code, title = first_error(message)
    if code is None and title is None and value_errors:
        code, title = first_error({"errors": value_errors})
    return code, title, kept or None


def _error_code(code: Any) -> int | None:
    """Meta's error code as an int (fits a 32-bit column), None when absent or not a code."""
    if isinstance(code, bool):
        return None
    try:
        value = int(code) if isinstance(code, (int, str)) else None
    except ValueError:
        return None
    return value if value is not None and -(2**31) <= value < 2**31 else None


def _contact_index(value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    contacts = value.get("contacts")
    if isinstance(contacts, list):
        for contact in contacts:
            if not isinstance(contact, dict):
                continue
            for key in ("wa_id", "user_id"):
                if contact.get(key):
                    index[str(contact[key])] = contact
    return index


def inbound_plan(
    ctx: ChangeContext, route: Route, message: dict[str, Any], contacts: dict[str, dict[str, Any]], value_errors: list[Any] = ()
) -> MessagePlan | RevisionPlan:
    """The plan of one inbound ``messages[]`` item: the message and its sender as a contact
    (a reaction also writes its reaction row; a media message brings its ``whatsapp_media`` row,
    :func:`~wa_core.media.rows.media_write`); an ``edit`` or ``revoke`` is a
    :class:`RevisionPlan` of the original, not a message. ``value_errors``: the value's
    ``errors[]`` beside the messages, kept on each (:func:`message_errors`). Raises
    :class:`~wa_core.processing.errors.InvalidPayload` or
    :class:`~wa_core.processing.records.InvalidValue` for an item that can never be stored."""
    wamid = message.get("id")
    if not isinstance(wamid, str) or not wamid:
        raise InvalidPayload("message has no id (wamid)")
    sender = _str(message.get("from"))
    sender_user_id = _str(message.get("from_user_id"))
    contact = contacts.get(sender or "") or contacts.get(sender_user_id or "") or {}
    profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
    contact_ref = contact_plan(
        ctx,
        route,
        wa_id=contact.get("wa_id") or sender,
        user_id=contact.get("user_id") or sender_user_id,
        profile_name=_str(profile.get("name")),
    )
    mtype = message.get("type")
    mtype = mtype[:64] if isinstance(mtype, str) and mtype else "unknown"
    provider_time = meta_time(message.get("timestamp"))
    if mtype in ("edit", "revoke"):
        return revision_plan(ctx, route, message, contact_ref)
    code, title, errors = message_errors(message, value_errors)
    group_id = message.get("group_id")
    values = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "wamid": wamid,
        "direction": "inbound",
        "source": "cloud_api",
        "type": mtype,
        "body": render_body(message),
        "context_wamid": context_wamid(message),
        "group_id": str(group_id)[:255] if isinstance(group_id, (str, int)) and group_id else None,
        "raw": message,
        "error_code": code,
        "error_title": title,
        "errors": errors,
        "status_rank": 0,
        "provider_timestamp": provider_time,
        "received_at": ctx.received_at,
        "webhook_log_id": ctx.webhook_log_id,
    }
    plan = MessagePlan(prepare("whatsapp_messages", values, ("wamid",), ctx.clean), contact_ref)
    media = media_write(  # its file, downloaded later (§9)
        organization_id=route.organization_id, connection_id=route.connection_id, phone_number_id=route.phone_number_id,
        wamid=wamid, message=message, source="cloud_api", received_at=ctx.received_at, clean=ctx.clean,
    )
    if media is not None:
        plan.extra.append(media)
    reactor = contact.get("wa_id") or sender or contact.get("user_id") or sender_user_id
    if mtype == "reaction" and isinstance(message.get("reaction"), dict) and reactor:
        target = message["reaction"].get("message_id")
        if not isinstance(target, str) or not target:
            raise InvalidPayload("reaction without message_id")
        emoji = message["reaction"].get("emoji")
        reaction = {
            "organization_id": route.organization_id,
            "phone_number_id": route.phone_number_id,
            "target_wamid": target,
            "reactor": str(reactor),
            "emoji": (emoji if isinstance(emoji, str) else None) or None,
            "reaction_wamid": wamid,
            "provider_timestamp": provider_time,
            "updated_at": ctx.received_at,
        }
        plan.reaction = prepare("whatsapp_message_reactions", reaction, ("target_wamid", "reactor"), ctx.clean)
    elif mtype == "interactive" and contact_ref is not None:  # a call permission reply also sets the contact's permission
        from .calls import permission_reply

        extra, events = permission_reply(ctx, route, message, contact_ref.wa_id, contact_ref.user_id)
        plan.extra += extra
        plan.events += events
    return plan


def revision_plan(ctx: ChangeContext, route: Route, message: dict[str, Any], contact: ContactRef | None) -> RevisionPlan:
    """The plan of an ``edit`` (``edit{original_message_id, message{…}}``) or ``revoke``
    (``revoke{original_message_id}``) item, inbound or echoed (Meta §2.2, §4): the revision
    row keyed by the item's own wamid, applied to ``original_message_id`` once both are
    stored (:func:`~wa_core.processing.store.revision_updates`). Raises
    :class:`~wa_core.processing.errors.InvalidPayload` without an id or original id."""
    wamid, kind = message.get("id"), message.get("type")
    if not isinstance(wamid, str) or not wamid:
        raise InvalidPayload("message has no id (wamid)")
    revision = message.get(kind)
    if not isinstance(revision, dict):
        raise InvalidPayload(f"{kind} without an {kind} object")
    original = revision.get("original_message_id")
    if not isinstance(original, str) or not original:
        raise InvalidPayload(f"{kind} without original_message_id")
    edited = revision.get("message") if isinstance(revision.get("message"), dict) else {}
    values = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "original_wamid": original,
        "revision_wamid": wamid,
        "kind": kind,
        "body": render_body(edited) if kind == "edit" else None,
        "raw": message,
        "provider_timestamp": meta_time(message.get("timestamp")),
        "received_at": ctx.received_at,
    }
    return RevisionPlan(prepare("whatsapp_message_revisions", values, ("original_wamid", "revision_wamid"), ctx.clean), contact)


def contact_plan(
    ctx: ChangeContext, route: Route, *, wa_id: Any = None, user_id: Any = None, seen_at: datetime | None = None, **profile: Any
) -> ContactRef | None:
    """The contact an item names in the route's organization, seen at ``seen_at`` (default:
    our arrival time); None when it names no id. Ids as
    :func:`~wa_core.processing.store.clean_id` reads them, checked like a row."""
    wa_id, user_id = clean_id(wa_id), clean_id(user_id)
    if not wa_id and not user_id:
        return None
    if not ctx.clean:
        check_key(wa_id)
        check_key(user_id)
        profile = storable(profile)
    ref = ContactRef(route.organization_id, wa_id, user_id, seen_at or ctx.received_at, **profile)
    check_values("whatsapp_contacts", {"wa_id": wa_id, "user_id": user_id, **profile})
    return ref


def status_plan(ctx: ChangeContext, route: Route, status: dict[str, Any]) -> StatusPlan:
    """The plan of one ``statuses[]`` item (a status Meta adds later is kept, unranked)."""
    wamid, name = status.get("id"), status.get("status")
    if not isinstance(wamid, str) or not wamid or not isinstance(name, str) or not name:
        raise InvalidPayload("status has no id or no status")
    code, title = first_error(status)
    values = {
        "organization_id": route.organization_id,
        "phone_number_id": route.phone_number_id,
        "wamid": wamid,
        "status": name.lower()[:16],
        "recipient_id": _str(status.get("recipient_id")),
        "recipient_user_id": _str(status.get("recipient_user_id")),
        "error_code": code,
        "error_title": title,
        "pricing": status.get("pricing") if isinstance(status.get("pricing"), dict) else None,
        "raw": status,
        "provider_timestamp": meta_time(status.get("timestamp")),
        "received_at": ctx.received_at,
        "webhook_log_id": ctx.webhook_log_id,
    }
    return StatusPlan(prepare("whatsapp_message_statuses", values, ("wamid",), ctx.clean))


def handle_messages(ctx: ChangeContext) -> Iterable[Unit]:
    """Yield one unit per ``messages[]`` item, ``statuses[]`` item and ``errors[]`` entry.

    Raises :class:`~wa_core.processing.errors.Unroutable` (for the whole change) when
    ``metadata.phone_number_id`` belongs to no organization.
    """
    value = ctx.value
    route = ctx.route_phone_number()
    contacts = _contact_index(value)
    messages, statuses, errors = (list_field(value, key) for key in ("messages", "statuses", "errors"))
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            yield (f"messages[{k}]", _raise_invalid("message is not an object"))
            continue
        yield (f"messages[{k}]", Planned(lambda m=message: inbound_plan(ctx, route, m, contacts, errors)))
    for k, status in enumerate(statuses):
        if not isinstance(status, dict):
            yield (f"statuses[{k}]", _raise_invalid("status is not an object"))
            continue
        yield (f"statuses[{k}]", Planned(lambda s=status: status_plan(ctx, route, s)))
    for k, _error in enumerate(errors):
        # value-level errors (e.g. 130429): kept on the messages beside them (message_errors)
        yield (f"errors[{k}]", ignored)
    if not (messages or statuses or errors):
        yield ("value", ignored)


def list_field(container: dict[str, Any], key: str) -> list[Any]:
    """``container[key]`` when it is a list, ``[]`` when absent or null.

    Raises :class:`InvalidPayload` when present with another type: a ``messages`` object or
    string is a payload we cannot read, never something to ignore silently.
    """
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPayload(f"{key} is a {type(value).__name__}, not an array")
    return value


def _raise_invalid(message: str) -> Planned:
    def build() -> MessagePlan:
        raise InvalidPayload(message)

    return Planned(build)
