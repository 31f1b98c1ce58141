"""Dead letters: select, replay and purge dead webhook rows; retention of processed bodies.

Used by the ``replay_dead_letters``/``purge_dead_letters``/``purge_webhook_bodies`` jobs and by
the admin API. A replay puts dead rows back in line (``pending``, attempts reset); because
processing is idempotent, replaying a webhook whose items have since been applied changes
nothing but the row's own state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import lane_of_row
from wa_core.db.schema import utcnow, whatsapp_webhook_logs as logs
from wa_core.organizations import resolve_organization


def error_kind_matches(kind: str) -> sa.ColumnElement[bool]:
    """Condition: one of a webhook row's error kinds is ``kind`` (``error_kind`` holds the
    row's kinds, comma separated and sorted)."""
    kind = kind.strip()
    column = logs.c.error_kind
    return sa.or_(column == kind, column.like(f"{kind},%"), column.like(f"%,{kind}"), column.like(f"%,{kind},%"))


class EmptySelection(ValueError):
    """A replay or purge named no filter: refuse rather than touch every dead letter by accident."""


@dataclass(frozen=True)
class DeadLetterSelection:
    """Which dead rows to act on; filters combine with AND.

    ``ids``: webhook log ids. ``received_from``/``received_to``: arrival time range (UTC,
    inclusive start, exclusive end). ``error_kind``: matches one of the row's error kinds
    (``unroutable``, ``invalid_json``…). ``organization``: the organization's id or external
    id (:func:`wa_core.organizations.resolve_organization`), matched against the row's lane
    (:mod:`wa_core.backlog`: the organization processing recorded, else the one its WABA is
    bound to). ``everything``: required to select all dead rows with no other filter.
    """

    ids: list[int] = field(default_factory=list)
    received_from: datetime | None = None
    received_to: datetime | None = None
    error_kind: str | None = None
    organization: str | None = None
    everything: bool = False

    def condition(self, conn: Connection) -> sa.ColumnElement[bool]:
        """SQL condition for the selected dead rows. Raises :class:`EmptySelection`, and
        :class:`~wa_core.organizations.UnknownOrganization` /
        :class:`~wa_core.organizations.InvalidOrganization` for an organization that is not one."""
        parts: list[Any] = []
        if self.ids:
            parts.append(logs.c.id.in_(self.ids))
        if self.received_from:
            parts.append(logs.c.received_at >= self.received_from)
        if self.received_to:
            parts.append(logs.c.received_at < self.received_to)
        if self.error_kind:
            parts.append(error_kind_matches(self.error_kind))
        if self.organization:
            parts.append(lane_of_row() == resolve_organization(conn, self.organization).id)
        if not parts and not self.everything:
            raise EmptySelection("name ids, a time range, an error kind or an organization (or set everything)")
        return sa.and_(logs.c.status == "dead", *parts)


def replay_dead_letters(conn: Connection, selection: DeadLetterSelection, *, dry_run: bool = False) -> list[int]:
    """Put the selected dead rows back in line; returns their ids (sorted).

    Rows whose body was purged cannot be replayed and are left alone. ``dry_run`` only
    returns what would be replayed.
    """
    condition = sa.and_(selection.condition(conn), logs.c.body.is_not(None))
    if dry_run:
        return sorted(conn.execute(sa.select(logs.c.id).where(condition)).scalars())
    now = utcnow()
    ids = conn.execute(
        sa.update(logs)
        .where(condition)
        .values(
            status="pending",
            attempts=0,
            next_attempt_at=None,
            locked_until=None,
            replay_count=logs.c.replay_count + 1,
            replayed_at=now,
            updated_at=now,
        )
        .returning(logs.c.id)
    ).scalars()
    return sorted(ids)


def purge_dead_letters(conn: Connection, selection: DeadLetterSelection) -> list[int]:
    """Remove the bodies (personal data) of the selected dead rows, keeping their metadata."""
    now = utcnow()
    return sorted(
        conn.execute(
            sa.update(logs)
            .where(selection.condition(conn), logs.c.body.is_not(None))
            .values(body=None, body_purged_at=now, updated_at=now)
            .returning(logs.c.id)
        ).scalars()
    )


def purge_processed_bodies(conn: Connection, older_than_days: float, *, now: datetime | None = None) -> int:
    """Retention: remove the bodies of ``processed`` rows received more than ``older_than_days``
    ago, keeping the rows' metadata. Failed and dead rows keep their bodies. Returns the count."""
    now = now or utcnow()
    cutoff = now - timedelta(days=older_than_days)
    result = conn.execute(
        sa.update(logs)
        .where(logs.c.status == "processed", logs.c.received_at < cutoff, logs.c.body.is_not(None))
        .values(body=None, body_purged_at=now, updated_at=now)
    )
    return result.rowcount


def assign_waba(conn: Connection, waba_id: str, organization: str) -> dict[str, Any]:
    """Operator decision for an unclaimed WABA (a hosted-link ``PARTNER_ADDED`` whose owner
    business belongs to no organization): bind it to ``organization`` (id or external id)
    and put its waiting ``account_update`` webhooks (failed or dead, unroutable) back in line.

    Returns ``{"organization_id", "connection_id", "replayed": [ids]}``. Raises
    :class:`~wa_core.organizations.UnknownOrganization` (a ``LookupError``) for an unknown
    organization, :class:`~wa_core.organizations.InvalidOrganization` for a malformed one, and
    :class:`~wa_core.bindings.BindingConflict` when the WABA belongs to another one.
    """
    from wa_core.bindings import bind_waba

    org_id = resolve_organization(conn, organization).id
    connection_id = bind_waba(conn, org_id, waba_id)
    now = utcnow()
    waiting = sa.and_(
        logs.c.status.in_(("failed", "dead")),
        logs.c.error_kind.like("%unroutable%"),
        logs.c.last_error.like(f"%WABA {waba_id}%"),
        logs.c.body.is_not(None),
    )
    replayed = sorted(
        conn.execute(
            sa.update(logs)
            .where(waiting)
            .values(status="pending", attempts=0, next_attempt_at=None, locked_until=None, replay_count=logs.c.replay_count + 1, replayed_at=now, updated_at=now)
            .returning(logs.c.id)
        ).scalars()
    )
    return {"organization_id": str(org_id), "connection_id": str(connection_id), "replayed": replayed}
