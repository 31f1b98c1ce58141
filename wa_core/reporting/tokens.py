"""The ``token_health`` dashboard: per phone number, the business token's state now and days
to expiry (:func:`wa_core.token_health.current_state`, the classifier every view uses)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc, utcnow, whatsapp_configs
from wa_core.organizations import organizations_by_id
from wa_core.reporting.common import lane_columns, markdown
from wa_core.reporting.snapshots import Dashboard
from wa_core.token_health import NEEDS_ACTION, NOT_CHECKED, TOKEN_STATES, UNHEALTHY, current_state, days_to_expiry, state_label


@dataclass(frozen=True)
class TokenHealthRow:
    """One phone number's business token (ids only: no display number).

    ``state``: :func:`~wa_core.token_health.current_state` now; ``recorded_state``:
    ``whatsapp_configs.token_health`` as last recorded (None = not checked yet);
    ``days_to_expiry``: days (2 decimals, negative once past), None = never expires (or not
    known); ``checked_at``: last ``debug_token`` check (UTC); ``needs_action``: the state is
    in :data:`~wa_core.token_health.NEEDS_ACTION` (unhealthy or expiring soon).
    """

    organization_id: str | None
    organization_external_id: str | None
    organization: str
    waba_id: str
    phone_number_id: str
    number_status: str
    state: str
    recorded_state: str | None
    reason: str | None
    expires_at: datetime | None
    days_to_expiry: float | None
    checked_at: datetime | None
    needs_action: bool


def compute_token_health(conn: Connection, now: datetime | None = None, *, expiring_soon_days: float = 7.0) -> Dashboard:
    """The ``token_health`` dashboard at ``now`` (UTC, default now).

    ``rows``: :class:`TokenHealthRow` per phone number, by organization then phone_number_id.
    ``totals``: ``phone_numbers``, ``<state>`` count per state of
    :data:`~wa_core.token_health.TOKEN_STATES` (``not_checked``: never checked yet),
    ``unhealthy`` (:data:`~wa_core.token_health.UNHEALTHY`), ``needs_action`` (unhealthy or
    expiring soon) and ``min_days_to_expiry`` (None when no token has a known expiry).
    ``expiring_soon_days``: see :func:`~wa_core.token_health.current_state`.
    """
    now = now or utcnow()
    soon = timedelta(days=expiring_soon_days)
    orgs = organizations_by_id(conn)
    rows = []
    for r in conn.execute(sa.select(whatsapp_configs)):
        state = current_state(r.token_health, r.token_expires_at, now, soon)
        rows.append(
            TokenHealthRow(
                **lane_columns(orgs, r.organization_id),
                waba_id=r.waba_id,
                phone_number_id=r.phone_number_id,
                number_status=r.status,
                state=state,
                recorded_state=r.token_health,
                reason=r.token_health_reason,
                expires_at=as_utc(r.token_expires_at),
                days_to_expiry=days_to_expiry(r.token_expires_at, now),
                checked_at=as_utc(r.token_checked_at),
                needs_action=state in NEEDS_ACTION,
            )
        )
    rows.sort(key=lambda t: (t.organization, t.phone_number_id))
    counts = Counter(t.state for t in rows)
    known = [t.days_to_expiry for t in rows if t.days_to_expiry is not None]
    totals: dict[str, Any] = {"phone_numbers": len(rows)}
    totals.update({state: counts.get(state, 0) for state in TOKEN_STATES})
    totals["unhealthy"] = sum(counts.get(state, 0) for state in UNHEALTHY)
    totals["needs_action"] = sum(1 for t in rows if t.needs_action)
    totals["min_days_to_expiry"] = min(known) if known else None
    return Dashboard(computed_at=now, totals=totals, rows=rows)


def token_markdown(rows: list[TokenHealthRow]) -> str:
    """The ``by_phone_number`` table of ``token_health``: states as a person reads them
    (``not checked yet``), days to expiry ``never`` when the checked token never expires."""
    not_yet = state_label(NOT_CHECKED)
    return markdown(
        ["organization", "WABA", "phone_number_id", "number", "token", "days to expiry", "checked at"],
        (
            [
                t.organization,
                t.waba_id,
                t.phone_number_id,
                t.number_status,
                state_label(t.state),
                t.days_to_expiry if t.days_to_expiry is not None else ("never" if t.checked_at else not_yet),
                t.checked_at.isoformat(timespec="seconds") if t.checked_at else not_yet,
            ]
            for t in rows
        ),
        numeric_from=5,
    )
