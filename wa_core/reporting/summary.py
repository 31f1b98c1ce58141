"""What is stored: counts an operator checks after a run (``wa-onboarding status``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import backlog_by_organization
from wa_core.db.schema import (
    organizations,
    whatsapp_configs,
    whatsapp_connections,
    whatsapp_contacts,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_webhook_logs,
)


def stored_summary(conn: Connection) -> dict[str, Any]:
    """Counts per table and per state: ``{"webhooks": {"processed": n, …}, "messages": {…}, …}``.

    ``webhooks_leased`` counts rows a run holds right now, or held when it died (claimable
    again once ``PROCESSING_LEASE_SECONDS`` pass). ``backlog`` is the processing backlog, a list
    of :meth:`wa_core.backlog.OrgBacklog.as_dict` lanes (``organization_id`` None for WABAs
    bound to no one), see :func:`wa_core.backlog.backlog_by_organization`.
    """

    def grouped(table: sa.Table, *cols: sa.Column, where: Any = sa.true()) -> dict[str, int]:
        rows = conn.execute(sa.select(*cols, sa.func.count()).select_from(table).where(where).group_by(*cols)).all()
        return {"/".join(str(v) for v in row[:-1]): int(row[-1]) for row in rows}

    def count(table: sa.Table) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    return {
        "webhooks": grouped(whatsapp_webhook_logs, whatsapp_webhook_logs.c.status),
        "webhooks_leased": int(
            conn.execute(
                sa.select(sa.func.count()).select_from(whatsapp_webhook_logs).where(whatsapp_webhook_logs.c.locked_until.is_not(None))
            ).scalar_one()
        ),
        "webhook_errors": grouped(
            whatsapp_webhook_logs,
            whatsapp_webhook_logs.c.error_kind,
            where=whatsapp_webhook_logs.c.error_kind.is_not(None),
        ),
        "messages": grouped(whatsapp_messages, whatsapp_messages.c.direction, whatsapp_messages.c.source),
        "statuses": grouped(whatsapp_message_statuses, whatsapp_message_statuses.c.status),
        "contacts": count(whatsapp_contacts),
        "organizations": count(organizations),
        "connections": grouped(whatsapp_connections, whatsapp_connections.c.status),
        "phone_numbers": grouped(whatsapp_configs, whatsapp_configs.c.status),
        # a list, not a dict by name: an organization may well be called "unrouted"
        "backlog": [b.as_dict() for b in backlog_by_organization(conn)],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for :func:`stored_summary`."""
    lines = []
    for key, value in summary.items():
        if key == "backlog":
            lines.append(f"  {key:<15} {'none' if not value else '(per organization; unrouted = WABA bound to no one)'}")
            for lane in value:
                name = lane["organization_external_id"] or ("(unrouted)" if lane["organization_id"] is None else lane["organization_id"])
                inner = ", ".join(
                    f"{k}={v}" for k, v in lane.items() if v and k not in ("organization_id", "organization_external_id")
                )
                lines.append(f"    {name:<13} {inner}")
        elif isinstance(value, dict):
            inner = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
            lines.append(f"  {key:<15} {inner}")
        else:
            lines.append(f"  {key:<15} {value}")
    return "\n".join(lines)
