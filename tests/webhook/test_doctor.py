"""``wa-onboarding doctor`` and ``GET /api/admin/whatsapp/doctor`` against the Graph emulator
and a live receiver (uvicorn on a real socket): each check's pass and its failure."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.conftest import APP_SECRET, TOKEN_KEY
from tests.dev.test_simulate import free_port, serve
from tests.helpers import rows
from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.schema import whatsapp_connections, whatsapp_webhook_logs
from wa_core.doctor import exit_code, run_doctor
from wa_core.doctor.callback import PROBE_FIELD, is_probe
from wa_core.doctor.meta_app import RECOMMENDED_FIELDS, REQUIRED_FIELDS
from wa_core.meta.crypto import TokenCipher
from wa_core.settings import Settings
from wa_dev.emulator import GraphEmulator, serve_in_thread
from wa_webhook.app import create_app

APP_ID = "1234567890123456"
CONFIG_ID = "987654321098765"
PATH = "/api/v1/whatsapp/webhook"
ALL_FIELDS = (*REQUIRED_FIELDS, *RECOMMENDED_FIELDS)
SECRETS = {name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}


@dataclass
class Setup:
    emulator: GraphEmulator
    settings: Settings  # the doctor's (and the receiver's) settings
    callback: str  # the live receiver's webhook URL

    def run(self, **update) -> dict:
        update = {k: SecretStr(v) if k in SECRETS and v is not None else v for k, v in update.items()}
        checks = run_doctor(self.settings.model_copy(update=update), timeout=5)
        names = [c.name for c in checks]
        assert len(names) == len(set(names)), names
        return {c.name: c for c in checks}


@pytest.fixture()
def meta() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator(app_id=APP_ID, app_secret=APP_SECRET)
    base, stop = serve_in_thread(emulator)
    emulator.base_url = base
    yield emulator
    stop()


@pytest.fixture()
def setup(settings: Settings, engine: Engine, meta: GraphEmulator) -> Iterator[Setup]:
    s = settings.model_copy(update={
        "meta_app_id": APP_ID, "meta_config_id": CONFIG_ID, "graph_api_base_url": meta.base_url,
        "admin_api_token": SecretStr("admin-token"),
    })
    with serve(create_app(s)) as base:
        callback = base + PATH
        meta.set_app_subscription(callback, ALL_FIELDS)
        yield Setup(meta, s.model_copy(update={"meta_webhook_callback_url": callback}), callback)


def test_a_correct_setup_is_green_and_the_test_delivery_lands_as_an_ignored_webhook(setup: Setup, engine: Engine) -> None:
    checks = setup.run()
    for name in ("database", "onboarding_page", "meta.app_token", "meta.webhook_subscription", "meta.webhook_fields",
                 "callback.verify", "callback.signed_delivery", "settings.meta_app_id", "settings.token_encryption_key",
                 "settings.jwt_secret", "settings.database_url"):
        assert checks[name].status == "ok", checks[name]
    assert checks["business_tokens"].status == "skip"  # none stored yet
    assert checks["redis"].status == "skip"  # REDIS_URL unset in the tests
    assert exit_code(checks.values()) == 0
    [row] = rows(engine, whatsapp_webhook_logs)
    assert is_probe(row.body) and row.signature_status == "valid"
    assert setup.emulator.calls_to(f"^/{APP_ID}/subscriptions$", "GET")[0].params == {"access_token": "[redacted]"}


def test_the_probe_is_processed_as_ignored_never_failed(setup: Setup, engine: Engine, settings: Settings) -> None:
    from tests.core.test_processing import drain

    setup.run()
    drain(engine, settings)
    [row] = rows(engine, whatsapp_webhook_logs)
    assert (row.status, row.error_kind, row.fields, row.items_ignored) == ("processed", None, PROBE_FIELD, 1)


def test_a_wrong_app_secret_fails_the_app_token_and_the_graph_checks(setup: Setup) -> None:
    checks = setup.run(meta_app_secret="0" * 32)
    assert checks["meta.app_token"].status == "fail" and "META_APP_SECRET" in checks["meta.app_token"].fix
    assert checks["meta.webhook_subscription"].status == "fail"
    assert checks["callback.signed_delivery"].status == "fail" and "401" in checks["callback.signed_delivery"].detail


def test_an_app_token_of_another_app_fails(setup: Setup) -> None:
    setup.emulator.app_access_token = "other-app-token"
    checks = setup.run(meta_app_access_token="other-app-token")
    assert checks["meta.app_token"].status == "ok"  # the emulator issued it for its own app id
    setup.emulator.app_id = "6543210987654321"
    checks = setup.run(meta_app_access_token="other-app-token")
    assert checks["meta.app_token"].status == "fail" and "6543210987654321" in checks["meta.app_token"].detail


def test_no_whatsapp_subscription_fails(setup: Setup) -> None:
    setup.emulator.app_subscriptions.clear()
    setup.emulator.set_app_subscription("https://example.invalid/hook", ["feed"], object_type="page")
    checks = setup.run()
    sub = checks["meta.webhook_subscription"]
    assert sub.status == "fail" and "whatsapp_business_account" in sub.detail and "page" in sub.detail
    assert "meta.webhook_fields" not in checks


def test_an_inactive_subscription_fails(setup: Setup) -> None:
    setup.emulator.set_app_subscription(setup.callback, ALL_FIELDS, active=False)
    assert setup.run()["meta.webhook_subscription"].status == "fail"


def test_each_missing_required_field_is_named(setup: Setup) -> None:
    fields = [f for f in ALL_FIELDS if f not in ("history", "smb_message_echoes", "account_update")]
    setup.emulator.set_app_subscription(setup.callback, fields)
    check = setup.run()["meta.webhook_fields"]
    assert check.status == "fail"
    assert check.detail == "not subscribed: account_update, history, smb_message_echoes"
    assert "smb_message_echoes" in check.fix


def test_a_missing_optional_field_is_a_warning(setup: Setup) -> None:
    setup.emulator.set_app_subscription(setup.callback, [f for f in ALL_FIELDS if f != "security"])
    checks = setup.run()
    assert checks["meta.webhook_fields"].status == "warn" and "security" in checks["meta.webhook_fields"].detail
    assert exit_code(checks.values()) == 0


def test_a_callback_url_other_than_metas_fails(setup: Setup) -> None:
    setup.emulator.set_app_subscription("https://old-host.example/api/v1/whatsapp/webhook", ALL_FIELDS)
    check = setup.run()["meta.webhook_subscription"]
    assert check.status == "fail" and "old-host.example" in check.detail


def test_without_the_setting_the_doctor_round_trips_to_metas_callback_url(setup: Setup) -> None:
    checks = setup.run(meta_webhook_callback_url=None)
    assert checks["settings.meta_webhook_callback_url"].status == "warn"
    assert checks["callback.verify"].status == "ok" and setup.callback in checks["callback.verify"].detail
    assert checks["callback.signed_delivery"].status == "ok"


def test_graph_failures_are_reported_not_raised(setup: Setup) -> None:
    setup.emulator.fail_next("subscriptions$", 2, http_status=500, message="Service temporarily unavailable")
    setup.emulator.fail_next("^/debug_token$", 190, http_status=400)
    checks = setup.run()
    assert checks["meta.webhook_subscription"].status == "fail" and "Graph" in checks["meta.webhook_subscription"].detail
    assert checks["meta.app_token"].status == "fail"


def test_a_wrong_verify_token_fails_the_handshake(setup: Setup) -> None:
    check = setup.run(meta_webhook_verify_token="not-the-receivers-token")["callback.verify"]
    assert check.status == "fail" and "verify token differs" in check.detail and "META_WEBHOOK_VERIFY_TOKEN" in check.fix


def test_an_unreachable_callback_fails_both_round_trips(setup: Setup) -> None:
    checks = setup.run(meta_webhook_callback_url=f"http://127.0.0.1:{free_port()}{PATH}")
    assert checks["callback.verify"].status == "fail" and "cannot be reached" in checks["callback.verify"].detail
    assert checks["callback.signed_delivery"].status == "fail"


def _impostor(request):
    if request.method == "GET":
        return PlainTextResponse(request.query_params.get("hub.challenge", ""))
    return PlainTextResponse("EVENT_RECEIVED")


def test_an_endpoint_that_is_not_this_deployment_is_found_out(setup: Setup, engine: Engine) -> None:
    """Echoes any challenge and answers 200 to anything, storing nothing."""
    app = Starlette(routes=[Route(PATH, _impostor, methods=["GET", "POST"])])
    with serve(app) as base:
        checks = setup.run(meta_webhook_callback_url=base + PATH)
    assert checks["callback.verify"].status == "warn" and "wrong verify token" in checks["callback.verify"].detail
    delivery = checks["callback.signed_delivery"]
    assert delivery.status == "fail" and "not in this deployment's database" in delivery.detail
    assert rows(engine, whatsapp_webhook_logs) == []


def _store_token(engine: Engine, waba_id: str, token: str) -> None:
    with engine.begin() as conn:
        org = ensure_organization(conn, "acme", "Acme")
        connection_id = bind_waba(conn, org, waba_id, [PhoneNumber(f"2{waba_id[1:]}", "15550001111", "Acme")], status="active")
        encrypted = TokenCipher.from_hex(TOKEN_KEY).encrypt(token, connection_id)
        conn.execute(sa.update(whatsapp_connections).where(whatsapp_connections.c.id == connection_id).values(business_token_encrypted=encrypted))


def test_each_stored_business_token_is_checked_for_scopes_and_expiry(setup: Setup, engine: Engine) -> None:
    em = setup.emulator
    wabas = {"100000000000001": {}, "100000000000002": {"scopes": ["whatsapp_business_management"]},
             "100000000000003": {"expires_at": int(time.time()) + 86400}, "100000000000004": {}}
    for waba, extra in wabas.items():
        em.add_waba(waba, "300000000000001")
        _store_token(engine, waba, em.add_token(waba, **extra))
    em.invalidate_token(em.tokens_for("100000000000004")[0])
    checks = setup.run()
    assert checks["business_token.100000000000001"].status == "ok"
    assert "whatsapp_business_messaging" in checks["business_token.100000000000001"].detail
    missing = checks["business_token.100000000000002"]
    assert missing.status == "fail" and "missing whatsapp_business_messaging" in missing.detail
    assert checks["business_token.100000000000003"].status == "warn"
    assert checks["business_token.100000000000004"].status == "fail" and "invalid" in checks["business_token.100000000000004"].detail
    assert exit_code(checks.values()) == 1


def test_settings_checks_fail_for_missing_or_malformed_values(setup: Setup) -> None:
    checks = setup.run(meta_app_id=None, meta_config_id=None, token_encryption_key="abc", jwt_secret=None, register_pin="12ab")
    for name in ("settings.meta_app_id", "settings.token_encryption_key", "settings.jwt_secret", "settings.register_pin", "onboarding_page"):
        assert checks[name].status == "fail", checks[name]
        assert checks[name].fix
    assert checks["meta.app_token"].status == "skip" and "META_APP_ID" in checks["meta.app_token"].detail
    checks = setup.run(meta_config_id="cfg", meta_webhook_callback_url="ftp://x/y")
    assert checks["onboarding_page"].status == "fail" and "META_CONFIG_ID" in checks["onboarding_page"].detail
    assert checks["settings.meta_webhook_callback_url"].status == "fail"
    checks = setup.run(meta_app_secret="ab" * 16, meta_webhook_verify_token="short")
    assert checks["settings.meta_app_secret"].status == "ok"
    assert checks["settings.meta_webhook_verify_token"].status == "warn"


def test_an_unreachable_or_unmigrated_database_fails(setup: Setup) -> None:
    checks = setup.run(database_url="postgresql://postgres@127.0.0.1:5432/wa_doctor_no_such_db")
    assert checks["database"].status == "fail" and "wa-onboarding migrate" in checks["database"].fix
    assert checks["business_tokens"].status == "skip"


def test_redis_is_checked_when_configured(setup: Setup) -> None:
    assert setup.run(redis_url="redis://127.0.0.1:6379/0")["redis"].status == "ok"
    check = setup.run(redis_url=f"redis://127.0.0.1:{free_port()}/0")["redis"]
    assert check.status == "fail" and "REDIS_URL" in check.detail


def test_the_cli_exits_0_when_green_and_1_when_a_check_fails(setup: Setup, monkeypatch, capsys) -> None:
    from wa_core.settings import get_settings
    from wa_webhook.cli import main

    for key, value in {"META_APP_ID": APP_ID, "META_CONFIG_ID": CONFIG_ID, "GRAPH_API_BASE_URL": setup.emulator.base_url,
                       "META_WEBHOOK_CALLBACK_URL": setup.callback}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    assert main(["doctor", "--no-dagster", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"name", "status", "detail", "fix"} == set(report[0]) and all(c["status"] != "fail" for c in report)
    setup.emulator.set_app_subscription(setup.callback, [f for f in ALL_FIELDS if f != "history"])
    assert main(["doctor", "--no-dagster", "--color", "always"]) == 1
    out = capsys.readouterr().out
    assert "\033[31mFAIL\033[0m  meta.webhook_fields" in out and "fix: App Dashboard" in out and "\033[32mok" in out
    monkeypatch.setenv("PROCESSING_SHARDS", "0")  # unreadable settings: one failed check, exit 1
    get_settings.cache_clear()
    assert main(["doctor", "--no-dagster"]) == 1
    assert "PROCESSING_SHARDS" in capsys.readouterr().out
    get_settings.cache_clear()


def test_the_admin_api_answers_the_same_checks(setup: Setup) -> None:
    with TestClient(create_app(setup.settings)) as api:
        assert api.get("/api/admin/whatsapp/doctor").status_code == 401
        assert api.get("/api/admin/whatsapp/doctor", headers={"Authorization": "Bearer wrong"}).status_code == 403
        answer = api.get("/api/admin/whatsapp/doctor?dagster=false", headers={"Authorization": "Bearer admin-token"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["ok"] is True and body["counts"]["fail"] == 0
        by_name = {c["name"]: c for c in body["checks"]}
        assert by_name["callback.signed_delivery"]["status"] == "ok" and "dagster" not in by_name
        setup.emulator.app_subscriptions.clear()
        body = api.get("/api/admin/whatsapp/doctor?dagster=false", headers={"Authorization": "Bearer admin-token"}).json()
        assert body["ok"] is False and {c["name"]: c for c in body["checks"]}["meta.webhook_subscription"]["status"] == "fail"


#: a .env file saved with CRLF line ends leaves a carriage return at the end of a value
BROKEN_GRAPH = [{"graph_api_base_url": "https://graph.facebook.com\r"}, {"graph_api_version": "v25.0\r"}]


@pytest.mark.parametrize("update", BROKEN_GRAPH, ids=["base_url", "version"])
def test_a_graph_setting_with_a_control_character_is_a_failed_check_not_an_exception(settings: Settings, update: dict) -> None:
    """``run_doctor`` never raises: a Graph client that cannot be built fails the Meta checks."""
    checks = run_doctor(settings.model_copy(update={"meta_app_id": "1234567890123456", **update}), timeout=1)
    assert any(c.status == "fail" and c.name.startswith(("settings", "meta")) for c in checks)
    graph = next(c for c in checks if c.name == "settings.graph_api")
    assert graph.status == "fail" and "control character" in graph.detail


@pytest.mark.parametrize("update", BROKEN_GRAPH, ids=["base_url", "version"])
def test_the_doctor_endpoint_answers_its_report_for_a_broken_graph_setting(settings: Settings, update: dict) -> None:
    app = create_app(settings.model_copy(update={"admin_api_token": SecretStr("adm"), "meta_app_id": "1234567890123456", **update}))
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/admin/whatsapp/doctor", params={"dagster": "false"}, headers={"Authorization": "Bearer adm"})
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is False
