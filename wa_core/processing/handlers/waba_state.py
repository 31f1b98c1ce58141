"""What the WABA-family state handlers (templates, number health, account, security) share:
routing by ``entry.id``, Meta's event time, stable history keys, the number a display
number names, and the row writes of the history tables.

Source: Meta, WhatsApp Cloud API webhook references of the WABA fields ( ``entry.id`` is the WABA, integer
``entry.time``, no ``metadata``; numbers named only by ``display_phone_number``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from wa_core.alerts import Alert
from wa_core.db.schema import whatsapp_configs
from wa_core.db.schema_waba_state import display_digits, whatsapp_waba_events

from ..context import ChangeContext, WabaRoute
from ..errors import InvalidPayload, Unroutable
from ..records import prepare
from ..state import EventSpec, RowWrite
from ..store import clean_id
from ..timeparse import meta_time


def text(value: Any) -> str | None:
    """A Meta enum or id as text (a string or a number), None for a missing, empty, boolean,
    object or array value (:func:`~wa_core.processing.store.clean_id`)."""
    return clean_id(value)


@dataclass(frozen=True)
class WabaChange:
    """One change of a WABA-family field, routed: the WABA's owner, Meta's event time
    (``entry.time``, UTC; None when Meta sent none, then the arriving row wins, see
    :mod:`wa_core.processing.state`) and our arrival time."""

    ctx: ChangeContext
    route: WabaRoute
    event_at: datetime | None

    @property
    def waba_id(self) -> str:
        """The WABA id (``entry.id``)."""
        return self.route.waba_id

    @property
    def organization_id(self) -> Any:
        """The organization bound to the WABA."""
        return self.route.organization_id

    def occurred_at(self) -> datetime:
        """Meta's time of the change, or our arrival time without one (for events)."""
        return self.event_at or self.ctx.received_at

    def stamp(self) -> str:
        """The event time as Unix seconds text (``"none"`` without one), for keys."""
        return str(int(self.event_at.timestamp())) if self.event_at else "none"


def waba_change(ctx: ChangeContext) -> WabaChange:
    """Route ``ctx`` by ``entry.id``.

    Raises :class:`InvalidPayload` when ``entry.id`` is not an id, :class:`Unroutable` when
    no organization is bound to the WABA yet (retried later), and
    :class:`~wa_core.processing.records.InvalidValue` for an id with a NUL byte.
    """
    waba_id = text(ctx.entry.get("id"))
    if waba_id is None or len(waba_id) > 64:
        raise InvalidPayload(f"{ctx.field}: entry.id is not a WABA id")
    route = ctx.route_waba(waba_id)
    if route is None:
        raise Unroutable(f"no organization is bound to WABA {waba_id} ({ctx.field})")
    return WabaChange(ctx, route, meta_time(ctx.entry.get("time")))


def digest(value: Any) -> str:
    """A short stable digest of a change's JSON ``value`` (the same for a redelivery)."""
    raw = json.dumps(value, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(raw.encode("ascii")).hexdigest()[:24]


def event_key(change: WabaChange, kind: str, value: Any) -> str:
    """``kind:<event seconds>:<digest>``: unique per change, stable across redeliveries."""
    return f"{kind[:16]}:{change.stamp()}:{digest(value)}"


def number_id(change: WabaChange, display: str) -> str | None:
    """Our ``phone_number_id`` of the WABA's number with these display digits, or None when
    none is bound yet. One query per WABA and batch (cached in ``ctx.routes``)."""
    ctx = change.ctx
    key = f"numbers:{change.waba_id}"
    numbers = ctx.routes.get(key)
    if numbers is None:
        rows = ctx.conn.execute(
            sa.select(whatsapp_configs.c.display_phone_number, whatsapp_configs.c.phone_number_id).where(
                whatsapp_configs.c.waba_id == change.waba_id
            )
        ).all()
        numbers = ctx.routes[key] = {display_digits(r.display_phone_number): r.phone_number_id for r in rows if display_digits(r.display_phone_number)}
    return numbers.get(display)


def history(change: WabaChange, field: str, subject: str, event: str | None, details: dict[str, Any] | None, value: Any) -> RowWrite:
    """The insert-once ``whatsapp_waba_events`` row of one change (values checked with
    :func:`~wa_core.processing.records.prepare`)."""
    values = {
        "organization_id": change.organization_id,
        "waba_id": change.waba_id,
        "field": field,
        "subject": subject,
        "event": event,
        "details": details or None,
        "event_key": event_key(change, field, value),
        "event_at": change.event_at,
        "received_at": change.ctx.received_at,
    }
    values = prepare(whatsapp_waba_events.name, values, ("waba_id", "subject"), change.ctx.clean)
    return RowWrite(whatsapp_waba_events, values, ("waba_id", "field", "subject", "event_key"))


def upsert(change: WabaChange, table: sa.Table, key: dict[str, Any], columns: dict[str, Any], newer: str) -> RowWrite:
    """An order-safe upsert of ``columns`` (plus the organization and the order column
    ``newer`` = Meta's event time) into the row ``key`` of ``table``."""
    values = {**key, "organization_id": change.organization_id, **columns, newer: change.event_at}
    values = prepare(table.name, values, tuple(key), change.ctx.clean)
    update = tuple(c for c in values if c not in key)
    return RowWrite(table, values, tuple(key), update, newer)


def event(change: WabaChange, type_: str, key: str, payload: dict[str, Any]) -> EventSpec:
    """An :class:`~wa_core.processing.state.EventSpec` of this change (``key`` made unique by
    the WABA id)."""
    return EventSpec(change.organization_id, type_, f"{change.waba_id}:{key}", {"waba_id": change.waba_id, **payload}, change.occurred_at())


def alert(change: WabaChange, kind: str, key: str, summary: str, severity: str = "warning", **details: Any) -> Alert:
    """An operator :class:`~wa_core.alerts.Alert` for this change: ``key`` is prefixed with the
    WABA and suffixed with the event time, so a redelivery groups with the first alert while
    a later event of the same kind alerts again."""
    return Alert(
        kind=kind,
        key=f"{change.waba_id}:{key}:{change.stamp()}"[:200],
        summary=summary[:300],
        severity=severity,
        details={"waba_id": change.waba_id, **{k: v for k, v in details.items() if v is not None}},
        organization_id=change.organization_id,
    )


__all__ = ["WabaChange", "alert", "digest", "event", "event_key", "history", "number_id", "text", "upsert", "waba_change"]
