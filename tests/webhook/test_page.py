"""The onboarding page, driven in headless Chromium against the receiver and the Graph emulator."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET
from tests.webhook.test_onboarding import PHONE, WABA, OWNER, partner_added, run_follow_ups, token_for
from tests.core.test_processing import drain
from tests.dev.test_simulate import serve
from wa_webhook.app import create_app
from wa_dev.demo_sdk import with_demo_sdk
from wa_dev.emulator import GraphEmulator, serve_in_thread
from wa_core.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_connect_button_runs_embedded_signup_and_shows_connected(settings: Settings, engine: Engine) -> None:
    from playwright.sync_api import sync_playwright

    emulator = GraphEmulator(app_id="123456", app_secret=APP_SECRET)
    emulator.add_waba(WABA, OWNER, [{"id": PHONE, "display_phone_number": "15550007777", "verified_name": "Acme"}])
    meta_base, stop = serve_in_thread(with_demo_sdk(emulator, [WABA]))
    try:
        s = settings.model_copy(update={
            "meta_app_id": "123456", "meta_config_id": "cfg", "graph_api_base_url": meta_base,
            "embedded_signup_sdk_url": f"{meta_base}/sdk.js", "embedded_signup_message_origins": "facebook.com,127.0.0.1",
        })
        with serve(create_app(s)) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            response = page.goto(f"{base}/onboarding?token={token_for('acme')}")
            assert "script-src 'self' " + meta_base in response.headers["content-security-policy"]
            page.click("#connect")
            page.wait_for_selector("#status:has-text('Setting up')", timeout=15000)  # CSP forbids eval: selectors only
            # Dagster's side: the follow-up run and Meta's PARTNER_ADDED
            run_follow_ups(s, meta_base)
            partner_added(engine, emulator)
            drain(engine, s)
            page.wait_for_selector("#status.ok:has-text('Connected')", timeout=15000)
            assert page.text_content("#status") == "Connected: 15550007777.", console
            browser.close()
    finally:
        stop()


def test_the_page_shows_metas_error_when_the_flow_cannot_finish(settings: Settings, engine: Engine) -> None:
    from playwright.sync_api import sync_playwright

    emulator = GraphEmulator(app_id="123456", app_secret=APP_SECRET)
    emulator.add_waba(WABA, OWNER, [{"id": PHONE, "display_phone_number": "15550007777", "verified_name": "Acme"}])
    emulator.fail_next("oauth/access_token", 100, message="Invalid verification code format.")
    meta_base, stop = serve_in_thread(with_demo_sdk(emulator, [WABA]))
    try:
        s = settings.model_copy(update={
            "meta_app_id": "123456", "graph_api_base_url": meta_base,
            "embedded_signup_sdk_url": f"{meta_base}/sdk.js", "embedded_signup_message_origins": "127.0.0.1",
        })
        with serve(create_app(s)) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(f"{base}/onboarding?token={token_for('acme')}")
            page.click("#connect")
            page.wait_for_selector("#status.error", timeout=15000)
            assert "Invalid verification code format." in page.text_content("#status")
            assert "Meta error 100" in page.text_content("#status")
            assert page.is_enabled("#connect")  # the user can try again
            browser.close()
    finally:
        stop()
