"""Onboarding v2 API: tracking codes, auth per organization, the session the page posts,
the code exchange against our Graph emulator, the follow-up job and PARTNER_ADDED."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import JWT_SECRET
from tests.helpers import rows
from wa_webhook.app import create_app
from wa_core.db.schema import whatsapp_connections, whatsapp_onboarding
from wa_core.db.schema_coexistence import whatsapp_coexistence_syncs
from wa_core.settings import Settings


def token_for(org: str, *, secret: str = JWT_SECRET, expires_in: int = 300, sub: str = "user-1", **claims) -> str:
    return jwt.encode({"org_id": org, "sub": sub, "exp": int(time.time()) + expires_in, **claims}, secret, algorithm="HS256")


def auth(org: str = "acme", **kw) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(org, **kw)}"}


@pytest.fixture()
def api(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    settings = settings.model_copy(update={"meta_app_id": "123456", "meta_config_id": "cfg-789"})
    with TestClient(create_app(settings)) as c:
        yield c


def start(api: TestClient, org: str = "acme") -> dict:
    r = api.get("/api/v1/whatsapp/onboarding-url", headers=auth(org))
    assert r.status_code == 200, r.text
    return r.json()


def test_onboarding_url_creates_a_tracking_code_with_a_24h_expiry(api: TestClient, engine: Engine) -> None:
    body = start(api)
    assert body["onboarding_url"].startswith("https://business.facebook.com/messaging/whatsapp/onboard/?app_id=123456&config_id=cfg-789&extras=")
    assert body["fb_login_options"] == {
        "config_id": "cfg-789", "response_type": "code", "override_default_response_type": True,
        "extras": {"setup": {}, "sessionInfoVersion": "3"},
    }
    [row] = rows(engine, whatsapp_onboarding)
    assert str(row.tracking_code) == body["tracking_code"] and row.status == "pending"
    assert timedelta(hours=23, minutes=59) < row.expires_at - row.created_at <= timedelta(hours=24)
    assert row.user_agent and row.ip_address
    coexistence = api.get("/api/v1/whatsapp/onboarding-url?coexistence=true", headers=auth()).json()
    assert coexistence["fb_login_options"]["extras"]["featureType"] == "whatsapp_business_app_onboarding"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {token_for('acme', expires_in=-10)}"},
        {"Authorization": f"Bearer {token_for('acme', secret='forged-secret-of-the-same-length!!')}"},
        {"Authorization": f"Basic {token_for('acme')}"},
    ],
)
def test_every_endpoint_refuses_missing_expired_or_forged_tokens(api: TestClient, headers: dict) -> None:
    code = start(api)["tracking_code"]
    for method, url in (
        ("GET", "/api/v1/whatsapp/onboarding-url"),
        ("POST", f"/api/v1/whatsapp/onboarding/{code}/session"),
        ("GET", f"/api/v1/whatsapp/onboarding/{code}"),
        ("GET", "/api/v1/whatsapp/check-connection"),
        ("DELETE", "/api/v1/whatsapp/connections/00000000-0000-0000-0000-000000000000"),
    ):
        r = api.request(method, url, headers=headers, json={"event": "CANCEL"} if method == "POST" else None)
        assert r.status_code == 401, (method, url, r.status_code)
        assert "eyJ" not in r.text  # never echoes a token


def test_token_without_the_org_claim_is_403(api: TestClient) -> None:
    token = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    assert api.get("/api/v1/whatsapp/onboarding-url", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_one_organization_cannot_read_or_post_another_organizations_onboarding(api: TestClient) -> None:
    code = start(api, "acme")["tracking_code"]
    assert api.get(f"/api/v1/whatsapp/onboarding/{code}", headers=auth("globex")).status_code == 404
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth("globex"), json={"event": "CANCEL"})
    assert r.status_code == 404
    assert api.get(f"/api/v1/whatsapp/onboarding/{code}", headers=auth("acme")).json()["status"] == "pending"


def test_cancel_is_recorded_with_its_step_and_the_code_cannot_be_reused(api: TestClient, engine: Engine) -> None:
    code = start(api)["tracking_code"]
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json={"event": "CANCEL", "current_step": "PHONE_NUMBER_VERIFICATION"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["error"]["step"] == "PHONE_NUMBER_VERIFICATION"
    [row] = rows(engine, whatsapp_onboarding)
    assert (row.status, row.cancel_step, row.signup_event) == ("cancelled", "PHONE_NUMBER_VERIFICATION", "CANCEL")
    again = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json={"event": "FINISH", "code": "c", "waba_id": "1"})
    assert again.status_code == 409 and again.json()["detail"]["code"] == "onboarding_cancelled"


def test_expired_tracking_code_is_410(api: TestClient, engine: Engine) -> None:
    code = start(api)["tracking_code"]
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_onboarding).values(expires_at=sa.func.now() - sa.text("interval '1 minute'")))
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json={"event": "FINISH", "code": "c", "waba_id": "1"})
    assert r.status_code == 410 and r.json()["detail"]["code"] == "onboarding_expired"
    assert rows(engine, whatsapp_onboarding)[0].status == "expired"


@pytest.mark.parametrize(
    "payload",
    [{"event": "FINISH", "waba_id": "100"}, {"event": "FINISH", "code": "abc"}, {"event": "SOMETHING", "code": "c", "waba_id": "1"}],
)
def test_incomplete_or_unknown_sessions_are_422_and_leave_the_code_usable(api: TestClient, payload: dict) -> None:
    code = start(api)["tracking_code"]
    assert api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json=payload).status_code == 422
    assert api.get(f"/api/v1/whatsapp/onboarding/{code}", headers=auth()).json()["status"] == "pending"


def test_unknown_tracking_code_is_404(api: TestClient) -> None:
    assert api.get("/api/v1/whatsapp/onboarding/nope", headers=auth()).status_code == 404


def test_check_connection_lists_only_the_callers_connections(api: TestClient, engine: Engine) -> None:
    from tests.helpers import bind_fixture_numbers

    bind_fixture_numbers(engine)
    acme = api.get("/api/v1/whatsapp/check-connection", headers=auth("acme")).json()
    assert [c["waba_id"] for c in acme["connections"]] == ["100000000000001"] and acme["connected"] is False
    assert api.get("/api/v1/whatsapp/check-connection", headers=auth("newcomer")).json() == {"connected": False, "connections": []}
    foreign = rows(engine, whatsapp_connections, whatsapp_connections.c.waba_id == "100000000000002")[0]
    assert api.delete(f"/api/v1/whatsapp/connections/{foreign.id}", headers=auth("acme")).status_code == 404


# --- end to end against the Graph emulator ----------------------------------------------
from dagster import DagsterInstance  # noqa: E402

from tests.conftest import APP_SECRET  # noqa: E402
from tests.helpers import land, webhook_row  # noqa: E402
from tests.core.test_processing import drain  # noqa: E402
from wa_pipelines.definitions import defs  # noqa: E402
from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys  # noqa: E402
from wa_core.db.schema import whatsapp_configs, whatsapp_webhook_logs  # noqa: E402
from wa_dev.emulator import GraphEmulator, serve_in_thread  # noqa: E402
from wa_dev.simulate import wire_bytes  # noqa: E402

WABA, OWNER, PHONE = "100000000000077", "300000000000077", "200000000000077"


@pytest.fixture()
def meta() -> Iterator[tuple[GraphEmulator, str]]:
    emulator = GraphEmulator(app_id="123456", app_secret=APP_SECRET)
    base, stop = serve_in_thread(emulator)
    yield emulator, base
    stop()


@pytest.fixture()
def es(settings: Settings, engine: Engine, meta) -> Iterator[tuple[TestClient, GraphEmulator, Settings]]:
    emulator, base = meta
    s = settings.model_copy(update={"meta_app_id": "123456", "meta_config_id": "cfg", "graph_api_base_url": base, "register_pin": "123456"})
    with TestClient(create_app(s)) as c:
        yield c, emulator, s


def finish_session(api: TestClient, emulator: GraphEmulator, *, coexistence: bool = False, org: str = "acme", numbers=None) -> str:
    emulator.add_waba(WABA, OWNER, numbers or [{"id": PHONE, "display_phone_number": "15550007777", "verified_name": "Acme", "coexistence": coexistence}])
    code = start(api, org)["tracking_code"]
    event = "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING" if coexistence else "FINISH"
    body = {"event": event, "code": emulator.issue_code(WABA), "waba_id": WABA, "business_id": OWNER}
    if not coexistence:
        body["phone_number_id"] = PHONE
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(org), json=body)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "token_exchanged"
    return code


def run_follow_ups(s: Settings, base_url: str) -> list:
    """Tick the follow-up sensor's query and run finish_onboarding in-process for each due one."""
    from dagster import build_sensor_context

    from wa_pipelines.defs.onboarding.jobs import onboarding_follow_up_sensor

    resources = {"app_db": AppDatabase(database_url=s.database_url), "meta_graph": MetaGraph(graph_api_base_url=base_url), "token_keys": TokenKeys()}
    results = []
    with DagsterInstance.ephemeral() as instance:
        with build_sensor_context(instance=instance, resources={"app_db": resources["app_db"]}) as ctx:
            requests = onboarding_follow_up_sensor(ctx)
        if not isinstance(requests, list):
            return results
        job = defs.resolve_job_def("finish_onboarding")
        for request in requests:
            results.append(job.execute_in_process(run_config=request.run_config, instance=instance, resources=resources, raise_on_error=False))
    return results


def partner_added(engine: Engine, emulator: GraphEmulator, entry_time: int | None = None) -> int:
    return land(engine, wire_bytes(emulator.partner_added_payload(WABA, entry_time=entry_time)))


def status(api: TestClient, code: str, org: str = "acme") -> dict:
    return api.get(f"/api/v1/whatsapp/onboarding/{code}", headers=auth(org)).json()


def test_full_onboarding_session_follow_up_then_partner_added(es, engine: Engine, caplog) -> None:
    import logging

    api, emulator, s = es
    with caplog.at_level(logging.DEBUG):
        code = finish_session(api, emulator)
    [conn_row] = rows(engine, whatsapp_connections)
    token = emulator.tokens_for(WABA)[0]
    # the business token is stored encrypted, bound to its row; never in logs or answers
    assert conn_row.business_token_encrypted.startswith("v1:") and token not in conn_row.business_token_encrypted
    assert api.app.state.cipher.decrypt(conn_row.business_token_encrypted, conn_row.id) == token
    assert token not in caplog.text and token not in str(status(api, code))
    assert conn_row.status == "awaiting_confirmation" and conn_row.owner_business_id == OWNER

    [result] = run_follow_ups(s, emulator_base(api))
    assert result.success
    assert emulator.calls_to(f"/{WABA}/subscribed_apps$", "POST") and emulator.calls_to(f"/{PHONE}/register$", "POST")
    view = status(api, code)
    assert view["status"] == "token_exchanged" and view["follow_up"] == "done" and not view["confirmed"]
    assert [n["phone_number_id"] for n in view["phone_numbers"]] == [PHONE]

    partner_added(engine, emulator)
    drain(engine, s)
    view = status(api, code)
    assert view["status"] == "completed" and view["confirmed"] and view["connection"]["status"] == "active"
    assert view["phone_numbers"][0]["status"] == "connected"
    assert run_follow_ups(s, emulator_base(api)) == []  # nothing left to do
    # messages for the new number now route to the organization
    msg = {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550007777", "phone_number_id": PHONE},
        "messages": [{"from": "15551234567", "id": "wamid.NEWNUMBER1", "timestamp": "1767225600", "type": "text", "text": {"body": "hi"}}]}}]}]}
    row_id = land(engine, wire_bytes(msg))
    drain(engine, s)
    assert webhook_row(engine, row_id).status == "processed"


def emulator_base(api: TestClient) -> str:
    return api.app.state.settings.graph_api_base_url


def test_partner_added_before_the_session_is_retried_until_the_binding_exists(es, engine: Engine) -> None:
    api, emulator, s = es
    emulator.add_waba(WABA, OWNER, [{"id": PHONE, "display_phone_number": "15550007777", "verified_name": "Acme"}])
    early = partner_added(engine, emulator)
    drain(engine, s)
    assert webhook_row(engine, early).status == "failed" and webhook_row(engine, early).error_kind == "unroutable"
    code = finish_session(api, emulator)
    with engine.begin() as c:
        c.execute(sa.update(whatsapp_webhook_logs).values(next_attempt_at=sa.func.now()))
    drain(engine, s)
    assert webhook_row(engine, early).status == "processed"
    view = status(api, code)
    assert view["confirmed"] and view["status"] == "token_exchanged"  # confirmed, follow-up pending
    run_follow_ups(s, emulator_base(api))
    assert status(api, code)["status"] == "completed"


def test_code_exchange_failure_fails_the_onboarding_with_metas_error(es, engine: Engine) -> None:
    api, emulator, s = es
    emulator.add_waba(WABA, OWNER, [])
    code = start(api)["tracking_code"]
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json={"event": "FINISH", "code": "expired-or-forged", "waba_id": WABA})
    assert r.status_code == 502 and r.json()["detail"]["meta_code"] == 100
    view = status(api, code)
    assert view["status"] == "failed" and view["error"]["code"] == "100" and "code exchange failed" in view["error"]["message"]
    assert not rows(engine, whatsapp_connections)


def test_graph_rate_limits_are_retried_and_permanent_errors_fail_with_metas_message(es, engine: Engine) -> None:
    api, emulator, s = es
    code = finish_session(api, emulator)
    emulator.fail_next("phone_numbers", 80007, times=2, message="WABA rate limit")
    [ok] = run_follow_ups(s, emulator_base(api))
    assert ok.success and status(api, code)["follow_up"] == "done"
    assert len(emulator.calls_to(f"/{WABA}/phone_numbers")) == 3


def test_permanent_follow_up_error_is_shown_to_the_page(es, engine: Engine) -> None:
    api, emulator, s = es
    code = finish_session(api, emulator)
    emulator.fail_next("register", 133016, message="Too many register attempts")
    [failed] = run_follow_ups(s, emulator_base(api))
    assert not failed.success
    view = status(api, code)
    assert view["status"] == "failed" and view["error"]["code"] == "133016" and "register" in view["error"]["message"].lower()


def test_coexistence_number_is_never_registered_and_synced_exactly_once(es, engine: Engine) -> None:
    api, emulator, s = es
    code = finish_session(api, emulator, coexistence=True)
    [first] = run_follow_ups(s, emulator_base(api))
    assert first.success
    assert not emulator.calls_to("/register$")
    syncs = [c.body.get("sync_type") for c in emulator.calls_to(f"/{PHONE}/smb_app_data$")]
    assert syncs == ["smb_app_state_sync", "history"]  # contacts first, then history
    [cfg] = rows(engine, whatsapp_configs)
    assert cfg.is_coexistence and cfg.registered_at is None
    state = {r.sync_type: r for r in rows(engine, whatsapp_coexistence_syncs)}
    assert {t: (r.status, r.request_count, bool(r.request_id)) for t, r in state.items()} == {
        "smb_app_state_sync": ("requested", 1, True), "history": ("requested", 1, True)}
    assert cfg.sync_deadline_at is not None
    # an operator reruns the follow-up: nothing is requested again
    with engine.begin() as c:
        c.execute(sa.update(whatsapp_onboarding).values(follow_up_status="waiting", follow_up_next_at=None))
    run_follow_ups(s, emulator_base(api))
    assert len(emulator.calls_to(f"/{PHONE}/smb_app_data$")) == 2
    assert status(api, code)["is_coexistence"] is True


def test_disconnect_then_reconnect_reuses_the_connection(es, engine: Engine) -> None:
    api, emulator, s = es
    finish_session(api, emulator)
    run_follow_ups(s, emulator_base(api))
    partner_added(engine, emulator, entry_time=1767225600)
    drain(engine, s)
    [c1] = rows(engine, whatsapp_connections)
    r = api.delete(f"/api/v1/whatsapp/connections/{c1.id}", headers=auth(sub="admin@acme"))
    assert r.status_code == 200 and r.json()["unsubscribed"] is True
    assert emulator.calls_to(f"/{WABA}/subscribed_apps$", "DELETE")
    [c2] = rows(engine, whatsapp_connections)
    assert (c2.status, c2.disconnected_by) == ("inactive", "admin@acme") and c2.disconnected_at is not None
    assert api.get("/api/v1/whatsapp/check-connection", headers=auth()).json()["connected"] is False
    code = finish_session(api, emulator)  # the customer connects the same WABA again
    [c3] = rows(engine, whatsapp_connections)
    assert c3.id == c1.id and c3.status == "awaiting_confirmation"
    run_follow_ups(s, emulator_base(api))
    partner_added(engine, emulator, entry_time=1767999999)
    drain(engine, s)
    assert status(api, code)["status"] == "completed"
    assert rows(engine, whatsapp_connections)[0].status == "active"


def test_expiry_job_expires_only_due_onboardings_and_their_cache_keys(es, engine: Engine) -> None:
    import redis

    api, emulator, s = es
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    s_redis = s.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"})
    with TestClient(create_app(s_redis)) as c:
        due = start(c)["tracking_code"]
        live = start(c)["tracking_code"]
    assert client.exists(f"whatsapp:onboarding:{due}") and 0 < client.ttl(f"whatsapp:onboarding:{live}") <= 86400
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_onboarding).where(whatsapp_onboarding.c.tracking_code == due).values(expires_at=sa.func.now() - sa.text("interval '1 second'")))
    import os

    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    from wa_core.settings import get_settings

    get_settings.cache_clear()
    try:
        with DagsterInstance.ephemeral() as instance:
            result = defs.resolve_job_def("expire_onboardings").execute_in_process(instance=instance)
        assert result.output_for_node("expire_onboardings_op") == 1
    finally:
        del os.environ["REDIS_URL"]
        get_settings.cache_clear()
    states = {r.tracking_code: r.status for r in rows(engine, whatsapp_onboarding)}
    assert states == {due: "expired", live: "pending"}
    assert not client.exists(f"whatsapp:onboarding:{due}") and client.exists(f"whatsapp:onboarding:{live}")
    client.delete(f"whatsapp:onboarding:{live}")


def test_redis_down_never_breaks_the_api(es, engine: Engine) -> None:
    api, emulator, s = es
    with TestClient(create_app(s.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))) as c:
        assert c.get("/api/v1/whatsapp/onboarding-url", headers=auth()).status_code == 200


def test_hosted_link_partner_added_for_a_known_owner_business_is_bound_there(es, engine: Engine) -> None:
    api, emulator, s = es
    finish_session(api, emulator)  # acme owns business OWNER through WABA
    other_waba = "100000000000078"
    emulator.add_waba(other_waba, OWNER, [])
    row_id = land(engine, wire_bytes(emulator.partner_added_payload(other_waba)))
    drain(engine, s)
    assert webhook_row(engine, row_id).status == "processed"
    bound = {r.waba_id: r.organization_id for r in rows(engine, whatsapp_connections)}
    assert bound[other_waba] == bound[WABA]


def test_unclaimed_waba_is_kept_alerted_and_assigned_by_an_operator(es, engine: Engine, caplog) -> None:
    import logging

    from pydantic import SecretStr

    api, emulator, s = es
    stranger = "100000000000079"
    emulator.add_waba(stranger, "300000000000079", [])
    with caplog.at_level(logging.WARNING):
        row_id = partner_added_for(engine, emulator, stranger)
        drain(engine, s)
    assert webhook_row(engine, row_id).status == "failed" and f"unclaimed WABA {stranger}" in caplog.text
    admin = s.model_copy(update={"admin_api_token": SecretStr("admin-secret")})
    with TestClient(create_app(admin)) as c:
        start(c, "initech")  # the organization exists
        url = f"/api/admin/whatsapp/wabas/{stranger}/assign"
        assert c.post(url, json={"organization": "initech"}).status_code == 401
        assert c.post(url, json={"organization": "initech"}, headers=auth("initech")).status_code == 403  # an org token is no admin
        assert c.post(url, json={"organization": "initech"}, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert c.post(url, json={"organization": "nobody"}, headers={"Authorization": "Bearer admin-secret"}).status_code == 404
        r = c.post(url, json={"organization": "initech"}, headers={"Authorization": "Bearer admin-secret"})
        assert r.status_code == 200 and r.json()["replayed"] == [row_id]
    drain(engine, s)
    assert webhook_row(engine, row_id).status == "processed"
    [c1] = rows(engine, whatsapp_connections, whatsapp_connections.c.waba_id == stranger)
    assert c1.status == "active"


def partner_added_for(engine: Engine, emulator: GraphEmulator, waba: str) -> int:
    return land(engine, wire_bytes(emulator.partner_added_payload(waba)))


def test_rotate_token_key_reencrypts_every_stored_token(es, engine: Engine, monkeypatch) -> None:
    import subprocess
    import sys
    from pathlib import Path

    api, emulator, s = es
    finish_session(api, emulator)
    [before] = rows(engine, whatsapp_connections)
    new_key = "22" * 32
    env = {**__import__("os").environ, "TOKEN_ENCRYPTION_KEY": new_key, "TOKEN_ENCRYPTION_PREVIOUS_KEYS": s.token_encryption_key.get_secret_value()}
    cli = str(Path(sys.executable).parent / "wa-onboarding")
    out = subprocess.run([cli, "rotate-token-key"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "re-encrypted 1" in out.stdout
    [after] = rows(engine, whatsapp_connections)
    assert after.business_token_encrypted != before.business_token_encrypted
    from wa_core.meta.crypto import DecryptionFailed, TokenCipher

    token = emulator.tokens_for(WABA)[0]
    assert TokenCipher.from_hex(new_key).decrypt(after.business_token_encrypted, after.id) == token
    with pytest.raises(DecryptionFailed):
        TokenCipher.from_hex(s.token_encryption_key.get_secret_value()).decrypt(after.business_token_encrypted, after.id)
    again = subprocess.run([cli, "rotate-token-key"], env=env, capture_output=True, text=True, timeout=60)
    assert "re-encrypted 0" in again.stdout  # idempotent


def test_an_early_partner_added_is_not_dead_lettered_while_an_onboarding_can_still_claim_it(es, engine: Engine) -> None:
    api, emulator, s = es
    s = s.model_copy(update={"processing_max_attempts": 2})
    emulator.add_waba(WABA, OWNER, [])
    row_id = partner_added(engine, emulator)
    for _ in range(3):
        drain(engine, s)
        with engine.begin() as c:
            c.execute(sa.update(whatsapp_webhook_logs).values(next_attempt_at=sa.func.now()))
    row = webhook_row(engine, row_id)
    assert (row.status, row.attempts) == ("failed", 3)  # past max attempts, still waiting
    with engine.begin() as c:  # a day later, nobody claimed it: dead letter
        c.execute(sa.update(whatsapp_webhook_logs).values(received_at=sa.func.now() - sa.text("interval '25 hours'"), next_attempt_at=sa.func.now()))
    drain(engine, s)
    assert webhook_row(engine, row_id).status == "dead"


def test_missing_or_malformed_token_key_stops_start_up_with_a_clear_message(settings: Settings) -> None:
    from pydantic import SecretStr

    from wa_core.meta.crypto import InvalidKey

    with pytest.raises(InvalidKey, match="TOKEN_ENCRYPTION_KEY"):
        create_app(settings.model_copy(update={"token_encryption_key": None}))
    with pytest.raises(InvalidKey, match="64 hex") as exc:
        create_app(settings.model_copy(update={"token_encryption_key": SecretStr("not-hex-SECRETVALUE")}))
    assert "SECRETVALUE" not in str(exc.value)


def test_no_plaintext_token_anywhere_in_the_database(es, engine: Engine) -> None:
    api, emulator, s = es
    finish_session(api, emulator)
    run_follow_ups(s, emulator_base(api))
    token = emulator.tokens_for(WABA)[0]
    from wa_core.db.schema import metadata

    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                assert token not in repr(tuple(row)), table.name


def test_token_health_nightly_check_and_immediate_marks(es, engine: Engine, monkeypatch) -> None:
    api, emulator, s = es
    monkeypatch.setenv("META_APP_ID", "123456")  # the job's Graph client signs debug_token with the app token
    from wa_core.settings import get_settings

    get_settings.cache_clear()
    finish_session(api, emulator)
    token = emulator.tokens_for(WABA)[0]
    check = lambda: defs.resolve_job_def("check_token_health").execute_in_process(  # noqa: E731
        instance=DagsterInstance.ephemeral(),
        resources={"app_db": AppDatabase(database_url=s.database_url), "meta_graph": MetaGraph(graph_api_base_url=emulator_base(api)), "token_keys": TokenKeys()},
    ).output_for_node("check_token_health_op")

    def health():
        [cfg] = rows(engine, whatsapp_configs)
        return cfg.token_health, cfg.token_expires_at

    run_follow_ups(s, emulator_base(api))  # the follow-up lists the number
    assert check() == {"valid": 1}
    assert health() == ("valid", None)  # expires_at 0: never
    emulator.tokens[token].expires_at = int(time.time()) + 3 * 86400
    assert check() == {"expiring_soon": 1}
    emulator.tokens[token].scopes = ("whatsapp_business_management",)
    assert check() == {"missing_permission": 1}
    emulator.invalidate_token(token)
    assert check() == {"invalid": 1}
    status_numbers = api.get("/api/v1/whatsapp/check-connection", headers=auth()).json()["connections"][0]["phone_numbers"]
    assert status_numbers[0]["token_health"] == "invalid"


def test_a_new_number_shows_its_token_health_once_the_follow_up_is_done(es, engine: Engine, monkeypatch) -> None:
    """Not ``not_checked`` until the nightly check: the follow-up checks the token after its commit."""
    api, emulator, s = es
    monkeypatch.setenv("META_APP_ID", "123456")  # the job's Graph client signs debug_token with the app token
    from wa_core.settings import get_settings

    get_settings.cache_clear()
    code = finish_session(api, emulator)
    [run] = run_follow_ups(s, emulator_base(api))
    assert run.success and emulator.calls_to("/debug_token$")
    [cfg] = rows(engine, whatsapp_configs)
    assert cfg.token_health == "valid" and cfg.token_checked_at is not None
    assert status(api, code)["phone_numbers"][0]["token_health"] == "valid"


def test_a_failing_token_check_never_fails_the_onboarding(es, engine: Engine, monkeypatch) -> None:
    api, emulator, s = es
    monkeypatch.setenv("META_APP_ID", "123456")
    from wa_core.settings import get_settings

    get_settings.cache_clear()
    code = finish_session(api, emulator)
    emulator.fail_next("debug_token", 1, times=10, http_status=500, message="Meta is down")
    [run] = run_follow_ups(s, emulator_base(api))
    assert run.success and status(api, code)["follow_up"] == "done"
    [cfg] = rows(engine, whatsapp_configs)
    assert cfg.token_health == "unknown" and "check failed" in cfg.token_health_reason  # the nightly check retries


def test_a_190_during_the_follow_up_marks_the_token_invalid_at_once(es, engine: Engine) -> None:
    api, emulator, s = es
    code = finish_session(api, emulator)
    run_follow_ups(s, emulator_base(api))  # numbers listed and registered
    assert rows(engine, whatsapp_configs)[0].token_checked_at is not None  # checked when the follow-up was done
    with engine.begin() as c:  # an operator reruns the follow-up; Meta now refuses the token
        c.execute(sa.update(whatsapp_onboarding).values(follow_up_status="waiting", follow_up_next_at=None))
    emulator.fail_next("phone_numbers", 190, message="Error validating access token: session invalidated")
    [run] = run_follow_ups(s, emulator_base(api))
    assert not run.success and status(api, code)["status"] == "failed"
    [cfg] = rows(engine, whatsapp_configs)
    assert cfg.token_health == "invalid" and "190" in cfg.token_health_reason  # no need to wait for the night


# --- from a break-it pass ----------------------------------------------------------------
def test_a_waba_the_signup_did_not_share_cannot_be_bound(es, engine: Engine) -> None:
    api, emulator, s = es
    emulator.add_waba(WABA, OWNER, [])
    emulator.add_waba("100000000000088", "300000000000088", [])
    code = start(api)["tracking_code"]
    body = {"event": "FINISH", "code": emulator.issue_code(WABA), "waba_id": "100000000000088"}  # someone else's WABA
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json=body)
    assert r.status_code == 403 and r.json()["detail"]["code"] == "waba_not_shared"
    assert not rows(engine, whatsapp_connections) and status(api, code)["status"] == "failed"


def test_non_ascii_digits_are_not_ids(es) -> None:
    api, emulator, s = es
    code = start(api)["tracking_code"]
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json={"event": "FINISH", "code": "c", "waba_id": "７００"})
    assert r.status_code == 422


def test_an_unexpected_follow_up_error_fails_the_onboarding_instead_of_running_forever(es, engine: Engine) -> None:
    api, emulator, s = es
    code = finish_session(api, emulator)
    with engine.begin() as c:  # a token no key can read (e.g. a botched key rotation)
        c.execute(sa.update(whatsapp_connections).values(business_token_encrypted="v1:deadbeef:AAAA"))
    run_follow_ups(s, emulator_base(api))
    view = status(api, code)
    assert view["status"] == "failed" and view["follow_up"] == "failed" and view["error"]["code"] == "internal"
    assert run_follow_ups(s, emulator_base(api)) == []  # not restarted
    [c1] = rows(engine, whatsapp_connections)
    r = api.delete(f"/api/v1/whatsapp/connections/{c1.id}", headers=auth())  # disconnect still works
    assert r.status_code == 200 and r.json()["meta_error"]["code"] == "token_unreadable"


def test_a_connection_disconnected_before_its_follow_up_is_never_subscribed_again(es, engine: Engine) -> None:
    api, emulator, s = es
    finish_session(api, emulator)
    [c1] = rows(engine, whatsapp_connections)
    assert api.delete(f"/api/v1/whatsapp/connections/{c1.id}", headers=auth()).status_code == 200
    run_follow_ups(s, emulator_base(api))
    assert not emulator.calls_to(f"/{WABA}/subscribed_apps$", "POST")
    assert rows(engine, whatsapp_connections)[0].status == "inactive"


def test_a_disconnected_waba_can_be_connected_by_the_organization_meta_shares_it_with(es, engine: Engine) -> None:
    api, emulator, s = es
    finish_session(api, emulator, org="acme")
    [c1] = rows(engine, whatsapp_connections)
    api.delete(f"/api/v1/whatsapp/connections/{c1.id}", headers=auth("acme"))
    code = finish_session(api, emulator, org="globex")  # the WABA now belongs to globex's business
    [c2] = rows(engine, whatsapp_connections)
    globex_id = api.get("/api/v1/whatsapp/check-connection", headers=auth("globex")).json()["connections"][0]["id"]
    assert str(c2.id) == globex_id and status(api, code, "globex")["status"] == "token_exchanged"
    assert api.get("/api/v1/whatsapp/check-connection", headers=auth("acme")).json()["connections"] == []


def test_an_active_waba_of_another_organization_stays_theirs(es, engine: Engine) -> None:
    api, emulator, s = es
    finish_session(api, emulator, org="acme")
    run_follow_ups(s, emulator_base(api))
    partner_added(engine, emulator)
    drain(engine, s)
    code = start(api, "globex")["tracking_code"]
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth("globex"),
                 json={"event": "FINISH", "code": emulator.issue_code(WABA), "waba_id": WABA})
    assert r.status_code == 409 and r.json()["detail"]["code"] == "waba_taken"


def test_org_claims_with_control_characters_and_huge_tokens_are_refused(api: TestClient) -> None:
    assert api.get("/api/v1/whatsapp/onboarding-url", headers=auth("ac\x00me")).status_code == 403
    big = token_for("acme", padding="x" * 10000)
    assert api.get("/api/v1/whatsapp/onboarding-url", headers={"Authorization": f"Bearer {big}"}).status_code == 401
    string_exp = jwt.encode({"org_id": "acme", "exp": str(int(time.time()) + 60)}, JWT_SECRET, algorithm="HS256")
    assert api.get("/api/v1/whatsapp/onboarding-url", headers={"Authorization": f"Bearer {string_exp}"}).status_code == 401
    no_exp = jwt.encode({"org_id": "acme"}, JWT_SECRET, algorithm="HS256")
    r = api.get("/api/v1/whatsapp/onboarding-url", headers={"Authorization": f"Bearer {no_exp}"})
    assert r.status_code == 401 and "'exp'" in r.json()["detail"]  # says what is missing


def test_an_expired_tracking_code_shows_expired_before_the_nightly_job(api: TestClient, engine: Engine) -> None:
    code = start(api)["tracking_code"]
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_onboarding).values(expires_at=sa.func.now() - sa.text("interval '1 minute'")))
    assert api.get(f"/api/v1/whatsapp/onboarding/{code}", headers=auth()).json()["status"] == "expired"
