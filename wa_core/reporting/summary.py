"""What is stored: counts an operator checks after a run (``wa-onboarding status``)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import UNROUTED_LANE, backlog_by_organization, lane_expression, lane_join, lane_label
from wa_core.db.schema import (
    organizations,
    utcnow,
    whatsapp_configs,
    whatsapp_connections,
    whatsapp_contacts,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_webhook_logs,
)
from wa_core.db.schema_coexistence import whatsapp_coexistence_syncs
from wa_core.db.schema_events import whatsapp_events
from wa_core.db.schema_media import whatsapp_media
from wa_core.db.schema_waba_state import (
    whatsapp_account_alerts,
    whatsapp_number_health,
    whatsapp_template_events,
    whatsapp_templates,
    whatsapp_waba_events,
    whatsapp_waba_health,
)
from wa_core.reporting.phone_fields import phone_fields_summary
from wa_core.token_health import TOKEN_STATES, current_state, state_label


def stored_summary(conn: Connection, *, expiring_soon_days: float = 7.0) -> dict[str, Any]:
    """Counts per table and per state: ``{"webhooks": {"processed": n, …}, "messages": {…}, …}``.

    ``webhooks_leased`` counts rows a run holds right now, or held when it died (claimable
    again once ``PROCESSING_LEASE_SECONDS`` pass). ``webhooks_unrouted``: rows of the unrouted
    lane (:mod:`wa_core.backlog`) per state. ``tokens``: phone numbers per token state now
    (:func:`wa_core.token_health.current_state`; ``expiring_soon_days`` =
    ``TOKEN_EXPIRING_SOON_DAYS``). ``backlog`` is the processing backlog, a list of
    :meth:`wa_core.backlog.OrgBacklog.as_dict` lanes (``organization_id`` None for the
    unrouted lane), see :func:`wa_core.backlog.backlog_by_organization`.
    """
    now = utcnow()
    soon = timedelta(days=expiring_soon_days)
    cfg = whatsapp_configs.c
    tokens = Counter(
        current_state(r.token_health, r.token_expires_at, now, soon) for r in conn.execute(sa.select(cfg.token_health, cfg.token_expires_at))
    )
    logs = whatsapp_webhook_logs.c

    def grouped(table: sa.FromClause, *cols: sa.Column, where: Any = sa.true()) -> dict[str, int]:
        rows = conn.execute(sa.select(*cols, sa.func.count()).select_from(table).where(where).group_by(*cols)).all()
        return {"/".join("unknown" if v is None else str(v) for v in row[:-1]): int(row[-1]) for row in rows}

    def count(table: sa.Table) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    return {
        "webhooks": grouped(whatsapp_webhook_logs, logs.status),
        "webhooks_leased": int(
            conn.execute(sa.select(sa.func.count()).select_from(whatsapp_webhook_logs).where(logs.locked_until.is_not(None))).scalar_one()
        ),
        "webhooks_unrouted": grouped(lane_join(), logs.status, where=lane_expression().is_(None)),
        "webhook_errors": grouped(whatsapp_webhook_logs, logs.error_kind, where=logs.error_kind.is_not(None)),
        "messages": grouped(whatsapp_messages, whatsapp_messages.c.direction, whatsapp_messages.c.source),
        "statuses": grouped(whatsapp_message_statuses, whatsapp_message_statuses.c.status),
        "contacts": count(whatsapp_contacts),
        "organizations": count(organizations),
        "connections": grouped(whatsapp_connections, whatsapp_connections.c.status),
        "phone_numbers": grouped(whatsapp_configs, cfg.status),
        "tokens": {state: tokens[state] for state in TOKEN_STATES if tokens[state]},
        **phone_fields_summary(conn),  # calls, groups, preferences, conversions, unknown fields
        # the WABA-family state fields (templates, number health, account, security)
        "templates": grouped(whatsapp_templates, whatsapp_templates.c.status),
        "template_events": count(whatsapp_template_events),
        "number_health": grouped(whatsapp_number_health, whatsapp_number_health.c.messaging_limit),
        "waba_health": grouped(whatsapp_waba_health, whatsapp_waba_health.c.review_decision),
        "account_alerts": grouped(whatsapp_account_alerts, whatsapp_account_alerts.c.status),
        "waba_events": grouped(whatsapp_waba_events, whatsapp_waba_events.c.field),
        "media": grouped(whatsapp_media, whatsapp_media.c.state),  # inbound media files by download state
        "coexistence_syncs": grouped(whatsapp_coexistence_syncs, whatsapp_coexistence_syncs.c.sync_type, whatsapp_coexistence_syncs.c.status),
        "events": grouped(whatsapp_events, whatsapp_events.c.type),  # the event feed, by type
        # a list, not a dict by name: an organization may well be called "unrouted"
        "backlog": [b.as_dict() for b in backlog_by_organization(conn, now)],
    }


#: the figures of a backlog lane ``wa-onboarding status`` prints
_LANE_FIGURES = (
    "claimable",
    "in_flight",
    "waiting_retry",
    "waiting_paused",
    "paused",
    "paused_wabas",
    "claimed_last_minute",
    "oldest_claimable_at",
)


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for :func:`stored_summary` (token states as a person reads them:
    ``not checked yet``; lanes by external id, the unrouted one as ``unrouted``)."""
    lines = []
    for key, value in summary.items():
        if key == "backlog":
            lines.append(f"  {key:<15} {'none' if not value else f'(per organization; {UNROUTED_LANE} = WABA bound to no one)'}")
            for lane in value:
                name = lane_label(lane["organization_id"], lane["organization_external_id"])
                inner = ", ".join(f"{k}={v}" for k, v in lane.items() if v and k in _LANE_FIGURES)
                lines.append(f"    {name:<13} {inner}")
        elif key == "tokens":
            inner = ", ".join(f"{state_label(k)}: {v}" for k, v in value.items()) or "none"
            lines.append(f"  {key:<15} {inner}")
        elif isinstance(value, dict):
            inner = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
            lines.append(f"  {key:<15} {inner}")
        else:
            lines.append(f"  {key:<15} {value}")
    return "\n".join(lines)
