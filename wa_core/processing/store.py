"""Idempotent writes shared by the handlers: contacts, messages and statuses.

Every write is keyed so that applying the same item twice, or in two concurrent runs,
leaves exactly one row: messages on (``phone_number_id``, wamid), statuses on
(``phone_number_id``, wamid, status), contacts on (organization, ``wa_id``) or (organization, ``user_id``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.engine import insert_ignore, storable
from wa_core.db.schema import (
    as_utc,
    utcnow,
    whatsapp_contacts,
    whatsapp_message_reactions,
    whatsapp_message_revisions,
    whatsapp_message_statuses,
    whatsapp_messages,
)

from wa_core.events.outbox import add_events
from wa_core.events.produce import contact_event, message_event, revision_event, status_event

from .records import ContactPlan, Plan, RevisionPlan, StatePlan, StatusPlan
from .state import apply_rows

#: Forward-only order of outbound statuses. ``failed`` is terminal. Source: Meta webhooks
#: reference, "status messages" (sent → delivered → read; played for voice; failed).
STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 9}


def clean_id(value: Any) -> str | None:
    """A contact id as stored: the text of a string or number, stripped; None for a missing,
    empty, boolean, object or array value."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def find_or_create_contact(
    conn: Connection,
    organization_id: uuid.UUID,
    *,
    wa_id: Any = None,
    user_id: Any = None,
    profile_name: str | None = None,
    first_name: str | None = None,
    in_address_book: bool | None = None,
    seen_at: datetime,
) -> uuid.UUID | None:
    """Return the contact id for ``wa_id`` (preferred) or ``user_id`` in the organization.

    Creates it if needed; fills a missing ``wa_id``/``user_id``, refreshes the profile name
    and ``last_seen_at``. Returns None when neither id is given. Safe under concurrency:
    the insert is ``ON CONFLICT DO NOTHING`` followed by a re-read.
    Source: Meta "business-scoped user IDs" (2026): ``wa_id`` may be empty, ``user_id`` added.
    """
    wa_id, user_id = clean_id(wa_id), clean_id(user_id)
    if not wa_id and not user_id:
        return None
    c = whatsapp_contacts.c

    def lookup() -> Any:
        if wa_id:
            row = conn.execute(sa.select(whatsapp_contacts).where(c.organization_id == organization_id, c.wa_id == wa_id)).first()
            if row is not None:
                return row
        if user_id:
            return conn.execute(
                sa.select(whatsapp_contacts).where(c.organization_id == organization_id, c.user_id == user_id)
            ).first()
        return None

    row = lookup()
    if row is None:
        created = insert_ignore(
            conn,
            whatsapp_contacts,
            {
                "id": uuid.uuid4(),
                "organization_id": organization_id,
                "wa_id": wa_id,
                "user_id": user_id,
                "profile_name": profile_name,
                "first_name": first_name,
                "in_address_book": in_address_book,
                "first_seen_at": seen_at,
                "last_seen_at": seen_at,
                "created_at": seen_at,
                "updated_at": seen_at,
            },
            ["organization_id", "wa_id"] if wa_id else ["organization_id", "user_id"],
        )
        row = lookup()
        if row is None:  # pragma: no cover - only if a concurrent delete won
            raise RuntimeError("contact vanished after insert")
        if created:
            add_events(conn, [contact_event(organization_id, row.id, wa_id, user_id, True, [], seen_at)])
            return row.id
    updates: dict[str, Any] = {}
    if wa_id and not row.wa_id:
        updates["wa_id"] = wa_id
    if user_id and not row.user_id:
        updates["user_id"] = user_id
    if profile_name and profile_name != row.profile_name:
        updates["profile_name"] = profile_name
    if first_name and first_name != row.first_name:
        updates["first_name"] = first_name
    if in_address_book is not None and in_address_book != row.in_address_book:
        updates["in_address_book"] = in_address_book
    if as_utc(row.last_seen_at) < seen_at:
        updates["last_seen_at"] = seen_at
    changed = [k for k in updates if k != "last_seen_at"]
    if updates:
        updates["updated_at"] = seen_at
        conn.execute(sa.update(whatsapp_contacts).where(c.id == row.id).values(**storable(updates)))
    if changed:
        add_events(conn, [contact_event(organization_id, row.id, updates.get("wa_id", row.wa_id), updates.get("user_id", row.user_id), False, changed, seen_at)])
    return row.id


def insert_message(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert one message keyed by (``phone_number_id``, ``wamid``); False if it existed.

    When it is new, what arrived before it is applied: parked statuses (its current status
    becomes the highest one seen) and parked edits and revokes.
    """
    inserted = insert_ignore(conn, whatsapp_messages, values, ["phone_number_id", "wamid"])
    if inserted:
        m = whatsapp_messages.c
        message_id = conn.execute(sa.select(m.id).where(m.phone_number_id == values["phone_number_id"], m.wamid == values["wamid"])).scalar()
        event = message_event(values, message_id)
        if event is not None:
            add_events(conn, [event])
        apply_revisions(conn, values["phone_number_id"], values["wamid"])
    if inserted and values["direction"] == "outbound":  # only outbound messages get statuses
        st = whatsapp_message_statuses.c
        parked = conn.execute(
            sa.select(st.status, st.provider_timestamp, st.received_at).where(st.phone_number_id == values["phone_number_id"], st.wamid == values["wamid"])
        ).all()
        best = max(parked, key=lambda r: STATUS_RANK.get(r.status, 0), default=None)
        if best is not None:
            _advance_status(conn, values["phone_number_id"], values["wamid"], best.status, best.provider_timestamp or best.received_at)
    return inserted


def _advance_status(conn: Connection, phone_number_id: str, wamid: str, status: str, at: datetime | None) -> int:
    """Move the message's status forward to ``status``; a move is a ``message.status_updated`` event."""
    rank = STATUS_RANK.get(status, 0)
    m = whatsapp_messages.c
    moved = conn.execute(
        sa.update(whatsapp_messages)
        .where(m.phone_number_id == phone_number_id, m.wamid == wamid, m.status_rank < rank)
        .values(current_status=status, status_rank=rank)
        .returning(m.organization_id, m.id)
    ).all()
    add_events(conn, (status_event(org, mid, phone_number_id, wamid, status, at) for org, mid in moved))
    return len(moved)


def record_status(conn: Connection, values: dict[str, Any]) -> bool:
    """Append one status keyed by (``phone_number_id``, wamid, status) and move the message's
    status forward only (a number's statuses never touch another number's messages).

    Returns True when the status row is new. A status for a message not stored yet stays in
    the history table and is applied when the message arrives (:func:`insert_message`).
    """
    inserted = insert_ignore(conn, whatsapp_message_statuses, values, ["phone_number_id", "wamid", "status"])
    if inserted:  # an existing row was applied when it arrived, or when its message did
        at = values.get("provider_timestamp") or values.get("received_at")
        _advance_status(conn, values["phone_number_id"], values["wamid"], values["status"], at)
    return inserted


def apply_reaction(conn: Connection, values: dict[str, Any]) -> None:
    """Set (or, with ``emoji`` None, remove) ``reactor``'s reaction on ``target_wamid``.

    ``values`` is a ``whatsapp_message_reactions`` row (organization_id, phone_number_id,
    target_wamid, reactor, emoji, reaction_wamid, provider_timestamp, updated_at). Kept
    against the target id even when that message is unknown to us. Applied in Meta's order
    (:func:`reaction_supersedes`), so late redeliveries cannot undo a newer change. Source:
    Meta webhooks reference, "messages: reaction" (a removed reaction arrives with ``emoji``
    omitted).
    """
    r = whatsapp_message_reactions.c
    if insert_ignore(conn, whatsapp_message_reactions, values, ["phone_number_id", "target_wamid", "reactor"]):
        return
    provider_timestamp = values["provider_timestamp"]
    newer = sa.or_(r.provider_timestamp.is_(None), r.provider_timestamp <= provider_timestamp) if provider_timestamp else sa.true()
    conn.execute(
        sa.update(whatsapp_message_reactions)
        .where(r.phone_number_id == values["phone_number_id"], r.target_wamid == values["target_wamid"], r.reactor == values["reactor"], newer)
        .values(**storable({k: values[k] for k in ("emoji", "reaction_wamid", "provider_timestamp", "updated_at")}))
    )


def reaction_supersedes(stored: datetime | None, arriving: datetime | None) -> bool:
    """Whether a reaction of Meta time ``arriving`` replaces one of time ``stored``: unless
    it is strictly older (a missing time on either side never loses)."""
    return stored is None or arriving is None or stored <= arriving


def record_revision(conn: Connection, values: dict[str, Any]) -> None:
    """Store an ``edit`` or ``revoke`` of a message, keyed by its own wamid, and apply it if
    the original is stored; otherwise it stays parked until :func:`insert_message` stores it.

    Source: Meta webhooks reference, "messages: edit" and "messages: revoke" (coexistence).
    """
    insert_ignore(conn, whatsapp_message_revisions, values, ["phone_number_id", "revision_wamid"])
    apply_revisions(conn, values["phone_number_id"], values["original_wamid"])


def apply_revisions(conn: Connection, phone_number_id: str, original_wamid: str) -> None:
    """Apply every revision of ``original_wamid`` in Meta's order: the latest edit's text
    becomes the body (the original stays in ``raw`` and the revisions table); a revoke marks
    the message revoked and clears its body."""
    m, v = whatsapp_messages.c, whatsapp_message_revisions.c
    revisions = conn.execute(
        sa.select(whatsapp_message_revisions)
        .where(v.phone_number_id == phone_number_id, v.original_wamid == original_wamid)
        .order_by(v.provider_timestamp.is_(None), v.provider_timestamp, v.id)
    ).all()
    if not revisions:
        return
    original = conn.execute(
        sa.select(m.id, m.organization_id).where(m.phone_number_id == phone_number_id, m.wamid == original_wamid)
    ).first()
    if original is None:
        return  # parked until the original is stored
    updates = revision_updates(revisions)
    if updates:
        conn.execute(sa.update(whatsapp_messages).where(m.id == original.id).values(**updates))
    pending = [r.id for r in revisions if r.applied_at is None]
    add_events(conn, (
        revision_event(original.organization_id, original.id, phone_number_id, original_wamid, r.revision_wamid, r.kind, r.provider_timestamp or r.received_at)
        for r in revisions if r.applied_at is None and r.kind in ("edit", "revoke")
    ))
    if pending:
        conn.execute(sa.update(whatsapp_message_revisions).where(v.id.in_(pending)).values(applied_at=utcnow()))


def revision_updates(revisions: Any) -> dict[str, Any]:
    """What the revisions of one message (rows with kind, body, provider_timestamp,
    received_at, in Meta's order: by provider_timestamp, missing last, then id) make of it:
    the latest edit's ``body`` and ``edited_at``; a revoke clears the body and sets
    ``revoked_at`` (and no edit after it brings the text back)."""
    updates: dict[str, Any] = {}
    for revision in revisions:
        if revision.kind == "edit" and "revoked_at" not in updates:
            updates["body"] = revision.body
            updates["edited_at"] = revision.provider_timestamp or revision.received_at
        elif revision.kind == "revoke":
            updates["body"] = None
            updates["revoked_at"] = revision.provider_timestamp or revision.received_at
    return updates


def apply_plan(conn: Connection, plan: Plan) -> str:
    """Write one planned item on ``conn`` with the per-item writes above; returns
    ``"processed"``. Database errors propagate (the caller runs it in a savepoint)."""
    if isinstance(plan, StatusPlan):
        record_status(conn, plan.values)
        return "processed"
    if isinstance(plan, StatePlan):
        result = apply_rows(conn, plan)  # sets plan.moved
        add_events(conn, plan.announced())
        return result
    contact = plan.contact
    if contact is not None:
        contact_id = find_or_create_contact(
            conn,
            contact.organization_id,
            wa_id=contact.wa_id,
            user_id=contact.user_id,
            profile_name=contact.profile_name,
            first_name=contact.first_name,
            in_address_book=contact.in_address_book,
            seen_at=contact.seen_at,
        )
    if isinstance(plan, RevisionPlan):
        record_revision(conn, plan.revision)
        return "processed"
    if not isinstance(plan, ContactPlan):
        values = {**plan.values, "contact_id": contact_id if contact is not None else None}
        if not insert_message(conn, values) and plan.fill_placeholder:
            fill_placeholder(conn, values)
        if plan.reaction is not None:
            apply_reaction(conn, plan.reaction)
        if plan.events:
            add_events(conn, plan.events)
    if plan.extra:  # messages and contact syncs
        apply_rows(conn, StatePlan(plan.extra))
    return "processed"


def fill_placeholder(conn: Connection, values: dict[str, Any]) -> None:
    """A later history webhook gives the media of an earlier placeholder (same wamid): its
    type, body and raw replace the ``media_placeholder`` row's."""
    m = whatsapp_messages.c
    conn.execute(
        sa.update(whatsapp_messages)
        .where(m.phone_number_id == values["phone_number_id"], m.wamid == values["wamid"], m.type == "media_placeholder")
        .values(**storable({"type": values["type"], "body": values["body"], "raw": values["raw"]}))
    )
