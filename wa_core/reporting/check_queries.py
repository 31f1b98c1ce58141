"""The live queries of the dashboard checks: recent dead letters, WABAs waiting for an
owner, items parked waiting for their message. Each reads the app tables at the time of the
check (not a dashboard's snapshot)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import lane_expression, lane_join
from wa_core.db.schema import (
    as_utc,
    whatsapp_connections,
    whatsapp_message_revisions,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_webhook_logs,
)

#: how many ids a check lists in its metadata and alert details
IDS_SHOWN = 50

# the message account_update processing records for a PARTNER_ADDED whose WABA no one owns
# (wa_core.processing.handlers.account_update: Unroutable(f"no organization is bound to WABA {waba_id} ({event})"))
_UNCLAIMED = re.compile(r"no organization is bound to WABA (\S+) \(PARTNER_ADDED\)")


@dataclass(frozen=True)
class DeadLetters:
    """Dead webhook rows received since ``since`` (UTC): ``count``, ``unrouted`` (those of
    the unrouted lane, :mod:`wa_core.backlog`), ``by_error_kind`` and the newest ids (at
    most :data:`IDS_SHOWN`)."""

    since: datetime
    count: int
    unrouted: int
    by_error_kind: dict[str, int]
    webhook_ids: list[int]


def dead_letters_since(conn: Connection, since: datetime) -> DeadLetters:
    """Dead webhook rows received at or after ``since`` (UTC)."""
    logs = whatsapp_webhook_logs.c
    where = sa.and_(logs.status == "dead", logs.received_at >= since)
    kind = sa.func.coalesce(logs.error_kind, "(none)")
    by_kind = {k: int(n) for k, n in conn.execute(sa.select(kind, sa.func.count()).where(where).group_by(kind))}
    unrouted = conn.execute(sa.select(sa.func.count()).select_from(lane_join()).where(where, lane_expression().is_(None))).scalar_one()
    ids = list(conn.execute(sa.select(logs.id).where(where).order_by(logs.id.desc()).limit(IDS_SHOWN)).scalars())
    return DeadLetters(since, sum(by_kind.values()), int(unrouted), dict(sorted(by_kind.items())), ids)


@dataclass
class UnclaimedWaba:
    """A WABA shared with the app (PARTNER_ADDED) that no organization owns yet.

    ``webhook_ids``: its waiting webhook rows (``failed``: still retried, ``dead``: given up
    after an onboarding's life, 24 h); ``first_received_at``: when the oldest arrived (UTC).
    """

    waba_id: str
    webhook_ids: list[int] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    first_received_at: datetime | None = None


def unclaimed_wabas(conn: Connection) -> list[UnclaimedWaba]:
    """WABAs waiting for an owner, by WABA id.

    Processing records a PARTNER_ADDED for a WABA bound to no organization (and whose owner
    business matches no single organization) as an ``unroutable`` failure whose
    ``last_error`` names the WABA; it is retried for 24 h, then dead. An operator binds it
    with the ``assign_waba`` job or the admin API, which replays those rows. A WABA that is
    bound by now is not listed, even while its row waits for the next attempt.
    """
    logs = whatsapp_webhook_logs.c
    rows = conn.execute(
        sa.select(logs.id, logs.status, logs.received_at, logs.last_error)
        .where(
            logs.status.in_(("failed", "dead")),
            logs.error_kind.like("%unroutable%"),
            logs.last_error.like("%(PARTNER_ADDED)%"),
        )
        .order_by(logs.received_at, logs.id)
    ).all()
    found: dict[str, UnclaimedWaba] = {}
    for row in rows:
        for waba_id in dict.fromkeys(_UNCLAIMED.findall(row.last_error or "")):
            item = found.setdefault(waba_id, UnclaimedWaba(waba_id))
            item.webhook_ids.append(row.id)
            item.states.append(row.status)
            if item.first_received_at is None:
                item.first_received_at = as_utc(row.received_at)
    if found:
        bound = set(
            conn.execute(sa.select(whatsapp_connections.c.waba_id).where(whatsapp_connections.c.waba_id.in_(list(found)))).scalars()
        )
        for waba_id in bound:
            found.pop(waba_id, None)
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class Parked:
    """Items parked because their message is not stored, older than the threshold.

    ``statuses``: status rows whose (phone_number_id, wamid) has no message; ``revisions``:
    edits and revokes not applied yet (``applied_at IS NULL``). ``oldest_received_at``: the
    oldest such item's arrival (UTC, None when none); ``oldest_age_seconds`` its age.
    ``statuses_all``/``revisions_all``: parked items of any age (context).
    """

    statuses: int
    revisions: int
    statuses_all: int
    revisions_all: int
    oldest_received_at: datetime | None
    oldest_age_seconds: float | None

    @property
    def count(self) -> int:
        """Parked items older than the threshold."""
        return self.statuses + self.revisions


def parked_items(conn: Connection, now: datetime, older_than: timedelta) -> Parked:
    """Statuses and revisions waiting for their message, received more than ``older_than``
    before ``now`` (UTC). Statuses of a message not stored yet are applied when it arrives
    (:func:`wa_core.processing.store.insert_message`), and so are edits and revokes."""
    cutoff = now - older_than
    st, m, rev = whatsapp_message_statuses.c, whatsapp_messages.c, whatsapp_message_revisions.c
    no_message = ~sa.exists().where(m.phone_number_id == st.phone_number_id, m.wamid == st.wamid)
    old_st = sa.func.count().filter(st.received_at <= cutoff)
    statuses = conn.execute(sa.select(old_st, sa.func.count(), sa.func.min(st.received_at)).where(no_message)).one()
    old_rev = sa.func.count().filter(rev.received_at <= cutoff)
    revisions = conn.execute(
        sa.select(old_rev, sa.func.count(), sa.func.min(rev.received_at)).where(rev.applied_at.is_(None))
    ).one()
    oldest = [as_utc(t) for t in (statuses[2], revisions[2]) if t is not None]
    first = min(oldest) if oldest else None
    return Parked(
        int(statuses[0]),
        int(revisions[0]),
        int(statuses[1]),
        int(revisions[1]),
        first,
        round((now - first).total_seconds(), 3) if first else None,
    )
