"""One Meta delivery (``POST /api/v1/whatsapp/webhook``), from raw ASGI messages to its answer.

The path does exactly four things, in this order: bound the body size while reading, verify
``X-Hub-Signature-256`` over the raw bytes, insert and commit the bytes, answer 200. Everything
else (parsing, routing, business logic) happens later in Dagster, so that a delivery is
acknowledged only once it is durable and never because it was understood.

It works on the ASGI scope and messages directly (one pass over the headers, no request or
response objects): :class:`~wa_webhook.app.ReceiverApp` hands every delivery here, and the
FastAPI route (:func:`wa_webhook.routes.webhook.receive_webhook`, which the OpenAPI schema
documents and any request the fast dispatch does not take goes through) calls the same
:func:`handle_delivery`. Measured against the minimal durable receiver (``bench/receiver.py``,
``docs/benchmarks.md``), the framework's request, header and response objects were a good part
of what the receiver cost beyond the work itself.

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
from typing import Any, NamedTuple

import anyio
from starlette.types import Receive, Scope, Send

from wa_core.db.landing import LandedWebhook, LandingUnavailable
from wa_core.db.schema import utcnow
from wa_core.meta.signature import SIGNATURE_HEADER, SignatureResult, verify_with_rotation
from wa_webhook import metrics
from wa_webhook.http_guard import BODY_BOUND_SCOPE_KEY, BODY_TIMED_OUT_SCOPE_KEY

log = logging.getLogger("wa_webhook.webhook")

#: the outcome counter of the hot path, bound once (``labels()`` costs a lock and a lookup)
_LANDED = metrics.WEBHOOK_REQUESTS.labels("landed")
_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")
_SIGNATURE = SIGNATURE_HEADER.lower().encode("ascii")  # ASGI header names are lower-case bytes
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


class Answer(NamedTuple):
    """What a delivery is answered: HTTP ``status``, plain-text ``text`` and extra ``headers``
    (lower-case names, latin-1 values, as in ASGI)."""

    status: int
    text: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


#: the answer to a body not read within WEBHOOK_BODY_TIMEOUT_SECONDS (by the route or the server)
_BODY_TIMEOUT = Answer(408, b"request body timeout", ((b"connection", b"close"),))


class DeliveryHeaders(NamedTuple):
    """The request headers a delivery reads, from one pass over the ASGI header list (raw
    bytes; ``None`` when absent). ``origin`` tells a browser's request (CORS) from Meta's."""

    signature: bytes | None
    request_id: bytes | None
    content_length: bytes | None
    origin: bool


def scan_headers(scope: Scope) -> DeliveryHeaders:
    """The :class:`DeliveryHeaders` of ``scope`` (the first value of each header)."""
    signature = request_id = content_length = None
    origin = False
    for name, value in scope["headers"]:
        if name == _SIGNATURE:
            if signature is None:
                signature = value
        elif name == b"content-length":
            if content_length is None:
                content_length = value
        elif name == b"x-request-id":
            if request_id is None:
                request_id = value
        elif name == b"origin":
            origin = True
    return DeliveryHeaders(signature, request_id, content_length, origin)


class BodyTooLarge(Exception):
    """The request body went past ``WEBHOOK_MAX_BODY_BYTES`` while being read; ``size``: the
    declared ``Content-Length`` or the bytes read when it was refused."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class ClientGone(Exception):
    """The sender hung up (``http.disconnect``) before its body was complete."""


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


async def read_body_limited(receive: Receive, content_length: bytes | None, limit: int) -> bytes:
    """Read the raw request body from ASGI ``receive``, raising :class:`BodyTooLarge` as soon as
    it passes ``limit`` bytes (a declared ``content_length`` over the limit is refused before
    reading anything) and :class:`ClientGone` when the sender hangs up first."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise BodyTooLarge(int(content_length))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def safe_request_id(header: bytes | None) -> bytes:
    """The caller's ``X-Request-Id`` when it is a short token (≤ 64 of ``[A-Za-z0-9._:-]``),
    else a new random id (32 hex digits); ASCII bytes. A header must never be the reason a
    delivery cannot be stored."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return os.urandom(16).hex().encode("ascii")


class DeliveryContext:
    """What :func:`handle_delivery` needs from the app, gathered once at start-up (the app's
    ``state.delivery``): the settings, the landing store, the body slots, the rejection recorder
    and the rate limiter, with the app secret already as bytes (``None`` when unset)."""

    __slots__ = ("settings", "landing", "body_reads", "rejections", "rate_limiter", "secret", "max_body_bytes")

    def __init__(self, settings: Any, landing: Any, body_reads: BodyReads, rejections: Any, rate_limiter: Any) -> None:  # noqa: D107
        self.settings = settings
        self.landing = landing
        self.body_reads = body_reads
        self.rejections = rejections
        self.rate_limiter = rate_limiter
        secret = settings.meta_app_secret
        self.secret = secret.get_secret_value().encode() if secret is not None and secret.get_secret_value() else None
        self.max_body_bytes = settings.webhook_max_body_bytes


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def handle_delivery(scope: Scope, receive: Receive, ctx: DeliveryContext, headers: DeliveryHeaders | None = None) -> Answer:
    """Land one Meta event notification durably and say what to answer (``ctx``: the app's
    ``state.delivery``; ``headers``: :func:`scan_headers` of ``scope`` when the caller has it).

    - 503 when ``META_APP_SECRET`` is not configured (never accept unsigned deliveries),
      or when the database cannot take the row (Meta redelivers);
    - 413 when the body passes ``WEBHOOK_MAX_BODY_BYTES`` (checked while reading);
    - 408 when the body is not read within ``WEBHOOK_BODY_TIMEOUT_SECONDS`` (a slow client;
      bounded by the server's protocol under ``wa-onboarding serve``, see
      :mod:`wa_webhook.http_guard`, else here), 503 at once when
      ``WEBHOOK_MAX_CONCURRENT_BODIES`` bodies are already being read, and one log line plus
      the ``client_disconnect`` metric when the sender hangs up mid-body;
    - 401 when ``X-Hub-Signature-256`` is missing, malformed or does not match, 429 instead
      once one IP sends more of those than ``WEBHOOK_BAD_SIGNATURE_LIMIT``;
    - 200 ``EVENT_RECEIVED`` (with ``X-Request-Id``) once the exact bytes are committed,
      whatever they contain.
    """
    settings = ctx.settings
    secret = ctx.secret
    if secret is None:
        log.error("META_APP_SECRET is not set: refusing webhook deliveries")
        metrics.WEBHOOK_REQUESTS.labels("no_secret").inc()
        return Answer(503, b"app secret is not configured")

    if headers is None:
        headers = scan_headers(scope)
    request_id = safe_request_id(headers.request_id)  # bytes, for the answer's header
    request_id_text = request_id.decode("ascii")  # for the row and the logs
    reads = ctx.body_reads
    if not reads.try_enter():
        log.warning("too many webhook bodies being read at once: answering 503", extra={"request_id": request_id_text})
        metrics.WEBHOOK_REQUESTS.labels("busy").inc()
        return Answer(503, b"receiver busy", ((b"retry-after", b"1"),))
    try:
        if BODY_BOUND_SCOPE_KEY in scope:  # served by wa-onboarding serve: the server bounds the body
            body = await read_body_limited(receive, headers.content_length, ctx.max_body_bytes)
        else:  # any other server: asyncio's own timeout (anyio's cancel scope costs several times more)
            async with asyncio.timeout(settings.webhook_body_timeout_seconds):
                body = await read_body_limited(receive, headers.content_length, ctx.max_body_bytes)
    except BodyTooLarge as exc:
        log.warning("webhook body over limit", extra={"request_id": request_id_text})
        metrics.WEBHOOK_REQUESTS.labels("too_large").inc()
        ctx.rejections.record("too_large", _client_ip(scope), exc.size, None, request_id_text)
        return Answer(413, b"payload too large")
    except TimeoutError:
        log.warning(
            "webhook body not read within %.0f s: answering 408",
            settings.webhook_body_timeout_seconds,
            extra={"request_id": request_id_text},
        )
        metrics.WEBHOOK_REQUESTS.labels("body_timeout").inc()
        return _BODY_TIMEOUT
    except ClientGone:
        if scope.get(BODY_TIMED_OUT_SCOPE_KEY):  # the server's body bound passed: it logged and answered 408
            metrics.WEBHOOK_REQUESTS.labels("body_timeout").inc()
            return _BODY_TIMEOUT
        # the sender hung up mid-body: nothing to store and no one to answer; one line, no traceback
        log.warning("webhook sender disconnected before the body was complete", extra={"request_id": request_id_text})
        metrics.WEBHOOK_REQUESTS.labels("client_disconnect").inc()
        return Answer(400, b"client disconnected")
    finally:
        reads.leave()

    result = verify_with_rotation(  # the previous secret only until META_APP_SECRET_PREVIOUS_UNTIL
        body, headers.signature, secret, settings.previous_app_secret()
    )
    if result is not SignatureResult.VALID:
        if result is SignatureResult.VALID_PREVIOUS:
            log.info("webhook signed with the previous app secret (rotation grace period)", extra={"request_id": request_id_text})
        else:
            return await _refuse_signature(scope, ctx, body, result, request_id_text)

    webhook = LandedWebhook(body=body, signature_status=result.value, request_id=request_id_text, received_at=utcnow())
    started = time.perf_counter()
    try:
        row_id = await ctx.landing.land(webhook)
    except LandingUnavailable as exc:
        log.error("webhook not stored, answering 503 so Meta redelivers: %s", exc, extra={"request_id": request_id_text})
        metrics.WEBHOOK_REQUESTS.labels("db_unavailable").inc()
        metrics.DATABASE_ERRORS.inc()
        return Answer(503, b"storage unavailable")
    metrics.LANDING_SECONDS.observe(time.perf_counter() - started)
    metrics.BODY_BYTES.observe(len(body))
    _LANDED.inc()
    if log.isEnabledFor(logging.DEBUG):
        log.debug("webhook landed", extra={"request_id": request_id_text, "webhook_log_id": row_id, "size": len(body)})
    return Answer(200, b"EVENT_RECEIVED", ((b"x-request-id", request_id),))


async def _refuse_signature(scope: Scope, ctx: DeliveryContext, body: bytes, result: SignatureResult, request_id: str) -> Answer:
    """401 for a missing, malformed or mismatched signature, recorded for the explorer; 429
    once the sending IP passes ``WEBHOOK_BAD_SIGNATURE_LIMIT`` (only unsigned traffic is ever
    refused for rate reasons)."""
    log.warning("webhook signature %s", result.value, extra={"request_id": request_id, "size": len(body)})
    metrics.WEBHOOK_REQUESTS.labels("bad_signature").inc()
    metrics.SIGNATURE_FAILURES.labels(result.value).inc()
    ip = _client_ip(scope)
    ctx.rejections.record(result.value, ip, len(body), hashlib.sha256(body).hexdigest(), request_id)
    allowed, retry_after = await anyio.to_thread.run_sync(
        ctx.rate_limiter.hit, ctx.settings.webhook_bad_signature_limit, "webhook-bad-signature", ip
    )
    if not allowed:
        return Answer(429, b"too many invalid deliveries", ((b"retry-after", str(retry_after).encode()),))
    return Answer(401, b"invalid signature")


async def send_answer(send: Send, answer: Answer) -> None:
    """Send ``answer`` as an ASGI response (plain text, its length, its headers)."""
    head = [(b"content-length", str(len(answer.text)).encode()), _TEXT_PLAIN, *answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": head})
    await send({"type": "http.response.body", "body": answer.text})
