"""The ``org_whatsapp_status`` dashboard: per organization, onboardings, connections, phone
numbers, messages, webhooks (24 h), the claimable backlog and token health."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import backlog_by_organization, lane_expression, lane_join, lane_label
from wa_core.db.schema import (
    CONFIG_STATES,
    utcnow,
    whatsapp_configs,
    whatsapp_connections,
    whatsapp_messages,
    whatsapp_onboarding,
    whatsapp_webhook_logs,
)
from wa_core.organizations import organizations_by_id
from wa_core.reporting.common import WINDOW, grouped, markdown
from wa_core.reporting.snapshots import Dashboard
from wa_core.token_health import TOKEN_STATES, UNHEALTHY, current_state

#: webhook states counted per organization over 24 h
WEBHOOK_STATES = ("processed", "failed", "dead")


@dataclass(frozen=True)
class OrgStatus:
    """One organization's row of ``org_whatsapp_status`` (24 h = the 24 h before ``computed_at``).

    ``phone_numbers``: count per ``whatsapp_configs.status`` (every state present, 0 when
    none); ``tokens``: count per token state (:func:`wa_core.token_health.current_state`,
    every state of :data:`~wa_core.token_health.TOKEN_STATES` present). Messages exclude
    history imports (old messages synced in, not exchanged in the window). Webhooks count by
    lane (:mod:`wa_core.backlog`) and arrival in the window; ``backlog_claimable``: the
    lane's claimable rows now (:func:`wa_core.backlog.claimable_condition`).
    """

    organization_id: str | None
    organization_external_id: str | None
    organization: str
    completed_onboardings: int
    active_connections: int
    phone_numbers: dict[str, int]
    messages_in_24h: int
    messages_out_24h: int
    webhooks_processed_24h: int
    webhooks_failed_24h: int
    webhooks_dead_24h: int
    backlog_claimable: int
    tokens: dict[str, int]


def compute_org_status(conn: Connection, now: datetime | None = None, *, expiring_soon_days: float = 7.0) -> Dashboard:
    """The ``org_whatsapp_status`` dashboard at ``now`` (UTC, default now).

    ``rows``: one :class:`OrgStatus` per organization (all of them), by name.
    ``totals``: ``organizations``; ``completed_onboardings``, ``active_connections``,
    ``messages_in_24h``/``messages_out_24h`` (sums of the rows); ``phone_numbers`` (total)
    and ``phone_numbers_<state>``; ``webhooks_processed_24h``, ``webhooks_failed_24h``,
    ``webhooks_dead_24h`` and ``backlog_claimable`` over **every** lane, the unrouted one
    included (so ``webhooks_dead_24h`` is the ``failed_webhooks`` dashboard's ``dead_24h``
    and ``backlog_claimable`` the ``webhook_lag`` one's), and ``webhooks_unrouted_24h``: the
    unrouted lane's rows received in the window (any state); ``tokens_<state>`` and
    ``tokens_unhealthy`` (:data:`wa_core.token_health.UNHEALTHY`). "Failed" are rows waiting
    for a retry, "dead" rows given up on. ``expiring_soon_days``: see
    :func:`wa_core.token_health.current_state`.
    """
    now = now or utcnow()
    since = now - WINDOW
    soon = timedelta(days=expiring_soon_days)
    o, c, cfg, m, logs = (
        whatsapp_onboarding.c,
        whatsapp_connections.c,
        whatsapp_configs.c,
        whatsapp_messages.c,
        whatsapp_webhook_logs.c,
    )
    n = sa.func.count()
    completed = grouped(conn, sa.select(o.organization_id, n).where(o.status == "completed").group_by(o.organization_id))
    active = grouped(conn, sa.select(c.organization_id, n).where(c.status == "active").group_by(c.organization_id))
    numbers = grouped(conn, sa.select(cfg.organization_id, cfg.status, n).group_by(cfg.organization_id, cfg.status))
    tokens: dict[Any, Counter] = defaultdict(Counter)
    for row in conn.execute(sa.select(cfg.organization_id, cfg.token_health, cfg.token_expires_at)):
        tokens[row.organization_id][current_state(row.token_health, row.token_expires_at, now, soon)] += 1
    messages = grouped(
        conn,
        sa.select(m.organization_id, m.direction, n)
        .where(m.received_at >= since, m.received_at <= now, m.source != "history")
        .group_by(m.organization_id, m.direction),
    )
    lane = lane_expression()
    hooks = grouped(
        conn,
        sa.select(lane, logs.status, n)
        .select_from(lane_join())
        .where(logs.received_at >= since, logs.received_at <= now)
        .group_by(lane, logs.status),
    )
    claimable = {b.organization_id: b.claimable for b in backlog_by_organization(conn, now)}
    rows = []
    for org_id, ref in sorted(organizations_by_id(conn).items(), key=lambda kv: (kv[1].name, kv[1].external_id)):
        rows.append(
            OrgStatus(
                organization_id=str(org_id),
                organization_external_id=ref.external_id,
                organization=lane_label(org_id, ref.name),
                completed_onboardings=completed.get(org_id, 0),
                active_connections=active.get(org_id, 0),
                phone_numbers={state: numbers.get((org_id, state), 0) for state in CONFIG_STATES},
                messages_in_24h=messages.get((org_id, "inbound"), 0),
                messages_out_24h=messages.get((org_id, "outbound"), 0),
                webhooks_processed_24h=hooks.get((org_id, "processed"), 0),
                webhooks_failed_24h=hooks.get((org_id, "failed"), 0),
                webhooks_dead_24h=hooks.get((org_id, "dead"), 0),
                backlog_claimable=claimable.get(org_id, 0),
                tokens={state: tokens[org_id][state] for state in TOKEN_STATES},
            )
        )
    totals: dict[str, Any] = {
        "organizations": len(rows),
        "completed_onboardings": sum(r.completed_onboardings for r in rows),
        "active_connections": sum(r.active_connections for r in rows),
        "phone_numbers": sum(sum(r.phone_numbers.values()) for r in rows),
    }
    totals.update({f"phone_numbers_{state}": sum(r.phone_numbers[state] for r in rows) for state in CONFIG_STATES})
    totals["messages_in_24h"] = sum(r.messages_in_24h for r in rows)
    totals["messages_out_24h"] = sum(r.messages_out_24h for r in rows)
    for state in WEBHOOK_STATES:  # every lane, the unrouted one included
        totals[f"webhooks_{state}_24h"] = sum(count for (_, s), count in hooks.items() if s == state)
    totals["webhooks_unrouted_24h"] = sum(count for (lane_id, _), count in hooks.items() if lane_id is None)
    totals["backlog_claimable"] = sum(claimable.values())
    totals.update({f"tokens_{state}": sum(r.tokens[state] for r in rows) for state in TOKEN_STATES})
    totals["tokens_unhealthy"] = sum(totals[f"tokens_{state}"] for state in UNHEALTHY)
    return Dashboard(computed_at=now, totals=totals, rows=rows)


def org_status_markdown(rows: list[OrgStatus]) -> str:
    """The ``by_organization`` table of ``org_whatsapp_status``."""
    return markdown(
        [
            "organization",
            "completed onboardings",
            "active connections",
            "numbers connected / all",
            "messages in (24 h)",
            "messages out (24 h)",
            "webhooks processed (24 h)",
            "failed (24 h)",
            "dead (24 h)",
            "tokens unhealthy / expiring soon",
        ],
        (
            [
                r.organization,
                r.completed_onboardings,
                r.active_connections,
                f"{r.phone_numbers['connected']} / {sum(r.phone_numbers.values())}",
                r.messages_in_24h,
                r.messages_out_24h,
                r.webhooks_processed_24h,
                r.webhooks_failed_24h,
                r.webhooks_dead_24h,
                f"{sum(r.tokens[s] for s in UNHEALTHY)} / {r.tokens['expiring_soon']}",
            ]
            for r in rows
        ),
    )
