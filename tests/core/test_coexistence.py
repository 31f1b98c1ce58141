"""Coexistence defects (issue 12) and the sync state the webhooks drive, on the real Postgres:
echoed edits and revokes applied to the original, no phantom revision messages, echoes to a
BSUID-only user, errors kept on the message; contact and history sync transitions."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import fixture_bytes
from tests.core.test_engine import both_ways, unbounded
from tests.core.test_processing import drain, message
from tests.helpers import ACME_PHONE, bind_fixture_numbers, land, rows, webhook_row
from wa_core.db.schema import whatsapp_contacts, whatsapp_message_revisions, whatsapp_messages
from wa_core.db.schema_coexistence import whatsapp_coexistence_syncs as syncs
from wa_core.settings import Settings

ECHO, ECHO_EDIT, ECHO_REVOKE = "wamid.FAKEECHO00000000000000001", "wamid.FAKEECHO00000000000000002", "wamid.FAKEECHO00000000000000003"
ORIGINAL = "wamid.FAKEIN00000000000000000001"


def wamids(engine: Engine) -> set[str]:
    return {r.wamid for r in rows(engine, whatsapp_messages)}


def sync_row(engine: Engine, sync_type: str):
    [row] = rows(engine, syncs, syncs.c.phone_number_id == ACME_PHONE, syncs.c.sync_type == sync_type)
    return row


@pytest.mark.parametrize("original_first", [True, False])
def test_an_echoed_edit_then_revoke_changes_the_original_echo_and_is_no_message(engine: Engine, settings: Settings, original_first: bool) -> None:
    bind_fixture_numbers(engine)
    order = ["smb_message_echoes.json", "smb_message_echoes_edit.json"]
    for name in order if original_first else order[::-1]:
        land(engine, fixture_bytes(name))
        drain(engine, settings)
    m = message(engine, ECHO)
    assert (m.direction, m.source, m.type) == ("outbound", "business_app_echo", "text")
    assert m.body == "Sent from the Business app (edited)"
    assert m.edited_at == datetime.fromtimestamp(1767226000, timezone.utc) and m.revoked_at is None
    assert m.raw["text"]["body"] == "Sent from the Business app on my phone"  # the original stays in raw
    [rev] = rows(engine, whatsapp_message_revisions)
    assert (rev.kind, rev.original_wamid, rev.revision_wamid, rev.body) == ("edit", ECHO, ECHO_EDIT, "Sent from the Business app (edited)")
    assert rev.applied_at is not None
    land(engine, fixture_bytes("smb_message_echoes_revoke.json"))
    drain(engine, settings)
    m = message(engine, ECHO)
    assert m.body is None and m.revoked_at == datetime.fromtimestamp(1767226100, timezone.utc)
    assert wamids(engine) == {ECHO}  # neither the edit nor the revoke became an outbound message
    assert sorted(r.kind for r in rows(engine, whatsapp_message_revisions)) == ["edit", "revoke"]


def test_inbound_edit_and_revoke_leave_no_phantom_messages(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    ids = [land(engine, fixture_bytes(n)) for n in ("messages_edit.json", "messages_text.json", "messages_revoke.json")]
    drain(engine, settings)
    assert wamids(engine) == {ORIGINAL}
    m = message(engine, ORIGINAL)
    assert m.body is None and m.edited_at is not None and m.revoked_at is not None
    assert {r.revision_wamid for r in rows(engine, whatsapp_message_revisions)} == {
        "wamid.FAKEIN00000000000000000022", "wamid.FAKEIN00000000000000000023"}
    for row_id in ids:  # every revision is one processed item of its webhook
        row = webhook_row(engine, row_id)
        assert (row.status, row.items_processed, row.items_failed) == ("processed", 1, 0)
    [contact] = rows(engine, whatsapp_contacts)
    assert contact.wa_id == "15550000101" and contact.profile_name == "Test User"


def test_an_echo_to_a_user_known_only_by_bsuid_gets_a_contact(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    land(engine, fixture_bytes("smb_message_echoes_bsuid_only.json"))
    drain(engine, settings)
    m = message(engine, "wamid.FAKEECHO00000000000000004")
    assert m.contact_id is not None and m.direction == "outbound"
    [contact] = rows(engine, whatsapp_contacts, whatsapp_contacts.c.id == m.contact_id)
    assert (contact.user_id, contact.wa_id, contact.organization_id) == ("US.13491208655302741918", None, orgs["acme"])


def test_message_and_value_errors_are_kept_on_the_message(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("messages_errors_beside_message.json"))
    land(engine, fixture_bytes("messages_unsupported.json"))
    drain(engine, settings)
    poll = message(engine, "wamid.FAKEIN00000000000000000030")
    assert (poll.error_code, poll.error_title) == (131051, "Message type unknown")
    assert [(e["scope"], e["code"]) for e in poll.errors] == [("message", 131051), ("message", 131060), ("value", 130429)]
    assert poll.errors[1]["error_data"]["details"].startswith("Fake fixture: sent from a companion device")
    text = message(engine, "wamid.FAKEIN00000000000000000031")  # no error of its own: the value's
    assert (text.error_code, text.error_title, text.body) == (130429, "Rate limit hit", "Did my poll arrive?")
    assert [(e["scope"], e["code"]) for e in text.errors] == [("value", 130429)]
    unsupported = message(engine, "wamid.FAKEIN00000000000000000009")
    assert [(e["scope"], e["code"]) for e in unsupported.errors] == [("message", 131051)]
    assert wamids(engine) == {"wamid.FAKEIN00000000000000000030", "wamid.FAKEIN00000000000000000031", "wamid.FAKEIN00000000000000000009"}


def test_both_paths_agree_on_echo_revisions_errors_and_sync_state(engine: Engine, settings: Settings) -> None:
    names = ["smb_message_echoes_edit.json", "smb_message_echoes.json", "smb_message_echoes_revoke.json", "messages_edit.json",
             "messages_text.json", "messages_errors_beside_message.json", "smb_message_echoes_bsuid_only.json", "history.json",
             "history_progress_100.json", "smb_app_state_sync.json", "smb_app_state_sync_edit.json"]
    per_item, set_based = both_ways(engine, unbounded(settings), [fixture_bytes(n) for n in names])
    assert per_item == set_based
    messages = {row[0] for row in per_item[2]}
    assert ECHO_EDIT not in messages and ECHO_REVOKE not in messages and ECHO in messages
    assert {row[2] for row in per_item[1]["whatsapp_coexistence_syncs"]} == {"history", "smb_app_state_sync"}


# --- sync state driven by webhooks ----------------------------------------------------------
def test_history_chunks_move_the_sync_to_receiving_then_complete(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("history.json"))
    drain(engine, settings)
    h = sync_row(engine, "history")
    assert (h.status, h.progress, h.request_id, h.request_count) == ("receiving", 55, None, 0) and h.last_data_at is not None
    land(engine, fixture_bytes("history_progress_100.json"))
    drain(engine, settings)
    h = sync_row(engine, "history")
    assert (h.status, h.progress) == ("complete", 100) and h.completed_at is not None
    land(engine, fixture_bytes("history.json"))  # a late redelivery of an earlier chunk
    drain(engine, settings)
    assert (sync_row(engine, "history").status, sync_row(engine, "history").progress) == ("complete", 100)


def test_a_declined_history_and_contact_syncs(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("history_declined.json"))
    land(engine, fixture_bytes("smb_app_state_sync.json"))
    drain(engine, settings)
    h = sync_row(engine, "history")
    assert h.status == "declined" and h.declined_at is not None
    assert h.declined_reason == "2593109: History sync is turned off by the business"
    contacts = sync_row(engine, "smb_app_state_sync")
    assert contacts.status == "receiving" and contacts.last_data_at is not None and contacts.requested_at is None


# --- migration 0009 moves the sync state out of whatsapp_configs, and back -------------------
def test_the_migration_moves_the_sync_state_and_back(tmp_path) -> None:
    import uuid

    import sqlalchemy as sa

    from wa_core.db.engine import create_sync_engine
    from wa_core.db.migrate import downgrade, upgrade

    settings = Settings(data_dir=tmp_path, database_url=None)
    upgrade(settings, "0009-1")  # the revision before ours, whatever the lead re-chains it to
    engine = create_sync_engine(settings)
    org, con, now = uuid.uuid4(), uuid.uuid4(), datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO organizations (id, external_id, name, created_at, updated_at) VALUES (:id, 'o', 'O', :t, :t)"),
                     {"id": org.hex, "t": now})
        conn.execute(sa.text("INSERT INTO whatsapp_connections (id, organization_id, waba_id, status, created_at, updated_at)"
                             " VALUES (:id, :org, 'w1', 'active', :t, :t)"), {"id": con.hex, "org": org.hex, "t": now})
        conn.execute(sa.text(
            "INSERT INTO whatsapp_configs (id, organization_id, connection_id, waba_id, phone_number_id, is_coexistence, status,"
            " contact_sync_request_id, contact_sync_requested_at, history_sync_requested_at, history_progress, sync_error,"
            " created_at, updated_at) VALUES (:id, :org, :con, 'w1', 'p1', 1, 'connected', 'c-req', :t, :t, 40,"
            " 'history: Graph error 2593108', :t, :t)"), {"id": uuid.uuid4().hex, "org": org.hex, "con": con.hex, "t": now})
    engine.dispose()
    upgrade(settings)
    engine = create_sync_engine(settings)
    with engine.connect() as conn:
        moved = {r.sync_type: r for r in conn.execute(sa.select(syncs))}
    assert (moved["smb_app_state_sync"].status, moved["smb_app_state_sync"].request_id) == ("requested", "c-req")
    assert (moved["history"].status, moved["history"].progress, moved["history"].request_error) == ("receiving", 40, "history: Graph error 2593108")
    engine.dispose()
    downgrade(settings, "0009-1")
    engine = create_sync_engine(settings)
    with engine.connect() as conn:
        back = conn.execute(sa.text("SELECT contact_sync_request_id, history_progress, sync_error FROM whatsapp_configs")).one()
    engine.dispose()
    assert tuple(back) == ("c-req", 40, "history: Graph error 2593108")
