"""Deliveries go straight to the webhook endpoint (``ReceiverApp``), and the landing pool's
cheaper wait and reset: the same answers and rows as through the full FastAPI stack, CORS
still answered, the route still in the OpenAPI schema, a full pool still a bounded 503."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET
from tests.helpers import rows
from tests.webhook.test_receiver import URL, count, post
from wa_core.db.landing import LANDING_BATCH_ROWS, LandedWebhook, LandingUnavailable, PostgresLandingStore
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
    """The only pooled connection is stuck in an insert (the table is locked): the landing
    queued behind it waits at most ``DB_TIMEOUT_SECONDS`` (then 503), the stuck one fails by
    the command timeout, and once the lock goes the store serves again with its slot back."""
    store = PostgresLandingStore(settings.model_copy(update={"db_pool_size": 1, "db_timeout_seconds": 0.5, "landing_notify": False}))
    webhook = LandedWebhook(body=b"{}", signature_status="valid", request_id="r1", received_at=utcnow())

    async def scenario() -> None:
        import asyncpg

        await store.ping()  # creates the pool
        locker = await asyncpg.connect(settings.asyncpg_dsn)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE whatsapp_webhook_logs IN ACCESS EXCLUSIVE MODE")
                stuck = asyncio.create_task(store.land(webhook))
                while store._commits.free:  # the stuck landing holds the only slot
                    await asyncio.sleep(0.01)
                with pytest.raises(LandingUnavailable, match="TimeoutError"):
                    await store.land(webhook)  # in line behind it
                with pytest.raises(LandingUnavailable):
                    await stuck
        finally:
            await locker.close()
        assert store._commits.free == 1  # the failed landings gave their slot back
        assert await store.land(webhook) > 0  # the connection went back and serves again
        assert await store.land(webhook) > 0  # and again, after the (no-op) reset
        assert store._commits.free == 1
        await store.close()

    asyncio.run(scenario())
    assert count(engine) == 2


def _webhook(i: int, request_id: str | None = None) -> LandedWebhook:
    body = b'{"object":"whatsapp_business_account","entry":[{"id":"%d","changes":[]}]}' % (1000 + i)
    return LandedWebhook(body=body, signature_status="valid", request_id=request_id or f"gc-{i}", received_at=utcnow())


def test_concurrent_landings_share_commits_and_each_gets_its_own_row(settings: Settings, engine: Engine) -> None:
    """200 landings at once over 2 connections: they are written in batches of more than one
    row, every landing's id is the row holding its own body, and every body is stored once."""
    store = PostgresLandingStore(settings.model_copy(update={"db_pool_size": 2, "landing_notify": False}))
    before = LANDING_BATCH_ROWS.collect()[0].samples

    async def scenario() -> list[int]:
        await store.ping()
        try:
            return await asyncio.gather(*(store.land(_webhook(i)) for i in range(200)))
        finally:
            await store.close()

    ids = asyncio.run(scenario())
    stored = {r.id: (r.request_id, bytes(r.body), r.waba_id, r.body_size) for r in rows(engine, whatsapp_webhook_logs)}
    assert len(stored) == 200 and len(set(ids)) == 200
    for i, row_id in enumerate(ids):
        webhook = _webhook(i)
        assert stored[row_id] == (f"gc-{i}", webhook.body, str(1000 + i), len(webhook.body))
    commits = _sample(LANDING_BATCH_ROWS, "_count") - _sample_of(before, "_count")
    assert 0 < commits < 200  # fewer commits than rows: they were grouped


def test_a_row_postgres_refuses_fails_alone_and_its_batch_mates_land(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """One row of a batch breaks a column bound (a 65-character request id): the batch is split,
    that landing alone fails (503), the others are stored."""
    store = PostgresLandingStore(settings.model_copy(update={"db_pool_size": 1, "landing_notify": False}))

    async def scenario() -> list:
        await store.ping()
        try:
            return await asyncio.gather(
                *(store.land(_webhook(i, "x" * 65 if i == 5 else None)) for i in range(12)), return_exceptions=True
            )
        finally:
            await store.close()

    with caplog.at_level(logging.WARNING, logger="wa_core.db.landing"):
        results = asyncio.run(scenario())
    assert "a landing batch of 11 rows was refused (StringDataRightTruncationError)" in caplog.text
    assert isinstance(results[5], LandingUnavailable) and "StringDataRightTruncation" in str(results[5])
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 5)
    assert sorted(r.request_id for r in rows(engine, whatsapp_webhook_logs)) == sorted(f"gc-{i}" for i in range(12) if i != 5)


def _sample_of(samples, suffix: str) -> float:
    return next(s.value for s in samples if s.name.endswith(suffix))


def _sample(metric, suffix: str) -> float:
    return _sample_of(metric.collect()[0].samples, suffix)


def test_a_batch_whose_insert_returns_fewer_rows_answers_no_landing_with_another_row(settings: Settings, engine: Engine) -> None:
    """A trigger that silently skips one row of a batch (``RETURNING`` then has one id fewer):
    no landing may be answered with another row's id (a 200 for a body not stored), and none
    may wait for good. Here the whole batch fails (503, Meta redelivers)."""
    store = PostgresLandingStore(settings.model_copy(update={"db_pool_size": 1, "landing_notify": False}))
    skip = "CREATE FUNCTION h_skip_gc5() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.request_id = 'gc-5' THEN RETURN NULL; END IF; RETURN NEW; END $$"

    async def scenario() -> list:
        import asyncpg

        admin = await asyncpg.connect(settings.asyncpg_dsn)
        await admin.execute(skip)
        await admin.execute("CREATE TRIGGER h_skip_gc5 BEFORE INSERT ON whatsapp_webhook_logs FOR EACH ROW EXECUTE FUNCTION h_skip_gc5()")
        try:
            await store.ping()
            return await asyncio.wait_for(asyncio.gather(*(store.land(_webhook(i)) for i in range(12)), return_exceptions=True), 5)
        finally:
            await admin.execute("DROP TRIGGER h_skip_gc5 ON whatsapp_webhook_logs; DROP FUNCTION h_skip_gc5()")
            await admin.close()
            await store.close()

    results = asyncio.run(scenario())
    stored = {r.id: r.request_id for r in rows(engine, whatsapp_webhook_logs)}
    assert "gc-5" not in stored.values()
    assert not isinstance(results[5], int)
    for i, result in enumerate(results):
        assert isinstance(result, LandingUnavailable) or stored.get(result) == f"gc-{i}", (i, result)
