"""Property-based: the WABA-family state handlers (templates, number health, account,
security) given random and broken shapes never crash a run nor give a 5xx, every item has a
fate, and a redelivery changes no state."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, FIXTURES
from tests.core.test_properties import _reset, json_value, mutated_payload
from tests.helpers import ACME_WABA, bind_fixture_numbers, land, rows
from wa_core.db.schema import whatsapp_webhook_logs
from wa_core.db.schema_waba_state import (
    whatsapp_account_alerts,
    whatsapp_number_health,
    whatsapp_template_events,
    whatsapp_templates,
    whatsapp_waba_events,
    whatsapp_waba_health,
)
from wa_core.processing.handlers.account_health import ACCOUNT_FIELDS
from wa_core.processing.handlers.number_health import NUMBER_FIELDS
from wa_core.processing.handlers.templates import TEMPLATE_FIELDS
from wa_core.processing.runner import run_processing
from wa_core.meta.signature import sign
from wa_core.settings import Settings
from wa_webhook.app import create_app

FIELDS = (*TEMPLATE_FIELDS, *NUMBER_FIELDS, *ACCOUNT_FIELDS, "security")
#: the keys the handlers read, so random values land where they look
KEYS = (
    "event", "message_template_id", "message_template_name", "message_template_language", "reason", "message_template_category",
    "rejection_info", "other_info", "disable_info", "previous_quality_score", "new_quality_score", "message_template_element",
    "message_template_title", "message_template_footer", "message_template_buttons", "new_category", "correct_category",
    "previous_category", "category_update_timestamp", "display_phone_number", "current_limit", "old_limit",
    "max_daily_conversations_per_business", "decision", "requested_verified_name", "rejection_reason", "requested_username",
    "rejection_reasons", "max_daily_conversation_per_phone", "max_phone_numbers_per_business", "max_phone_numbers_per_waba",
    "entity_type", "entity_id", "alert_info", "requester",
)
WABA_BODIES = [
    json.loads(p.read_bytes())
    for p in sorted(FIXTURES.glob("*.json"))
    if p.name not in ("signatures.json", "expected.json") and any(f in p.name for f in (*FIELDS, "template_category"))
]
TABLES = (whatsapp_templates, whatsapp_template_events, whatsapp_number_health, whatsapp_waba_events, whatsapp_waba_health, whatsapp_account_alerts)

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True), st.text(max_size=300),
    st.sampled_from(["", "15550000001", "+1 555-000-0001", "APPROVED", "REJECTED", "PAUSED", "PIN_CHANGED", "RED", "GREEN", "ACTIVE", "CRITICAL", "\x00", "\ud800"]),
)


@st.composite
def random_change(draw) -> bytes:
    """An envelope with 1–3 changes of the new fields, values built from their keys."""
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        keys = draw(st.lists(st.sampled_from(KEYS), max_size=8, unique=True))
        value = {k: draw(st.one_of(leaf, json_value)) for k in keys}
        if draw(st.booleans()):
            value["alert_info"] = draw(st.dictionaries(st.sampled_from(["alert_severity", "alert_status", "alert_type", "alert_description"]), leaf, max_size=4))
        changes.append({"field": draw(st.sampled_from(FIELDS)), "value": draw(st.one_of(st.just(value), json_value)) if draw(st.integers(0, 9)) == 0 else value})
    entry: dict = {"id": draw(st.one_of(st.just(ACME_WABA), json_value)), "changes": changes}
    if draw(st.booleans()):
        entry["time"] = draw(st.one_of(st.integers(1767000000, 1768000000), json_value))
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


waba_mutated = mutated_payload().filter(lambda b: any(f in b.decode("utf-8", "replace") for f in FIELDS))
waba_body = st.one_of(random_change(), random_change(), waba_mutated, st.sampled_from(WABA_BODIES).map(lambda p: json.dumps(p).encode()))


def snapshot(engine: Engine) -> dict[str, list[str]]:
    return {t.name: sorted(str([getattr(r, c.name) for c in t.c if c.name != "id"]) for r in rows(engine, t)) for t in TABLES}


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(bodies=st.lists(waba_body, min_size=1, max_size=5))
def test_new_handlers_never_crash_and_redelivery_is_a_no_op(engine: Engine, settings: Settings, bodies: list[bytes]) -> None:
    _reset(engine)
    bind_fixture_numbers(engine)
    ids = [land(engine, b) for b in bodies]
    stats = run_processing(engine, settings, idle_exit_seconds=0)  # must not raise
    assert stats.webhooks == len(ids)
    for row in rows(engine, whatsapp_webhook_logs):
        assert row.status in ("processed", "failed", "dead"), row
        assert row.items_received == row.items_processed + row.items_ignored + row.items_failed
        assert row.error_kind != "handler_error", row.last_error  # a shape we cannot use is named, never a crash
        if row.status != "processed":
            assert row.last_error and row.error_kind
    before = snapshot(engine)
    for b in bodies:
        land(engine, b)
    run_processing(engine, settings, idle_exit_seconds=0)
    assert snapshot(engine) == before


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies=st.lists(random_change(), min_size=1, max_size=3))
def test_the_receiver_answers_200_to_any_shape_of_the_new_fields(settings: Settings, engine: Engine, bodies: list[bytes]) -> None:
    with TestClient(create_app(settings)) as client:
        for body in bodies:
            headers = {"X-Hub-Signature-256": sign(body, APP_SECRET), "Content-Type": "application/json"}
            assert client.post("/api/v1/whatsapp/webhook", content=body, headers=headers).status_code == 200
