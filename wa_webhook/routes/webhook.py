"""Meta's webhook endpoint: the verification handshake (GET) and event notifications (POST).

The POST path is :mod:`wa_webhook.delivery` (body bound, ``X-Hub-Signature-256`` over the raw
bytes, insert and commit, 200): this route is its FastAPI face, for the OpenAPI schema and the
requests the app's direct dispatch leaves to the framework.

Sources: Meta, WhatsApp "Create a webhook endpoint" (handshake, signature, "respond 200"),
WhatsApp webhooks overview (3 MB payloads; any non-200 is retried for up to 7 days).
"""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse

from wa_core.meta.signature import tokens_equal
from wa_webhook.delivery import handle_delivery

log = logging.getLogger("wa_webhook.webhook")

router = APIRouter(prefix="/api/v1/whatsapp", tags=["webhook"])
#: the POST path Meta delivers to (the app also dispatches it directly, see ``wa_webhook.app``)
WEBHOOK_PATH = "/api/v1/whatsapp/webhook"


@router.get("/webhook", response_class=PlainTextResponse)
async def verify_subscription(
    request: Request,
    hub_mode: str | None = Query(default=None, alias="hub.mode"),
    hub_verify_token: str | None = Query(default=None, alias="hub.verify_token"),
    hub_challenge: str | None = Query(default=None, alias="hub.challenge"),
) -> Response:
    """Meta's verification request: echo ``hub.challenge`` when ``hub.verify_token`` matches.

    Answers 200 with the challenge as plain text, 403 for a wrong, missing or non-ASCII
    token or a mode other than ``subscribe``, and 503 when no verify token is configured.
    """
    settings = request.app.state.settings
    expected = settings.meta_webhook_verify_token
    if expected is None or not expected.get_secret_value():
        return PlainTextResponse("webhook verify token is not configured", status_code=503)
    params = request.query_params
    repeated = any(len(params.getlist(name)) > 1 for name in ("hub.mode", "hub.verify_token", "hub.challenge"))
    if repeated or hub_mode != "subscribe" or not tokens_equal(hub_verify_token, expected.get_secret_value()):
        log.warning("webhook verification refused")
        return PlainTextResponse("verification failed", status_code=403)
    if not hub_challenge or not _CHALLENGE.fullmatch(hub_challenge):
        return PlainTextResponse("hub.challenge is missing or malformed", status_code=400)
    log.info("webhook verification accepted")
    return PlainTextResponse(hub_challenge, status_code=200, headers={"X-Content-Type-Options": "nosniff"})


#: Meta's challenge is a number sent as text; anything else is echoed by no one
_CHALLENGE = re.compile(r"[A-Za-z0-9_.-]{1,256}")


@router.post("/webhook", response_class=PlainTextResponse)
async def receive_webhook(request: Request) -> Response:
    """Land one Meta event notification durably, then answer 200 ``EVENT_RECEIVED``.

    The work is :func:`wa_webhook.delivery.handle_delivery` (its docstring lists every answer:
    503, 413, 408, 401, 429, 200); the app hands deliveries to it directly, and this route
    serves the rest (a ``root_path`` prefix, a browser's ``Origin`` for the CORS middleware).
    """
    answer = await handle_delivery(request.scope, request.receive, request.app.state.delivery)
    return Response(
        answer.text,
        status_code=answer.status,
        headers={name.decode("latin-1"): value.decode("latin-1") for name, value in answer.headers},
        media_type="text/plain",
    )
