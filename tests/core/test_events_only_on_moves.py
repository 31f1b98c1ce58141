"""Break-it #1 of the event feed: a late, older WABA-family webhook keeps its history row but
announces nothing (no event, no alert) once the order-safe upsert kept the newer state, on
the set-based path and on the per-item path; a redelivery never makes a second event."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.helpers import ACME_WABA, bind_fixture_numbers, land, rows
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
