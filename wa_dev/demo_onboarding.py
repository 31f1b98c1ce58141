"""The main job's onboardings: a Cloud API number and a coexistence number, connected through
the onboarding page (headless Chromium when available, else the same API calls the page
makes) against the local Graph emulator, which sends ``PARTNER_ADDED`` like Meta does."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from wa_dev.simulate import wire_bytes

DEMO_JWT_SECRET = "demo-jwt-secret-not-for-production-0000"
DEMO_APP_ID = "123456789012345"
#: the Embedded Signup configuration id of the demo: numeric like a real one (the doctor's
#: ``onboarding_page`` check wants that); the Graph emulator's stand-in SDK ignores it
DEMO_CONFIG_ID = "543210987654321"
CLOUD = {"org": "acme", "waba": "100000000000501", "owner": "300000000000501", "phone": "200000000000501", "display": "15550005001", "coexistence": False}
#: a third WABA left in the stand-in SDK's list, for whoever clicks the printed page URL
VISITOR = {"org": "newcomer", "waba": "100000000000503", "owner": "300000000000503", "phone": "200000000000503", "display": "15550005003", "coexistence": False}
COEX = {"org": "globex", "waba": "100000000000502", "owner": "300000000000502", "phone": "200000000000502", "display": "15550005002", "coexistence": True}


@dataclass
class DemoEmulator:
    """The running emulator: its base URL, the emulator object and a stop function."""

    base_url: str
    emulator: Any
    stop: Any


def start_emulator(app_secret: str, webhook_url: str) -> DemoEmulator:
    """Start the Graph emulator (with the stand-in SDK) on a free loopback port."""
    from wa_dev.demo_sdk import with_demo_sdk
    from wa_dev.emulator import GraphEmulator, serve_in_thread

    from wa_core.doctor.meta_app import RECOMMENDED_FIELDS, REQUIRED_FIELDS

    emulator = GraphEmulator(app_id=DEMO_APP_ID, app_secret=app_secret, auto_partner_added=(webhook_url, app_secret))
    emulator.set_app_subscription(webhook_url, (*REQUIRED_FIELDS, *RECOMMENDED_FIELDS))  # as the App Dashboard would (doctor)
    for spec in (CLOUD, COEX, VISITOR):
        emulator.add_waba(spec["waba"], spec["owner"], [{"id": spec["phone"], "display_phone_number": spec["display"], "verified_name": spec["org"].title(), "coexistence": spec["coexistence"]}])
    base, stop = serve_in_thread(with_demo_sdk(emulator, [CLOUD["waba"], COEX["waba"], VISITOR["waba"]]))
    return DemoEmulator(base, emulator, stop)


def demo_token(org: str, secret: str = DEMO_JWT_SECRET) -> str:
    """A bearer JWT for ``org`` as the SaaS would issue it (1 hour)."""
    return jwt.encode({"org_id": org, "sub": f"demo-user@{org}", "exp": int(time.time()) + 3600}, secret, algorithm="HS256")


def connect_with_browser(receiver: str, org: str, coexistence: bool) -> str | None:
    """Click "Connect WhatsApp" on the page in headless Chromium; returns the final status text,
    or None when no Chromium or Playwright is available."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page()
            page.goto(f"{receiver}/onboarding?token={demo_token(org)}")
            if coexistence:
                page.check("#coexistence")
            page.click("#connect")
            page.wait_for_selector("#status.ok, #status.error", timeout=150_000)
            return page.text_content("#status")
        finally:
            browser.close()


def connect_with_api(receiver: str, emulator: Any, spec: dict[str, Any]) -> str:
    """The page's calls without a browser: onboarding URL, session, poll until done."""
    headers = {"Authorization": f"Bearer {demo_token(spec['org'])}"}
    with httpx.Client(base_url=receiver, headers=headers, timeout=30) as client:
        start = client.get("/api/v1/whatsapp/onboarding-url", params={"coexistence": spec["coexistence"]}).raise_for_status().json()
        body = {"event": "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING" if spec["coexistence"] else "FINISH", "code": emulator.issue_code(spec["waba"]), "waba_id": spec["waba"], "business_id": spec["owner"]}
        client.post(start["session_url"], json=body).raise_for_status()
        for _ in range(75):
            st = client.get(start["status_url"]).json()
            if st["status"] in ("completed", "failed"):
                return f"{st['status']}: {st['error'] or [n['display_phone_number'] for n in st['phone_numbers']]}"
            time.sleep(2)
    return "still in progress"


def message_for(spec: dict[str, Any], wamid: str, text: str) -> bytes:
    """An inbound text webhook for the demo number (to show messages flowing once connected)."""
    return wire_bytes({"object": "whatsapp_business_account", "entry": [{"id": spec["waba"], "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": spec["display"], "phone_number_id": spec["phone"]},
        "contacts": [{"profile": {"name": "New Customer"}, "wa_id": "15557770001"}],
        "messages": [{"from": "15557770001", "id": wamid, "timestamp": str(int(time.time())), "type": "text", "text": {"body": text}}]}}]}]})
