"""Meta's webhook endpoint: the verification handshake (GET) and event notifications (POST).

The POST path does exactly four things, in this order: bound the body size while reading,
verify ``X-Hub-Signature-256`` over the raw bytes, insert and commit the bytes, answer 200.
Everything else (parsing, routing, business logic) happens later in Dagster, so that a
delivery is acknowledged only once it is durable and never because it was understood.

Sources: Meta, WhatsApp "Create a webhook endpoint" (handshake, signature, "respond 200"),
WhatsApp webhooks overview (3 MB payloads; any non-200 is retried for up to 7 days).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time

import anyio

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.requests import ClientDisconnect

from wa_webhook import metrics
from wa_core.db.landing import LandedWebhook, LandingUnavailable
from wa_core.db.schema import utcnow
from wa_core.meta.signature import SIGNATURE_HEADER, SignatureResult, tokens_equal, verify_with_rotation

log = logging.getLogger("wa_webhook.webhook")

router = APIRouter(prefix="/api/v1/whatsapp", tags=["webhook"])
#: the POST path Meta delivers to (the app also dispatches it directly, see ``wa_webhook.app``)
WEBHOOK_PATH = "/api/v1/whatsapp/webhook"
#: the outcome counter of the hot path, bound once (``labels()`` costs a lock and a lookup)
_LANDED = metrics.WEBHOOK_REQUESTS.labels("landed")


class BodyTooLarge(Exception):
    """The request body went past ``WEBHOOK_MAX_BODY_BYTES`` while being read; ``size``: the
    declared ``Content-Length`` or the bytes read when it was refused."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class BodyReads:
    """Bounds the webhook bodies one receiver process reads at once
    (``WEBHOOK_MAX_CONCURRENT_BODIES``), so a crowd of slow clients cannot hold every
    connection and all the memory: past the bound a delivery is answered 503 at once and
    Meta redelivers it. Not thread-safe: used from the event loop only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        """Take a slot; ``False`` when ``limit`` bodies are already being read."""
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        """Give the slot back."""
        self.active -= 1


async def read_body_limited(request: Request, limit: int) -> bytes:
    """Read the raw request body, raising :class:`BodyTooLarge` as soon as it passes ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before reading anything; raises
    :class:`~starlette.requests.ClientDisconnect` when the sender hangs up first. Reads the
    ASGI messages itself (what ``Request.stream()`` does, without its generator per request).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared))
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def safe_request_id(header: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is a short token (≤ 64 of ``[A-Za-z0-9._:-]``),
    else a new random id (32 hex digits): a header must never be the reason a delivery cannot
    be stored."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return os.urandom(16).hex()


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


class Acknowledgement(PlainTextResponse):
    """The 200 ``EVENT_RECEIVED`` of a landed delivery, with its ``X-Request-Id``; the same
    response as ``PlainTextResponse("EVENT_RECEIVED", headers=...)``, its header list built
    from constants instead of Starlette's per-response assembly (``request_id`` is ASCII, see
    :func:`safe_request_id`)."""

    _HEAD = [(b"content-length", b"14"), (b"content-type", b"text/plain; charset=utf-8")]

    def __init__(self, request_id: str) -> None:  # noqa: D107 - see the class
        self.status_code = 200
        self.body = b"EVENT_RECEIVED"
        self.background = None
        self.raw_headers = [*self._HEAD, (b"x-request-id", request_id.encode("ascii"))]


@router.post("/webhook", response_class=PlainTextResponse)
async def receive_webhook(request: Request) -> Response:
    """Land one Meta event notification durably, then answer 200.

    - 503 when ``META_APP_SECRET`` is not configured (never accept unsigned deliveries),
      or when the database cannot take the row (Meta redelivers);
    - 413 when the body passes ``WEBHOOK_MAX_BODY_BYTES`` (checked while reading);
    - 408 when the body is not read within ``WEBHOOK_BODY_TIMEOUT_SECONDS`` (a slow client),
      503 at once when ``WEBHOOK_MAX_CONCURRENT_BODIES`` bodies are already being read, and
      one log line plus the ``client_disconnect`` metric when the sender hangs up mid-body;
    - 401 when ``X-Hub-Signature-256`` is missing, malformed or does not match;
    - 200 ``EVENT_RECEIVED`` once the exact bytes are committed, whatever they contain.
    """
    state = request.app.state
    secret = state.settings.meta_app_secret
    if secret is None or not secret.get_secret_value():
        log.error("META_APP_SECRET is not set: refusing webhook deliveries")
        metrics.WEBHOOK_REQUESTS.labels("no_secret").inc()
        return PlainTextResponse("app secret is not configured", status_code=503)

    headers = request.headers
    request_id = safe_request_id(headers.get("x-request-id"))
    reads: BodyReads = state.body_reads
    if not reads.try_enter():
        log.warning("too many webhook bodies being read at once: answering 503", extra={"request_id": request_id})
        metrics.WEBHOOK_REQUESTS.labels("busy").inc()
        return PlainTextResponse("receiver busy", status_code=503, headers={"Retry-After": "1"})
    try:
        # asyncio's own timeout: the receiver runs on asyncio (uvicorn), and anyio's cancel
        # scope costs several times more per request
        async with asyncio.timeout(state.settings.webhook_body_timeout_seconds):
            body = await read_body_limited(request, state.settings.webhook_max_body_bytes)
    except BodyTooLarge as exc:
        log.warning("webhook body over limit", extra={"request_id": request_id})
        metrics.WEBHOOK_REQUESTS.labels("too_large").inc()
        state.rejections.record("too_large", _client_ip(request), exc.size, None, request_id)
        return PlainTextResponse("payload too large", status_code=413)
    except TimeoutError:
        log.warning(
            "webhook body not read within %.0f s: answering 408",
            state.settings.webhook_body_timeout_seconds,
            extra={"request_id": request_id},
        )
        metrics.WEBHOOK_REQUESTS.labels("body_timeout").inc()
        return PlainTextResponse("request body timeout", status_code=408, headers={"Connection": "close"})
    except ClientDisconnect:
        # the sender hung up mid-body: nothing to store and no one to answer; one line, no traceback
        log.warning("webhook sender disconnected before the body was complete", extra={"request_id": request_id})
        metrics.WEBHOOK_REQUESTS.labels("client_disconnect").inc()
        return PlainTextResponse("client disconnected", status_code=400)
    finally:
        reads.leave()

    result = verify_with_rotation(  # the previous secret only until META_APP_SECRET_PREVIOUS_UNTIL
        body, headers.get(SIGNATURE_HEADER), secret.get_secret_value(), state.settings.previous_app_secret()
    )
    if result is SignatureResult.VALID_PREVIOUS:
        log.info("webhook signed with the previous app secret (rotation grace period)", extra={"request_id": request_id})
    elif result is not SignatureResult.VALID:
        log.warning("webhook signature %s", result.value, extra={"request_id": request_id, "size": len(body)})
        metrics.WEBHOOK_REQUESTS.labels("bad_signature").inc()
        metrics.SIGNATURE_FAILURES.labels(result.value).inc()
        ip = _client_ip(request)
        state.rejections.record(result.value, ip, len(body), hashlib.sha256(body).hexdigest(), request_id)
        allowed, retry_after = await anyio.to_thread.run_sync(
            state.rate_limiter.hit, state.settings.webhook_bad_signature_limit, "webhook-bad-signature", ip
        )
        if not allowed:  # only unsigned traffic is ever refused for rate reasons
            return PlainTextResponse("too many invalid deliveries", status_code=429, headers={"Retry-After": str(retry_after)})
        return PlainTextResponse("invalid signature", status_code=401)

    webhook = LandedWebhook(body=body, signature_status=result.value, request_id=request_id, received_at=utcnow())
    started = time.perf_counter()
    try:
        row_id = await state.landing.land(webhook)
    except LandingUnavailable as exc:
        log.error("webhook not stored, answering 503 so Meta redelivers: %s", exc, extra={"request_id": request_id})
        metrics.WEBHOOK_REQUESTS.labels("db_unavailable").inc()
        metrics.DATABASE_ERRORS.inc()
        return PlainTextResponse("storage unavailable", status_code=503)
    metrics.LANDING_SECONDS.observe(time.perf_counter() - started)
    metrics.BODY_BYTES.observe(len(body))
    _LANDED.inc()
    if log.isEnabledFor(logging.DEBUG):
        log.debug("webhook landed", extra={"request_id": request_id, "webhook_log_id": row_id, "size": len(body)})
    return Acknowledgement(request_id)
