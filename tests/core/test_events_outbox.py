"""The event feed's outbox: exactly-once events, cursors in commit order, same transaction."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import FIXTURES
from tests.helpers import ACME_PHONE, bind_fixture_numbers, land, once_it_waits
from wa_core.db.schema import utcnow, whatsapp_webhook_logs
from wa_core.db.schema_events import whatsapp_event_cursors, whatsapp_events
from wa_core.events.feed import purge_events, read_events
from wa_core.events.outbox import event_id, write_events
from wa_core.processing.claim import claim_batch
from wa_core.processing.dispatch import apply_webhook, finish_row
from wa_core.processing.runner import run_processing
from wa_core.processing.state import EventSpec
from wa_core.settings import Settings

CORPUS = sorted(p for p in FIXTURES.glob("*.json") if p.name not in ("signatures.json", "expected.json"))


def unbounded(settings: Settings) -> Settings:
    return settings.model_copy(update={"processing_org_webhooks_per_minute": 10**9, "processing_org_max_in_flight": 10**6})


def events(engine: Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(whatsapp_events).order_by(whatsapp_events.c.organization_id, whatsapp_events.c.cursor)).all()


def contacts_named(engine: Engine) -> set:
    return {(e.payload["wa_id"], e.payload["user_id"]) for e in events(engine) if e.type == "contact.updated"}


def envelope(field: str, value: dict) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000001", "phone_number_id": ACME_PHONE}, **value}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "100000000000001", "changes": [{"field": field, "value": value}]}]}).encode()


def inbound(wamid: str, ts: int = 1767225600) -> bytes:
    return envelope("messages", {
        "contacts": [{"wa_id": "15550000101", "profile": {"name": "Ana"}}],
        "messages": [{"from": "15550000101", "id": wamid, "timestamp": str(ts), "type": "text", "text": {"body": "hi"}}],
    })


def echo(wamid: str) -> bytes:
    return envelope("smb_message_echoes", {"message_echoes": [
        {"from": "15550000001", "to": "15550000101", "id": wamid, "timestamp": "1767225900", "type": "text", "text": {"body": "yo"}}]})


def statuses(wamid: str, *names: str) -> bytes:
    return envelope("messages", {"statuses": [
        {"id": wamid, "status": name, "timestamp": str(1767226000 + i), "recipient_id": "15550000101"} for i, name in enumerate(names)]})


def drain(engine: Engine, settings: Settings) -> None:
    run_processing(engine, unbounded(settings), idle_exit_seconds=0)


def test_messages_statuses_and_contacts_make_events_once_whatever_the_redeliveries(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    for body in (inbound("wamid.IN1"), echo("wamid.OUT1"), statuses("wamid.OUT1", "sent", "delivered")):
        land(engine, body)
    drain(engine, settings)
    first = [(e.type, e.key, e.cursor) for e in events(engine)]
    types = [t for t, _, _ in first]
    assert types == ["contact.updated", "message.received", "message.sent", "message.status_updated"]
    assert [c for _, _, c in first] == [1, 2, 3, 4]
    assert first[3][1] == f"{ACME_PHONE}:wamid.OUT1:delivered"  # sent then delivered in one batch: one move
    # Meta redelivers everything, and a status that does not move (sent again) arrives
    for body in (inbound("wamid.IN1"), echo("wamid.OUT1"), statuses("wamid.OUT1", "sent", "delivered"), statuses("wamid.OUT1", "sent")):
        land(engine, body)
    drain(engine, settings)
    assert [(e.type, e.key, e.cursor) for e in events(engine)] == first
    land(engine, statuses("wamid.OUT1", "read"))
    drain(engine, settings)
    last = events(engine)[-1]
    assert (last.type, last.payload["status"], last.organization_id) == ("message.status_updated", "read", orgs["acme"])
    assert last.cursor > first[-1][2] and last.webhook_log_id is not None
    assert last.id == event_id(orgs["acme"], last.type, last.key)


def test_the_per_item_path_makes_the_same_events_as_the_set_based_one(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    for path in CORPUS:
        land(engine, path.read_bytes())
        if path.name.startswith("statuses_"):  # the outbound messages those statuses are about
            for entry in json.loads(path.read_bytes())["entry"]:
                for change in entry["changes"]:
                    for status in change["value"].get("statuses", []):
                        if change["value"]["metadata"]["phone_number_id"] == ACME_PHONE:
                            land(engine, echo(status["id"]))
    drain(engine, settings)
    set_based = sorted((str(e.organization_id), e.type, e.key) for e in events(engine))
    set_based_contacts = contacts_named(engine)
    assert {t for _, t, _ in set_based} >= {"message.received", "message.sent", "message.reaction", "message.edited", "message.revoked",
                                             "message.status_updated", "contact.updated", "history.progress", "connection.connected"}
    with engine.begin() as conn:
        for table in ("whatsapp_events", "whatsapp_event_cursors", "whatsapp_message_statuses", "whatsapp_message_reactions",
                      "whatsapp_message_revisions", "whatsapp_messages", "whatsapp_contacts", "whatsapp_history_chunks",
                      "whatsapp_ad_conversions"):  # ads.conversion is announced when its insert-once row is written
            conn.execute(sa.text(f"DELETE FROM {table}"))
        conn.execute(sa.update(whatsapp_webhook_logs).values(status="pending", attempts=0, next_attempt_at=None, locked_until=None))
        conn.execute(sa.text("UPDATE whatsapp_connections SET last_event_at = NULL, last_event = NULL, status = 'awaiting_confirmation'"))
    for row in claim_batch(engine, 5000, 60.0, org_max_in_flight=10**6, org_per_minute=10**9):
        with engine.connect() as conn:
            outcome = apply_webhook(conn, row.id, row.body, row.received_at, {})
            finish_row(conn, outcome, row.attempts, settings)
            conn.commit()
    per_item = sorted((str(e.organization_id), e.type, e.key) for e in events(engine))
    per_item_contacts = contacts_named(engine)
    # contact.updated keys carry the contact's own times, which differ between the paths' runs
    # connection.* follow the order account_updates are claimed in, which differs between the paths
    def same(xs):
        return [x for x in xs if x[1] != "contact.updated" and not x[1].startswith("connection.")]

    assert any(x[1].startswith("connection.") for x in per_item)

    assert same(per_item) == same(set_based)
    # a batch announces each contact it created or changed once; item by item, each change
    assert per_item_contacts == set_based_contacts


def test_two_concurrent_runs_over_redelivered_webhooks_make_each_event_once_in_cursor_order(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    wamids = [f"wamid.C{i:04d}" for i in range(300)]
    for wamid in wamids:
        land(engine, inbound(wamid))
        land(engine, inbound(wamid))  # a redelivery, as a second landed row
    s = unbounded(settings).model_copy(update={"processing_batch_size": 40})
    runs = [threading.Thread(target=run_processing, args=(engine, s), kwargs={"idle_exit_seconds": 0}) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    got = [e for e in events(engine) if e.type == "message.received"]
    assert sorted(e.key for e in got) == sorted(f"{ACME_PHONE}:{w}" for w in wamids)
    cursors = [e.cursor for e in events(engine)]
    assert len(set(cursors)) == len(cursors) and cursors == sorted(cursors)


def _spec(org, key: str) -> EventSpec:
    return EventSpec(org, "test.event", key, {"k": key}, utcnow())


def test_a_later_transaction_gets_its_cursor_only_after_the_earlier_one_ends(engine: Engine) -> None:
    """The outbox pitfall: cursors must become visible in increasing order. T1 takes cursor 1
    and stays open; T2 (same organization) waits for T1 instead of committing cursor 2 first."""
    org = bind_fixture_numbers(engine)["acme"]
    t1 = engine.connect()
    t1.begin()
    write_events(t1, [_spec(org, "first")])

    def consumer_sees_nothing_then_t1_rolls_back() -> None:
        with engine.connect() as reader:  # while T2 waits, a consumer sees neither event
            assert read_events(reader, org, 0) == []
        t1.rollback()  # T1 gives its cursor back: T2 takes 1, nothing is ever skipped

    try:
        once_it_waits(engine, lambda t2: write_events(t2, [_spec(org, "second")]), consumer_sees_nothing_then_t1_rolls_back)
    finally:
        t1.close()
    assert [(e.key, e.cursor) for e in events(engine)] == [("second", 1)]


def test_a_duplicate_event_takes_no_cursor_even_from_a_transaction_that_waited_for_the_first(engine: Engine) -> None:
    """Break-it (issue 13): two transactions plan the same event (two deliveries of one
    webhook processed concurrently both see it new). T2 waits for T1's cursor lock; once T1
    commits, T2's insert finds the event stored and takes no cursor: the counter stays the
    newest stored cursor (else every endpoint stays "behind" forever) and T2's other event
    gets the next one."""
    org = bind_fixture_numbers(engine)["acme"]
    t1 = engine.connect()
    t1.begin()
    assert write_events(t1, [_spec(org, "same")]) == 1
    try:
        done = once_it_waits(engine, lambda t2: write_events(t2, [_spec(org, "same"), _spec(org, "new")]), t1.commit)
    finally:
        t1.close()
    assert done["result"] == 1  # only "new" was inserted
    with engine.begin() as conn:
        assert write_events(conn, [_spec(org, "same"), _spec(org, "new")]) == 0  # sequentially too
    assert [(e.key, e.cursor) for e in events(engine)] == [("same", 1), ("new", 2)]
    with engine.connect() as conn:
        assert conn.execute(sa.select(whatsapp_event_cursors.c.last_cursor)).scalar_one() == 2


def test_a_duplicate_event_takes_no_cursor_on_sqlite_either(tmp_path) -> None:
    from wa_core.db.engine import create_sync_engine
    from wa_core.db.migrate import upgrade

    lite_settings = Settings(_env_file=None, database_url=None, data_dir=str(tmp_path))
    upgrade(lite_settings)
    lite = create_sync_engine(lite_settings)
    try:
        org = bind_fixture_numbers(lite)["acme"]
        with lite.begin() as conn:
            assert write_events(conn, [_spec(org, "same")]) == 1
        with lite.begin() as conn:
            assert write_events(conn, [_spec(org, "same"), _spec(org, "new")]) == 1
        assert [(e.key, e.cursor) for e in events(lite)] == [("same", 1), ("new", 2)]
        with lite.connect() as conn:
            assert conn.execute(sa.select(whatsapp_event_cursors.c.last_cursor)).scalar_one() == 2
    finally:
        lite.dispose()


def test_events_of_a_rolled_back_item_are_not_written(engine: Engine) -> None:
    from wa_core.events.outbox import add_events, discard, flush_events, mark

    org = bind_fixture_numbers(engine)["acme"]
    with engine.connect() as conn:
        add_events(conn, [_spec(org, "kept")])
        since = mark(conn)
        add_events(conn, [_spec(org, "undone")])
        discard(conn, since)
        flush_events(conn)
        conn.commit()
        conn.execute(sa.text("SELECT 1"))  # the item's writes
        add_events(conn, [_spec(org, "rolled back")])
        conn.rollback()
        assert flush_events(conn) == 0
    assert [e.key for e in events(engine)] == ["kept"]


def test_types_filter_and_retention(engine: Engine) -> None:
    org = bind_fixture_numbers(engine)["acme"]
    with engine.begin() as conn:
        write_events(conn, [_spec(org, "a"), EventSpec(org, "message.received", "b", {}, utcnow()), EventSpec(org, "message.sent", "c", {}, utcnow())])
    with engine.connect() as conn:
        assert [e.key for e in read_events(conn, org, 0, types=["message.*"])] == ["b", "c"]
        assert [e.key for e in read_events(conn, org, 1, types=["test.event", "message.sent"])] == ["c"]
        assert [e.key for e in read_events(conn, org, 0, limit=1)] == ["a"]
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_events).where(whatsapp_events.c.key == "a").values(created_at=utcnow() - timedelta(days=31)))
        assert purge_events(conn, 30) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(whatsapp_event_cursors.c.last_cursor)).scalar_one() == 3  # positions stay valid
    assert [e.key for e in events(engine)] == ["b", "c"]


@pytest.mark.parametrize("poison", ["bad\\u0000reason", "bad\\ud800reason"])
def test_a_nul_or_lone_surrogate_in_an_event_value_never_fails_the_batch(engine: Engine, settings: Settings, poison: str) -> None:
    """Event payloads carry webhook values: made storable like the rows (break-it: one such
    value used to crash every run and take the good webhooks of its batch down with it)."""
    bind_fixture_numbers(engine)
    body = (FIXTURES / "message_template_status_update_rejected.json").read_bytes()
    bad = body.replace(b'"INVALID_FORMAT"', f'"{poison}"'.encode()).replace(b"fake_order_update", b"poisoned_" + poison.encode())
    ids = [land(engine, bad)] + [land(engine, body.replace(b"700000000000001", f"70000000000010{i}".encode())) for i in range(5)]
    run_processing(engine, settings, idle_exit_seconds=0)
    with engine.connect() as conn:
        states = conn.execute(sa.select(whatsapp_webhook_logs.c.status).where(whatsapp_webhook_logs.c.id.in_(ids))).scalars().all()
    assert sorted(states) == ["processed"] * 6
    changed = [e for e in events(engine) if e.type == "template.status_changed"]
    assert len(changed) == 6 and all("\x00" not in json.dumps(e.payload) for e in changed)


@pytest.mark.parametrize("payload", [
    {"n": 2**63}, {"n": 2**64 - 1}, {"n": -(2**63) - 1}, {None: 1}, {True: 1}, {"s": "x\x00y"}, {"s": "\ud800"}, {"f": float("nan")},
    {"u": uuid.UUID(int=7), "t": datetime(2026, 1, 1, 1, 2, 3, 4567, tzinfo=timezone.utc), "l": (1, [2, {"k": "v"}])},
], ids=["2**63", "2**64-1", "-2**63-1", "None-key", "bool-key", "nul", "surrogate", "nan", "uuid-datetime-tuple"])
def test_payload_text_is_the_json_of_storable_jsonable(payload) -> None:
    """Postgres (orjson fast path) and SQLite (storable(jsonable())) store the same payload."""
    import json as _json

    from wa_core.db.engine import storable
    from wa_core.events.outbox import jsonable, payload_text

    assert _json.loads(payload_text(payload)) == _json.loads(_json.dumps(storable(jsonable(payload)), allow_nan=False))
