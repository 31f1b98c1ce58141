"""Plain records planned for one webhook item, and the checks that make a bad item fail alone.

A handler turns each item of a change into a *plan*: the rows it will write (a message and
its contact, reaction or revision; a status), built in Python without touching the
database. The per-item path writes a plan with :func:`wa_core.processing.store.apply_plan`;
the set-based engine (:mod:`wa_core.processing.engine`) collects the plans of a whole batch
and writes each table with a few multi-row statements.

Everything the database would refuse is refused here first, with the same error kind and
message, so one bad item fails on its own instead of failing a multi-row statement: a string
longer than its column, an integer out of its column's range, and NUL bytes or lone
surrogates in an id that is also used to look rows up. Other text is made storable
(:func:`~wa_core.db.engine.storable`: NUL removed, lone surrogates replaced), as the per-item
writes always did; the exact bytes stay in ``whatsapp_webhook_logs.body``.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from wa_core.db.engine import storable
from wa_core.db.schema import (
    whatsapp_contacts,
    whatsapp_message_reactions,
    whatsapp_message_revisions,
    whatsapp_message_statuses,
    whatsapp_messages,
)

from .errors import ItemError
from .state import EventSpec, RowWrite, StatePlan


class InvalidValue(ItemError):
    """A value the database would refuse (too long, out of range, NUL byte, lone surrogate).

    Permanent: the same value is refused on every attempt. The message names the database's
    error as Postgres reports it (e.g. ``StringDataRightTruncation: value too long for type
    character varying(255)``) and never the value itself.
    """

    kind = "invalid_value"
    retryable = False


def ignored() -> str:
    """The unit of an item that is stored in the body but has nothing to apply."""
    return "ignored"


class Planned:
    """A unit whose work is a plan: ``build()`` returns a :data:`Plan` (no SQL), None for an
    item with nothing to apply (ignored), or raises
    :class:`~wa_core.processing.errors.ItemError` for an item that can never be applied."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], Plan]) -> None:
        self.build = build


@dataclass(slots=True)
class ContactRef:
    """A contact to find or create in an organization, and what this item says about it.

    ``wa_id`` is preferred over ``user_id`` (the business-scoped user id) to find it; either
    may be None but not both. ``profile_name``, ``first_name`` and ``in_address_book`` are
    refreshed when given; ``seen_at`` (UTC) moves ``last_seen_at`` forward only.
    """

    organization_id: uuid.UUID
    wa_id: str | None
    user_id: str | None
    seen_at: datetime
    profile_name: str | None = None
    first_name: str | None = None
    in_address_book: bool | None = None


@dataclass(slots=True)
class MessagePlan:
    """One message item: the ``whatsapp_messages`` row (``contact_id`` is filled once the
    contact is resolved), its contact, and for a reaction the ``whatsapp_message_reactions``
    row it also writes (an edit or revoke is a :class:`RevisionPlan`, never a message).

    ``fill_placeholder``: when the message exists as a coexistence ``media_placeholder``,
    this item's type, body and raw replace the placeholder's (history and echoes only).
    ``extra``: rows of other tables the message brings (e.g. its media, a call permission
    reply), written after the messages with :func:`~.state.write_rows`; ``events``: the events
    those rows produce (as :attr:`StatePlan.events`).
    """

    values: dict[str, Any]
    contact: ContactRef | None = None
    fill_placeholder: bool = False
    reaction: dict[str, Any] | None = None
    extra: list[RowWrite] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)


@dataclass(slots=True)
class RevisionPlan:
    """An ``edit`` or ``revoke`` (inbound, or an echo of one made in the WhatsApp Business
    app): the ``whatsapp_message_revisions`` row, applied to the original message once both
    are stored, and the contact it names. It is not a message of its own: no
    ``whatsapp_messages`` row (Meta §2.2 "edit / revoke", §4 echoes)."""

    revision: dict[str, Any]
    contact: ContactRef | None = None


@dataclass(slots=True)
class StatusPlan:
    """One ``statuses[]`` item: the ``whatsapp_message_statuses`` row."""

    values: dict[str, Any]


@dataclass(slots=True)
class ContactPlan:
    """One coexistence contact sync (``smb_app_state_sync``): a contact (None when the item
    names no usable id) and ``extra`` rows (the number's contact sync state)."""

    contact: ContactRef | None
    extra: list[RowWrite] = field(default_factory=list)


Plan = MessagePlan | RevisionPlan | StatusPlan | ContactPlan | StatePlan


# --- what the database would refuse ------------------------------------------------------
def _limits(table: sa.Table) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int, int], ...]]:
    """((column, max characters) for ``varchar(n)`` columns, (column, min, max) for integer
    columns other than bigint ids) of ``table``."""
    strings, ints = [], []
    for column in table.columns:
        kind = column.type
        if isinstance(kind, sa.String) and kind.length:
            strings.append((column.name, kind.length))
        elif isinstance(kind, sa.SmallInteger):
            ints.append((column.name, -(2**15), 2**15 - 1))
        elif isinstance(kind, sa.Integer) and not isinstance(kind, sa.BigInteger):
            ints.append((column.name, -(2**31), 2**31 - 1))
    return tuple(strings), tuple(ints)


LIMITS = {
    table.name: _limits(table)
    for table in (whatsapp_messages, whatsapp_message_statuses, whatsapp_contacts, whatsapp_message_reactions, whatsapp_message_revisions)
}


def _table_limits(table: str) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int, int], ...]]:
    limits = LIMITS.get(table)
    if limits is None:  # any other table of the schema (the state fields), computed once
        from wa_core.db.schema import metadata

        limits = LIMITS[table] = _limits(metadata.tables[table])
    return limits
_INT_NAMES = {2**15 - 1: "smallint", 2**31 - 1: "integer"}


def check_values(table: str, values: dict[str, Any]) -> None:
    """Raise :class:`InvalidValue` when Postgres would refuse ``values`` for ``table``
    (a string longer than its ``varchar(n)``, an integer outside its column's range)."""
    strings, ints = _table_limits(table)
    for name, length in strings:
        value = values.get(name)
        if value.__class__ is str and len(value) > length:
            raise InvalidValue(f"StringDataRightTruncation: value too long for type character varying({length})")
    for name, low, high in ints:
        value = values.get(name)
        if value.__class__ is int and not low <= value <= high:
            raise InvalidValue(f"NumericValueOutOfRange: {_INT_NAMES[high]} out of range")


def check_key(value: Any) -> None:
    """Raise :class:`InvalidValue` when an id also used to look rows up holds a NUL byte or a
    lone surrogate (Postgres refuses NUL in text; neither database can encode a surrogate)."""
    if not isinstance(value, str):
        return
    if "\x00" in value:
        raise InvalidValue("DataError: PostgreSQL text fields cannot contain NUL (0x00) bytes")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValue("UnicodeEncodeError") from None


def prepare(table: str, values: dict[str, Any], keys: tuple[str, ...], clean: bool) -> dict[str, Any]:
    """``values`` checked (:func:`check_key` on ``keys``, then :func:`check_values`) and, unless
    the body is known ``clean`` (:func:`parse_body`), made storable."""
    if not clean:
        for key in keys:
            check_key(values.get(key))
        values = storable(values)
    check_values(table, values)
    return values


#: a surrogate escape that is not half of a proper pair, or UTF-8-encoded surrogates (json
#: decodes bytes with ``surrogatepass``); only searched when a body has ``\\ud``/``\\uD``/0xED
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|\xed[\xa0-\xbf]"
)
_INT64 = (-(2**63), 2**63)


def parse_body(body: bytes) -> tuple[Any, bool]:
    """``json.loads(body)`` (same errors: ``ValueError``, ``RecursionError``) and whether every
    parsed value is already storable as is (``clean``: no NUL escape, no lone surrogate, no
    NaN/Infinity, no float overflow, no integer beyond 64 bits; see
    :func:`~wa_core.db.engine.storable`). A false "not clean" only costs the slower path."""
    dirty = b"\\u0000" in body or (
        (b"\\ud" in body or b"\\uD" in body or b"\xed" in body) and _LONE_SURROGATE.search(body) is not None
    )
    flags = []

    def parse_int(text: str) -> int:
        value = int(text)
        if not _INT64[0] <= value < _INT64[1]:
            flags.append(text)
        return value

    def parse_float(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            flags.append(text)
        return value

    def parse_constant(text: str) -> float:
        flags.append(text)
        return float(text)  # NaN, Infinity, -Infinity, as json.loads gives them

    decoder = json.JSONDecoder(parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    payload = decoder.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    return payload, not (dirty or flags)


__all__ = [
    "ContactPlan", "ContactRef", "InvalidValue", "MessagePlan", "Plan", "Planned", "RevisionPlan", "StatePlan", "StatusPlan",
    "parse_body",
    "check_key", "check_values", "ignored", "prepare",
]
