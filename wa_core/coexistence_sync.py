"""Coexistence contact and history syncs, supervised: state transitions, the stall check and
operator re-requests. The table and its states are in :mod:`wa_core.db.schema_coexistence`.

Source: Meta, "Onboarding WhatsApp Business app users" (coexistence). ``POST /{phone-number-id}/smb_app_data`` (``sync_type``
``smb_app_state_sync`` or ``history``) answers ``request_id`` when Meta accepted the request;
the data arrives later by webhook. Meta accepts each type **once** (2593107) and only
**within 24 h of onboarding** (2593108, ``whatsapp_configs.sync_deadline_at``).

Our rules on top of Meta's:

- the onboarding follow-up sends each type at most once (:func:`send_request` with
  ``min_gap=None``);
- an operator re-request (:func:`rerequest`) is refused while the onboarding's sync window
  is closed, within :data:`REQUEST_GAP` (24 h) of the last request that Meta accepted or may
  have received, and for a history that is complete or arriving; the refusal says when a
  request can next be sent (UTC). Meta stays the judge: its refusal (e.g. 2593107) is
  recorded in ``request_error`` and reported;
- a history request Meta accepted with no ``history`` webhook within ``HISTORY_STALL_HOURS``
  becomes ``stalled`` and raises one ``history_sync_stalled`` alert
  (:func:`check_stalled_syncs`); it is resolved once history data arrives.

Times are UTC datetimes; ``now`` is a parameter everywhere so that tests set the clock.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.db.engine import insert_ignore
from wa_core.db.schema import as_utc, utcnow, whatsapp_configs, whatsapp_connections
from wa_core.db.schema_coexistence import SYNC_TYPES, whatsapp_coexistence_syncs as syncs
from wa_core.meta.graph.errors import GraphError
from wa_core.processing.state import RowWrite

log = logging.getLogger("wa_core.coexistence")

HISTORY, CONTACTS = "history", "smb_app_state_sync"
#: Meta accepts ``smb_app_data`` only within 24 h of onboarding (2593108, §4)
SYNC_WINDOW = timedelta(hours=24)
#: an operator re-request is refused within this long of the last request (at most one a day)
REQUEST_GAP = timedelta(hours=24)
STALL_ALERT = "history_sync_stalled"


def _key(phone_number_id: str, sync_type: str) -> Any:
    return sa.and_(syncs.c.phone_number_id == phone_number_id, syncs.c.sync_type == sync_type)


def _ensure(conn: Connection, organization_id: uuid.UUID, phone_number_id: str, sync_type: str, status: str, now: datetime) -> None:
    insert_ignore(
        conn, syncs,
        {"organization_id": organization_id, "phone_number_id": phone_number_id, "sync_type": sync_type, "status": status,
         "request_count": 0, "updated_at": now},
        ["phone_number_id", "sync_type"],
    )


# --- transitions from webhooks (called by the coexistence handlers) ------------------------
def record_history_chunk(conn: Connection, organization_id: uuid.UUID, phone_number_id: str, progress: int | None, now: datetime) -> None:
    """A ``history`` chunk arrived (``progress`` 0-100 or None): ``receiving``, or ``complete``
    at progress 100 (Meta §4: "use progress == 100"); progress only moves up; a complete or
    declined history stays so. ``now``: our arrival time (UTC)."""
    _ensure(conn, organization_id, phone_number_id, HISTORY, "receiving", now)
    c = syncs.c
    done = sa.literal(progress == 100)
    conn.execute(
        sa.update(syncs).where(_key(phone_number_id, HISTORY)).values(
            status=sa.case((sa.or_(done, c.status == "complete"), "complete"), (c.status == "declined", "declined"), else_="receiving"),
            progress=c.progress if progress is None else sa.case((c.progress > progress, c.progress), else_=progress),
            last_data_at=sa.case((c.last_data_at > now, c.last_data_at), else_=now),
            completed_at=sa.case((sa.and_(done, c.completed_at.is_(None)), now), else_=c.completed_at),
            updated_at=now,
        )
    )


def record_history_declined(conn: Connection, organization_id: uuid.UUID, phone_number_id: str, reason: str, now: datetime) -> None:
    """The business declined to share its history (2593109, §4): ``declined`` (unless a chunk
    already completed it), with Meta's code and title as the reason."""
    _ensure(conn, organization_id, phone_number_id, HISTORY, "declined", now)
    c = syncs.c
    conn.execute(
        sa.update(syncs).where(_key(phone_number_id, HISTORY)).values(
            status=sa.case((c.status == "complete", "complete"), else_="declined"),
            declined_at=sa.func.coalesce(c.declined_at, now),
            declined_reason=sa.func.coalesce(c.declined_reason, reason[:500]),
            last_data_at=sa.case((c.last_data_at > now, c.last_data_at), else_=now),
            updated_at=now,
        )
    )


def contacts_received(organization_id: uuid.UUID, phone_number_id: str, now: datetime) -> RowWrite:
    """The :class:`~wa_core.processing.state.RowWrite` a contact sync item brings: the number's
    contact sync is ``receiving`` (Meta sends no end marker for contacts), ``last_data_at``
    moving forward only."""
    values = {"organization_id": organization_id, "phone_number_id": phone_number_id, "sync_type": CONTACTS,
              "status": "receiving", "request_count": 0, "last_data_at": now, "updated_at": now}
    return RowWrite(syncs, values, ("phone_number_id", "sync_type"), update=("status", "last_data_at", "updated_at"), newer="last_data_at")


# --- requests ---------------------------------------------------------------------------
@dataclass
class SyncRequest:
    """What a request did: ``outcome`` ``sent`` (Meta accepted: ``request_id``), ``refused``
    (by our rules, nothing sent) or ``failed`` (Meta refused or the call failed: ``message``);
    ``next_allowed_at``: the earliest UTC time a request may be sent again (None: not before
    a new onboarding, or not applicable)."""

    outcome: str
    message: str
    request_id: str | None = None
    next_allowed_at: datetime | None = None


def request_gate(row: Any, deadline: datetime | None, now: datetime) -> SyncRequest | None:
    """Why an operator may not re-request now (a ``refused`` :class:`SyncRequest` with the next
    allowed UTC time), or None when it may. ``row``: the sync's state (None: never requested);
    ``deadline``: the number's ``sync_deadline_at``."""
    deadline = as_utc(deadline)
    closed = f"Meta accepts smb_app_data only within 24 h of onboarding (window closed at {_iso(deadline)}); the business must offboard and redo Embedded Signup"
    if deadline is not None and now > deadline:
        return SyncRequest("refused", closed)
    if row is not None and row.status in ("complete", "receiving"):
        return SyncRequest("refused", f"the {row.sync_type} sync is {row.status}: nothing to re-request")
    last = as_utc(row.requested_at) if row is not None else None
    if last is not None and now < last + REQUEST_GAP:
        next_at = last + REQUEST_GAP
        if deadline is not None and next_at > deadline:
            return SyncRequest("refused", f"last requested at {_iso(last)}; the next request would be due at {_iso(next_at)}, after the sync window closes ({_iso(deadline)}): the business must offboard and redo Embedded Signup")
        return SyncRequest("refused", f"last requested at {_iso(last)}: at most one request per 24 h; next allowed at {_iso(next_at)}", next_allowed_at=next_at)
    return None


def _before_window(requested_at: datetime, deadline: datetime | None) -> bool:
    """Whether a request was sent before the number's current sync window opened (a new
    onboarding since: Meta accepts the syncs again)."""
    return deadline is not None and as_utc(requested_at) < as_utc(deadline) - SYNC_WINDOW


def _iso(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "unknown"


def send_request(engine: Engine, graph: Any, token: str, number: Any, sync_type: str, now: datetime, *, operator: bool = False) -> SyncRequest:
    """Send one ``smb_app_data`` request for ``number`` (a ``whatsapp_configs`` row) and record
    it. The request is claimed in the database before it is sent, so it is never sent twice
    at once: the onboarding (``operator=False``) sends a type only if it was never
    requested in the current sync window; an operator (``operator=True``) only past
    :func:`request_gate`. Meta's refusal
    (a :class:`GraphError` with a code) restores the previous ``requested_at``; a call whose
    answer was lost keeps it (Meta may have accepted it)."""
    if sync_type not in SYNC_TYPES:
        raise ValueError(f"sync_type must be one of {SYNC_TYPES}")
    with engine.begin() as conn:
        _ensure(conn, number.organization_id, number.phone_number_id, sync_type, "requested", now)
        row = conn.execute(sa.select(syncs).where(_key(number.phone_number_id, sync_type)).with_for_update()).one()
        if operator:
            refusal = request_gate(row, number.sync_deadline_at, now)
            if refusal is not None:
                return refusal
        elif row.requested_at is not None and not _before_window(row.requested_at, number.sync_deadline_at):
            return SyncRequest("refused", f"{sync_type} already requested at {_iso(as_utc(row.requested_at))}")
        conn.execute(sa.update(syncs).where(syncs.c.id == row.id).values(
            requested_at=now, request_count=syncs.c.request_count + 1, updated_at=now))
    try:
        request_id = graph.request_sync(number.phone_number_id, token, sync_type)
    except GraphError as exc:
        message = f"{sync_type}: {exc}"[:1000]
        with engine.begin() as conn:
            c = syncs.c
            conn.execute(sa.update(syncs).where(c.id == row.id).values(
                request_error=message,
                status=sa.case((c.request_id.is_(None), "failed"), else_=c.status),
                requested_at=row.requested_at if exc.code is not None else c.requested_at,
                updated_at=utcnow(),
            ))
        log.warning("coexistence %s request for %s failed: %s", sync_type, number.phone_number_id, exc)
        return SyncRequest("failed", message)
    with engine.begin() as conn:
        conn.execute(sa.update(syncs).where(syncs.c.id == row.id).values(
            status="requested", request_id=str(request_id)[:255], request_error=None, stalled_at=None, updated_at=utcnow()))
    return SyncRequest("sent", f"{sync_type} requested ({request_id})", request_id=str(request_id),
                       next_allowed_at=min(now + REQUEST_GAP, as_utc(number.sync_deadline_at) or now + REQUEST_GAP))


class UnknownNumber(LookupError):
    """No coexistence number with this ``phone_number_id`` is stored."""


def rerequest(engine: Engine, graph: Any, cipher: Any, phone_number_id: str, sync_type: str, now: datetime | None = None) -> SyncRequest:
    """An operator's re-request of ``sync_type`` for a coexistence number (admin API, Dagster
    job ``request_coexistence_sync``, ``wa-onboarding request-sync``): refused by
    :func:`request_gate`, else sent with the connection's business token. Raises
    :class:`UnknownNumber` for a number that is not stored or not a coexistence number, and
    ``ValueError`` for a sync type Meta does not know."""
    if sync_type not in SYNC_TYPES:
        raise ValueError(f"sync_type must be one of {SYNC_TYPES}")
    now = now or utcnow()
    cfg, con = whatsapp_configs.c, whatsapp_connections.c
    with engine.connect() as conn:
        number = conn.execute(sa.select(whatsapp_configs).where(cfg.phone_number_id == phone_number_id)).first()
        if number is None or not number.is_coexistence:
            raise UnknownNumber(f"no coexistence number {phone_number_id}")
        connection = conn.execute(sa.select(con.id, con.business_token_encrypted).where(con.id == number.connection_id)).one()
        row = conn.execute(sa.select(syncs).where(_key(phone_number_id, sync_type))).first()
    refusal = request_gate(row, number.sync_deadline_at, now)
    if refusal is not None:
        return refusal
    if not connection.business_token_encrypted:
        return SyncRequest("failed", "the connection has no business token")
    token = cipher.decrypt(connection.business_token_encrypted, connection.id)
    return send_request(engine, graph, token, number, sync_type, now, operator=True)


def sync_states(conn: Connection, phone_number_id: str) -> list[dict[str, Any]]:
    """The number's sync rows as dicts (one per type requested or received), times UTC.
    Raises :class:`UnknownNumber` when no number ``phone_number_id`` is stored (a stored
    Cloud API number answers an empty list)."""
    if conn.execute(sa.select(whatsapp_configs.c.id).where(whatsapp_configs.c.phone_number_id == phone_number_id)).first() is None:
        raise UnknownNumber(f"no number {phone_number_id}")
    found = conn.execute(sa.select(syncs).where(syncs.c.phone_number_id == phone_number_id).order_by(syncs.c.sync_type)).mappings()
    return [{k: (as_utc(v) if isinstance(v, datetime) else v) for k, v in r.items() if k not in ("id", "organization_id")} for r in found]


# --- the stall check --------------------------------------------------------------------
def check_stalled_syncs(engine: Engine, settings: Any, now: datetime | None = None) -> dict[str, int]:
    """Mark history syncs ``stalled`` whose request Meta accepted (``request_id``) at least
    ``settings.history_stall_hours`` ago with no history webhook since, raise one
    ``history_sync_stalled`` alert each (naming when a re-request is next allowed), and
    resolve the alerts of stalled syncs whose data has arrived since. Returns counts
    ``{"stalled": n, "recovered": m}``."""
    from wa_core.alerts import Alert, get_notifier

    now = now or utcnow()
    c, cfg = syncs.c, whatsapp_configs.c
    cutoff = now - timedelta(hours=settings.history_stall_hours)
    with engine.begin() as conn:
        stalled = conn.execute(
            sa.update(syncs)
            .where(c.sync_type == HISTORY, c.status == "requested", c.request_id.is_not(None), c.requested_at <= cutoff)
            .values(status="stalled", stalled_at=now, updated_at=now)
            .returning(c.organization_id, c.phone_number_id, c.sync_type, c.status, c.request_id, c.requested_at)
        ).all()
        deadlines = dict(conn.execute(sa.select(cfg.phone_number_id, cfg.sync_deadline_at).where(
            cfg.phone_number_id.in_([r.phone_number_id for r in stalled]))).all()) if stalled else {}
        recovered = conn.execute(sa.select(c.phone_number_id).where(
            c.sync_type == HISTORY, c.stalled_at.is_not(None), c.status.in_(("receiving", "complete", "declined")))).scalars().all()
    notifier = get_notifier(settings, engine)
    for row in stalled:
        gate = request_gate(row, deadlines.get(row.phone_number_id), now)
        when = f"next re-request allowed at {_iso(gate.next_allowed_at)}" if gate and gate.next_allowed_at else (
            gate.message if gate else "a re-request is allowed now")
        notifier.notify(Alert(
            STALL_ALERT, row.phone_number_id,
            f"history sync of number {row.phone_number_id} accepted by Meta at {_iso(as_utc(row.requested_at))} "
            f"(request {row.request_id}) but no history webhook in {settings.history_stall_hours:g} h; {when} "
            "(job request_coexistence_sync or the admin API)",
            severity="warning",
            details={"phone_number_id": row.phone_number_id, "request_id": row.request_id,
                     "requested_at": _iso(as_utc(row.requested_at)), "next_allowed_at": _iso(gate.next_allowed_at) if gate else _iso(now)},
            organization_id=row.organization_id,
        ))
    resolved = sum(1 for phone in recovered if notifier.resolve(STALL_ALERT, phone))
    return {"stalled": len(stalled), "recovered": resolved}


__all__ = [
    "CONTACTS", "HISTORY", "REQUEST_GAP", "STALL_ALERT", "SYNC_WINDOW", "SyncRequest", "UnknownNumber", "check_stalled_syncs",
    "contacts_received", "record_history_chunk", "record_history_declined", "request_gate", "rerequest", "send_request", "sync_states",
]
