"""Capture the Dagster UI screenshots in ``docs/screenshots/`` from a running main job.

Start the main job first (``bin/up``, which keeps running; wait until it prints "running"),
then, from the project root:

    .venv/bin/python docs/screenshots/capture.py [--dagster http://127.0.0.1:3000]

It drives Debian's Chromium through Playwright, dismisses Dagster's first-visit
"Join the community" dialog, and writes PNGs of the asset lineage (by group, and asset by asset from the raw webhooks to the dashboards), a dashboard asset
with its plotted metadata, its asset checks, and the runs list. Nothing here runs in tests.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent

#: (file name, path in the Dagster UI, text to wait for)
PAGES = [
    ("asset-graph-groups.png", "/asset-groups", "dashboards"),
    (
        "asset-graph.png",
        "/assets/whatsapp_webhook_logs?view=lineage&lineageScope=downstream&lineageDepth=2",
        "webhook_lag",
    ),
    ("dashboard-org-whatsapp-status.png", "/assets/org_whatsapp_status?view=events", "org_whatsapp_status"),
    ("dashboard-webhook-lag.png", "/assets/webhook_lag?view=events", "webhook_lag"),
    ("asset-checks.png", "/assets/failed_webhooks?view=checks", "failed_webhooks"),
    ("runs.png", "/runs", "process_webhooks"),
]


def dismiss_dialogs(page) -> None:
    """Close Dagster's first-visit dialogs ("Join the community", what's new) if shown."""
    for label in ("Skip", "Dismiss", "Close", "Not now"):
        button = page.get_by_role("button", name=label)
        try:
            if button.count():
                button.first.click(timeout=2_000)
                page.wait_for_timeout(300)
        except Exception:  # noqa: BLE001 - a dialog that went away by itself is fine
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dagster", default="http://127.0.0.1:3000", help="Dagster webserver URL")
    parser.add_argument("--width", type=int, default=1800)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("error: no chromium on PATH (apt-get install -y chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            for name, path, wait_text in PAGES:
                page.goto(args.dagster + path, wait_until="networkidle", timeout=60_000)
                dismiss_dialogs(page)
                try:
                    page.get_by_text(wait_text).first.wait_for(timeout=20_000)
                except Exception:  # noqa: BLE001 - still take the picture; the file shows what was there
                    print(f"warning: {wait_text!r} not seen on {path}", file=sys.stderr)
                page.wait_for_timeout(2_500)  # graphs and plots animate in
                dismiss_dialogs(page)
                page.screenshot(path=str(OUT / name))
                print(f"wrote {OUT / name}")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
