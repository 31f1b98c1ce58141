"""Comparison apps for ``bench/receiver.py``, served by uvicorn with the receiver's settings.

- ``bare_app``: a FastAPI app whose POST endpoint answers 200 without reading the body:
  the floor cost of FastAPI + uvicorn on this machine.
- ``receiver_nodb_app``: the real receiver (``wa_webhook.app.create_app``: body read,
  size limit, HMAC check, same route and response) with the landing store replaced by a
  no-op, so the difference to the real receiver is the cost of the database INSERT.
- ``minimal_app``: the MINIMAL DURABLE RECEIVER reference (issue 14): a raw ASGI app (no
  framework) that reads the raw body, checks ``X-Hub-Signature-256`` (HMAC-SHA256 with
  ``META_APP_SECRET``), runs one asyncpg INSERT of the same row into the same table
  ``whatsapp_webhook_logs`` (the receiver's statement ``wa_core.db.landing._PG_INSERT``, the
  same values: received_at UTC, body, SHA-256, size, ``valid``, a random request id, the
  routing WABA id), commits (autocommit) and answers 200. Pool: ``DB_POOL_SIZE`` (default: the receiver's),
  like the receiver, with no reset query on release (one statement per request). No size bound, timeout, metrics or logging: the floor a durable receiver
  cannot go under.

All are factories: ``uvicorn --factory bench.apps:bare_app``.
"""

from __future__ import annotations

import itertools

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/whatsapp/webhook", response_class=PlainTextResponse)
    async def webhook() -> PlainTextResponse:
        return PlainTextResponse("EVENT_RECEIVED", status_code=200)

    return app


class _NoopLanding:
    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def land(self, webhook) -> int:  # noqa: ANN001
        webhook.body_sha256  # noqa: B018 - same hashing work as the real store
        return next(self._ids)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def receiver_nodb_app() -> FastAPI:
    import wa_webhook.app as app_module

    app_module.create_landing_store = lambda settings: _NoopLanding()  # this process only
    return app_module.create_app()


def minimal_app():
    """The minimal durable receiver (see the module docstring); a raw ASGI callable.

    Any path: GET answers 200 ``ok`` (readiness), POST lands the body when signed correctly
    (200 ``EVENT_RECEIVED``), else 401. Reads ``DATABASE_URL``, ``META_APP_SECRET`` and
    ``DB_POOL_SIZE`` from the environment.
    """
    import hashlib
    import hmac
    import os
    import uuid
    from datetime import datetime, timezone

    import asyncpg

    from wa_core.db.landing import _PG_INSERT
    from wa_core.routing import routing_waba_id

    dsn = "postgresql://" + os.environ["DATABASE_URL"].split("://", 1)[1]
    key = os.environ["META_APP_SECRET"].encode()
    from wa_core.settings import Settings

    # the receiver's pool size, so both hold as many connections
    pool_size = int(os.environ.get("DB_POOL_SIZE", Settings.model_fields["db_pool_size"].default))
    state: dict = {}

    async def _no_reset(conn) -> None:  # noqa: ANN001 - one statement per request, not two
        return None

    async def send_text(send, status: int, text: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["pool"] = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, timeout=5, command_timeout=5,
                                                              reset=_no_reset)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["pool"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] != "POST":
            return await send_text(send, 200, b"ok")
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        header = b""
        for name, value in scope["headers"]:
            if name == b"x-hub-signature-256":
                header = value
        expected = b"sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(header.lower(), expected):
            return await send_text(send, 401, b"invalid signature")
        now = datetime.now(timezone.utc)
        async with state["pool"].acquire() as conn:
            await conn.fetchval(_PG_INSERT, now, body, hashlib.sha256(body).hexdigest(), len(body), "valid",
                                uuid.uuid4().hex, routing_waba_id(body))
        await send_text(send, 200, b"EVENT_RECEIVED")

    return app
