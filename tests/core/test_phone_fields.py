"""Phone-family fields to state on the real Postgres: user preferences, calls and call
permissions, groups (both field spellings), partner solutions, Click-to-WhatsApp conversions;
exact row values per fixture, Meta's order kept whatever the arrival order, redelivery
adding nothing, the per-item path leaving the same state, and unknown fields counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import fixture_bytes
from tests.helpers import ACME_PHONE, ACME_WABA, bind_fixture_numbers, land, rows, webhook_row
from wa_core.db.schema import ops_alerts, utcnow, whatsapp_contacts, whatsapp_messages, whatsapp_webhook_logs
from wa_core.db.schema_phone import (
    whatsapp_ad_conversions,
    whatsapp_call_events,
    whatsapp_call_permissions,
    whatsapp_calls,
    whatsapp_group_events,
    whatsapp_group_participants,
    whatsapp_groups,
    whatsapp_partner_solutions,
    whatsapp_user_preferences,
    whatsapp_webhook_fields,
)
from wa_core.processing.dispatch import apply_webhook, parse_webhook
from wa_core.processing.records import MessagePlan, StatePlan
from wa_core.processing.runner import run_processing
from wa_core.settings import Settings

NEW_FIXTURES = [
    "user_preferences_marketing_stop.json", "calls_connect_user_initiated.json", "calls_status_ringing.json",
    "calls_terminate_completed.json", "messages_call_permission_reply_accept.json", "group_lifecycle_update_create.json",
    "group_participants_update_invite_link_join.json", "group_settings_update_subject.json", "group_status_update_suspend.json",
    "partner_solutions_created.json", "automatic_events_purchase.json",
]
STATE_TABLES = [
    whatsapp_user_preferences, whatsapp_calls, whatsapp_call_events, whatsapp_call_permissions, whatsapp_groups,
    whatsapp_group_participants, whatsapp_group_events, whatsapp_partner_solutions, whatsapp_ad_conversions, whatsapp_contacts,
]
VOLATILE = {"id", "created_at", "updated_at", "received_at", "webhook_log_id", "first_seen_at", "last_seen_at"}
GROUP = "FAKEGROUP0000000000000001"


def t(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def drain(engine: Engine, settings: Settings):
    return run_processing(engine, settings, idle_exit_seconds=0)


def one(engine: Engine, table: sa.Table, *where):
    [row] = rows(engine, table, *where)
    return row


def body(field: str, value: dict, entry: dict | None = None) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": ACME_WABA, **(entry or {}),
                                                                         "changes": [{"field": field, "value": value}]}]}).encode()


def phone_value(**extra) -> dict:
    return {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000001", "phone_number_id": ACME_PHONE}, **extra}


def snapshot(engine: Engine) -> dict[str, list]:
    out = {}
    for table in STATE_TABLES:
        cols = [c.name for c in table.columns if c.name not in VOLATILE]
        out[table.name] = sorted(json.dumps([str(getattr(r, c)) for c in cols]) for r in rows(engine, table))
    return out


def test_each_fixture_stores_exactly_its_state(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    ids = {name: land(engine, fixture_bytes(name)) for name in NEW_FIXTURES}
    drain(engine, settings)
    for name, row_id in ids.items():
        row = webhook_row(engine, row_id)
        assert (row.status, row.items_failed) == ("processed", 0), (name, row.last_error)
    acme = orgs["acme"]

    pref = one(engine, whatsapp_user_preferences)
    assert (pref.organization_id, pref.phone_number_id, pref.contact_key, pref.wa_id, pref.user_id) == (
        acme, ACME_PHONE, "15550000101", "15550000101", "US.FAKE0000000000000101")
    assert (pref.category, pref.value, pref.opted_out, pref.event_at) == ("marketing_messages", "stop", True, t(1767227100))
    assert pref.detail == "User requested to stop marketing messages"
    contact = one(engine, whatsapp_contacts, whatsapp_contacts.c.wa_id == "15550000101")
    assert (contact.user_id, contact.profile_name) == ("US.FAKE0000000000000101", "Test User")

    inbound = one(engine, whatsapp_calls, whatsapp_calls.c.call_id == "wacid.FAKECALL0000000000000001")
    assert (inbound.organization_id, inbound.direction, inbound.from_id, inbound.to_id) == (acme, "USER_INITIATED", "15550000101", "15550000001")
    assert (inbound.state, inbound.last_event, inbound.event_at, inbound.connected_at, inbound.sdp_type) == (
        "connect", "connect", t(1767227160), t(1767227160), "offer")
    assert inbound.duration_seconds is None and inbound.ended_at is None
    business = one(engine, whatsapp_calls, whatsapp_calls.c.call_id == "wacid.FAKECALL0000000000000002")
    assert (business.state, business.last_event, business.terminate_status, business.direction) == (
        "completed", "terminate", "COMPLETED", "BUSINESS_INITIATED")
    assert (business.started_at, business.ended_at, business.duration_seconds, business.event_at) == (
        t(1767227230), t(1767227400), 170, t(1767227400))
    assert (business.from_id, business.to_id, business.biz_opaque_callback_data) == ("15550000001", "15550000102", "fake-crm-ref-0002")
    events = sorted((r.call_id[-1], r.event_key, r.event_at) for r in rows(engine, whatsapp_call_events))
    assert events == [("1", "connect", t(1767227160)), ("2", "status:RINGING", t(1767227220)), ("2", "terminate:COMPLETED", t(1767227400))]

    permission = one(engine, whatsapp_call_permissions)
    assert (permission.contact_key, permission.wa_id, permission.user_id, permission.response) == ("15550000102", "15550000102", None, "accept")
    assert (permission.is_permanent, permission.expires_at, permission.response_source) == (False, t(1767831900), "user_action")
    assert (permission.context_id, permission.message_wamid, permission.replied_at) == (
        "wamid.FAKEOUT0000000000000000020", "wamid.FAKEIN00000000000000000020", t(1767227100))
    message = one(engine, whatsapp_messages, whatsapp_messages.c.wamid == "wamid.FAKEIN00000000000000000020")
    assert message.type == "interactive" and message.contact_id is not None

    group = one(engine, whatsapp_groups)
    assert (group.organization_id, group.group_id, group.lifecycle, group.lifecycle_at, group.request_id) == (
        acme, GROUP, "created", t(1767227460), "fake-request-0001")
    assert (group.subject, group.invite_link, group.join_approval_mode, group.settings_at) == (
        "Fake support group (renamed)", "https://chat.example.invalid/FAKELINK0001", "auto_approve", t(1767227580))
    assert (group.suspended, group.status_at, group.description) == (True, t(1767227640), None)
    member = one(engine, whatsapp_group_participants)
    assert (member.group_id, member.participant_key, member.wa_id, member.user_id, member.username, member.country_code) == (
        GROUP, "US.FAKE0000000000000103", None, "US.FAKE0000000000000103", "fake.user103", "US")
    assert (member.state, member.reason, member.event_at) == ("member", "invite_link", t(1767227520))
    assert sorted((r.field, r.type) for r in rows(engine, whatsapp_group_events)) == [
        ("group_lifecycle_update", "group_create"), ("group_participants_update", "group_participants_add"),
        ("group_settings_update", "group_settings_update"), ("group_status_update", "group_suspend"),
    ]

    solution = one(engine, whatsapp_partner_solutions)
    assert (solution.solution_id, solution.business_id, solution.event, solution.solution_status, solution.event_at) == (
        "600000000000001", "300000000000900", "SOLUTION_CREATED", "INITIATED", t(1767227700))
    conversion = one(engine, whatsapp_ad_conversions)
    assert (conversion.organization_id, conversion.message_wamid, conversion.event_name, conversion.ctwa_clid) == (
        acme, "wamid.FAKEIN00000000000000000030", "Purchase", "FAKECTWACLID0000000000000001")
    assert (conversion.currency, conversion.value, conversion.event_at) == ("USD", Decimal(1999), t(1767227760))

    # Meta redelivers everything: nothing moves, no history row is added
    before = snapshot(engine)
    for name in NEW_FIXTURES:
        land(engine, fixture_bytes(name))
    drain(engine, settings)
    assert snapshot(engine) == before


def test_the_per_item_path_leaves_the_same_state(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    for name in NEW_FIXTURES:
        land(engine, fixture_bytes(name))
    drain(engine, settings)
    set_based = snapshot(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(t.name for t in STATE_TABLES)}, whatsapp_messages CASCADE"))
    ids = {name: land(engine, fixture_bytes(name)) for name in NEW_FIXTURES}
    with engine.begin() as conn:
        for name in NEW_FIXTURES:
            outcome = apply_webhook(conn, ids[name], fixture_bytes(name), utcnow())
            assert outcome.items_failed == 0, (name, outcome.errors)
    assert snapshot(engine) == set_based


def test_each_state_change_plans_its_event(engine: Engine) -> None:
    bind_fixture_numbers(engine)
    seen = {}
    with engine.connect() as conn:
        for name in NEW_FIXTURES:
            parsed = parse_webhook(conn, 1, fixture_bytes(name), utcnow())
            seen[name] = [e.type for u in parsed.units if isinstance(u.work, (StatePlan, MessagePlan)) for e in u.work.events]
    assert seen == {
        "user_preferences_marketing_stop.json": ["contact.preferences_updated"],
        "calls_connect_user_initiated.json": ["call.connect"],
        "calls_status_ringing.json": ["call.status"],
        "calls_terminate_completed.json": ["call.terminate"],
        "messages_call_permission_reply_accept.json": ["call.permission_replied"],
        "group_lifecycle_update_create.json": ["group.updated"],
        "group_participants_update_invite_link_join.json": ["group.participants_changed"],
        "group_settings_update_subject.json": ["group.updated"],
        "group_status_update_suspend.json": ["group.updated"],
        "partner_solutions_created.json": ["partner_solution.updated"],
        "automatic_events_purchase.json": ["ads.conversion"],
    }


def _preference(value: str, at: int) -> bytes:
    item = {"wa_id": "15550000101", "category": "marketing_messages", "value": value, "timestamp": at}
    return body("user_preferences", phone_value(user_preferences=[item]))


def test_a_late_resume_older_than_the_stop_never_resubscribes(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("user_preferences_marketing_stop.json"))  # stop at …100
    land(engine, _preference("resume", 1767227000))  # older: arrives late
    drain(engine, settings)
    assert (one(engine, whatsapp_user_preferences).value, one(engine, whatsapp_user_preferences).opted_out) == ("stop", True)
    land(engine, _preference("resume", 1767230000))
    drain(engine, settings)
    pref = one(engine, whatsapp_user_preferences)
    assert (pref.value, pref.opted_out, pref.event_at) == ("resume", False, t(1767230000))


def _call(event: str, at: int, **extra) -> dict:
    return {"id": "wacid.ORDER1", "from": "15550000101", "to": "15550000001", "event": event, "timestamp": str(at),
            "direction": "USER_INITIATED", **extra}


def test_a_late_connect_or_status_never_undoes_a_terminate(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    terminate = _call("terminate", 1767227400, status="FAILED", errors=[{"code": 131044, "title": "fake error"}])
    connect = _call("connect", 1767227160, session={"sdp_type": "offer", "sdp": "x"})
    status = {"id": "wacid.ORDER1", "timestamp": "1767227500", "type": "call", "status": "RINGING", "recipient_id": "15550000101"}
    land(engine, body("calls", phone_value(calls=[terminate])))
    drain(engine, settings)
    land(engine, body("calls", phone_value(calls=[connect], statuses=[status])))  # both late (status even with a later time)
    drain(engine, settings)
    call = one(engine, whatsapp_calls)
    assert (call.state, call.last_event, call.terminate_status, call.error_code, call.error_title) == (
        "failed", "terminate", "FAILED", 131044, "fake error")
    assert (call.connected_at, call.sdp_type) == (t(1767227160), "offer")  # the connect's facts still filled in
    assert len(rows(engine, whatsapp_call_events)) == 3


def test_groups_keep_metas_order_per_facet_and_accept_the_old_spelling(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    # settings, suspension and participants before the group's creation; then the creation
    for name in ("group_settings_update_subject.json", "group_status_update_suspend.json",
                 "group_participants_update_invite_link_join.json", "group_lifecycle_update_create.json"):
        land(engine, fixture_bytes(name))
        drain(engine, settings)
    group = one(engine, whatsapp_groups)
    assert (group.subject, group.lifecycle, group.suspended, group.invite_link) == (
        "Fake support group (renamed)", "created", True, "https://chat.example.invalid/FAKELINK0001")
    # the older schema's field and type names: a removal of the same participant, then a late add
    remove = {"timestamp": 1767227700, "group_id": GROUP, "type": "group_remove_participants", "initiated_by": "business",
              "removed_participants": [{"user_id": "US.FAKE0000000000000103"}]}
    late_add = {"timestamp": 1767227600, "group_id": GROUP, "type": "group_add_participants",
                "added_participants": [{"user_id": "US.FAKE0000000000000103"}]}
    land(engine, body("group_participant_update", phone_value(groups=[remove, late_add])))
    cleared = {"timestamp": "1767227800", "group_id": GROUP, "type": "group_suspend_cleared"}
    land(engine, body("group_status_update", phone_value(groups=[cleared])))
    drain(engine, settings)
    member = one(engine, whatsapp_group_participants)
    assert (member.state, member.initiated_by, member.event_at, member.username) == ("removed", "business", t(1767227700), "fake.user103")
    assert one(engine, whatsapp_groups).suspended is False
    assert len(rows(engine, whatsapp_group_events)) == 7


def test_broken_items_fail_alone_and_the_rest_is_stored(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    good = {"id": "wamid.AE1", "event_name": "LeadSubmitted", "timestamp": 1767227760, "custom_data": {"value": "not a number"}}
    row_id = land(engine, body("automatic_events", phone_value(automatic_events=[good, {"event_name": "Purchase"}, "junk"])))
    drain(engine, settings)
    row = webhook_row(engine, row_id)
    assert (row.status, row.items_processed, row.items_failed, row.error_kind) == ("dead", 1, 2, "invalid_payload")
    conversion = one(engine, whatsapp_ad_conversions)
    assert (conversion.event_name, conversion.value, conversion.currency) == ("LeadSubmitted", None, None)


def test_unknown_fields_are_counted_and_alerted_once(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("unknown_field.json"))
    land(engine, fixture_bytes("calls_connect_user_initiated.json"))
    drain(engine, settings)
    land(engine, fixture_bytes("unknown_field.json"))  # redelivered: counted again, alerted once
    drain(engine, settings)
    counts = {r.field: (r.webhooks, r.changes) for r in rows(engine, whatsapp_webhook_fields)}
    assert counts == {"some_future_field": (2, 2), "calls": (1, 1)}
    [alert] = rows(engine, ops_alerts, ops_alerts.c.kind == "new_webhook_field")
    assert (alert.key, alert.severity) == ("some_future_field", "warning")

    from wa_core.reporting.admin_status import admin_status
    from wa_core.reporting.summary import format_summary, stored_summary

    with engine.connect() as conn:
        section = admin_status(conn).webhook_fields
        summary = stored_summary(conn)
    assert section.unknown == ["some_future_field"]
    assert [(f.field, f.known, f.webhooks) for f in section.fields] == [("some_future_field", False, 2), ("calls", True, 1)]
    assert summary["unknown_fields"] == {"some_future_field": 2} and summary["calls"] == {"connect": 1}
    assert "some_future_field=2" in format_summary(summary)


def test_odd_shapes_around_the_items_never_cost_the_items(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    reply = {"from": "15550000102", "id": "wamid.NORESPONSE", "timestamp": "1767227100", "type": "interactive",
             "interactive": {"type": "call_permission_reply", "call_permission_reply": {"response_source": "automatic"}}}
    land(engine, body("messages", phone_value(messages=[reply])))
    land(engine, body("calls", phone_value(contacts="not a list", calls=[_call("connect", 1767227160)])))
    drain(engine, settings)
    assert one(engine, whatsapp_messages).wamid == "wamid.NORESPONSE"  # stored, without a permission
    assert rows(engine, whatsapp_call_permissions) == []
    assert one(engine, whatsapp_calls).state == "connect"
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed"}
