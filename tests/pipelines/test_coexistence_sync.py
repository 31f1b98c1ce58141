"""Coexistence syncs, supervised, against the Graph emulator with settable clocks: requested →
stalled (one alert) → receiving (alert resolved) → complete; the 24 h rules of a re-request
(core, Dagster job, admin API)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, fixture_bytes
from tests.core.test_processing import drain
from tests.helpers import ACME_PHONE, ACME_WABA, bind_fixture_numbers, land, rows
from wa_core.coexistence_sync import REQUEST_GAP, check_stalled_syncs, rerequest, send_request
from wa_core.db.schema import ops_alerts, whatsapp_configs, whatsapp_connections
from wa_core.db.schema_coexistence import whatsapp_coexistence_syncs as syncs
from wa_core.meta.crypto import TokenCipher
from wa_core.meta.graph.client import GraphClient
from wa_core.settings import Settings
from wa_dev.emulator import GraphEmulator, serve_in_thread
from wa_pipelines.definitions import defs
from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys
from wa_webhook.app import create_app

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)  # onboarding
ADMIN = "admin-token-for-tests"


class Clock:
    """The emulator's clock (unix seconds), set by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


@pytest.fixture()
def meta() -> Iterator[tuple[GraphEmulator, str, Clock]]:
    clock = Clock(T0)
    emulator = GraphEmulator(app_id="123456", app_secret=APP_SECRET, now=clock)
    base, stop = serve_in_thread(emulator)
    yield emulator, base, clock
    stop()


@pytest.fixture()
def graph(meta) -> Iterator[GraphClient]:
    with GraphClient(meta[1], "v25.0", app_id="123456", app_secret=APP_SECRET, timeout=5.0, sleep=lambda s: None) as client:
        yield client


def cipher(settings: Settings) -> TokenCipher:
    return TokenCipher.from_hex(settings.token_encryption_key.get_secret_value())


def coexistence_number(engine: Engine, settings: Settings, emulator: GraphEmulator, deadline: datetime | None) -> tuple[str, object]:
    """The fixture's Acme coexistence number, known to the emulator (onboarded at its clock's
    time), with a stored business token and the given sync window end."""
    bind_fixture_numbers(engine)
    emulator.add_waba(ACME_WABA, "300000000000001", [{"id": ACME_PHONE, "display_phone_number": "15550000001", "verified_name": "Acme", "coexistence": True}])
    token = emulator.add_token(ACME_WABA)
    with engine.begin() as conn:
        con_id = conn.execute(sa.select(whatsapp_connections.c.id).where(whatsapp_connections.c.waba_id == ACME_WABA)).scalar_one()
        conn.execute(sa.update(whatsapp_connections).where(whatsapp_connections.c.id == con_id).values(
            business_token_encrypted=cipher(settings).encrypt(token, con_id)))
        conn.execute(sa.update(whatsapp_configs).where(whatsapp_configs.c.phone_number_id == ACME_PHONE).values(sync_deadline_at=deadline))
        number = conn.execute(sa.select(whatsapp_configs).where(whatsapp_configs.c.phone_number_id == ACME_PHONE)).one()
    return token, number


def history(engine: Engine):
    [row] = rows(engine, syncs, syncs.c.phone_number_id == ACME_PHONE, syncs.c.sync_type == "history")
    return row


def alert(engine: Engine):
    found = rows(engine, ops_alerts, ops_alerts.c.fingerprint == f"history_sync_stalled:{ACME_PHONE}")
    return found[0] if found else None


def test_an_accepted_history_request_without_webhooks_stalls_once_then_recovers(engine: Engine, settings: Settings, meta, graph) -> None:
    emulator, _, clock = meta
    token, number = coexistence_number(engine, settings, emulator, T0 + timedelta(hours=24))
    sent_at = T0 + timedelta(minutes=5)
    clock.at = sent_at
    result = send_request(engine, graph, token, number, "history", sent_at)
    assert result.outcome == "sent" and result.request_id
    h = history(engine)
    assert (h.status, h.request_id, h.request_count, h.requested_at) == ("requested", result.request_id, 1, sent_at)
    assert check_stalled_syncs(engine, settings, now=sent_at + timedelta(hours=5, minutes=59)) == {"stalled": 0, "recovered": 0}
    assert history(engine).status == "requested" and alert(engine) is None
    assert check_stalled_syncs(engine, settings, now=sent_at + timedelta(hours=6)) == {"stalled": 1, "recovered": 0}
    h, a = history(engine), alert(engine)
    assert h.status == "stalled" and h.stalled_at == sent_at + timedelta(hours=6)
    assert a.kind == "history_sync_stalled" and a.resolved_at is None and a.severity == "warning"
    assert result.request_id in a.summary and "no history webhook in 6 h" in a.summary
    # the next request would be due after the window closes: the alert says so
    assert "offboard and redo Embedded Signup" in a.summary
    assert check_stalled_syncs(engine, settings, now=sent_at + timedelta(hours=7))["stalled"] == 0  # alerted once
    assert alert(engine).occurrences == 1
    land(engine, fixture_bytes("history.json"))  # history arrives after all
    drain(engine, settings)
    assert (history(engine).status, history(engine).progress) == ("receiving", 55)
    assert check_stalled_syncs(engine, settings, now=sent_at + timedelta(hours=8)) == {"stalled": 0, "recovered": 1}
    assert alert(engine).resolved_at is not None
    land(engine, fixture_bytes("history_progress_100.json"))
    drain(engine, settings)
    assert history(engine).status == "complete"
    assert rerequest(engine, graph, cipher(settings), ACME_PHONE, "history", sent_at + timedelta(hours=9)).outcome == "refused"


def test_a_history_request_that_is_not_old_enough_or_not_accepted_never_stalls(engine: Engine, settings: Settings, meta, graph) -> None:
    emulator, _, clock = meta
    token, number = coexistence_number(engine, settings, emulator, T0 + timedelta(hours=24))
    emulator.fail_next("smb_app_data", 2, http_status=500)  # the answer is an error: nothing accepted
    assert send_request(engine, graph, token, number, "history", T0).outcome == "failed"
    h = history(engine)
    assert h.status == "failed" and "smb_app_data" not in (h.request_id or "") and h.request_error
    assert check_stalled_syncs(engine, settings, now=T0 + timedelta(hours=12)) == {"stalled": 0, "recovered": 0}


def test_the_24_hour_rules_of_a_rerequest(engine: Engine, settings: Settings, meta, graph) -> None:
    emulator, _, clock = meta
    keys = cipher(settings)
    token, number = coexistence_number(engine, settings, emulator, None)  # a number whose window is not known
    assert send_request(engine, graph, token, number, "history", T0).outcome == "sent"
    early = rerequest(engine, graph, keys, ACME_PHONE, "history", T0 + timedelta(hours=23, minutes=59))
    assert early.outcome == "refused" and early.next_allowed_at == T0 + REQUEST_GAP
    assert "next allowed at 2026-12-02T09:00:00Z" in early.message
    assert len(emulator.calls_to(f"/{ACME_PHONE}/smb_app_data$")) == 1  # nothing was sent
    # 24 h later our rule allows it; Meta refuses a second history request (2593107): reported,
    # and the refused call does not count as the last request
    clock.at = T0 + timedelta(hours=24)
    late = rerequest(engine, graph, keys, ACME_PHONE, "history", clock.at)
    assert late.outcome == "failed" and "2593107" in late.message
    h = history(engine)
    assert (h.status, h.requested_at, h.request_count) == ("requested", T0, 2) and "2593107" in h.request_error


def test_a_rerequest_is_sent_only_inside_the_sync_window(engine: Engine, settings: Settings, meta, graph) -> None:
    emulator, _, clock = meta
    keys = cipher(settings)
    deadline = T0 + timedelta(hours=24)
    token, number = coexistence_number(engine, settings, emulator, deadline)
    emulator.fail_next("smb_app_data", 100, message="(#100) Injected refusal")  # Meta refuses the first request
    assert send_request(engine, graph, token, number, "history", T0 + timedelta(minutes=1)).outcome == "failed"
    assert (history(engine).status, history(engine).requested_at) == ("failed", None)
    clock.at = T0 + timedelta(hours=2)
    again = rerequest(engine, graph, keys, ACME_PHONE, "history", clock.at)
    assert again.outcome == "sent" and again.next_allowed_at == deadline
    h = history(engine)
    assert (h.status, h.request_id, h.request_count, h.request_error) == ("requested", again.request_id, 2, None)
    closed = rerequest(engine, graph, keys, ACME_PHONE, "history", deadline + timedelta(seconds=1))
    assert closed.outcome == "refused" and closed.next_allowed_at is None
    assert "window closed at 2026-12-02T09:00:00Z" in closed.message and "redo Embedded Signup" in closed.message


def resources(settings: Settings, base: str) -> dict:
    return {"app_db": AppDatabase(database_url=settings.database_url), "meta_graph": MetaGraph(graph_api_base_url=base), "token_keys": TokenKeys()}


def test_the_request_job_refuses_with_the_next_allowed_time_and_the_check_job_runs(engine: Engine, settings: Settings, meta) -> None:
    emulator, base, clock = meta
    coexistence_number(engine, settings, emulator, None)
    last = datetime.now(timezone.utc) - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(sa.insert(syncs).values(organization_id=history_org(engine), phone_number_id=ACME_PHONE, sync_type="history",
                                             status="stalled", request_id="r1", requested_at=last, request_count=1, updated_at=last))
    job = defs.resolve_job_def("request_coexistence_sync")
    config = {"ops": {"request_coexistence_sync_op": {"config": {"phone_number_id": ACME_PHONE, "sync_type": "history"}}}}
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(run_config=config, instance=instance, resources=resources(settings, base), raise_on_error=False)
        assert not result.success
        [failure] = result.get_step_failure_events()
        text = failure.step_failure_data.user_failure_data.description
        next_at = (last + REQUEST_GAP).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert text.startswith("refused:") and f"next allowed at {next_at}" in text
        assert not emulator.calls_to("smb_app_data")
        check = defs.resolve_job_def("check_coexistence_syncs").execute_in_process(instance=instance, resources=resources(settings, base))
        assert check.success


def history_org(engine: Engine):
    [cfg] = rows(engine, whatsapp_configs, whatsapp_configs.c.phone_number_id == ACME_PHONE)
    return cfg.organization_id


def test_the_admin_api_lists_the_syncs_and_applies_the_rules(engine: Engine, settings: Settings, meta) -> None:
    emulator, base, clock = meta
    clock.at = datetime.now(timezone.utc)  # the API uses the real clock: the window opens now
    s = settings.model_copy(update={"admin_api_token": SecretStr(ADMIN), "graph_api_base_url": base, "meta_app_id": "123456"})
    coexistence_number(engine, s, emulator, datetime.now(timezone.utc) + timedelta(hours=20))
    auth = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(s)) as api:
        assert api.post(f"/api/admin/whatsapp/numbers/{ACME_PHONE}/syncs/history/request").status_code == 401
        assert api.post("/api/admin/whatsapp/numbers/299999999999999/syncs/history/request", headers=auth).status_code == 404
        assert api.post(f"/api/admin/whatsapp/numbers/{ACME_PHONE}/syncs/photos/request", headers=auth).status_code == 422
        sent = api.post(f"/api/admin/whatsapp/numbers/{ACME_PHONE}/syncs/history/request", headers=auth)
        assert sent.status_code == 200 and sent.json()["outcome"] == "sent" and sent.json()["request_id"]
        again = api.post(f"/api/admin/whatsapp/numbers/{ACME_PHONE}/syncs/history/request", headers=auth)
        assert again.status_code == 409 and again.json()["outcome"] == "refused"
        assert "redo Embedded Signup" in again.json()["message"] and again.json()["next_allowed_at"] is None
        listed = api.get(f"/api/admin/whatsapp/numbers/{ACME_PHONE}/syncs", headers=auth).json()["syncs"]
        assert [(r["sync_type"], r["status"], r["request_count"]) for r in listed] == [("history", "requested", 1)]
        unknown = api.get("/api/admin/whatsapp/numbers/999/syncs", headers=auth)
        assert unknown.status_code == 404 and "999" in unknown.json()["detail"]  # not 200 []
    assert len(emulator.calls_to(f"/{ACME_PHONE}/smb_app_data$")) == 1


def test_the_command_line_refuses_with_the_next_allowed_time(engine: Engine, settings: Settings, meta, capsys) -> None:
    from wa_webhook.cli import main

    coexistence_number(engine, settings, meta[0], None)
    last = datetime.now(timezone.utc) - timedelta(hours=2)
    with engine.begin() as conn:
        conn.execute(sa.insert(syncs).values(organization_id=history_org(engine), phone_number_id=ACME_PHONE, sync_type="history",
                                             status="requested", request_id="r1", requested_at=last, request_count=1, updated_at=last))
    assert main(["request-sync", ACME_PHONE, "--type", "history"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("refused:") and f"next allowed: {(last + REQUEST_GAP).isoformat()}" in err
    assert main(["request-sync", "299999999999999"]) == 2
