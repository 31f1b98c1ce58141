"""The WABA-family state fields (templates, number health, account, security): each fixture
stores exactly its state, order safety per column group, redelivery adds nothing, alerts
and events (Meta, WhatsApp Cloud API webhook references: message templates, phone number and account fields)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import fixture_bytes
from tests.helpers import ACME_PHONE, ACME_WABA, bind_fixture_numbers, land, rows, webhook_row
from wa_core.db.schema import ops_alerts, utcnow, whatsapp_webhook_logs
from wa_core.db.schema_waba_state import (
    whatsapp_account_alerts,
    whatsapp_number_health,
    whatsapp_template_events,
    whatsapp_templates,
    whatsapp_waba_events,
    whatsapp_waba_health,
)
from wa_core.processing.dispatch import parse_webhook
from wa_core.processing.runner import run_processing
from wa_core.settings import Settings

WABA_FIXTURES = (
    "message_template_status_update.json",
    "message_template_status_update_rejected.json",
    "message_template_quality_update_yellow.json",
    "message_template_components_update_edited.json",
    "template_category_update_impending.json",
    "template_category_update_completed.json",
    "phone_number_quality_update.json",
    "phone_number_quality_update_throughput_upgrade.json",
    "phone_number_name_update_rejected.json",
    "phone_number_username_update_approved.json",
    "business_capability_update_tier.json",
    "account_alerts_business_deferred.json",
    "account_review_update.json",
    "account_review_update_approved.json",
    "security.json",
    "security_pin_reset_request.json",
)


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def drain(engine: Engine, settings: Settings):
    return run_processing(engine, settings, idle_exit_seconds=0)


def body(field: str, value: dict, time_: int | None = 1767300000, waba: str = ACME_WABA) -> bytes:
    entry = {"id": waba, "changes": [{"field": field, "value": value}]}
    if time_ is not None:
        entry["time"] = time_
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def template(engine: Engine, template_id: str):
    [row] = rows(engine, whatsapp_templates, whatsapp_templates.c.template_id == template_id)
    return row


def number(engine: Engine):
    [row] = rows(engine, whatsapp_number_health)
    return row


def test_each_fixture_stores_exactly_its_state(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    ids = [land(engine, fixture_bytes(name)) for name in reversed(WABA_FIXTURES)]  # newest first where it matters
    drain(engine, settings)
    for row_id in ids:
        row = webhook_row(engine, row_id)
        assert (row.status, row.items_processed, row.items_failed, row.items_ignored) == ("processed", 1, 0, 0), row.last_error
        assert row.organization_id == orgs["acme"]

    approved = template(engine, "800000000000001")
    assert (approved.waba_id, approved.name, approved.language, approved.status, approved.status_reason, approved.category) == (
        ACME_WABA, "order_ready_fake", "en_US", "APPROVED", "NONE", "UTILITY")
    assert approved.status_event_at == at(1767400000) and approved.last_event == "message_template_status_update:APPROVED"
    assert approved.organization_id == orgs["acme"] and approved.status_details is None

    edited = template(engine, "700000000000001")  # REJECTED, then its components edited
    assert (edited.status, edited.status_reason, edited.category) == ("REJECTED", "INVALID_FORMAT", "UTILITY")
    assert edited.status_details["rejection_info"]["recommendation"].startswith("Fake fixture")
    assert edited.components == {
        "title": "Fake header text", "body": "Hello {{1}}, fake order {{2}} has shipped.", "footer": "Fake footer",
        "buttons": json.loads(fixture_bytes("message_template_components_update_edited.json"))["entry"][0]["changes"][0]["value"]["message_template_buttons"],
    }
    assert (edited.status_event_at, edited.components_event_at) == (at(1767226500), at(1767226620))
    assert (edited.last_event, edited.last_event_at) == ("message_template_components_update", at(1767226620))

    quality = template(engine, "700000000000002")
    assert (quality.name, quality.language, quality.quality, quality.previous_quality, quality.status) == ("fake_weekly_offer", "pt_BR", "YELLOW", "GREEN", None)
    assert quality.quality_event_at == at(1767226560)

    category = template(engine, "700000000000003")  # impending (older) then completed: landed newest first
    assert (category.category, category.previous_category, category.pending_category, category.category_change_at) == ("MARKETING", "UTILITY", None, None)
    assert (category.category_event_at, category.last_event_at) == (at(1767313080), at(1767313080))
    assert len(rows(engine, whatsapp_templates)) == 4
    history = {(r.template_id, r.kind, r.value) for r in rows(engine, whatsapp_template_events)}
    assert history == {
        ("800000000000001", "status", "APPROVED"), ("700000000000001", "status", "REJECTED"), ("700000000000001", "components", None),
        ("700000000000002", "quality", "YELLOW"), ("700000000000003", "category", "UTILITY"), ("700000000000003", "category", "MARKETING"),
    }

    n = number(engine)
    assert (n.waba_id, n.display_phone_number, n.phone_number_id) == (ACME_WABA, "15550000001", ACME_PHONE)
    # quality: the newer UPGRADE wins over the older THROUGHPUT_UPGRADE, which still sets throughput
    assert (n.quality_event, n.messaging_limit, n.current_limit, n.old_limit, n.quality_event_at) == ("UPGRADE", "TIER_10K", "TIER_10K", "TIER_2K", at(1767500000))
    assert (n.throughput_level, n.throughput_event_at) == ("high", at(1767226740))
    assert (n.name_decision, n.requested_verified_name, n.name_rejection_reason, n.name_event_at) == ("REJECTED", "Fake Shop Test", "NAME_FORMAT_UNACCEPTABLE", at(1767226800))
    assert (n.username_decision, n.requested_username, n.username_rejection_reasons) == ("APPROVED", "fakeshop.test", None)
    assert (n.pin_event, n.pin_event_at) == ("PIN_CHANGED", at(1767600000))  # newer than the reset request

    [waba] = rows(engine, whatsapp_waba_health)
    assert (waba.review_decision, waba.review_event_at) == ("APPROVED", at(1767226980))
    assert (waba.business_limit, waba.per_phone_limit, waba.max_phone_numbers_per_business, waba.max_phone_numbers_per_waba) == ("TIER_10K", None, None, 25)
    [alert] = rows(engine, whatsapp_account_alerts)
    assert (alert.entity_type, alert.entity_id, alert.alert_type, alert.severity, alert.status) == (
        "BUSINESS", "300000000000001", "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED", "WARNING", "ACTIVE")
    assert alert.description.startswith("Fake fixture") and alert.event_at == at(1767226920)
    events = sorted((r.field, r.event) for r in rows(engine, whatsapp_waba_events))
    assert events == sorted([
        ("phone_number_quality_update", "UPGRADE"), ("phone_number_quality_update", "THROUGHPUT_UPGRADE"),
        ("phone_number_name_update", "REJECTED"), ("phone_number_username_update", "APPROVED"),
        ("business_capability_update", "TIER_10K"), ("account_alerts", "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED"),
        ("account_review_update", "APPROVED"), ("account_review_update", "APPROVED"),
        ("security", "PIN_CHANGED"), ("security", "PIN_RESET_REQUEST"),
    ])
    [reset] = rows(engine, whatsapp_waba_events, whatsapp_waba_events.c.event == "PIN_RESET_REQUEST")
    assert reset.details == {"requester": "900000000000001"} and reset.subject == "15550000001"

    fingerprints = {r.fingerprint for r in rows(engine, ops_alerts)}
    assert fingerprints == {
        f"template_status:{ACME_WABA}:700000000000001:REJECTED:1767226500",
        f"template_quality:{ACME_WABA}:700000000000002:YELLOW:1767226560",
        f"name_rejected:{ACME_WABA}:15550000001:name:1767226800",
        f"pin_security:{ACME_WABA}:15550000001:PIN_CHANGED:1767600000",
        f"pin_security:{ACME_WABA}:15550000001:PIN_RESET_REQUEST:1767227040",
        f"account_alert:{ACME_WABA}:300000000000001:INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED:1767226920",
    }

    # Meta redelivers everything: no new history, the same state, no second alert
    tables = (whatsapp_templates, whatsapp_template_events, whatsapp_number_health, whatsapp_waba_events, whatsapp_waba_health, whatsapp_account_alerts)

    def state() -> dict:
        return {t.name: sorted(str([getattr(r, c.name) for c in t.c if c.name not in ("id", "received_at")]) for r in rows(engine, t)) for t in tables}

    before = state()
    sent = {r.fingerprint: r.last_sent_at for r in rows(engine, ops_alerts)}
    for name in WABA_FIXTURES:
        land(engine, fixture_bytes(name))
    drain(engine, settings)
    assert state() == before
    assert {r.fingerprint: r.last_sent_at for r in rows(engine, ops_alerts)} == sent


def test_a_newer_decision_does_not_block_an_older_quality_update_and_old_events_do_not_win(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    name = {"display_phone_number": "+1 555-000-0001", "decision": "APPROVED", "requested_verified_name": "Acme"}
    land(engine, body("phone_number_name_update", name, 1767300000))
    drain(engine, settings)
    land(engine, body("phone_number_quality_update", {"display_phone_number": "15550000001", "event": "FLAGGED", "current_limit": "TIER_1K"}, 1767200000))
    land(engine, body("phone_number_name_update", {**name, "decision": "REJECTED", "rejection_reason": "UNKNOWN"}, 1767100000))
    drain(engine, settings)
    n = number(engine)
    assert (n.quality_event, n.current_limit, n.messaging_limit) == ("FLAGGED", "TIER_1K", None)  # applied: its own order column
    assert (n.name_decision, n.name_rejection_reason, n.name_event_at) == ("APPROVED", None, at(1767300000))  # the older REJECTED lost
    assert len(rows(engine, whatsapp_waba_events)) == 3  # yet both are in the history
    kinds = {r.kind for r in rows(engine, ops_alerts)}
    assert kinds == {"number_quality"}  # FLAGGED alerts; the late, older rejection lost: no alert (break-it #1 of the event feed)


def test_quality_labelled_as_status_update_and_mixed_template_changes(engine: Engine, settings: Settings) -> None:
    """Meta's own quality example says ``message_template_status_update`` (§0): told by its keys."""
    bind_fixture_numbers(engine)
    ids = {"message_template_id": 123, "message_template_name": "t", "message_template_language": "de"}
    land(engine, body("message_template_status_update", {**ids, "previous_quality_score": "YELLOW", "new_quality_score": "RED"}, 1767300000))
    land(engine, body("message_template_status_update", {**ids, "event": "PAUSED", "reason": "NONE", "other_info": {"title": "FIRST_PAUSE", "description": "x"}}, 1767300100))
    land(engine, body("message_template_status_update", {**ids, "event": "APPROVED", "message_template_category": "MARKETING"}, 1767200000))  # older
    drain(engine, settings)
    t = template(engine, "123")
    assert (t.quality, t.previous_quality, t.status, t.status_reason, t.category) == ("RED", "YELLOW", "PAUSED", "FIRST_PAUSE", "MARKETING")
    assert (t.last_event, t.last_event_at) == ("message_template_status_update:PAUSED", at(1767300100))
    assert {r.kind for r in rows(engine, ops_alerts)} == {"template_quality", "template_status"}


def test_unbound_waba_is_retried_and_shapes_it_cannot_use_fail_alone(engine: Engine, settings: Settings) -> None:
    unbound = land(engine, fixture_bytes("security_pin_reset_request.json"))
    drain(engine, settings)
    row = webhook_row(engine, unbound)
    assert (row.status, row.error_kind) == ("failed", "unroutable")
    bind_fixture_numbers(engine)
    bad = [
        land(engine, body("message_template_status_update", {"event": "APPROVED"})),  # no template id
        land(engine, body("security", {"event": "PIN_CHANGED"})),  # no number
        land(engine, body("account_alerts", {"entity_type": "BUSINESS", "alert_info": "x"})),
        land(engine, body("phone_number_name_update", {"display_phone_number": "15550000001", "requested_verified_name": "x" * 300})),
    ]
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_webhook_logs).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    drain(engine, settings)
    assert webhook_row(engine, unbound).status == "processed"
    kinds = [webhook_row(engine, i).error_kind for i in bad]
    assert kinds == ["invalid_payload", "invalid_payload", "invalid_payload", "invalid_value"]
    assert all(webhook_row(engine, i).status == "dead" for i in bad)


def test_a_number_not_bound_yet_is_kept_by_its_digits(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, body("phone_number_quality_update", {"display_phone_number": "15559999999", "event": "ONBOARDING", "max_daily_conversations_per_business": "TIER_250"}, None))
    drain(engine, settings)
    n = number(engine)
    assert (n.display_phone_number, n.phone_number_id, n.quality_event, n.messaging_limit, n.quality_event_at) == ("15559999999", None, "ONBOARDING", "TIER_250", None)


def test_events_planned_for_the_feed(engine: Engine) -> None:
    bind_fixture_numbers(engine)
    types = {}
    with engine.connect() as conn:
        for name in WABA_FIXTURES:
            parsed = parse_webhook(conn, 1, fixture_bytes(name), datetime.now(timezone.utc), {})
            [unit] = parsed.units
            types[name] = [(e.type, e.key) for e in unit.work.events]
    assert types["message_template_status_update_rejected.json"][0][0] == "template.status_changed"
    assert types["message_template_quality_update_yellow.json"][0][0] == "template.quality_changed"
    assert types["template_category_update_impending.json"][0][0] == "template.category_changed"
    assert types["message_template_components_update_edited.json"][0][0] == "template.components_updated"
    assert types["phone_number_name_update_rejected.json"][0][0] == "number.health_changed"
    assert types["business_capability_update_tier.json"][0][0] == "number.health_changed"
    assert types["account_alerts_business_deferred.json"][0][0] == "account.alert"
    assert types["account_review_update_approved.json"][0][0] == "account.review_updated"
    assert types["security.json"][0][0] == "security.pin_changed"
    assert types["security_pin_reset_request.json"][0][0] == "security.pin_reset_requested"
    keys = [k for events in types.values() for _, k in events]
    assert len(keys) == len(set(keys)) and all(k.startswith(ACME_WABA) for k in keys)
