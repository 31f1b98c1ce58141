"""Deliveries go straight to the webhook endpoint (``ReceiverApp``), and the landing pool's
cheaper wait and reset: the same answers and rows as through the full FastAPI stack, CORS
still answered, the route still in the OpenAPI schema, a full pool still a bounded 503."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET
from tests.helpers import rows
from tests.webhook.test_receiver import URL, count, post
from wa_core.db.landing import LandedWebhook, LandingUnavailable, PostgresLandingStore
from wa_core.db.schema import utcnow, whatsapp_webhook_logs
from wa_core.meta.signature import sign
from wa_core.settings import Settings
from wa_webhook.app import create_app


def test_the_direct_path_and_the_full_stack_answer_and_land_alike(settings: Settings, engine: Engine) -> None:
    app = create_app(settings.model_copy(update={"cors_allowed_origins": "https://app.example"}))
    body = b'{"object":"whatsapp_business_account","entry":[{"id":"123","changes":[]}]}'
    with TestClient(app) as client:
        direct = post(client, body, sign(body, APP_SECRET), **{"X-Request-Id": "direct-1"})
        # an Origin header takes the full stack, so the CORS middleware can answer it
        full = post(client, body, sign(body, APP_SECRET), **{"X-Request-Id": "full-1", "Origin": "https://app.example"})
        bad = post(client, body, sign(body, "wrong"), Origin="https://app.example")
    assert (direct.status_code, direct.text, direct.headers["x-request-id"]) == (200, "EVENT_RECEIVED", "direct-1")
    assert (full.status_code, full.text, full.headers["x-request-id"]) == (200, "EVENT_RECEIVED", "full-1")
    assert direct.headers["content-type"] == full.headers["content-type"] == "text/plain; charset=utf-8"
    assert full.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in direct.headers
    assert bad.status_code == 401
    landed = sorted((r.request_id, bytes(r.body), r.waba_id, r.signature_status) for r in rows(engine, whatsapp_webhook_logs))
    assert landed == [("direct-1", body, "123", "valid"), ("full-1", body, "123", "valid")]


def test_the_webhook_post_stays_in_the_openapi_schema(settings: Settings, engine: Engine) -> None:
    paths = create_app(settings).openapi()["paths"]  # /openapi.json itself is off by default (API_DOCS)
    assert {"get", "post"} <= set(paths[URL])


def test_a_full_landing_pool_answers_landing_unavailable_within_the_db_timeout(settings: Settings, engine: Engine) -> None:
    """Every pooled connection is taken: the next landing waits at most ``DB_TIMEOUT_SECONDS``
    for one (then 503), and once it goes back the pool serves again; the
    slots it hands out come back."""
    store = PostgresLandingStore(settings.model_copy(update={"db_pool_size": 1, "db_timeout_seconds": 0.3, "landing_notify": False}))
    webhook = LandedWebhook(body=b"{}", signature_status="valid", request_id="r1", received_at=utcnow())

    async def scenario() -> None:
        await store.ping()  # creates the pool
        assert store._gate.free == 1
        await store._gate.enter()  # the only connection, taken as a landing stuck in its insert takes it
        held = await store._pool.acquire()
        try:
            with pytest.raises(LandingUnavailable, match="TimeoutError"):
                await store.land(webhook)
        finally:
            await store._pool.release(held)
            store._gate.leave()
        assert store._gate.free == 1  # a failed landing gave nothing back it had not taken
        assert await store.land(webhook) > 0  # the connection went back and serves again
        assert await store.land(webhook) > 0  # and again, after the (no-op) reset
        assert store._gate.free == 1
        await store.close()

    asyncio.run(scenario())
    assert count(engine) == 2
