"""Rate limits: atomic in the real Redis, in-process when Redis is down, and never a cost to a
correctly signed delivery."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, fixture_bytes
from tests.webhook.test_onboarding import auth
from wa_webhook.app import create_app
from wa_core.ratelimit import RateLimiter
from wa_core.meta.signature import sign
from wa_core.settings import Settings

REDIS = "redis://127.0.0.1:6379/0"
URL = "/api/v1/whatsapp/webhook"


def test_the_limit_is_atomic_under_concurrency_in_redis() -> None:
    limiter = RateLimiter(REDIS, prefix=f"wa-test-{uuid.uuid4().hex[:8]}")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: limiter.hit("25/minute", "concurrency"), range(80)))
    assert sum(allowed for allowed, _ in results) == 25
    assert all(0 < retry <= 60 for allowed, retry in results if not allowed)
    # a second limiter (another worker process) shares the same counters
    other = RateLimiter(REDIS, prefix=limiter._prefix)
    allowed, _ = other.hit("25/minute", "concurrency")
    assert allowed is False


def test_redis_down_falls_back_to_an_in_process_limit_with_a_warning(caplog) -> None:
    import logging

    limiter = RateLimiter("redis://127.0.0.1:1/0", prefix="down")
    with caplog.at_level(logging.WARNING, logger="wa_core.ratelimit"):
        results = [limiter.hit("5/minute", "k")[0] for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert "Redis unavailable" in caplog.text


def test_api_limits_per_organization_and_per_ip_answer_429_with_retry_after(settings: Settings, engine: Engine) -> None:
    s = settings.model_copy(update={"redis_url": REDIS, "api_org_limit": "4/minute", "api_ip_limit": "10/minute"})
    with TestClient(create_app(s)) as c:
        codes = [c.get("/api/v1/whatsapp/check-connection", headers=auth("acme")).status_code for _ in range(6)]
        assert codes == [200] * 4 + [429] * 2
        r = c.get("/api/v1/whatsapp/check-connection", headers=auth("acme"))
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
        others = [c.get("/api/v1/whatsapp/check-connection", headers=auth("globex")).status_code for _ in range(5)]
        assert others[:3] == [200] * 3 and 429 in others  # globex has its own share, until the IP limit (10) bites


def test_concurrent_api_calls_never_exceed_the_org_limit(settings: Settings, engine: Engine) -> None:
    s = settings.model_copy(update={"redis_url": REDIS, "api_org_limit": "7/minute"})
    with TestClient(create_app(s)) as c:
        headers = auth("acme")
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: c.get("/api/v1/whatsapp/check-connection", headers=headers).status_code, range(20)))
    assert codes.count(200) == 7 and codes.count(429) == 13


def test_bad_signatures_are_limited_per_ip_but_signed_deliveries_never_are(settings: Settings, engine: Engine) -> None:
    s = settings.model_copy(update={"redis_url": REDIS, "webhook_bad_signature_limit": "3/minute"})
    body = fixture_bytes("messages_text.json")
    with TestClient(create_app(s)) as c:
        bad = [c.post(URL, content=body, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64}).status_code for _ in range(5)]
        assert bad == [401, 401, 401, 429, 429]
        good = [c.post(URL, content=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)}).status_code for _ in range(10)]
        assert good == [200] * 10


def test_cors_allows_only_configured_origins(settings: Settings, engine: Engine) -> None:
    s = settings.model_copy(update={"cors_allowed_origins": "https://app.example.com"})
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    with TestClient(create_app(s)) as c:
        ok = c.options("/api/v1/whatsapp/check-connection", headers={"Origin": "https://app.example.com", **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example.com"
        evil = c.options("/api/v1/whatsapp/check-connection", headers={"Origin": "https://evil.example.net", **preflight})
        assert "access-control-allow-origin" not in evil.headers
    with TestClient(create_app(settings)) as c:  # default: no browser origin at all
        r = c.options("/api/v1/whatsapp/check-connection", headers={"Origin": "https://app.example.com", **preflight})
        assert "access-control-allow-origin" not in r.headers
