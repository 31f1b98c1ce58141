"""Property-based: arbitrary and mutated payloads never crash a run, no item is lost, and
processing the same deliveries again is a no-op."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy.engine import Engine

from tests.conftest import FIXTURES
from tests.helpers import bind_fixture_numbers, land, rows
from wa_core.processing.runner import run_processing
from wa_core.db.schema import (
    metadata,
    whatsapp_connections,
    whatsapp_contacts,
    whatsapp_message_reactions,
    whatsapp_message_revisions,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_webhook_logs,
)
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
)
from wa_core.processing.handlers.groups import GROUP_FIELDS
from wa_core.settings import Settings
from wa_core.db.schema_waba_state import (
    whatsapp_account_alerts,
    whatsapp_number_health,
    whatsapp_template_events,
    whatsapp_templates,
    whatsapp_waba_events,
    whatsapp_waba_health,
)

WABA_STATE_TABLES = [whatsapp_templates, whatsapp_template_events, whatsapp_number_health, whatsapp_waba_events, whatsapp_waba_health, whatsapp_account_alerts]

BODIES = [p.read_bytes() for p in sorted(FIXTURES.glob("*.json")) if p.name not in ("signatures.json", "expected.json")]
PAYLOADS = [json.loads(b) for b in BODIES]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=40), st.sampled_from(["", "wamid.X", "200000000000001", "100000000000001", "text", "read", "PARTNER_ADDED", "1767225600"]),
)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, path + (i,))
    return out


def _set(node: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node[path[0]] = _set(node[path[0]], path[1:], value)
    return node


@st.composite
def mutated_payload(draw, payloads: list[Any] = PAYLOADS) -> bytes:
    """A fixture (of ``payloads``) with 1–3 subtrees replaced by arbitrary JSON, or removed."""
    payload = json.loads(json.dumps(draw(st.sampled_from(payloads))))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(payload)
        path = paths[rng.randrange(len(paths))]
        if path and rng.random() < 0.3:
            parent = payload
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
                continue
        payload = _set(payload, path, draw(json_value))
    return json.dumps(payload).encode()


arbitrary_body = st.one_of(
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    mutated_payload(),
    mutated_payload(),
    mutated_payload(),
)

TABLES = [whatsapp_messages, whatsapp_message_statuses, whatsapp_contacts, whatsapp_connections, whatsapp_message_reactions, whatsapp_message_revisions,
          whatsapp_user_preferences, whatsapp_calls, whatsapp_call_events, whatsapp_call_permissions, whatsapp_groups,
          whatsapp_group_participants, whatsapp_group_events, whatsapp_partner_solutions, whatsapp_ad_conversions,
          *WABA_STATE_TABLES]
VOLATILE = {"id", "updated_at", "created_at", "first_seen_at", "last_seen_at", "applied_at", "webhook_log_id", "contact_id"}


def snapshot(engine: Engine) -> dict[str, list]:
    out = {}
    for table in TABLES:
        cols = [c.name for c in table.columns if c.name not in VOLATILE]
        out[table.name] = sorted(json.dumps([str(getattr(r, c)) for c in cols]) for r in rows(engine, table))
    return out


def _reset(engine: Engine) -> None:
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)} RESTART IDENTITY CASCADE"))


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies=st.lists(arbitrary_body, min_size=1, max_size=5))
def test_no_crash_no_loss_and_reprocessing_is_a_no_op(engine: Engine, settings: Settings, bodies: list[bytes]) -> None:
    _no_crash_no_loss_and_reprocessing_is_a_no_op(engine, settings, bodies)


#: the phone-family fields' fixtures (user preferences, calls, call permission, groups, partner and ads records)
PHONE_FIELDS = ("user_preferences", "calls", "automatic_events", "partner_solutions", *GROUP_FIELDS)
PHONE_PAYLOADS = [
    p for p in PAYLOADS
    if any(c.get("field") in PHONE_FIELDS or "call_permission_reply" in json.dumps(c) for e in p["entry"] for c in e["changes"])
]
#: a random value under a phone-family field, routed to a bound number, with the field's arrays of random items
phone_value_body = st.builds(
    lambda field, key, items, extra: json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "100000000000001", "time": 1767227700, "changes": [
        {"field": field, "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "200000000000001"}, key: items, **extra}}]}]}).encode(),
    st.sampled_from(PHONE_FIELDS),
    st.sampled_from(["user_preferences", "calls", "statuses", "groups", "automatic_events", "contacts", "solution_id"]),
    st.lists(st.dictionaries(st.sampled_from(["id", "wa_id", "user_id", "group_id", "type", "event", "status", "value", "timestamp",
                                              "event_name", "added_participants", "removed_participants", "custom_data", "duration"]),
                             json_value, max_size=6), max_size=3) | json_value,
    st.dictionaries(st.sampled_from(["errors", "contacts", "event", "solution_status"]), json_value, max_size=2),
)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies=st.lists(st.one_of(mutated_payload(PHONE_PAYLOADS), phone_value_body), min_size=1, max_size=5))
def test_phone_field_handlers_take_random_and_broken_shapes(engine: Engine, settings: Settings, bodies: list[bytes]) -> None:
    """The phone-family handlers (preferences, calls, groups, partner/ads records) under random
    and broken shapes: no crashed run, every item accounted for, redelivery a no-op."""
    assert len(PHONE_PAYLOADS) == 11
    _no_crash_no_loss_and_reprocessing_is_a_no_op(engine, settings, bodies)


def _no_crash_no_loss_and_reprocessing_is_a_no_op(engine: Engine, settings: Settings, bodies: list[bytes]) -> None:
    _reset(engine)
    bind_fixture_numbers(engine)
    ids = [land(engine, b) for b in bodies]
    stats = run_processing(engine, settings, idle_exit_seconds=0)  # must not raise
    assert stats.webhooks == len(ids)
    for row in rows(engine, whatsapp_webhook_logs):
        assert row.status in ("processed", "failed", "dead"), row
        assert row.items_received >= 1
        assert row.items_received == row.items_processed + row.items_ignored + row.items_failed  # every item has a fate
        assert (row.status == "processed") == (row.items_failed == 0)
        if row.status != "processed":
            assert row.last_error and row.error_kind
    before = snapshot(engine)
    for b in bodies:  # Meta redelivers everything
        land(engine, b)
    run_processing(engine, settings, idle_exit_seconds=0)
    assert snapshot(engine) == before
