"""``account_update``: partner and coexistence lifecycle events change the connection's state.

Source: Meta webhooks reference, "account_update" (events, ``waba_info``); "Reconnect
offboarded coexistence clients" (``ACCOUNT_OFFBOARDED``/``ACCOUNT_RECONNECTED``). For
``PARTNER_*`` events ``entry.id`` is the *partner's* business id, so the WABA comes from
``value.waba_info.waba_id``; coexistence events carry no ``waba_info`` and ``entry.id`` is
the WABA.

Events are applied in Meta's order, not ours: an event older (``entry.time``) than the last
one applied to the connection is recorded as ignored, so redeliveries and out-of-order
arrivals cannot flip a connection back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from wa_core.bindings import bind_waba
from wa_core.db.schema import as_utc, utcnow, whatsapp_configs, whatsapp_connections, whatsapp_onboarding

from wa_core.events.outbox import add_events
from wa_core.events.produce import connection_event, onboarding_event

from ..context import ChangeContext, Unit
from ..errors import InvalidPayload, Unroutable
from ..records import ignored
from ..timeparse import meta_time

log = logging.getLogger("wa_core.processing")

#: event → (connection status, config status, reason). ``None`` leaves configs alone.
TRANSITIONS: dict[str, tuple[str, str | None, str]] = {
    "PARTNER_ADDED": ("active", "connected", "WABA shared with the app (PARTNER_ADDED)"),
    "PARTNER_REMOVED": ("inactive", "disconnected", "WABA unshared or disconnected in the Business app (PARTNER_REMOVED)"),
    "PARTNER_APP_UNINSTALLED": ("inactive", "disconnected", "the customer removed the app (PARTNER_APP_UNINSTALLED)"),
    "ACCOUNT_OFFBOARDED": ("offboarded", "offboarded", "coexistence companion offboarded (ACCOUNT_OFFBOARDED)"),
    "ACCOUNT_RECONNECTED": ("active", "connected", "coexistence companion reconnected (ACCOUNT_RECONNECTED)"),
    "ACCOUNT_DELETED": ("deleted", "disconnected", "WABA deleted (ACCOUNT_DELETED)"),
}


def _disabled_transition(value: dict[str, Any]) -> tuple[str, str | None, str] | None:
    ban = value.get("ban_info") if isinstance(value.get("ban_info"), dict) else {}
    state = ban.get("waba_ban_state")
    if state == "DISABLE":
        return ("disabled", "disabled", f"WABA disabled (DISABLED_UPDATE, {ban.get('waba_ban_date') or 'no date'})")
    if state == "REINSTATE":
        return ("active", "connected", "WABA reinstated (DISABLED_UPDATE)")
    return None  # SCHEDULE_FOR_DISABLE and unknown states: kept in the body, no state change


def waba_id_of(entry: dict[str, Any], value: dict[str, Any]) -> str | None:
    """The WABA an ``account_update`` is about: ``waba_info.waba_id``, else ``entry.id``."""
    info = value.get("waba_info")
    if "waba_info" in value:
        # PARTNER_* events: entry.id is the partner's business id, never fall back to it
        waba = info.get("waba_id") if isinstance(info, dict) else None
        return _id(waba)
    if str(value.get("event", "")).startswith("PARTNER_") and value.get("event") not in ("PARTNER_REMOVED",):
        return None  # a PARTNER_* event without waba_info names no WABA
    return _id(entry.get("id"))


def _id(value: Any) -> str | None:
    """A Meta id as a string: digits in a string or an int, never a bool, dict or list."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if text and len(text) <= 64 else None


def _apply(ctx: ChangeContext, event: str, transition: tuple[str, str | None, str]) -> str:
    value = ctx.value
    waba_id = waba_id_of(ctx.entry, value)
    if not waba_id:
        raise InvalidPayload(f"{event} without waba_info.waba_id or entry.id")
    connection = ctx.connection_for_waba(waba_id)
    if connection is None and event == "PARTNER_ADDED":
        connection = _bind_by_owner_business(ctx, waba_id)
    if connection is None:
        # The binding is made by onboarding (or an operator); until then, retry.
        if event == "PARTNER_ADDED":
            log.warning("unclaimed WABA %s: PARTNER_ADDED with no organization (the unclaimed_wabas check alerts); assign it with the assign_waba job or the admin API", waba_id)
        raise Unroutable(f"no organization is bound to WABA {waba_id} ({event})")
    # locked until the commit: two batches applying account_updates of one WABA at once then
    # decide in turn on the committed row, so an older event never overwrites a newer one and
    # a move is announced once (break-it #1 of the event feed); SQLite has one writer anyway
    c = whatsapp_connections.c
    connection = ctx.conn.execute(sa.select(whatsapp_connections).where(c.id == connection.id).with_for_update()).first()
    event_at = meta_time(ctx.entry.get("time"))
    if event_at is None:
        # Meta always sends entry.time here; without it we cannot order events, so a
        # redelivery of the event already applied must not move the connection's times.
        if connection.last_event == event:
            return "ignored"
        event_at = ctx.received_at
    last = as_utc(connection.last_event_at)
    if last is not None and event_at < last:
        return "ignored"  # an older event than the one already applied
    status, config_status, reason = transition
    info = value.get("waba_info") if isinstance(value.get("waba_info"), dict) else {}
    extra = value.get("disconnection_info")
    if isinstance(extra, dict) and extra.get("reason"):
        reason = f"{reason}: {extra.get('reason')} by {extra.get('initiated_by') or 'unknown'}"
    now = utcnow()
    updates: dict[str, Any] = {
        "status": status,
        "status_reason": reason,
        "last_event": event,
        "last_event_at": event_at,
        "updated_at": now,
    }
    if info.get("owner_business_id"):
        updates["owner_business_id"] = str(info["owner_business_id"])
    if status == "active":
        updates["connected_at"] = event_at
        updates["disconnected_at"] = None
    elif connection.status == "active" or connection.disconnected_at is None:
        updates["disconnected_at"] = event_at
    ctx.conn.execute(sa.update(whatsapp_connections).where(whatsapp_connections.c.id == connection.id).values(**updates))
    if config_status is not None:
        ctx.conn.execute(
            sa.update(whatsapp_configs)
            .where(whatsapp_configs.c.connection_id == connection.id)
            .values(status=config_status, updated_at=now)
        )
    if status != connection.status:  # a move, not a repeat of the state it is in
        spec = connection_event(connection.organization_id, connection.id, waba_id, status, event, event_at)
        if spec is not None:
            add_events(ctx.conn, [spec])
    if event == "PARTNER_ADDED":
        _confirm_onboardings(ctx, connection.id, event_at, now)
    return "processed"


def _confirm_onboardings(ctx: ChangeContext, connection_id: Any, event_at: Any, now: Any) -> None:
    """PARTNER_ADDED confirms the onboardings that bound this WABA; one whose follow-up is
    done is completed (otherwise ``finish_onboarding`` completes it when it ends)."""
    o = whatsapp_onboarding.c
    ctx.conn.execute(
        sa.update(whatsapp_onboarding)
        .where(o.connection_id == connection_id, o.status.in_(("token_exchanged", "completed")), o.confirmed_at.is_(None))
        .values(confirmed_at=event_at, updated_at=now)
    )
    completed = ctx.conn.execute(
        sa.update(whatsapp_onboarding)
        .where(o.connection_id == connection_id, o.status == "token_exchanged", o.follow_up_status == "done")
        .values(status="completed", completed_at=now, updated_at=now)
        .returning(o.id, o.organization_id)
    ).all()
    add_events(ctx.conn, (onboarding_event(org, oid, "completed", now, connection_id=connection_id) for oid, org in completed))


def _bind_by_owner_business(ctx: ChangeContext, waba_id: str) -> Any:
    """Hosted-link onboardings send only PARTNER_ADDED: a WABA whose owner business already
    belongs to exactly one organization (a reconnection, a second WABA) is bound there."""
    info = ctx.value.get("waba_info") if isinstance(ctx.value.get("waba_info"), dict) else {}
    owner = _id(info.get("owner_business_id"))
    if not owner:
        return None
    orgs = ctx.conn.execute(
        sa.select(whatsapp_connections.c.organization_id).where(whatsapp_connections.c.owner_business_id == owner).distinct()
    ).scalars().all()
    if len(orgs) != 1:
        return None  # unknown or ambiguous: stays unclaimed for an operator
    bind_waba(ctx.conn, orgs[0], waba_id, owner_business_id=owner)
    return ctx.connection_for_waba(waba_id)


def _note_organization(ctx: ChangeContext) -> str:
    waba_id = waba_id_of(ctx.entry, ctx.value)
    if waba_id:
        ctx.connection_for_waba(waba_id)
    return "ignored"


def handle_account_update(ctx: ChangeContext) -> Iterable[Unit]:
    """One unit per change: apply the event's state transition, or mark it ignored."""
    value = ctx.value
    event = value.get("event")
    if event is None or event == "":
        yield ("event", ignored)
        return
    if not isinstance(event, str):
        raise InvalidPayload(f"account_update event is a {type(event).__name__}, not a string")
    transition: tuple[str, str | None, str] | None
    if event == "DISABLED_UPDATE":
        transition = _disabled_transition(value)
    else:
        transition = TRANSITIONS.get(event)
    if transition is None:
        # AD_ACCOUNT_LINKED, PARTNER_APP_INSTALLED, VOLUME_BASED_PRICING_TIER_UPDATE…: kept, no
        # state change; the organization is still noted on the webhook row when the WABA is known.
        yield (event, lambda: _note_organization(ctx))
        return
    yield (event, lambda: _apply(ctx, event, transition))


__all__ = ["handle_account_update", "waba_id_of", "TRANSITIONS"]
