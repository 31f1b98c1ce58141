"""Onboarding v2 API: tracking codes, auth per organization, the session the page posts,
the code exchange against our Graph emulator, the follow-up job and PARTNER_ADDED."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import JWT_SECRET
from tests.helpers import rows
from wa_webhook.app import create_app
from wa_webhook.db.schema import whatsapp_connections, whatsapp_onboarding
from wa_webhook.settings import Settings


def token_for(org: str, *, secret: str = JWT_SECRET, expires_in: int = 300, sub: str = "user-1", **claims) -> str:
    return jwt.encode({"org_id": org, "sub": sub, "exp": int(time.time()) + expires_in, **claims}, secret, algorithm="HS256")


def auth(org: str = "acme", **kw) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(org, **kw)}"}


@pytest.fixture()
def api(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    settings = settings.model_copy(update={"meta_app_id": "123456", "meta_config_id": "cfg-789"})
    with TestClient(create_app(settings)) as c:
        yield c


def start(api: TestClient, org: str = "acme") -> dict:
    r = api.get("/api/v1/whatsapp/onboarding-url", headers=auth(org))
    assert r.status_code == 200, r.text
    return r.json()


def test_onboarding_url_creates_a_tracking_code_with_a_24h_expiry(api: TestClient, engine: Engine) -> None:
    body = start(api)
    assert body["onboarding_url"].startswith("https://business.facebook.com/messaging/whatsapp/onboard/?app_id=123456&config_id=cfg-789&extras=")
    assert body["fb_login_options"] == {
        "config_id": "cfg-789", "response_type": "code", "override_default_response_type": True,
        "extras": {"setup": {}, "sessionInfoVersion": "3"},
    }
    [row] = rows(engine, whatsapp_onboarding)
    assert str(row.tracking_code) == body["tracking_code"] and row.status == "pending"
    assert timedelta(hours=23, minutes=59) < row.expires_at - row.created_at <= timedelta(hours=24)
    assert row.user_agent and row.ip_address
    coexistence = api.get("/api/v1/whatsapp/onboarding-url?coexistence=true", headers=auth()).json()
    assert coexistence["fb_login_options"]["extras"]["featureType"] == "whatsapp_business_app_onboarding"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {token_for('acme', expires_in=-10)}"},
        {"Authorization": f"Bearer {token_for('acme', secret='forged-secret-of-the-same-length!!')}"},
        {"Authorization": f"Basic {token_for('acme')}"},
    ],
)
def test_every_endpoint_refuses_missing_expired_or_forged_tokens(api: TestClient, headers: dict) -> None:
    code = start(api)["tracking_code"]
    for method, url in (
        ("GET", "/api/v1/whatsapp/onboarding-url"),
        ("POST", f"/api/v1/whatsapp/onboarding/{code}/session"),
        ("GET", f"/api/v1/whatsapp/onboarding/{code}"),
        ("GET", "/api/v1/whatsapp/check-connection"),
        ("DELETE", "/api/v1/whatsapp/connections/00000000-0000-0000-0000-000000000000"),
    ):
        r = api.request(method, url, headers=headers, json={"event": "CANCEL"} if method == "POST" else None)
        assert r.status_code == 401, (method, url, r.status_code)
        assert "eyJ" not in r.text  # never echoes a token


def test_token_without_the_org_claim_is_403(api: TestClient) -> None:
    token = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    assert api.get("/api/v1/whatsapp/onboarding-url", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_one_organization_cannot_read_or_post_another_organizations_onboarding(api: TestClient) -> None:
    code = start(api, "acme")["tracking_code"]
    assert api.get(f"/api/v1/whatsapp/onboarding/{code}", headers=auth("globex")).status_code == 404
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth("globex"), json={"event": "CANCEL"})
    assert r.status_code == 404
    assert api.get(f"/api/v1/whatsapp/onboarding/{code}", headers=auth("acme")).json()["status"] == "pending"


def test_cancel_is_recorded_with_its_step_and_the_code_cannot_be_reused(api: TestClient, engine: Engine) -> None:
    code = start(api)["tracking_code"]
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json={"event": "CANCEL", "current_step": "PHONE_NUMBER_VERIFICATION"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["error"]["step"] == "PHONE_NUMBER_VERIFICATION"
    [row] = rows(engine, whatsapp_onboarding)
    assert (row.status, row.cancel_step, row.signup_event) == ("cancelled", "PHONE_NUMBER_VERIFICATION", "CANCEL")
    again = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json={"event": "FINISH", "code": "c", "waba_id": "1"})
    assert again.status_code == 409 and again.json()["detail"]["code"] == "onboarding_cancelled"


def test_expired_tracking_code_is_410(api: TestClient, engine: Engine) -> None:
    code = start(api)["tracking_code"]
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_onboarding).values(expires_at=sa.func.now() - sa.text("interval '1 minute'")))
    r = api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json={"event": "FINISH", "code": "c", "waba_id": "1"})
    assert r.status_code == 410 and r.json()["detail"]["code"] == "onboarding_expired"
    assert rows(engine, whatsapp_onboarding)[0].status == "expired"


@pytest.mark.parametrize(
    "payload",
    [{"event": "FINISH", "waba_id": "100"}, {"event": "FINISH", "code": "abc"}, {"event": "SOMETHING", "code": "c", "waba_id": "1"}],
)
def test_incomplete_or_unknown_sessions_are_422_and_leave_the_code_usable(api: TestClient, payload: dict) -> None:
    code = start(api)["tracking_code"]
    assert api.post(f"/api/v1/whatsapp/onboarding/{code}/session", headers=auth(), json=payload).status_code == 422
    assert api.get(f"/api/v1/whatsapp/onboarding/{code}", headers=auth()).json()["status"] == "pending"


def test_unknown_tracking_code_is_404(api: TestClient) -> None:
    assert api.get("/api/v1/whatsapp/onboarding/nope", headers=auth()).status_code == 404


def test_check_connection_lists_only_the_callers_connections(api: TestClient, engine: Engine) -> None:
    from tests.helpers import bind_fixture_numbers

    bind_fixture_numbers(engine)
    acme = api.get("/api/v1/whatsapp/check-connection", headers=auth("acme")).json()
    assert [c["waba_id"] for c in acme["connections"]] == ["100000000000001"] and acme["connected"] is False
    assert api.get("/api/v1/whatsapp/check-connection", headers=auth("newcomer")).json() == {"connected": False, "connections": []}
    foreign = rows(engine, whatsapp_connections, whatsapp_connections.c.waba_id == "100000000000002")[0]
    assert api.delete(f"/api/v1/whatsapp/connections/{foreign.id}", headers=auth("acme")).status_code == 404
