"""Receiver edges: API docs served offline per API_DOCS, /metrics behind METRICS_TOKEN, the
previous app secret's grace period (META_APP_SECRET_PREVIOUS_UNTIL) and start-up warnings."""

from __future__ import annotations

import logging
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, fixture_bytes
from tests.dev.test_simulate import serve
from tests.helpers import rows
from wa_core.db.schema import whatsapp_webhook_logs
from wa_core.db.schema_explorer import whatsapp_webhook_rejections
from wa_core.meta.signature import sign
from wa_core.settings import Settings
from wa_webhook.app import create_app

ADMIN = "admin-token-for-docs-tests"
DOCS = ("/docs", "/redoc", "/openapi.json")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
URL = "/api/v1/whatsapp/webhook"


def _app(settings: Settings, **update):
    return create_app(settings.model_copy(update=update))


# --- API_DOCS -----------------------------------------------------------------------------
def test_docs_are_off_by_default(settings: Settings) -> None:
    assert Settings(_env_file=None).api_docs == "off"
    with TestClient(create_app(settings)) as c:
        for path in (*DOCS, "/docs-assets/swagger-ui-bundle.js"):
            assert c.get(path).status_code == 404, path


def test_admin_docs_need_the_admin_bearer_token(settings: Settings) -> None:
    with TestClient(_app(settings, api_docs="admin", admin_api_token=SecretStr(ADMIN))) as c:
        for path in DOCS:
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": "Bearer not-the-token"}).status_code == 403, path
            assert c.get(path, headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200, path
    with TestClient(_app(settings, api_docs="admin", admin_api_token=None)) as c:
        assert c.get("/openapi.json", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 503  # no admin token set


def test_api_docs_setting_is_validated() -> None:
    assert Settings(_env_file=None, api_docs="ADMIN").api_docs == "admin"
    with pytest.raises(ValueError):
        Settings(_env_file=None, api_docs="public")


@pytest.mark.parametrize("path, ready", [("/docs", ".swagger-ui .info .title"), ("/redoc", ".api-content h1")])
def test_docs_pages_render_offline_from_our_origin(settings: Settings, path: str, ready: str) -> None:
    from playwright.sync_api import sync_playwright

    with serve(_app(settings, api_docs="on")) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            elsewhere: list[str] = []

            def only_our_origin(route) -> None:  # the machine is "offline": nothing but our origin answers
                if route.request.url.startswith(base) or route.request.url.startswith("data:"):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", only_our_origin)
            loaded: list[str] = []
            page.on("requestfinished", lambda request: loaded.append(request.url))
            page.goto(f"{base}{path}")
            page.wait_for_selector(ready, timeout=20000)
            assert "WhatsApp onboarding" in page.text_content(ready)  # rendered from our /openapi.json
            assert elsewhere == []
            assert any(u.endswith(".js") and u.startswith(f"{base}/docs-assets/") for u in loaded), loaded
            if path == "/docs":
                assert f"{base}/docs-assets/swagger-ui.css" in loaded and f"{base}/openapi.json" in loaded
        finally:
            browser.close()


# --- METRICS_TOKEN ------------------------------------------------------------------------
def test_metrics_are_public_without_a_token_and_need_it_when_set(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        assert c.get("/metrics").status_code == 200  # the demo's default
    with TestClient(_app(settings, metrics_token=SecretStr("scrape-me"))) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        r = c.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert r.status_code == 200 and "wa_webhook_requests_total" in r.text


# --- META_APP_SECRET_PREVIOUS_UNTIL -------------------------------------------------------
def _mismatches(text: str) -> float:
    m = re.search(r'^wa_webhook_signature_failures_total\{reason="mismatch"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_previous_secret_verifies_until_its_grace_period_ends(settings: Settings, engine: Engine) -> None:
    body = fixture_bytes("messages_text.json")
    old = sign(body, APP_SECRET)
    rotated = {"meta_app_secret": SecretStr("new-secret"), "meta_app_secret_previous": SecretStr(APP_SECRET)}
    now = datetime.now(timezone.utc)
    with TestClient(_app(settings, **rotated, meta_app_secret_previous_until=now + timedelta(hours=1))) as c:
        assert c.post(URL, content=body, headers={"X-Hub-Signature-256": old}).status_code == 200
    with TestClient(_app(settings, **rotated, meta_app_secret_previous_until=now - timedelta(seconds=1))) as c:
        before = _mismatches(c.get("/metrics").text)
        assert c.post(URL, content=body, headers={"X-Hub-Signature-256": old}).status_code == 401
        assert c.post(URL, content=body, headers={"X-Hub-Signature-256": sign(body, "new-secret")}).status_code == 200
        assert _mismatches(c.get("/metrics").text) == before + 1  # counted like any bad signature
    assert sorted(r.signature_status for r in rows(engine, whatsapp_webhook_logs)) == ["valid", "valid_previous"]
    assert [r.reason for r in rows(engine, whatsapp_webhook_rejections)] == ["mismatch"]  # and recorded


def test_previous_secret_until_is_an_instant_in_utc() -> None:
    s = Settings(_env_file=None, meta_app_secret_previous="old", meta_app_secret_previous_until="2030-01-01T12:00:00+02:00")
    assert s.meta_app_secret_previous_until == datetime(2030, 1, 1, 10, tzinfo=timezone.utc)
    assert Settings(_env_file=None, meta_app_secret_previous_until="2030-01-01T10:00:00").meta_app_secret_previous_until.tzinfo is timezone.utc
    assert s.previous_app_secret(datetime(2030, 1, 1, 9, 59, tzinfo=timezone.utc)) == "old"
    assert s.previous_app_secret(datetime(2030, 1, 1, 10, 0, tzinfo=timezone.utc)) is None
    assert Settings(_env_file=None, meta_app_secret_previous_until="").meta_app_secret_previous_until is None
    with pytest.raises(ValueError):
        Settings(_env_file=None, meta_app_secret_previous_until="next tuesday")


# --- start-up warnings --------------------------------------------------------------------
def test_startup_warns_about_an_endless_or_ended_grace_period_and_a_missing_audience(settings: Settings, caplog) -> None:
    now = datetime.now(timezone.utc)
    with caplog.at_level(logging.WARNING, logger="wa_webhook.app"):
        _app(settings, meta_app_secret_previous=SecretStr("old"), jwt_audience=None, alert_environment="production")
    messages = [r.getMessage() for r in caplog.records if r.name == "wa_webhook.app"]
    assert any("META_APP_SECRET_PREVIOUS is set without META_APP_SECRET_PREVIOUS_UNTIL" in m for m in messages), messages
    assert any("JWT_AUDIENCE is not set in production" in m for m in messages), messages

    ended = settings.model_copy(update={"meta_app_secret_previous": SecretStr("old"), "meta_app_secret_previous_until": now - timedelta(days=1)})
    assert any("grace period of META_APP_SECRET_PREVIOUS ended" in w for w in ended.startup_warnings())
    running = ended.model_copy(update={"meta_app_secret_previous_until": now + timedelta(days=1), "jwt_audience": "wa-service"})
    assert running.startup_warnings() == []
    demo = settings.model_copy(update={"alert_environment": "demo", "jwt_audience": None, "meta_app_secret_previous": None})
    assert demo.startup_warnings() == []  # not production: no audience warning


def test_up_serves_the_docs_and_runs_as_the_demo(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from wa_dev.up import UpOptions, demo_environment

    for name in ("API_DOCS", "ALERT_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    _, env, _ = demo_environment(Settings(_env_file=None, data_dir=tmp_path), UpOptions())
    assert env["API_DOCS"] == "on" and env["ALERT_ENVIRONMENT"] == "demo"
    assert Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k in ("API_DOCS", "ALERT_ENVIRONMENT")}).is_production is False


def test_a_blank_bearer_token_is_401_for_the_admin_api_as_for_metrics(settings: Settings) -> None:
    """``Authorization: Bearer`` followed by blanks carries no token: 401 (not 403) for /metrics,
    the admin API and the admin-only API docs alike."""
    app = create_app(settings.model_copy(update={"admin_api_token": SecretStr("adm"), "metrics_token": SecretStr("met"), "api_docs": "admin"}))
    blank = {"Authorization": "Bearer    "}
    with TestClient(app) as client:
        for path in ("/metrics", "/openapi.json", "/api/admin/whatsapp/status"):
            r = client.get(path, headers=blank)
            assert r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer", path
        assert client.get("/api/admin/whatsapp/status", headers={"Authorization": "Bearer  adm "}).status_code == 200
