"""Comparison apps for ``bench/receiver.py``, served by uvicorn with the receiver's settings.

- ``bare_app``: a FastAPI app whose POST endpoint answers 200 without reading the body:
  the floor cost of FastAPI + uvicorn on this machine.
- ``receiver_nodb_app``: the real receiver (``wa_webhook.app.create_app``: body read,
  size limit, HMAC check, same route and response) with the landing store replaced by a
  no-op, so the difference to the real receiver is the cost of the database INSERT.

Both are factories: ``uvicorn --factory bench.apps:bare_app``.
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
