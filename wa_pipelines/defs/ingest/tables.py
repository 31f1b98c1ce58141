"""The app's tables as Dagster assets, so the lineage graph reads from raw webhooks to dashboards.

``whatsapp_webhook_logs`` is written by the receiver (outside Dagster) and declared as an
external asset. The tables that processing writes are materialised by the
``apply_landed_webhooks`` multi-asset (the ``process_webhooks`` job) (see :mod:`wa_pipelines.defs.ingest.assets`).
"""

from __future__ import annotations

from dagster import AssetSpec

RAW_WEBHOOKS = AssetSpec(
    "whatsapp_webhook_logs",
    description="Raw webhook bodies landed by the receiver, exact bytes, before any parsing.",
    group_name="landing",
    kinds={"sql"},
    metadata={"written_by": "wa_webhook receiver (POST /api/v1/whatsapp/webhook)"},
)

BINDINGS = AssetSpec(
    "whatsapp_configs",
    description="Business phone numbers bound to organizations (onboarding or operator binding).",
    group_name="onboarding",
    kinds={"sql"},
)

ONBOARDINGS = AssetSpec(
    "whatsapp_onboarding",
    description="Embedded Signup onboardings: written by the onboarding API, the finish_onboarding job and PARTNER_ADDED processing.",
    group_name="onboarding",
    kinds={"sql"},
)

EXTERNAL_TABLES = [RAW_WEBHOOKS, BINDINGS, ONBOARDINGS]

#: tables written by processing, with what each holds
PROCESSED_TABLES = {
    "whatsapp_messages": "Inbound messages, business-app echoes and history, one row per (phone_number_id, wamid).",
    "whatsapp_message_statuses": "Append-only outbound status history, one row per (wamid, status).",
    "whatsapp_contacts": "Contacts per organization, keyed by wa_id or business-scoped user_id.",
    "whatsapp_connections": "WABA connections and their state, driven by account_update events.",
    "whatsapp_templates": "Message templates per WABA: status, quality, category, components (the four template fields).",
    "whatsapp_number_health": "Phone-number health per WABA + display number: limits, throughput, name/username decisions, PIN events.",
    "whatsapp_waba_health": "WABA review decision and business capabilities (account_review_update, business_capability_update).",
    "whatsapp_account_alerts": "Meta account alerts per entity and type (account_alerts), ACTIVE = open.",
}
