"""Read models of the phone-family state (calls, groups, preferences, conversions…) and of the
per-field webhook counts (``whatsapp_webhook_fields``), for the admin status endpoint and
``wa-onboarding status`` / the main job's report. No Dagster import."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from wa_core.db.schema import as_utc
from wa_core.db.schema_phone import (
    whatsapp_ad_conversions,
    whatsapp_call_permissions,
    whatsapp_calls,
    whatsapp_group_participants,
    whatsapp_groups,
    whatsapp_partner_solutions,
    whatsapp_user_preferences,
    whatsapp_webhook_fields,
)


class WebhookField(BaseModel):
    """How often a ``changes[].field`` arrived, and whether a handler knows it."""

    field: str
    known: bool = Field(description="false: no handler; its changes are stored and marked ignored")
    webhooks: int = Field(description="finished webhook rows carrying it (a redelivery counts again)")
    changes: int
    first_seen_at: datetime
    last_seen_at: datetime


class WebhookFieldsSection(BaseModel):
    """Per-field counts, read live from ``whatsapp_webhook_fields`` (all organizations)."""

    source: Literal["live"] = "live"
    unknown: list[str] = Field(description="fields no handler knows, newest first seen first")
    fields: list[WebhookField]


def webhook_fields(conn: Connection) -> WebhookFieldsSection:
    """Every field counted so far, unknown ones first (then by name)."""
    from wa_core.processing.handlers import HANDLERS  # no import cycle at module load

    f = whatsapp_webhook_fields.c
    found = [
        WebhookField(field=r.field, known=r.field in HANDLERS, webhooks=r.webhooks, changes=r.changes,
                     first_seen_at=as_utc(r.first_seen_at), last_seen_at=as_utc(r.last_seen_at))
        for r in conn.execute(sa.select(whatsapp_webhook_fields).order_by(f.field))
    ]
    found.sort(key=lambda w: (w.known, w.field))
    unknown = [w.field for w in sorted((w for w in found if not w.known), key=lambda w: w.first_seen_at, reverse=True)]
    return WebhookFieldsSection(unknown=unknown, fields=found)


def phone_fields_summary(conn: Connection) -> dict[str, Any]:
    """Counts of the phone-family state: ``{"calls": {state: n}, "groups": n, …,
    "unknown_fields": {field: webhooks}}`` (keys as :func:`~.summary.format_summary` prints)."""

    def grouped(col: sa.Column) -> dict[str, int]:
        return {str(k): int(n) for k, n in conn.execute(sa.select(col, sa.func.count()).group_by(col))}

    def count(table: sa.Table) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    section = webhook_fields(conn)
    return {
        "calls": grouped(whatsapp_calls.c.state),
        "call_permissions": grouped(whatsapp_call_permissions.c.response),
        "marketing_prefs": grouped(whatsapp_user_preferences.c.value),
        "groups": count(whatsapp_groups),
        "group_members": grouped(whatsapp_group_participants.c.state),
        "ad_conversions": grouped(whatsapp_ad_conversions.c.event_name),
        "partner_solutions": grouped(whatsapp_partner_solutions.c.solution_status),
        "unknown_fields": {w.field: w.webhooks for w in section.fields if not w.known},
    }


__all__ = ["WebhookField", "WebhookFieldsSection", "phone_fields_summary", "webhook_fields"]
