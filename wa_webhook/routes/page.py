"""A small onboarding page to try Embedded Signup: ``GET /onboarding``.

It loads the Facebook JavaScript SDK (``EMBEDDED_SIGNUP_SDK_URL``; the demo points it at the
Graph emulator's stand-in), gets the onboarding URL, runs ``FB.login``, posts the session
and polls the status. The Content-Security-Policy allows scripts and frames from the SDK's
origin and nothing else besides this server.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter(tags=["page"])
STATIC = Path(__file__).resolve().parents[1] / "static"


@lru_cache(maxsize=2)
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@router.get("/onboarding", response_class=HTMLResponse, include_in_schema=False)
def onboarding_page(request: Request) -> HTMLResponse:
    """The page, with the SDK URL and accepted message origins from settings."""
    settings = request.app.state.settings
    sdk_origin = _origin(settings.embedded_signup_sdk_url)
    page = _read("onboarding.html")
    for name, value in (
        ("sdk_url", settings.embedded_signup_sdk_url),
        ("origins", settings.embedded_signup_message_origins),
        ("graph_version", settings.graph_api_version),
    ):
        page = page.replace("{" + name + "}", html.escape(value, quote=True))
    csp = (
        f"default-src 'self'; script-src 'self' {sdk_origin}; frame-src {sdk_origin} https://*.facebook.com; "
        f"connect-src 'self' {sdk_origin}; img-src 'self' data: {sdk_origin}; style-src 'self' 'unsafe-inline'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return HTMLResponse(page, headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


@router.get("/onboarding/app.js", include_in_schema=False)
def onboarding_script() -> Response:
    """The page's script."""
    return Response(_read("onboarding.js"), media_type="text/javascript", headers={"X-Content-Type-Options": "nosniff"})
