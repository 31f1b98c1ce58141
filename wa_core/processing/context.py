"""What a handler gets: the change being processed and routing look-ups cached for one batch."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import whatsapp_configs, whatsapp_connections

from .errors import InvalidPayload, Unroutable
from .records import Planned, check_key


class FirstSeen(dict):
    """The organizations a webhook's items were routed to, in the order first seen (a webhook
    row is recorded under the first: deterministic, whatever the set hashing), each with the
    first WABA seen for it (None when only its organization is known)."""

    def add(self, organization_id: uuid.UUID, waba_id: str | None = None) -> None:
        """Note ``organization_id`` (kept at its first position) and its first ``waba_id``."""
        if self.get(organization_id) is None:
            self[organization_id] = waba_id


@dataclass(frozen=True)
class Route:
    """Where a business phone number belongs."""

    organization_id: uuid.UUID
    connection_id: uuid.UUID
    waba_id: str
    phone_number_id: str
    display_phone_number: str | None


@dataclass(frozen=True)
class WabaRoute:
    """Where a WABA belongs (its ``whatsapp_connections`` row)."""

    organization_id: uuid.UUID
    connection_id: uuid.UUID
    waba_id: str


@dataclass
class ChangeContext:
    """One ``entry[i].changes[j]`` of a landed webhook, with the connection it runs in.

    ``entry`` and ``change`` are the parsed JSON objects; ``received_at`` is our arrival time
    (UTC) and ``webhook_log_id`` the landed row's id. ``routes`` caches look-ups for one
    batch: a found :class:`Route`, or None for a number no organization has. ``clean`` says
    the body holds nothing :func:`~wa_core.db.engine.storable` would change
    (:func:`~wa_core.processing.records.parse_body`).
    """

    conn: Connection
    webhook_log_id: int
    received_at: datetime
    entry: dict[str, Any]
    change: dict[str, Any]
    organization_ids: FirstSeen = field(default_factory=FirstSeen)
    routes: dict[str, Any] = field(default_factory=dict)  # shared by one batch: Route | None per number, a row | None per "waba:<id>"
    clean: bool = False

    @property
    def field(self) -> str:
        """``changes[].field`` (e.g. ``messages``, ``account_update``)."""
        return str(self.change.get("field") or "")

    @property
    def value(self) -> dict[str, Any]:
        """``changes[].value``; raises :class:`InvalidPayload` when it is not an object."""
        value = self.change.get("value")
        if not isinstance(value, dict):
            raise InvalidPayload("changes[].value is not an object")
        return value

    def route_phone_number(self) -> Route:
        """Route by ``value.metadata.phone_number_id`` (never by display number).

        Raises :class:`InvalidPayload` when the id is missing, :class:`Unroutable` when no
        organization has that number (yet).
        """
        metadata = self.value.get("metadata")
        phone_number_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        if phone_number_id is None or phone_number_id == "":
            raise InvalidPayload("value.metadata.phone_number_id is missing")
        if isinstance(phone_number_id, bool) or not isinstance(phone_number_id, (str, int)) or len(str(phone_number_id)) > 64:
            raise InvalidPayload(f"value.metadata.phone_number_id is not an id ({type(phone_number_id).__name__})")
        phone_number_id = str(phone_number_id)
        if phone_number_id in self.routes:
            cached = self.routes[phone_number_id]
            if cached is None:
                raise Unroutable(f"no organization has phone_number_id {phone_number_id}")
            self.organization_ids.add(cached.organization_id, cached.waba_id)
            return cached
        check_key(phone_number_id)
        row = self.conn.execute(
            sa.select(
                whatsapp_configs.c.organization_id,
                whatsapp_configs.c.connection_id,
                whatsapp_configs.c.waba_id,
                whatsapp_configs.c.display_phone_number,
            ).where(whatsapp_configs.c.phone_number_id == phone_number_id)
        ).first()
        if row is None:
            self.routes[phone_number_id] = None  # for this batch: onboarding binds numbers between batches
            raise Unroutable(f"no organization has phone_number_id {phone_number_id}")
        self.organization_ids.add(row.organization_id, row.waba_id)
        route = Route(row.organization_id, row.connection_id, row.waba_id, phone_number_id, row.display_phone_number)
        self.routes[phone_number_id] = route
        return route

    def connection_for_waba(self, waba_id: str) -> Any:
        """The ``whatsapp_connections`` row bound to ``waba_id``, or None (read afresh: the
        ``account_update`` handler orders events by the row's ``last_event_at``)."""
        row = self.conn.execute(sa.select(whatsapp_connections).where(whatsapp_connections.c.waba_id == waba_id)).first()
        if row is not None:
            self.organization_ids.add(row.organization_id, waba_id)
        return row

    def route_waba(self, waba_id: str) -> WabaRoute | None:
        """Where ``waba_id`` (usually ``entry[].id``) belongs, or None when no organization is
        bound to it; cached for the batch like :meth:`route_phone_number` (the state fields:
        templates, number health, security… route by WABA). Raises
        :class:`~wa_core.processing.records.InvalidValue` for an id with a NUL byte."""
        key = f"waba:{waba_id}"
        if key not in self.routes:
            check_key(waba_id)
            row = self.conn.execute(
                sa.select(whatsapp_connections.c.organization_id, whatsapp_connections.c.id).where(whatsapp_connections.c.waba_id == waba_id)
            ).first()
            self.routes[key] = None if row is None else WabaRoute(row.organization_id, row.id, waba_id)
        route = self.routes[key]
        if route is not None:
            self.organization_ids.add(route.organization_id, waba_id)
        return route


#: One unit of work inside a change: a label for errors and its work, either a
#: :class:`~wa_core.processing.records.Planned` item or a function that applies it and
#: returns ``"processed"`` or ``"ignored"`` (:func:`~wa_core.processing.records.ignored`).
Unit = tuple[str, "Callable[[], str] | Planned"]
Handler = Callable[[ChangeContext], Iterable[Unit]]
