"""The operator page ``/admin`` in headless Chromium: search, trace, replay over the admin API."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.core.test_processing import drain
from tests.dev.test_simulate import serve
from tests.explorer import corpus as c
from tests.helpers import bind_fixture_numbers, land, webhook_row
from tests.webhook.test_admin_status import ADMIN
from tests.webhook.test_page import ARGS, CHROMIUM
from wa_core.settings import Settings
from wa_webhook.app import create_app


def test_the_operator_searches_traces_and_replays(settings: Settings, engine: Engine) -> None:
    from playwright.sync_api import sync_playwright

    bind_fixture_numbers(engine, acme_status="active")
    good = land(engine, c.inbound("wamid.PAGE1", 1767225600))
    dead = land(engine, b"{not json")
    drain(engine, settings)
    assert webhook_row(engine, dead).status == "dead"
    s = settings.model_copy(update={"admin_api_token": SecretStr(ADMIN)})
    with serve(create_app(s)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        response = page.goto(f"{base}/admin")
        assert "script-src 'self';" in response.headers["content-security-policy"]
        # a wrong token is refused by the API and the page says so
        page.fill("#token", "not-the-token")
        page.click("#save-token")
        page.fill("input[name=wamid]", "wamid.PAGE1")
        page.click("#go")
        page.wait_for_selector("#message.error:has-text('403')", timeout=15000)
        page.fill("#token", ADMIN)
        page.click("#save-token")
        page.click("#go")
        page.wait_for_selector(f"#results tbody tr[data-id='{good}']", timeout=15000)
        assert page.locator("#results tbody tr").count() == 1
        page.fill("input[name=wamid]", "")
        page.fill("input[name=error_kind]", "invalid_json")
        page.click("#go")
        page.wait_for_selector(f"#results tbody tr[data-id='{dead}'] td.dead", timeout=15000)
        page.click(f"button.trace[data-id='{dead}']")
        page.wait_for_selector("#trace:has-text('invalid_json')", timeout=15000)
        assert '"body"' not in page.text_content("#trace")
        page.check("#with-body")
        page.wait_for_selector("#trace:has-text('{not json')", timeout=15000)
        page.click("#replay")
        page.wait_for_selector("#replay-state.ok:has-text('Replayed')", timeout=15000)
        page.wait_for_selector("#trace:has-text('\"status\": \"pending\"')", timeout=15000)
        assert webhook_row(engine, dead).status == "pending" and webhook_row(engine, dead).replay_count == 1
        assert not [m for m in console if "Content Security Policy" in m], console
        browser.close()
