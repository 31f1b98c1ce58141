"""Contacts of a whole batch, found or created with a few statements.

The same rules as :func:`wa_core.processing.store.find_or_create_contact`, applied to every
contact a batch names in item order: look the contact up by ``wa_id`` (preferred), else by
``user_id``; create it when neither is known; fill a missing ``wa_id``/``user_id``; refresh
the names and ``in_address_book`` when given; move ``last_seen_at`` forward only. The known
contacts are read in one statement, the rules run in Python, then new contacts are inserted
in one statement and changed ones updated in one.

Concurrent runs: the insert is ``ON CONFLICT DO NOTHING``; when another run created one of
the contacts meanwhile, the contacts are read again and the rules re-run (the other run's
row is then known). The ids this run's inserts returned are kept across the passes: on the
re-run the contacts it created are read back like known ones, yet their ``contact.updated``
event still says ``created`` (break-it #2 of the event feed: it used to be lost). So each
created contact is announced as created by exactly the transaction whose insert made it. Updates merge instead of overwrite (``COALESCE`` for ids and names this
batch did not give, ``GREATEST`` for ``last_seen_at``), so two runs never undo each other.
A batch whose rules would give two contacts the same id (a unique violation the per-item
path reports as ``invalid_value``) raises :class:`ContactConflict`: the engine then applies
that part of the batch item by item.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc, whatsapp_contacts

from wa_core.events.outbox import add_events
from wa_core.events.produce import contact_event

from .bulk import chunks, is_postgres, pg_from, pg_insert, sqlite_insert
from .records import ContactRef

c = whatsapp_contacts.c
_FIELDS = ("id", "organization_id", "wa_id", "user_id", "profile_name", "first_name", "in_address_book", "last_seen_at")
_INSERT = (*_FIELDS, "first_seen_at", "created_at", "updated_at")
_UPDATE = ("id", "wa_id", "user_id", "profile_name", "first_name", "in_address_book", "last_seen_at", "updated_at")
#: passes over the batch's contacts when concurrent runs keep creating the same ones
MAX_PASSES = 3


class ContactConflict(Exception):
    """Two contacts of one organization would share a ``wa_id`` or ``user_id``."""


class _Contact:
    __slots__ = (*_FIELDS, "first_seen_at", "updated_at", "new", "dirty", "given", "changed")

    def __init__(self, values: dict[str, Any], new: bool) -> None:
        for name in _FIELDS:
            setattr(self, name, values.get(name))
        self.last_seen_at = as_utc(self.last_seen_at)
        self.first_seen_at = self.updated_at = self.last_seen_at
        self.new, self.dirty = new, False
        self.given: dict[str, Any] = {}  # names this batch gave (None = keep what is stored)
        self.changed: set[str] = set()  # ids and names this batch changed (contact.updated)

    def row(self, names: Sequence[str]) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in names if name not in ("profile_name", "first_name", "in_address_book", "created_at")}
        for name in ("profile_name", "first_name", "in_address_book"):
            if name in names:
                values[name] = getattr(self, name) if self.new else self.given.get(name)
        values["created_at"] = self.first_seen_at
        return values


def _apply(contact: _Contact, ref: ContactRef, by_user: dict) -> None:
    """``ref``'s changes to a known contact, as ``find_or_create_contact`` makes them."""
    changed = False
    if ref.wa_id and not contact.wa_id:  # found by user_id: nobody else has this wa_id
        contact.wa_id, changed = ref.wa_id, True
        contact.changed.add("wa_id")
    if ref.user_id and not contact.user_id:
        other = by_user.get((ref.organization_id, ref.user_id))
        if other is not None and other is not contact:
            raise ContactConflict("UniqueViolation: uq_whatsapp_contacts_org_user_id")
        contact.user_id, changed = ref.user_id, True
        contact.changed.add("user_id")
        by_user[(ref.organization_id, ref.user_id)] = contact
    for name in ("profile_name", "first_name"):
        value = getattr(ref, name)
        if value and value != getattr(contact, name):
            setattr(contact, name, value)
            contact.given[name], changed = value, True
            contact.changed.add(name)
    if ref.in_address_book is not None and ref.in_address_book != contact.in_address_book:
        contact.in_address_book = contact.given["in_address_book"] = ref.in_address_book
        changed = True
        contact.changed.add("in_address_book")
    if contact.last_seen_at < ref.seen_at:
        contact.last_seen_at, changed = ref.seen_at, True
    if changed:
        contact.updated_at = max(contact.updated_at, ref.seen_at)
        contact.dirty = True


def _resolve(refs: Sequence[ContactRef], known: Sequence[Any]) -> list[_Contact]:
    by_wa: dict[tuple, _Contact] = {}
    by_user: dict[tuple, _Contact] = {}
    for row in known:
        contact = _Contact(dict(row._mapping), new=False)
        if contact.wa_id:
            by_wa[(contact.organization_id, contact.wa_id)] = contact
        if contact.user_id:
            by_user[(contact.organization_id, contact.user_id)] = contact
    out = []
    for ref in refs:
        org = ref.organization_id
        contact = by_wa.get((org, ref.wa_id)) if ref.wa_id else None
        if contact is None and ref.user_id:
            contact = by_user.get((org, ref.user_id))
        if contact is None:
            contact = _Contact(
                {"id": uuid.uuid4(), "organization_id": org, "wa_id": ref.wa_id, "user_id": ref.user_id,
                 "profile_name": ref.profile_name, "first_name": ref.first_name,
                 "in_address_book": ref.in_address_book, "last_seen_at": ref.seen_at},
                new=True,
            )
            if ref.wa_id:
                by_wa[(org, ref.wa_id)] = contact
            if ref.user_id:
                by_user[(org, ref.user_id)] = contact
        else:
            if ref.wa_id and not contact.wa_id:
                by_wa[(org, ref.wa_id)] = contact
            _apply(contact, ref, by_user)
        out.append(contact)
    return out


def _known(conn: Connection, refs: Sequence[ContactRef]) -> list[Any]:
    """Stored contacts of ``refs``' organizations with one of their ``wa_id``/``user_id``."""
    by_wa = sorted({(ref.organization_id, ref.wa_id) for ref in refs if ref.wa_id})
    by_user = sorted({(ref.organization_id, ref.user_id) for ref in refs if ref.user_id})
    cols = ", ".join(f"c.{name}" for name in _FIELDS)
    if is_postgres(conn):
        params = {"wo": [o for o, _ in by_wa], "wk": [k for _, k in by_wa], "uo": [o for o, _ in by_user], "uk": [k for _, k in by_user]}
        return conn.exec_driver_sql(
            f"SELECT {cols} FROM unnest(%(wo)b::uuid[], %(wk)b::text[]) AS k(o, v) JOIN whatsapp_contacts c"
            " ON c.organization_id = k.o AND c.wa_id = k.v"
            f" UNION SELECT {cols} FROM unnest(%(uo)b::uuid[], %(uk)b::text[]) AS k(o, v) JOIN whatsapp_contacts c"
            " ON c.organization_id = k.o AND c.user_id = k.v",
            params,
        ).all()
    found: dict[Any, Any] = {}
    columns = [c[name] for name in _FIELDS]
    for column, keys in ((c.wa_id, by_wa), (c.user_id, by_user)):
        for part in chunks(keys):
            for row in conn.execute(sa.select(*columns).where(sa.tuple_(c.organization_id, column).in_(list(part)))):
                found[row.id] = row
    return list(found.values())


_PG_UPDATE = """
UPDATE whatsapp_contacts AS c SET wa_id = coalesce(c.wa_id, v.wa_id), user_id = coalesce(c.user_id, v.user_id),
  profile_name = coalesce(v.profile_name, c.profile_name), first_name = coalesce(v.first_name, c.first_name),
  in_address_book = coalesce(v.in_address_book, c.in_address_book),
  last_seen_at = greatest(c.last_seen_at, v.last_seen_at), updated_at = v.updated_at
FROM {source} WHERE c.id = v.id
"""


def _bind(name: str) -> Any:
    return sa.bindparam(f"b_{name}", type_=whatsapp_contacts.c[name].type)


def _sqlite_update(conn: Connection, rows: list[dict[str, Any]]) -> None:
    stmt = (
        sa.update(whatsapp_contacts)
        .where(c.id == _bind("id"))
        .values(
            wa_id=sa.func.coalesce(c.wa_id, _bind("wa_id")),
            user_id=sa.func.coalesce(c.user_id, _bind("user_id")),
            profile_name=sa.func.coalesce(_bind("profile_name"), c.profile_name),
            first_name=sa.func.coalesce(_bind("first_name"), c.first_name),
            in_address_book=sa.func.coalesce(_bind("in_address_book"), c.in_address_book),
            last_seen_at=sa.case((c.last_seen_at < _bind("last_seen_at"), _bind("last_seen_at")), else_=c.last_seen_at),
            updated_at=_bind("updated_at"),
        )
    )
    conn.execute(stmt, [{f"b_{k}": v for k, v in row.items() if k != "created_at"} for row in rows])


def _contact_events(conn: Connection, contacts: Sequence[_Contact], created: set[Any]) -> None:
    """``contact.updated`` for each contact created (``new``, or its id among ``created``:
    inserted by an earlier pass of this transaction), or whose ids or names changed (not for
    ``last_seen_at`` alone), once per contact, in item order."""
    seen: dict[int, _Contact] = {}
    for x in contacts:
        if x.new or x.changed or x.id in created:
            seen.setdefault(id(x), x)
    add_events(conn, (
        contact_event(x.organization_id, x.id, x.wa_id, x.user_id, made, [] if made else list(x.changed), x.updated_at)
        for x in seen.values()
        for made in (x.new or x.id in created,)
    ))


def resolve_contacts(conn: Connection, refs: Sequence[ContactRef]) -> list[uuid.UUID]:
    """The contact id of each of ``refs`` (in order), creating and updating contacts with at
    most three statements a pass. Raises :class:`ContactConflict` (see the module docstring)
    and database errors."""
    if not refs:
        return []
    created: set[Any] = set()  # ids this transaction inserted, over the passes
    for _ in range(MAX_PASSES):
        contacts = _resolve(refs, _known(conn, refs))
        new = {id(x): x for x in contacts if x.new}.values()
        if new:
            rows = sorted((x.row(_INSERT) for x in new), key=lambda r: (str(r["organization_id"]), r["wa_id"] or "", r["user_id"] or ""))
            if is_postgres(conn):
                inserted = pg_insert(conn, whatsapp_contacts, rows, _INSERT, "ON CONFLICT DO NOTHING RETURNING id").all()
                created.update(i for (i,) in inserted)
                if len(inserted) < len(rows):
                    continue  # another run created some of them meanwhile: read them and re-run the rules
            else:
                sqlite_insert(conn, whatsapp_contacts, rows, _INSERT, ["organization_id", "wa_id"])
        dirty = {id(x): x for x in contacts if x.dirty and not x.new}.values()
        if dirty:
            rows = sorted((x.row(_UPDATE) for x in dirty), key=lambda r: str(r["id"]))
            if is_postgres(conn):
                pg_from(conn, _PG_UPDATE, whatsapp_contacts, rows, _UPDATE)
            else:
                _sqlite_update(conn, rows)
        _contact_events(conn, contacts, created)
        return [x.id for x in contacts]
    raise ContactConflict(f"contacts still changing after {MAX_PASSES} passes")


__all__ = ["ContactConflict", "resolve_contacts"]
