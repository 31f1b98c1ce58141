"""Shared pieces of the phone-family state handlers (preferences, calls, groups, partner and
ads records): ids and text read defensively, order-safe row writes, the ``contacts[]`` units.

Every helper here is pure (no SQL) and never raises for a bad shape except where it says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..context import ChangeContext, Route, Unit
from ..errors import InvalidPayload
from ..records import ContactPlan, Planned, prepare
from ..state import EventSpec, RowWrite
from ..store import clean_id
from .messages import _str, contact_plan, list_field

__all__ = [
    "ContactPlan", "InvalidPayload", "contact_key", "contact_units", "event", "fill", "int32", "items", "required_id", "text",
    "upsert",
]

items = list_field
text = _str


def required_id(item: dict[str, Any], key: str, what: str) -> str:
    """``item[key]`` as an id (:func:`~wa_core.processing.store.clean_id`: a string or number,
    stripped). Raises :class:`InvalidPayload` when it is missing or empty."""
    value = clean_id(item.get(key))
    if value is None:
        raise InvalidPayload(f"{what} has no {key}")
    return value


def contact_key(wa_id: Any, user_id: Any) -> tuple[str | None, str | None, str | None]:
    """(key, wa_id, user_id) of a contact an item names: the key is ``wa_id`` when given, else
    ``user_id`` (the BSUID), as ``whatsapp_contacts`` is looked up; key None when neither."""
    wa_id, user_id = clean_id(wa_id), clean_id(user_id)
    return (wa_id or user_id), wa_id, user_id


def int32(value: Any) -> int | None:
    """An integer (or a string of digits) that fits a 32-bit column; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if -(2**31) <= number < 2**31 else None


def upsert(
    ctx: ChangeContext, table: sa.Table, values: dict[str, Any], key: tuple[str, ...], update: Iterable[str] = (), newer: str | None = None
) -> RowWrite:
    """A :class:`RowWrite` of ``values`` checked by :func:`~wa_core.processing.records.prepare`
    (raises :class:`~wa_core.processing.records.InvalidValue` for a value the database would
    refuse). ``update=()`` writes the row once (history)."""
    return RowWrite(table, prepare(table.name, values, key, ctx.clean), key, tuple(update), newer)


def fill(ctx: ChangeContext, table: sa.Table, base: dict[str, Any], key: tuple[str, ...], facts: dict[str, Any]) -> RowWrite | None:
    """The write that sets the given (not None) ``facts`` on an existing row (facts that do
    not change over a lifecycle, e.g. a call's direction: whichever event brings them, last
    wins); ``base`` holds the key and the columns an insert needs. None when no fact is given."""
    given = {k: v for k, v in facts.items() if v is not None}
    if not given:
        return None
    return upsert(ctx, table, {**base, **given}, key, tuple(sorted(given)))


def event(route: Route | None, type_: str, key: str, payload: dict[str, Any], occurred_at: datetime | None, ctx: ChangeContext) -> EventSpec:
    """An :class:`EventSpec` of ``type_`` for the route's organization (None without one),
    at Meta's ``occurred_at`` or, without it, our arrival time."""
    return EventSpec(route.organization_id if route else None, type_, key[:255], payload, occurred_at or ctx.received_at)


def contact_units(ctx: ChangeContext, route: Route, value: dict[str, Any]) -> Iterable[Unit]:
    """One unit per ``value.contacts[]`` entry: the contact found or created, with its profile
    name (ids as ``messages`` reads them). A ``contacts`` that is not an array, an entry that
    is not an object or one that names no id writes nothing (the items still apply)."""
    contacts = value.get("contacts")
    for k, contact in enumerate(contacts if isinstance(contacts, list) else ()):
        if not isinstance(contact, dict):
            continue
        profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}

        def build(c: dict[str, Any] = contact, p: dict[str, Any] = profile) -> ContactPlan:
            return ContactPlan(contact_plan(ctx, route, wa_id=c.get("wa_id"), user_id=c.get("user_id"), profile_name=text(p.get("name"))))

        yield (f"contacts[{k}]", Planned(build))
