"""Operator controls of processing: pause and resume one organization or one WABA, and
per-organization caps. Used by the admin API (``/api/admin/whatsapp/processing/…``), the
``pause_processing`` / ``resume_processing`` Dagster jobs and ``wa-onboarding pause|resume|caps``.

A pause holds rows, it never drops them: webhooks keep landing (``pending``) and wait; the
claim skips them (:func:`wa_core.backlog.paused_condition`) and the backlog views count them
as ``waiting_paused``; a resume makes them claimable again, oldest first. Pausing an
organization holds its whole lane (every WABA bound to it); pausing a WABA holds the webhooks
whose routing hint (``entry[0].id``) is that WABA, bound or not. Both are idempotent: pausing
what is paused, or resuming what runs, changes nothing and says so (``changed`` false); the
first pause's time and reason are kept. Rows a run had already claimed when the pause landed
are finished by that run.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import claimable_condition, lane_expression, lane_join
from wa_core.db.schema import (
    as_utc,
    organizations,
    processing_org_controls as org_controls,
    processing_waba_controls as waba_controls,
    utcnow,
    whatsapp_connections,
    whatsapp_webhook_logs as logs,
)
from wa_core.reporting.admin_status import InvalidOrganization, UnknownOrganization, resolve_organization

__all__ = [
    "InvalidControl", "UnknownWaba", "InvalidOrganization", "UnknownOrganization",
    "PauseState", "OrgCaps", "waba_ref", "organization_ref", "set_paused", "set_caps", "list_controls",
]

#: a WABA id as Meta writes it (digits); the admin API and jobs accept it as a string or an int
WABA_ID = re.compile(r"^[0-9]{1,64}$")
#: largest cap accepted (rows leased at once, claims per minute)
MAX_CAP = 1_000_000
_UNSET: Any = object()


class InvalidControl(ValueError):
    """A malformed control request: no or two targets, a malformed WABA id, a bad cap (422)."""


class UnknownWaba(LookupError):
    """No binding, no waiting webhook and no control names this WABA (404)."""


def waba_ref(value: object) -> str:
    """A WABA id given as a string or an int, as a string of digits; raises :class:`InvalidControl`."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidControl("waba_id must be a WABA id (digits, as a string or a number)")
    text = str(value).strip()
    if not WABA_ID.match(text):
        raise InvalidControl("waba_id must be a WABA id (1-64 digits)")
    return text


def organization_ref(value: object) -> str:
    """An organization id or external id given as a string or an int, as a string; raises
    :class:`InvalidOrganization` for anything else (resolution checks the rest)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidOrganization("organization must be an organization id or external id (a string or a number)")
    return str(value)


@dataclass(frozen=True)
class PauseState:
    """The state of one pause control after a change.

    ``target``: ``"organization"`` or ``"waba"``; ``organization_id`` /
    ``organization_external_id``: the organization (for a WABA: the one it is bound to, if
    any); ``waba_id`` for a WABA; ``paused_at`` (UTC) and ``paused_reason`` while paused;
    ``resumed_at``: the last resume (UTC); ``changed``: whether this call changed anything;
    ``waiting``: claimable-if-running rows of the target now (held while paused, released by
    the resume).
    """

    target: str
    organization_id: uuid.UUID | None
    organization_external_id: str | None
    waba_id: str | None
    paused: bool
    paused_at: datetime | None
    paused_reason: str | None
    resumed_at: datetime | None
    changed: bool
    waiting: int

    def as_dict(self) -> dict:
        """JSON-ready form (ids as strings, times as ISO 8601 UTC)."""
        out = dict(self.__dict__)
        out["organization_id"] = str(self.organization_id) if self.organization_id else None
        for key in ("paused_at", "resumed_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _upsert_key(conn: Connection, table: sa.Table, key: dict, now: datetime) -> None:
    """Create the control row ``key`` if missing (concurrent callers: one wins, none fails)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(table).values(**key, updated_at=now).on_conflict_do_nothing())


def _resolve_waba(conn: Connection, waba_id: str) -> tuple[uuid.UUID | None, str | None]:
    """The organization (id, external id) a known WABA is bound to, or (None, None) when it is
    known but unbound; raises :class:`UnknownWaba`."""
    c = whatsapp_connections.c
    bound = conn.execute(
        sa.select(c.organization_id, organizations.c.external_id)
        .select_from(whatsapp_connections.join(organizations, organizations.c.id == c.organization_id))
        .where(c.waba_id == waba_id)
    ).first()
    if bound:
        return bound[0], bound[1]
    seen = conn.execute(
        sa.select(sa.literal(1)).where(
            sa.or_(
                sa.exists().where(logs.c.status.in_(("pending", "failed")), logs.c.waba_id == waba_id),
                sa.exists().where(waba_controls.c.waba_id == waba_id),
            )
        )
    ).first()
    if not seen:
        raise UnknownWaba(f"no WABA {waba_id}: not bound to an organization and no webhook of it waits")
    return None, None


def set_paused(
    conn: Connection,
    *,
    organization: object = None,
    waba_id: object = None,
    paused: bool,
    reason: str | None = None,
    now: datetime | None = None,
) -> PauseState:
    """Pause (``paused=True``) or resume one organization (id or external id) or one WABA,
    on ``conn`` (the caller commits). Exactly one of ``organization`` / ``waba_id``.

    Raises :class:`InvalidControl` (no or two targets, malformed WABA id),
    :class:`InvalidOrganization` (malformed reference), :class:`UnknownOrganization` and
    :class:`UnknownWaba` (nothing by that id).
    """
    if (organization is None) == (waba_id is None):
        raise InvalidControl("give exactly one of organization and waba_id")
    if reason is not None and (len(reason) > 1000 or any(ord(ch) < 32 and ch not in "\t" for ch in reason)):
        raise InvalidControl("reason must be at most 1000 printable characters")
    now = now or utcnow()
    if organization is not None:
        org = resolve_organization(conn, organization_ref(organization))
        table, org_id, external, waba = org_controls, org.id, org.external_id, None
        key = {"organization_id": org.id}
        pk = org_controls.c.organization_id == org.id
        rows = lane_expression() == org.id
    else:
        waba = waba_ref(waba_id)
        org_id, external = _resolve_waba(conn, waba)
        table, key, pk = waba_controls, {"waba_id": waba}, waba_controls.c.waba_id == waba
        rows = logs.c.waba_id == waba
    _upsert_key(conn, table, key, now)
    if paused:
        changed = conn.execute(
            sa.update(table).where(pk, table.c.paused_at.is_(None)).values(paused_at=now, paused_reason=reason, updated_at=now)
        ).rowcount
    else:
        changed = conn.execute(
            sa.update(table).where(pk, table.c.paused_at.is_not(None)).values(paused_at=None, resumed_at=now, updated_at=now)
        ).rowcount
    state = conn.execute(sa.select(table.c.paused_at, table.c.paused_reason, table.c.resumed_at).where(pk)).one()
    waiting = conn.execute(
        sa.select(sa.func.count()).select_from(lane_join()).where(rows, claimable_condition(now))
    ).scalar_one()
    return PauseState(
        "organization" if organization is not None else "waba",
        org_id,
        external,
        waba,
        state.paused_at is not None,
        as_utc(state.paused_at),
        state.paused_reason if state.paused_at is not None else None,
        as_utc(state.resumed_at),
        bool(changed),
        int(waiting),
    )


@dataclass(frozen=True)
class OrgCaps:
    """An organization's own caps: ``None`` = the global setting, 0 = no cap."""

    organization_id: uuid.UUID
    organization_external_id: str
    max_in_flight: int | None
    webhooks_per_minute: int | None

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {**self.__dict__, "organization_id": str(self.organization_id)}


def _cap(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAP:
        raise InvalidControl(f"{name} must be null (the global setting), 0 (no cap) or a whole number up to {MAX_CAP}")
    return value


def set_caps(
    conn: Connection, organization: object, *, max_in_flight: object = _UNSET, webhooks_per_minute: object = _UNSET
) -> OrgCaps:
    """Set an organization's own caps (only the ones given; ``None`` = back to the global
    setting, 0 = no cap for it), on ``conn`` (the caller commits). Idempotent. Raises
    :class:`InvalidControl` for a bad value, :class:`InvalidOrganization` /
    :class:`UnknownOrganization` for the organization."""
    values = {}
    if max_in_flight is not _UNSET:
        values["max_in_flight"] = _cap(max_in_flight, "max_in_flight")
    if webhooks_per_minute is not _UNSET:
        values["webhooks_per_minute"] = _cap(webhooks_per_minute, "webhooks_per_minute")
    org = resolve_organization(conn, organization_ref(organization))
    now = utcnow()
    _upsert_key(conn, org_controls, {"organization_id": org.id}, now)
    pk = org_controls.c.organization_id == org.id
    if values:
        conn.execute(sa.update(org_controls).where(pk).values(**values, updated_at=now))
    row = conn.execute(sa.select(org_controls.c.max_in_flight, org_controls.c.webhooks_per_minute).where(pk)).one()
    return OrgCaps(org.id, org.external_id, row.max_in_flight, row.webhooks_per_minute)


def list_controls(conn: Connection) -> dict:
    """Every control in force: ``{"organizations": [...], "wabas": [...]}``: organizations
    that are paused or have their own caps, and paused WABAs (JSON-ready dicts)."""
    o, w = org_controls.c, waba_controls.c
    orgs = conn.execute(
        sa.select(o.organization_id, organizations.c.external_id, o.paused_at, o.paused_reason, o.resumed_at,
                  o.max_in_flight, o.webhooks_per_minute)
        .select_from(org_controls.join(organizations, organizations.c.id == o.organization_id))
        .where(sa.or_(o.paused_at.is_not(None), o.max_in_flight.is_not(None), o.webhooks_per_minute.is_not(None)))
        .order_by(organizations.c.external_id)
    ).all()
    wabas = conn.execute(
        sa.select(w.waba_id, w.paused_at, w.paused_reason, whatsapp_connections.c.organization_id)
        .select_from(waba_controls.outerjoin(whatsapp_connections, whatsapp_connections.c.waba_id == w.waba_id))
        .where(w.paused_at.is_not(None))
        .order_by(w.waba_id)
    ).all()
    iso = lambda t: as_utc(t).isoformat() if t else None  # noqa: E731
    return {
        "organizations": [
            {"organization_id": str(r.organization_id), "organization_external_id": r.external_id,
             "paused": r.paused_at is not None, "paused_at": iso(r.paused_at), "paused_reason": r.paused_reason,
             "resumed_at": iso(r.resumed_at), "max_in_flight": r.max_in_flight, "webhooks_per_minute": r.webhooks_per_minute}
            for r in orgs
        ],
        "wabas": [
            {"waba_id": r.waba_id, "organization_id": str(r.organization_id) if r.organization_id else None,
             "paused_at": iso(r.paused_at), "paused_reason": r.paused_reason}
            for r in wabas
        ],
    }
