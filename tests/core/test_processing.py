"""Processing on the real Postgres: every fixture to the right rows, idempotency, concurrency,
out-of-order statuses, failures that do not block siblings, retries, crash recovery."""

from __future__ import annotations

import json
import subprocess

import pytest
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import FIXTURES, fixture_bytes
from tests.helpers import ACME_PHONE, ACME_WABA, bind_fixture_numbers, land, rows, webhook_row
from wa_core.processing.claim import claim_batch
from wa_core.processing.runner import process_batch, run_processing
from wa_core.db.schema import (
    utcnow,
    whatsapp_configs,
    whatsapp_connections,
    whatsapp_contacts,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_webhook_logs,
)
from wa_core.settings import Settings

CORPUS = sorted(p.name for p in [*FIXTURES.glob("*.json"), *FIXTURES.glob("*.txt")] if p.name not in ("signatures.json", "expected.json"))


def drain(engine: Engine, settings: Settings, **kw):
    return run_processing(engine, settings, idle_exit_seconds=0, **kw)


def message(engine: Engine, wamid: str):
    [row] = rows(engine, whatsapp_messages, whatsapp_messages.c.wamid == wamid)
    return row


def body_with(value: dict, field: str = "messages", waba: str = ACME_WABA) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": waba, "changes": [{"value": value, "field": field}]}]}).encode()


def acme_value(**extra) -> dict:
    return {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000001", "phone_number_id": ACME_PHONE}, **extra}


def text(wamid: str, sender: str = "15550000101", body: str = "hi") -> dict:
    return {"from": sender, "id": wamid, "timestamp": "1767225600", "type": "text", "text": {"body": body}}


# --- every fixture ---------------------------------------------------------------------
def test_every_fixture_is_processed_to_the_expected_rows(engine: Engine, settings: Settings, expected: dict) -> None:
    bind_fixture_numbers(engine)
    ids = {name: land(engine, fixture_bytes(name)) for name in CORPUS}
    stats = drain(engine, settings)
    assert stats.webhooks == len(CORPUS)

    stored_wamids = {r.wamid for r in rows(engine, whatsapp_messages)}
    stored_statuses = {(r.wamid, r.status) for r in rows(engine, whatsapp_message_statuses)}
    for name in CORPUS:
        row = webhook_row(engine, ids[name])
        facts = expected[name]
        if name == "not_json.txt":
            assert (row.status, row.error_kind) == ("dead", "invalid_json"), name
            continue
        if name == "messages_unknown_phone_number.json":
            assert (row.status, row.error_kind) == ("failed", "unroutable"), name
            assert row.next_attempt_at is not None
            assert not set(facts["wamids"]) & stored_wamids
            continue
        assert row.status == "processed", (name, row.last_error)
        assert row.items_received >= 1 and row.items_failed == 0, name
        assert row.items_received == row.items_processed + row.items_ignored, name
        assert set(facts["wamids"]) <= stored_wamids, name
        assert {tuple(s) for s in facts["statuses"]} <= stored_statuses, name
        assert sorted(row.fields.split(",")) == sorted(set(facts["field"])), name
        if facts["phone_number_ids"] or facts["waba_ids"]:
            assert row.organization_id is not None, name


def test_message_contents_and_times(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    for name in (
        "messages_text_unicode_escaped.json",
        "messages_unsupported.json",
        "messages_integer_timestamp.json",
        "messages_image.json",
        "messages_reaction_removed.json",
        "messages_interactive_button_reply.json",
        "messages_bsuid_only.json",
        "messages_system_user_changed_number.json",
        "messages_location.json",
    ):
        land(engine, fixture_bytes(name))
    drain(engine, settings)

    m = message(engine, "wamid.FAKEIN00000000000000000010")
    assert m.body == "Olá! Preço: 10€ 👍 — veja https://shop.example.invalid/p/1"
    assert m.direction == "inbound" and m.source == "cloud_api" and m.organization_id == orgs["acme"]
    assert m.provider_timestamp == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert m.received_at > m.provider_timestamp  # Meta's time and ours are kept apart
    assert m.raw["text"]["body"].startswith("Olá")

    unsupported = message(engine, "wamid.FAKEIN00000000000000000009")
    assert (unsupported.type, unsupported.error_code) == ("unsupported", 131051)

    integer_ts = [r for r in rows(engine, whatsapp_messages) if isinstance(r.raw.get("timestamp"), int)]
    assert integer_ts and all(r.provider_timestamp is not None for r in integer_ts)

    image = message(engine, "wamid.FAKEIN00000000000000000002")
    assert image.type == "image" and image.raw["image"]["id"]

    removed = message(engine, "wamid.FAKEIN00000000000000000007")
    assert removed.type == "reaction" and removed.body is None and removed.context_wamid

    button = message(engine, "wamid.FAKEIN00000000000000000004")
    assert button.context_wamid and button.body

    # business-scoped user id only: no from, no wa_id
    bsuid_contacts = rows(engine, whatsapp_contacts, whatsapp_contacts.c.user_id == "US.13491208655302741918")
    assert len(bsuid_contacts) == 1 and bsuid_contacts[0].wa_id is None
    bsuid_msgs = [r for r in rows(engine, whatsapp_messages) if r.raw.get("from_user_id") == "US.13491208655302741918"]
    assert len(bsuid_msgs) == 1 and bsuid_msgs[0].contact_id == bsuid_contacts[0].id

    system = [r for r in rows(engine, whatsapp_messages) if r.type == "system"]
    assert len(system) == 1 and system[0].body

    location = [r for r in rows(engine, whatsapp_messages) if r.type == "location"]
    assert len(location) == 1 and location[0].body


def test_statuses_are_append_only_and_failed_keeps_metas_error(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("statuses_failed.json"))
    land(engine, fixture_bytes("statuses_sent_with_pricing.json"))
    drain(engine, settings)
    failed = rows(engine, whatsapp_message_statuses, whatsapp_message_statuses.c.status == "failed")
    assert len(failed) == 1 and failed[0].error_code == 131049 and failed[0].error_title
    sent = rows(engine, whatsapp_message_statuses, whatsapp_message_statuses.c.status == "sent")
    assert sent and sent[0].pricing and sent[0].pricing["pricing_model"]


def _outbound(engine: Engine, org_id, wamid: str) -> None:
    """An outbound message as the SaaS's sender would have stored it."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(whatsapp_messages).values(
                organization_id=org_id, phone_number_id=ACME_PHONE, wamid=wamid, direction="outbound",
                source="cloud_api", type="text", body="hello", raw={}, status_rank=0, received_at=utcnow(),
            )
        )


def test_out_of_order_statuses_only_move_forward(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    _outbound(engine, orgs["acme"], "wamid.FAKEOUT0000000000000000011")
    # read, delivered, sent, newest first; then a late duplicate of delivered
    land(engine, fixture_bytes("statuses_out_of_order_read_before_delivered.json"))
    land(engine, fixture_bytes("statuses_out_of_order_read_before_delivered.json"))
    drain(engine, settings)
    m = message(engine, "wamid.FAKEOUT0000000000000000011")
    assert m.current_status == "read"
    history = rows(engine, whatsapp_message_statuses, whatsapp_message_statuses.c.wamid == m.wamid)
    assert sorted(r.status for r in history) == ["delivered", "read", "sent"]


def test_status_before_its_message_is_parked_then_applied(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    land(engine, fixture_bytes("statuses_out_of_order_read_before_delivered.json"))
    drain(engine, settings)
    assert not rows(engine, whatsapp_messages, whatsapp_messages.c.wamid == "wamid.FAKEOUT0000000000000000011")
    # the message arrives later (here: an echo of the same wamid)
    echo = {"from": "15550000001", "to": "15550000101", "id": "wamid.FAKEOUT0000000000000000011", "timestamp": "1767225600", "type": "text", "text": {"body": "x"}}
    land(engine, body_with(acme_value(message_echoes=[echo]), field="smb_message_echoes"))
    drain(engine, settings)
    m = message(engine, "wamid.FAKEOUT0000000000000000011")
    assert m.current_status == "read" and m.organization_id == orgs["acme"]


def test_failed_is_terminal(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    wamid = "wamid.TERMINAL1"
    _outbound(engine, orgs["acme"], wamid)
    st = lambda s, t: {"id": wamid, "status": s, "timestamp": t, "recipient_id": "15550000101"}  # noqa: E731
    land(engine, body_with(acme_value(statuses=[st("sent", "1"), st("failed", "2")])))
    land(engine, body_with(acme_value(statuses=[st("delivered", "3"), st("read", "4")])))
    drain(engine, settings)
    assert message(engine, wamid).current_status == "failed"


# --- idempotency and concurrency -------------------------------------------------------
def test_duplicate_delivery_leaves_the_same_rows(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    names = [n for n in CORPUS if n not in ("not_json.txt", "messages_unknown_phone_number.json")]
    for name in names:
        land(engine, fixture_bytes(name))
    drain(engine, settings)

    def snapshot():
        return {
            "messages": sorted((r.wamid, r.type, r.direction, r.current_status, str(r.contact_id)) for r in rows(engine, whatsapp_messages)),
            "statuses": sorted((r.wamid, r.status) for r in rows(engine, whatsapp_message_statuses)),
            "contacts": sorted((r.wa_id or "", r.user_id or "", r.profile_name or "", str(r.in_address_book)) for r in rows(engine, whatsapp_contacts)),
            "connections": sorted((r.waba_id, r.status, r.last_event) for r in rows(engine, whatsapp_connections)),
        }

    before = snapshot()
    for name in names:  # Meta redelivers everything
        land(engine, fixture_bytes(name))
    drain(engine, settings)
    assert snapshot() == before
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed"}


def test_concurrent_runs_store_each_message_and_status_once(engine: Engine, settings: Settings) -> None:
    # concurrency, not fairness: quotas high enough that 4 runs can share one organization's rows
    settings = settings.model_copy(update={"processing_org_webhooks_per_minute": 10_000, "processing_org_max_in_flight": 1_000})
    bind_fixture_numbers(engine)
    bodies = [fixture_bytes("messages_batch_multi.json"), fixture_bytes("statuses_out_of_order_read_before_delivered.json"), fixture_bytes("messages_text.json")]
    for _ in range(40):
        for body in bodies:
            land(engine, body)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        try:
            start.wait()
            while process_batch(engine, settings, limit=3):
                pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    logs = rows(engine, whatsapp_webhook_logs)
    assert len(logs) == 120 and {r.status for r in logs} == {"processed"}, {r.last_error for r in logs}
    assert max(r.attempts for r in logs) == 1  # disjoint claims: nobody processed a row twice
    wamids = [r.wamid for r in rows(engine, whatsapp_messages)]
    assert len(wamids) == len(set(wamids)) == 5
    statuses = [(r.wamid, r.status) for r in rows(engine, whatsapp_message_statuses)]
    assert len(statuses) == len(set(statuses)) == 4
    # two messages from the same contact in one webhook: one contact row
    contacts = rows(engine, whatsapp_contacts)
    assert len(contacts) == len({(r.organization_id, r.wa_id) for r in contacts})


# --- failures --------------------------------------------------------------------------
def test_a_bad_item_does_not_block_or_undo_its_siblings(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    messages = [text("wamid.GOOD1"), {"type": "text", "text": {"body": "no id"}}, "not an object", text("wamid." + "X" * 300), text("wamid.GOOD2")]
    row_id = land(engine, body_with(acme_value(messages=messages)))
    drain(engine, settings)
    assert {r.wamid for r in rows(engine, whatsapp_messages)} == {"wamid.GOOD1", "wamid.GOOD2"}
    row = webhook_row(engine, row_id)
    assert (row.items_received, row.items_processed, row.items_failed) == (5, 2, 3)
    assert row.status == "dead"  # two of the failures can never succeed
    assert row.error_kind == "invalid_payload,invalid_value"  # both permanent: no retry can help
    assert row.items_dead == 3
    assert "messages[1]" in row.last_error and "messages[3]" in row.last_error


def test_unroutable_is_retried_with_backoff_then_dead(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"processing_max_attempts": 3})
    bind_fixture_numbers(engine)
    row_id = land(engine, fixture_bytes("messages_unknown_phone_number.json"))
    for attempt in (1, 2, 3):
        drain(engine, settings)
        row = webhook_row(engine, row_id)
        assert row.attempts == attempt and row.error_kind == "unroutable"
        if attempt < 3:
            assert row.status == "failed"
            delay = (row.next_attempt_at - row.updated_at).total_seconds()
            base = settings.processing_retry_base_seconds * 2 ** (attempt - 1)
            assert base * 0.5 - 1 <= delay <= base + 1  # exponential with jitter
            assert drain(engine, settings).webhooks == 0  # not before its time
            with engine.begin() as conn:
                conn.execute(sa.update(whatsapp_webhook_logs).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    assert row.status == "dead" and row.next_attempt_at is None
    assert bytes(row.body) == fixture_bytes("messages_unknown_phone_number.json")  # kept, not dropped


def test_unroutable_succeeds_once_the_number_is_bound(engine: Engine, settings: Settings) -> None:
    row_id = land(engine, fixture_bytes("messages_text.json"))
    drain(engine, settings)
    assert webhook_row(engine, row_id).status == "failed"
    bind_fixture_numbers(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_webhook_logs).values(next_attempt_at=utcnow()))
    drain(engine, settings)
    row = webhook_row(engine, row_id)
    assert row.status == "processed" and row.last_error is None and row.attempts == 2
    assert rows(engine, whatsapp_messages, whatsapp_messages.c.wamid == "wamid.FAKEIN00000000000000000001")


def test_unknown_fields_and_value_errors_are_ignored_not_failed(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    ids = [land(engine, fixture_bytes(n)) for n in ("unknown_field.json", "messages_value_errors.json")]
    ids.append(land(engine, body_with(acme_value(messages=[]))))
    drain(engine, settings)
    for row_id in ids:
        row = webhook_row(engine, row_id)
        assert row.status == "processed" and row.items_ignored >= 1 and row.items_failed == 0


def test_invalid_envelopes_are_dead_with_a_reason(engine: Engine, settings: Settings) -> None:
    bodies = [b"[]", b'{"entry": "x"}', b'{"entry": [{"changes": 3}]}', b"\xff\xfe", b'{"entry":[{"changes":[{"field":"messages","value":[]}]}]}']
    ids = [land(engine, b) for b in bodies]
    drain(engine, settings)
    for row_id in ids:
        row = webhook_row(engine, row_id)
        assert row.status == "dead" and row.last_error, row_id


# --- account_update --------------------------------------------------------------------
def _update(event: str, time_: int, **value) -> bytes:
    entry_id = "300000000000900" if "waba_info" in value else ACME_WABA
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": entry_id, "time": time_, "changes": [{"field": "account_update", "value": {"event": event, **value}}]}]}).encode()


def connection(engine: Engine):
    [row] = rows(engine, whatsapp_connections, whatsapp_connections.c.waba_id == ACME_WABA)
    return row


def test_partner_added_then_removed_changes_connection_and_configs(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("account_update_partner_added.json"))
    drain(engine, settings)
    c = connection(engine)
    assert c.status == "active" and c.last_event == "PARTNER_ADDED" and c.owner_business_id == "300000000000001"
    assert {r.status for r in rows(engine, whatsapp_configs, whatsapp_configs.c.waba_id == ACME_WABA)} == {"connected"}
    land(engine, _update("PARTNER_REMOVED", 1767300000, waba_info={"waba_id": ACME_WABA, "owner_business_id": "300000000000001"}))
    drain(engine, settings)
    c = connection(engine)
    assert c.status == "inactive" and c.disconnected_at is not None and "PARTNER_REMOVED" in c.status_reason
    assert {r.status for r in rows(engine, whatsapp_configs, whatsapp_configs.c.waba_id == ACME_WABA)} == {"disconnected"}


def test_account_updates_apply_in_metas_order_not_arrival_order(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    waba_info = {"waba_id": ACME_WABA, "owner_business_id": "300000000000001"}
    land(engine, _update("PARTNER_REMOVED", 1767300000, waba_info=waba_info))  # newer, arrives first
    land(engine, _update("PARTNER_ADDED", 1767200000, waba_info=waba_info))  # older, arrives late
    drain(engine, settings)
    assert connection(engine).status == "inactive"


def test_coexistence_lifecycle(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine, acme_status="active")
    land(engine, fixture_bytes("account_update_account_offboarded.json"))
    drain(engine, settings)
    assert connection(engine).status == "offboarded"
    land(engine, fixture_bytes("account_update_account_reconnected.json"))
    drain(engine, settings)
    assert connection(engine).status == "active"
    land(engine, fixture_bytes("account_update_partner_removed_coexistence.json"))
    drain(engine, settings)
    c = connection(engine)
    assert c.status == "inactive" and "ACCOUNT_DISCONNECTED" in c.status_reason


def test_partner_added_for_an_unbound_waba_waits_for_the_binding(engine: Engine, settings: Settings) -> None:
    row_id = land(engine, fixture_bytes("account_update_partner_added.json"))
    drain(engine, settings)
    row = webhook_row(engine, row_id)
    assert row.status == "failed" and row.error_kind == "unroutable" and "100000000000001" in row.last_error


# --- coexistence payloads --------------------------------------------------------------
def test_echoes_history_and_contact_sync(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    for name in ("smb_message_echoes.json", "history.json", "history_media_messages.json", "smb_app_state_sync.json", "history_declined.json"):
        land(engine, fixture_bytes(name))
    drain(engine, settings)
    echo = message(engine, "wamid.FAKEECHO00000000000000001")
    assert (echo.direction, echo.source) == ("outbound", "business_app_echo")
    [contact] = rows(engine, whatsapp_contacts, whatsapp_contacts.c.id == echo.contact_id)
    assert contact.wa_id == "15550000101"  # taken from `to`, the customer
    hist = {r.wamid: r for r in rows(engine, whatsapp_messages, whatsapp_messages.c.source == "history")}
    assert hist["wamid.FAKEHIST00000000000000001"].direction == "outbound"
    assert hist["wamid.FAKEHIST00000000000000003"].direction == "inbound"
    assert hist["wamid.FAKEHIST00000000000000001"].current_status == "read"
    assert hist["wamid.FAKEHIST00000000000000002"].type != "media_placeholder"  # media arrived later
    assert all(r.organization_id == orgs["acme"] for r in hist.values())
    synced = {r.wa_id: r for r in rows(engine, whatsapp_contacts)}
    assert synced["15550000101"].in_address_book is True and synced["15550000101"].first_name == "Test"
    assert synced["15550000102"].in_address_book is False


# --- crash recovery --------------------------------------------------------------------
CRASH_SCRIPT = """
import os, sys
from wa_core.settings import get_settings
from wa_core.db.engine import create_sync_engine
from wa_core.processing.claim import claim_batch
from wa_core.processing.runner import process_row
settings = get_settings()
engine = create_sync_engine(settings)
rows = claim_batch(engine, 10, lease_seconds=float(sys.argv[1]))
for row in rows[:4]:
    process_row(engine, row, settings)
os._exit(9)  # the run dies mid-batch: no cleanup, no rollback of what it committed
"""


def test_a_run_killed_mid_batch_leaves_rows_claimable_and_nothing_is_applied_twice(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    ids = [land(engine, json.dumps({"object": "whatsapp_business_account", "entry": [{"id": ACME_WABA, "changes": [{"field": "messages", "value": acme_value(messages=[text(f"wamid.CRASH{i}")])}]}]}).encode()) for i in range(10)]
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, "2"], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    states = {r.id: r.status for r in rows(engine, whatsapp_webhook_logs)}
    assert sorted(states.values()).count("processed") == 4
    assert drain(engine, settings).webhooks == 0  # the other six are leased by the dead run
    time.sleep(2.2)
    stats = drain(engine, settings)
    assert stats.webhooks == 6
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed"}
    wamids = [r.wamid for r in rows(engine, whatsapp_messages)]
    assert sorted(wamids) == sorted(f"wamid.CRASH{i}" for i in range(10))
    assert {webhook_row(engine, i).attempts for i in ids} <= {1, 2}


def test_bodies_that_break_the_json_parser_are_dead_and_do_not_stop_the_run(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    deep = land(engine, b"[" * 100_000 + b"]" * 100_000)
    huge_int = land(engine, b'{"entry": ' + b"9" * 5000 + b"}")
    good = land(engine, fixture_bytes("messages_text.json"))
    stats = drain(engine, settings)
    assert stats.webhooks == 3
    for row_id in (deep, huge_int):
        row = webhook_row(engine, row_id)
        assert (row.status, row.error_kind) == ("dead", "invalid_json")
    assert webhook_row(engine, good).status == "processed"


def test_a_row_that_kills_every_run_ends_dead_instead_of_blocking_processing(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"processing_max_attempts": 2})
    bind_fixture_numbers(engine)
    row_id = land(engine, fixture_bytes("messages_text.json"))
    for _ in range(2):  # two runs claim it and die before finishing
        claim_batch(engine, 10, lease_seconds=0)
    drain(engine, settings)
    row = webhook_row(engine, row_id)
    assert (row.status, row.error_kind, row.attempts) == ("dead", "crashed", 3)
    assert not rows(engine, whatsapp_messages)  # not applied: an operator replays it


@pytest.mark.parametrize(
    "value",
    [
        {"messages": {"id": "wamid.OBJ", "type": "text", "text": {"body": "x"}}},
        {"messages": "wamid.STR"},
        {"statuses": {"id": "wamid.S", "status": "read"}},
    ],
)
def test_wrong_container_types_are_invalid_not_silently_ignored(engine: Engine, settings: Settings, value: dict) -> None:
    bind_fixture_numbers(engine)
    row_id = land(engine, body_with(acme_value(**value)))
    drain(engine, settings)
    row = webhook_row(engine, row_id)
    assert (row.status, row.error_kind) == ("dead", "invalid_payload")


def test_a_status_on_one_number_never_touches_another_numbers_message(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    _outbound(engine, orgs["acme"], "wamid.SHARED")
    globex_value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000002", "phone_number_id": "200000000000002"}}
    failed = {"id": "wamid.SHARED", "status": "failed", "timestamp": "1767225600", "recipient_id": "1"}
    land(engine, body_with({**globex_value, "statuses": [failed]}, waba="100000000000002"))
    land(engine, body_with(acme_value(statuses=[{**failed, "status": "delivered"}])))
    drain(engine, settings)
    assert message(engine, "wamid.SHARED").current_status == "delivered"
    assert len(rows(engine, whatsapp_message_statuses)) == 2


def test_errors_and_logs_never_carry_message_text_or_phone_numbers(engine: Engine, settings: Settings, caplog) -> None:
    import logging

    bind_fixture_numbers(engine)
    secret_text = "PII-BODY-do-not-log"
    phone = "15559998877"
    bad = [
        {"from": phone, "id": "wamid." + "L" * 300, "timestamp": "1", "type": "text", "text": {"body": secret_text}},
        {"from": phone * 10, "id": "wamid.LONGFROM", "timestamp": "1", "type": "text", "text": {"body": secret_text}},
    ]
    row_id = land(engine, body_with(acme_value(contacts=[{"profile": {"name": secret_text}, "wa_id": phone}], messages=bad)))
    with caplog.at_level(logging.DEBUG, logger="wa_core"):
        drain(engine, settings)
    row = webhook_row(engine, row_id)
    assert row.status == "dead" and row.items_failed == 2
    text = row.last_error + "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert secret_text not in text and phone not in text
