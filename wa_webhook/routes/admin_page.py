"""The operator page ``GET /admin``: search landed webhooks, trace one, replay a dead one.

A static page and script (``static/admin.html``, ``static/admin.js``) over the admin API
(:mod:`.explorer_admin`, :mod:`.admin`): the operator pastes the admin token, which the
script keeps in ``sessionStorage`` and sends as a bearer token; the page itself holds no
data and needs no token to load. Strict Content-Security-Policy: this server only, no inline
script.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from wa_webhook.routes.page import _read

router = APIRouter(tags=["page"])
_CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
def admin_page() -> HTMLResponse:
    """The operator page."""
    return HTMLResponse(_read("admin.html"), headers=_HEADERS)


@router.get("/admin/app.js", include_in_schema=False)
def admin_script() -> Response:
    """The page's script."""
    return Response(_read("admin.js"), media_type="text/javascript", headers={"X-Content-Type-Options": "nosniff"})
