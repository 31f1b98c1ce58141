"""Webhooks claimed from the unrouted lane that turn out to belong elsewhere are handed back.

The claim decides a row's lane before processing from its routing hint (``entry[].id``, see
:mod:`wa_core.routing`). A body without that hint (no ``entry[].id``, an id that is not
digits, a huge body whose envelope is not at its start) is in the shared unrouted lane,
which shard :data:`~wa_core.backlog.UNROUTED_SHARD` claims and no pause holds. Parsing it
tells where it really belongs (its items route by ``metadata.phone_number_id`` or WABA).
When that organization or WABA is paused, or its lane belongs to another shard, applying it
would bypass the pause or the shard, so the engine does not apply it: :func:`release`
writes the learned organization and WABA onto the row (its lane from now on), clears the
lease and gives the attempt back. The row is then claimed by the right shard once nothing
holds it. Rows whose hint was known are never looked at here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import lane_shard
from wa_core.db.schema import processing_org_controls, processing_waba_controls
from wa_core.db.schema import whatsapp_webhook_logs as logs

from .claim import ClaimedRow
from .dispatch import ParsedRow, WebhookOutcome

#: status of an outcome whose row was handed back to its real lane unapplied
RELEASED = "released"


def misrouted(
    conn: Connection, pairs: Sequence[tuple[ClaimedRow, ParsedRow]], shard: int, shards: int
) -> dict[int, tuple[uuid.UUID, str | None]]:
    """Rows claimed from the unrouted lane whose items belong to an organization that is
    paused, has a paused WABA, or whose lane belongs to a shard other than ``shard`` (of
    ``shards``): ``{row id: (organization_id, waba_id)}`` as learned while parsing. At most
    two small reads, only when such rows exist."""
    learned: dict[int, tuple[uuid.UUID, str | None]] = {}
    for row, parsed in pairs:
        if row.unrouted and not parsed.preset and parsed.organization_ids:
            organization_id, waba_id = next(iter(parsed.organization_ids.items()))
            learned[row.id] = (organization_id, waba_id)
    if not learned:
        return {}
    orgs = {org for org, _ in learned.values()}
    wabas = {waba for _, waba in learned.values() if waba}
    paused_orgs = set(
        conn.execute(
            sa.select(processing_org_controls.c.organization_id).where(
                processing_org_controls.c.organization_id.in_(orgs), processing_org_controls.c.paused_at.is_not(None)
            )
        ).scalars()
    )
    paused_wabas = set()
    if wabas:
        paused_wabas = set(
            conn.execute(
                sa.select(processing_waba_controls.c.waba_id).where(
                    processing_waba_controls.c.waba_id.in_(wabas), processing_waba_controls.c.paused_at.is_not(None)
                )
            ).scalars()
        )
    return {
        row_id: (org, waba)
        for row_id, (org, waba) in learned.items()
        if org in paused_orgs or waba in paused_wabas or lane_shard(org, shards) != shard
    }


def release(conn: Connection, rows: Sequence[ClaimedRow], lanes: dict[int, tuple[uuid.UUID, str | None]], now: datetime) -> set[int]:
    """Hand ``rows`` back unapplied within the caller's transaction: their learned
    organization (and WABA hint, when the row had none) written, lease cleared, attempt given
    back; only while the claim still owns the row (same ``attempts``). Returns the ids
    released."""
    released: set[int] = set()
    for row in sorted(rows, key=lambda r: r.id):  # rare: a few rows per batch at most
        organization_id, waba_id = lanes[row.id]
        result = conn.execute(
            sa.update(logs)
            .where(logs.c.id == row.id, logs.c.attempts == row.attempts)
            .values(
                organization_id=organization_id,
                waba_id=sa.func.coalesce(logs.c.waba_id, waba_id),
                locked_until=None,
                attempts=logs.c.attempts - 1,
                updated_at=now,
            )
        )
        if result.rowcount:
            released.add(row.id)
    return released


def released_outcome(row: ClaimedRow, organization_id: uuid.UUID) -> WebhookOutcome:
    """The outcome reported for a released row: no items counted, status :data:`RELEASED`."""
    return WebhookOutcome(row.id, status=RELEASED, received_at=row.received_at, organization_id=organization_id)


__all__ = ["RELEASED", "misrouted", "release", "released_outcome"]
