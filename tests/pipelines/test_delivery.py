"""Delivery guarantees beyond the core: revisions, reactions, groups, history sync state,
dead-letter replay (job and admin API), retention, a 3 MB history webhook."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, fixture_bytes
from tests.helpers import ACME_PHONE, ACME_WABA, bind_fixture_numbers, land, rows, webhook_row
from tests.core.test_processing import acme_value, body_with, drain, message, text
from wa_pipelines.definitions import defs
from wa_webhook.app import create_app
from wa_core.db.schema import (
    utcnow,
    whatsapp_history_chunks,
    whatsapp_message_reactions,
    whatsapp_message_revisions,
    whatsapp_messages,
    whatsapp_webhook_logs,
)
from wa_core.db.schema_coexistence import whatsapp_coexistence_syncs
from wa_core.dead_letters import DeadLetterSelection, EmptySelection, purge_processed_bodies, replay_dead_letters
from wa_core.meta.signature import sign
from wa_core.settings import Settings

ORIGINAL = "wamid.FAKEIN00000000000000000001"


# --- edits and revokes -----------------------------------------------------------------
@pytest.mark.parametrize("original_first", [True, False])
def test_edit_and_revoke_are_revisions_of_the_original(engine: Engine, settings: Settings, original_first: bool) -> None:
    bind_fixture_numbers(engine)
    order = ["messages_text.json", "messages_edit.json"] if original_first else ["messages_edit.json", "messages_text.json"]
    for name in order:
        land(engine, fixture_bytes(name))
        drain(engine, settings)
    m = message(engine, ORIGINAL)
    assert m.body == "Hello, is this shop open tomorrow?" and m.edited_at is not None
    assert m.raw["text"]["body"] == "Hello, is this shop open today?"  # the original stays
    [rev] = rows(engine, whatsapp_message_revisions)
    assert rev.kind == "edit" and rev.applied_at is not None and rev.original_wamid == ORIGINAL
    land(engine, fixture_bytes("messages_revoke.json"))
    land(engine, fixture_bytes("messages_edit.json"))  # a late redelivery of the edit
    drain(engine, settings)
    m = message(engine, ORIGINAL)
    assert m.revoked_at is not None and m.body is None
    assert sorted(r.kind for r in rows(engine, whatsapp_message_revisions)) == ["edit", "revoke"]


def test_revision_of_a_message_never_stored_stays_parked(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    row_id = land(engine, fixture_bytes("messages_revoke.json"))
    drain(engine, settings)
    assert webhook_row(engine, row_id).status == "processed"
    [rev] = rows(engine, whatsapp_message_revisions)
    assert rev.applied_at is None and not rows(engine, whatsapp_messages, whatsapp_messages.c.wamid == ORIGINAL)


# --- reactions -------------------------------------------------------------------------
def reaction_state(engine: Engine):
    [r] = rows(engine, whatsapp_message_reactions)
    return r


def test_reactions_follow_metas_order_and_empty_or_missing_emoji_removes(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("messages_reaction_added.json"))  # 👍 at t=1767312540
    land(engine, fixture_bytes("messages_reaction_removed.json"))  # removal at an *older* t: ignored
    drain(engine, settings)
    r = reaction_state(engine)
    assert (r.target_wamid, r.reactor, r.emoji) == ("wamid.FAKEOUT0000000000000000001", "15550000101", "👍")
    land(engine, fixture_bytes("messages_reaction_empty_emoji.json"))  # newest, emoji "" → removed
    drain(engine, settings)
    assert reaction_state(engine).emoji is None
    # kept against the target id although that message is unknown to us
    assert not rows(engine, whatsapp_messages, whatsapp_messages.c.wamid == "wamid.FAKEOUT0000000000000000001")


def test_group_messages_thread_by_group_and_keep_the_participant(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("messages_group_text.json"))
    drain(engine, settings)
    [m] = rows(engine, whatsapp_messages)
    assert m.group_id == "120363000000000001@g.us" and m.contact_id is not None


# --- history sync state ----------------------------------------------------------------
def history_sync(engine: Engine):
    [c] = rows(engine, whatsapp_coexistence_syncs, whatsapp_coexistence_syncs.c.phone_number_id == ACME_PHONE,
               whatsapp_coexistence_syncs.c.sync_type == "history")
    return c


def test_history_progress_completion_and_decline(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("history_progress_100.json"))  # final chunk first (out of order)
    land(engine, fixture_bytes("history.json"))  # progress 55 arrives late: progress stays 100
    land(engine, fixture_bytes("history.json"))  # duplicate chunk
    drain(engine, settings)
    c = history_sync(engine)
    assert (c.status, c.progress) == ("complete", 100) and c.completed_at is not None and c.last_data_at is not None
    chunks = rows(engine, whatsapp_history_chunks)
    assert sorted((r.phase, r.chunk_order) for r in chunks) == sorted({(r.phase, r.chunk_order) for r in chunks})
    assert len(chunks) == 2 and {r.progress for r in chunks} == {55, 100}
    land(engine, fixture_bytes("history_declined.json"))
    drain(engine, settings)
    c = history_sync(engine)  # a decline after completion records why, the history stays complete
    assert c.status == "complete" and c.declined_at is not None and "2593109" in c.declined_reason


# --- dead letters ----------------------------------------------------------------------
def test_replay_dead_letters_job_after_the_cause_is_fixed(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"processing_max_attempts": 1})
    unroutable = land(engine, fixture_bytes("messages_text.json"))  # nobody has the number yet
    broken = land(engine, fixture_bytes("not_json.txt"))
    drain(engine, settings)
    assert webhook_row(engine, unroutable).status == "dead" and webhook_row(engine, broken).status == "dead"
    assert webhook_row(engine, unroutable).items_dead == 1
    bind_fixture_numbers(engine)
    job = defs.resolve_job_def("replay_dead_letters")
    with DagsterInstance.ephemeral() as instance:
        dry = job.execute_in_process(instance=instance, run_config={"ops": {"replay_dead_letters_op": {"config": {"error_kind": "unroutable", "dry_run": True}}}})
        assert dry.output_for_node("replay_dead_letters_op") == [unroutable]
        assert webhook_row(engine, unroutable).status == "dead"
        result = job.execute_in_process(instance=instance, run_config={"ops": {"replay_dead_letters_op": {"config": {"error_kind": "unroutable"}}}})
        assert result.output_for_node("replay_dead_letters_op") == [unroutable]
    row = webhook_row(engine, unroutable)
    assert (row.status, row.attempts, row.replay_count) == ("pending", 0, 1) and row.replayed_at is not None
    drain(engine, settings)
    assert webhook_row(engine, unroutable).status == "processed"
    assert webhook_row(engine, broken).status == "dead"  # not selected
    assert message(engine, "wamid.FAKEIN00000000000000000001").body


def test_replaying_something_that_has_since_succeeded_changes_nothing(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"processing_max_attempts": 1})
    first = land(engine, fixture_bytes("messages_batch_multi.json"))
    drain(engine, settings)
    assert webhook_row(engine, first).status == "dead"
    bind_fixture_numbers(engine)
    land(engine, fixture_bytes("messages_batch_multi.json"))  # Meta's redelivery succeeds
    drain(engine, settings)
    snapshot = lambda: sorted((r.wamid, r.body, str(r.contact_id)) for r in rows(engine, whatsapp_messages))  # noqa: E731
    before = snapshot()
    with engine.begin() as conn:
        assert replay_dead_letters(conn, DeadLetterSelection(ids=[first])) == [first]
    drain(engine, settings)
    assert snapshot() == before and webhook_row(engine, first).status == "processed"


def test_selection_needs_a_filter_and_matches_organization_and_time(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"processing_max_attempts": 1})
    orgs = bind_fixture_numbers(engine)
    bad = json.dumps({"entry": [{"id": ACME_WABA, "changes": [{"field": "messages", "value": acme_value(messages=[{"type": "text"}])}]}]}).encode()
    acme_dead = land(engine, bad)
    land(engine, fixture_bytes("not_json.txt"))
    drain(engine, settings)
    with engine.begin() as conn:
        with pytest.raises(EmptySelection):
            replay_dead_letters(conn, DeadLetterSelection())
        assert replay_dead_letters(conn, DeadLetterSelection(organization="acme"), dry_run=True) == [acme_dead]
        assert replay_dead_letters(conn, DeadLetterSelection(organization=str(orgs["acme"])), dry_run=True) == [acme_dead]
        assert replay_dead_letters(conn, DeadLetterSelection(received_from=utcnow() + timedelta(hours=1)), dry_run=True) == []
        assert len(replay_dead_letters(conn, DeadLetterSelection(everything=True), dry_run=True)) == 2


def test_admin_replay_endpoint_and_failed_webhooks(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"processing_max_attempts": 1, "admin_api_token": SecretStr("admin-secret")})
    dead = land(engine, fixture_bytes("messages_text.json"))
    drain(engine, settings)
    bind_fixture_numbers(engine)
    with TestClient(create_app(settings)) as c:
        url = "/api/admin/whatsapp/webhooks/replay"
        assert c.post(url, json={"ids": [dead]}).status_code == 401
        assert c.post(url, json={"ids": [dead]}, headers={"Authorization": "Bearer nope"}).status_code == 403
        auth = {"Authorization": "Bearer admin-secret"}
        assert c.post(url, json={}, headers=auth).status_code == 422
        listing = c.get("/api/admin/whatsapp/failed-webhooks", headers=auth).json()
        assert listing["counts"] == [{"status": "dead", "error_kind": "unroutable", "count": 1}]
        assert listing["webhooks"][0]["id"] == dead and "body" not in listing["webhooks"][0]
        # malformed filters are 422 and an unknown organization 404, never a 500
        for bad in ({"ids": [2**63]}, {"ids": [0]}, {"organization": "x\u0000"}, {"error_kind": "\u0000"}, {"error_kind": ""}):
            assert c.post(url, json=bad, headers=auth).status_code == 422, bad
        assert c.post(url, json={"organization": "nobody"}, headers=auth).status_code == 404
        assign = "/api/admin/whatsapp/wabas/123/assign"
        assert c.post(assign, json={"organization": "x\u0000"}, headers=auth).status_code == 422
        assert c.post(assign, json={"organization": "nobody"}, headers=auth).status_code == 404
        assert c.post(url, json={"organization": "globex"}, headers=auth).json()["ids"] == []  # an org without dead rows
        r = c.post(url, json={"error_kind": "unroutable"}, headers=auth)
        assert r.status_code == 200 and r.json()["ids"] == [dead]
    drain(engine, settings)
    assert webhook_row(engine, dead).status == "processed"
    with TestClient(create_app(settings.model_copy(update={"admin_api_token": None}))) as c:
        assert c.get("/api/admin/whatsapp/failed-webhooks", headers={"Authorization": "Bearer x"}).status_code == 503


# --- retention -------------------------------------------------------------------------
def test_retention_removes_old_processed_bodies_only(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"processing_max_attempts": 1})
    bind_fixture_numbers(engine)
    old_ok, old_dead, new_ok = (land(engine, fixture_bytes(n)) for n in ("messages_text.json", "not_json.txt", "messages_image.json"))
    drain(engine, settings)
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_webhook_logs).where(whatsapp_webhook_logs.c.id.in_([old_ok, old_dead])).values(received_at=utcnow() - timedelta(days=31)))
    job = defs.resolve_job_def("purge_webhook_bodies")
    with DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(instance=instance).output_for_node("purge_webhook_bodies_op") == 1
    assert webhook_row(engine, old_ok).body is None and webhook_row(engine, old_ok).body_purged_at is not None
    assert webhook_row(engine, old_ok).body_sha256 and webhook_row(engine, old_ok).status == "processed"
    assert webhook_row(engine, old_dead).body is not None  # dead letters wait for an operator
    assert webhook_row(engine, new_ok).body is not None
    with engine.begin() as conn:
        assert purge_processed_bodies(conn, 30) == 0  # idempotent


# --- a 3 MB history webhook ------------------------------------------------------------
def big_history(target_bytes: int) -> bytes:
    threads, n = [], 0
    body = b""
    while True:
        msgs = [
            {"from": f"1555{7000000 + len(threads):07d}", "id": f"wamid.BIGHIST{n + k:08d}", "timestamp": "1763769600",
             "type": "text", "text": {"body": "histórico " * 20}, "history_context": {"status": "READ"}}
            for k in range(50)
        ]
        n += 50
        threads.append({"id": f"1555{7000000 + len(threads):07d}", "messages": msgs})
        value = acme_value(history=[{"metadata": {"phase": 1, "chunk_order": 1, "progress": 100}, "threads": threads}])
        candidate = body_with(value, field="history")
        if len(candidate) > target_bytes:
            return body
        body = candidate


def test_a_3mb_history_webhook_lands_and_is_processed_in_several_commits(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    body = big_history(3 * 1000 * 1000)
    assert 2_900_000 < len(body) <= 3 * 1024 * 1024
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/v1/whatsapp/webhook", content=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)})
    assert r.status_code == 200
    commits = []
    sa.event.listen(engine, "commit", lambda conn: commits.append(1))
    stats = drain(engine, settings)
    expected = len(json.loads(body)["entry"][0]["changes"][0]["value"]["history"][0]["threads"]) * 50
    assert stats.by_status == {"processed": 1} and stats.items_processed == expected + 1  # + the chunk record
    assert len(rows(engine, whatsapp_messages)) == expected
    assert len(commits) >= expected // 500  # intermediate commits, not one giant transaction
