"""Break-it #1 of the event feed: a late, older WABA-family webhook keeps its history row but
announces nothing (no event, no alert) once the order-safe upsert kept the newer state, on
the set-based path and on the per-item path; a redelivery never makes a second event."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.helpers import ACME_PHONE, ACME_WABA, bind_fixture_numbers, land, rows
from wa_core.db.schema import ops_alerts
from wa_core.db.schema_events import whatsapp_events
from wa_core.db.schema_waba_state import whatsapp_number_health, whatsapp_template_events, whatsapp_templates, whatsapp_waba_events
from wa_core.processing.claim import claim_batch
from wa_core.processing.dispatch import apply_webhook, finish_row
from wa_core.processing.runner import run_processing
from wa_core.settings import Settings

NEW, OLD = 1767400000, 1767300000


def body(field: str, value: dict, time_: int) -> bytes:
    entry = {"id": ACME_WABA, "time": time_, "changes": [{"field": field, "value": value}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def status(event: str, time_: int) -> bytes:
    return body("message_template_status_update", {"event": event, "message_template_id": 900000000000001,
                                                   "message_template_name": "late_fake", "message_template_language": "en_US",
                                                   "reason": "NONE"}, time_)


def quality(event: str, time_: int) -> bytes:
    return body("phone_number_quality_update", {"display_phone_number": "15550000001", "event": event, "current_limit": "TIER_1K"}, time_)


def per_item(engine: Engine, settings: Settings) -> None:
    for row in claim_batch(engine, 100, 60.0, org_max_in_flight=10**6, org_per_minute=10**9):
        with engine.connect() as conn:
            finish_row(conn, apply_webhook(conn, row.id, row.body, row.received_at, {}), row.attempts, settings)
            conn.commit()


def set_based(engine: Engine, settings: Settings) -> None:
    run_processing(engine, settings, idle_exit_seconds=0)


def typed(engine: Engine, type_: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(whatsapp_events).where(whatsapp_events.c.type == type_).order_by(whatsapp_events.c.cursor)).all()


@pytest.mark.parametrize("drain", [set_based, per_item], ids=["set_based", "per_item"])
def test_a_late_older_template_status_stores_history_but_announces_nothing(engine: Engine, settings: Settings, drain) -> None:
    bind_fixture_numbers(engine)
    land(engine, status("APPROVED", NEW))
    drain(engine, settings)
    land(engine, status("PAUSED", OLD))  # late and older: PAUSED would alert
    land(engine, status("APPROVED", NEW))  # a redelivery of the newer one
    drain(engine, settings)
    [row] = rows(engine, whatsapp_templates)
    assert row.status == "APPROVED"
    assert {(r.value, r.event_at.timestamp()) for r in rows(engine, whatsapp_template_events)} == {("APPROVED", NEW), ("PAUSED", OLD)}
    assert [e.payload["status"] for e in typed(engine, "template.status_changed")] == ["APPROVED"]
    assert not [r for r in rows(engine, ops_alerts) if r.kind == "template_status"]


@pytest.mark.parametrize("drain", [set_based, per_item], ids=["set_based", "per_item"])
def test_a_late_older_number_quality_announces_nothing(engine: Engine, settings: Settings, drain) -> None:
    bind_fixture_numbers(engine)
    land(engine, quality("UPGRADE", NEW))
    drain(engine, settings)
    land(engine, quality("FLAGGED", OLD))  # late and older: FLAGGED would alert
    drain(engine, settings)
    [n] = rows(engine, whatsapp_number_health)
    assert n.quality_event == "UPGRADE"
    assert len(rows(engine, whatsapp_waba_events)) == 2
    assert [e.payload["value"] for e in typed(engine, "number.health_changed")] == ["UPGRADE"]
    assert not [r for r in rows(engine, ops_alerts) if r.kind == "number_quality"]


def test_in_one_batch_only_the_change_that_wins_is_announced(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, status("APPROVED", NEW))
    land(engine, status("PAUSED", OLD))
    set_based(engine, settings)
    assert [e.payload["status"] for e in typed(engine, "template.status_changed")] == ["APPROVED"]
    assert not [r for r in rows(engine, ops_alerts) if r.kind == "template_status"]


def test_a_newer_change_after_an_older_one_is_announced_too(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, status("APPROVED", OLD))
    set_based(engine, settings)
    land(engine, status("PAUSED", NEW))
    set_based(engine, settings)
    assert [e.payload["status"] for e in typed(engine, "template.status_changed")] == ["APPROVED", "PAUSED"]
    assert [r.kind for r in rows(engine, ops_alerts)] == ["template_status"]


def _account_update(event: str, time_: int) -> bytes:
    entry = {"id": "300000000000900", "time": time_, "changes": [{"field": "account_update", "value": {
        "event": event, "waba_info": {"waba_id": ACME_WABA, "owner_business_id": "300000000000001"}}}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def test_racing_account_updates_decide_on_the_committed_connection(engine: Engine, settings: Settings) -> None:
    """The newer PARTNER_REMOVED is being applied when an older PARTNER_ADDED arrives in another
    batch: the older one waits for the row, then sees it is older (it used to overwrite the
    connection back to active from a stale read)."""
    from tests.helpers import once_it_waits
    from wa_core.db.schema import utcnow, whatsapp_connections
    from wa_core.events.outbox import flush_events

    bind_fixture_numbers(engine, acme_status="active")
    newer, older = land(engine, _account_update("PARTNER_REMOVED", NEW)), land(engine, _account_update("PARTNER_ADDED", OLD))
    first = engine.connect()
    apply_webhook(first, newer, _account_update("PARTNER_REMOVED", NEW), utcnow(), {})  # not committed yet

    def second(conn):
        outcome = apply_webhook(conn, older, _account_update("PARTNER_ADDED", OLD), utcnow(), {})
        flush_events(conn)
        return outcome

    try:
        done = once_it_waits(engine, second, lambda: (flush_events(first), first.commit()))
    finally:
        first.close()
    done["outcome"] = done["result"]
    [connection] = rows(engine, whatsapp_connections, whatsapp_connections.c.waba_id == ACME_WABA)
    assert (connection.status, connection.last_event) == ("inactive", "PARTNER_REMOVED")
    assert done["outcome"].items_ignored == 1
    assert [e.type for e in typed(engine, "connection.disconnected")] == ["connection.disconnected"]
    assert typed(engine, "connection.connected") == []


def groups_body(item: dict) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000001", "phone_number_id": ACME_PHONE},
             "groups": [{"group_id": "FAKEGROUP0000000000000009", **item}]}
    return body("group_participants_update", value, NEW)


@pytest.mark.parametrize("drain", [set_based, per_item], ids=["set_based", "per_item"])
def test_a_late_ringing_status_after_the_call_ended_announces_nothing(engine: Engine, settings: Settings, drain) -> None:
    """Break-it (issue 13): call events had no gate, so a late, older status announced a move
    the call's row never made; the feed's last word on a call must be the state it is in."""
    from tests.conftest import fixture_bytes
    from wa_core.db.schema_phone import whatsapp_call_events, whatsapp_calls

    bind_fixture_numbers(engine, acme_status="active")
    land(engine, fixture_bytes("calls_terminate_completed.json"))  # 1767227400: the call ended
    drain(engine, settings)
    land(engine, fixture_bytes("calls_status_ringing.json"))  # 1767227220: older, delivered late
    drain(engine, settings)
    call = "wacid.FAKECALL0000000000000002"
    states = [(e.type, e.payload["state"]) for e in typed(engine, "call.terminate") + typed(engine, "call.status") if e.payload["call_id"] == call]
    with engine.connect() as conn:
        assert conn.execute(sa.select(whatsapp_calls.c.state).where(whatsapp_calls.c.call_id == call)).scalar_one() == "completed"  # not moved back
        history = conn.execute(sa.select(whatsapp_call_events.c.event_key).where(whatsapp_call_events.c.call_id == call)).scalars().all()
    assert sorted(history) == ["status:RINGING", "terminate:COMPLETED"]  # the late status is kept as history
    assert states == [("call.terminate", "completed")]


@pytest.mark.parametrize("drain", [set_based, per_item], ids=["set_based", "per_item"])
def test_a_late_older_participant_add_after_the_removal_announces_nothing(engine: Engine, settings: Settings, drain) -> None:
    from wa_core.db.schema_phone import whatsapp_group_events, whatsapp_group_participants

    bind_fixture_numbers(engine, acme_status="active")
    person = [{"wa_id": "15551230009"}]
    land(engine, groups_body({"type": "group_participants_remove", "timestamp": str(NEW), "removed_participants": person}))
    drain(engine, settings)
    land(engine, groups_body({"type": "group_participants_add", "timestamp": str(OLD), "added_participants": person}))
    drain(engine, settings)
    assert [r.state for r in rows(engine, whatsapp_group_participants)] == ["removed"]
    assert len(rows(engine, whatsapp_group_events)) == 2  # both kept as history
    assert [e.payload["state"] for e in typed(engine, "group.participants_changed")] == ["removed"]

