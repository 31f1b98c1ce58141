"""Rejected deliveries: recorded with time, IP, reason, size and body hash, never the body;
bounded per minute; a rate alert; their own retention; the happy path records nothing."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET
from tests.explorer import corpus as c
from tests.helpers import rows
from tests.webhook.test_admin_status import ADMIN, AUTH
from tests.webhook.test_receiver_edges import wait_until
from wa_core.db.schema import ops_alerts, utcnow
from wa_core.db.schema_explorer import whatsapp_webhook_rejections as rejections
from wa_core.explorer.rejections import purge_rejections
from wa_core.meta.signature import sign
from wa_core.settings import Settings
from wa_webhook.app import create_app

PATH = "/api/v1/whatsapp/webhook"


def _recorded(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(rejections.c.count), 0))).scalar_one())


def test_rejections_are_recorded_without_bodies_and_listed(settings: Settings, engine: Engine) -> None:
    assert "body" not in rejections.c  # there is nowhere to put one
    body = c.inbound("wamid.SECRET_TEXT", 1767225600)
    s = settings.model_copy(update={"admin_api_token": SecretStr(ADMIN), "webhook_max_body_bytes": 3 * 1024 * 1024})
    with TestClient(create_app(s)) as client:
        good = client.post(PATH, content=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET), "X-Request-Id": "good-1"})
        assert good.status_code == 200
        assert client.post(PATH, content=body, headers={"X-Hub-Signature-256": sign(body, "wrong"), "X-Request-Id": "bad-1"}).status_code == 401
        assert client.post(PATH, content=body).status_code == 401
        assert client.post(PATH, content=body, headers={"X-Hub-Signature-256": "nonsense"}).status_code == 401
        assert client.post(PATH, content=b"x" * (3 * 1024 * 1024 + 1), headers={"X-Hub-Signature-256": "sha256=00"}).status_code == 413
        wait_until(lambda: _recorded(engine) == 4, "the four rejections are written")
        listed = client.get("/api/admin/whatsapp/rejected-webhooks", headers=AUTH).json()
    assert listed["counts"] == {"mismatch": 1, "missing": 1, "malformed": 1, "too_large": 1}
    by_reason = {r["reason"]: r for r in listed["rejections"]}
    mismatch = by_reason["mismatch"]
    assert mismatch["body_sha256"] == hashlib.sha256(body).hexdigest() and mismatch["body_size"] == len(body)
    assert mismatch["request_id"] == "bad-1" and mismatch["ip"] and mismatch["count"] == 1
    assert by_reason["too_large"]["body_sha256"] is None and by_reason["too_large"]["body_size"] > 3 * 1024 * 1024
    assert "SECRET_TEXT" not in str(listed)
    assert all(r.request_id != "good-1" for r in rows(engine, rejections))  # the accepted delivery is not one


def test_past_the_cap_rejections_are_counted_in_aggregate_and_alerted(settings: Settings, engine: Engine) -> None:
    s = settings.model_copy(update={"webhook_rejections_recorded_per_minute": 3, "webhook_rejection_alert_per_minute": 6})
    with TestClient(create_app(s)) as client:
        for n in range(10):
            assert client.post(PATH, content=b'{"n": %d}' % n, headers={"X-Hub-Signature-256": sign(b"x", APP_SECRET)}).status_code == 401
        wait_until(lambda: _recorded(engine) == 10, "every rejection is counted")
    stored = rows(engine, rejections)
    # the first three one by one (the minute may turn during the test: then a new minute starts)
    assert sum(1 for r in stored if r.count == 1 and r.ip) >= 3
    aggregates = [r for r in stored if r.ip is None]
    assert aggregates and all(r.body_sha256 is None for r in aggregates) and len(stored) <= 3 + 3 + len(aggregates)
    [alert] = [a for a in rows(engine, ops_alerts) if a.kind == "webhook_rejections"]
    assert alert.occurrences >= 1 and "META_APP_SECRET" in alert.summary


def test_rejections_have_their_own_retention(engine: Engine) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(rejections), [
            {"received_at": now - timedelta(days=20), "reason": "mismatch", "count": 1},
            {"received_at": now - timedelta(days=1), "reason": "mismatch", "count": 1},
        ])
        assert purge_rejections(conn, 14, now=now) == 1
    assert [r.received_at > now - timedelta(days=2) for r in rows(engine, rejections)] == [True]
