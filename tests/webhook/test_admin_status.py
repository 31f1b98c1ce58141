"""Admin API: who may call it (every route), and ``GET /api/admin/whatsapp/status``: snapshot
sections (materialised, or null with a hint), live sections, the organization filter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import jwt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.conftest import fixture_bytes
from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_WABA, bind_fixture_numbers, land, rows
from tests.webhook.test_onboarding import token_for
from wa_core.reporting.onboarding_timeline import compute_onboarding_timeline
from wa_core.reporting.org_status import compute_org_status
from wa_core.reporting.tokens import compute_token_health
from wa_core.reporting.snapshots import save_snapshot
from wa_webhook.app import create_app
from wa_core.bindings import ensure_organization
from wa_core.db.schema import utcnow, whatsapp_configs, whatsapp_connections, whatsapp_webhook_logs
from wa_core.settings import Settings

ADMIN = "admin-secret-for-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
STATUS = "/api/admin/whatsapp/status"
FRESH_WABA = "100000000000055"


@pytest.fixture()
def orgs(engine: Engine) -> dict[str, uuid.UUID]:
    """Acme (coexistence number, awaiting confirmation) and Globex (active), and Initech with nothing."""
    ids = bind_fixture_numbers(engine)
    with engine.begin() as conn:
        ids["initech"] = ensure_organization(conn, "initech", "Initech")
    return ids


@pytest.fixture()
def admin(settings: Settings, orgs) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"admin_api_token": SecretStr(ADMIN)}))) as c:
        yield c


def dead(engine: Engine, body: bytes, status: str = "dead", error_kind: str = "handler_error") -> int:
    """A landed webhook put straight into ``status`` (as processing would leave it)."""
    row_id = land(engine, body)
    with engine.begin() as conn:
        conn.execute(
            sa.update(whatsapp_webhook_logs)
            .where(whatsapp_webhook_logs.c.id == row_id)
            .values(status=status, error_kind=error_kind, attempts=5, last_error="boom",
                    next_attempt_at=utcnow() + timedelta(minutes=5) if status == "failed" else None)
        )
    return row_id


def snapshot(engine: Engine, asset_key: str, computed_at: datetime, rows: list[dict], totals: dict | None = None) -> None:
    payload = {"computed_at": computed_at.isoformat(), "totals": totals or {"rows": len(rows)}, "rows": rows}
    with engine.begin() as conn:
        save_snapshot(conn, asset_key, payload, "run-1234")


# --- who may call the admin API ---------------------------------------------------------------
ENDPOINTS = {
    "status": ("GET", STATUS, None),
    "failed-webhooks": ("GET", "/api/admin/whatsapp/failed-webhooks", None),
    "replay": ("POST", "/api/admin/whatsapp/webhooks/replay", {"ids": [1], "dry_run": True}),
    "assign": ("POST", f"/api/admin/whatsapp/wabas/{FRESH_WABA}/assign", {"organization": "initech"}),
}
CREDENTIALS = {
    "none": (lambda: {}, 401),
    "not bearer": (lambda: {"Authorization": f"Basic {ADMIN}"}, 401),
    "organization JWT": (lambda: {"Authorization": f"Bearer {token_for('acme')}"}, 403),
    "expired JWT": (lambda: {"Authorization": f"Bearer {token_for('acme', expires_in=-60)}"}, 403),
    "another organization's JWT": (lambda: {"Authorization": f"Bearer {token_for('globex')}"}, 403),
    "wrong admin token": (lambda: {"Authorization": f"Bearer {ADMIN}x"}, 403),
    # a JWT claiming admin rights, signed with a key that is not ours, and one with alg "none"
    "forged JWT signature": (
        lambda: {"Authorization": "Bearer " + jwt.encode({"org_id": "acme", "admin": True, "exp": 4102444800}, "not-our-secret")},
        403,
    ),
    "unsigned JWT (alg none)": (
        lambda: {"Authorization": "Bearer " + jwt.encode({"org_id": "acme", "admin": True}, None, algorithm="none")},
        403,
    ),
    "admin token": (lambda: AUTH, 200),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("credential", CREDENTIALS)
def test_every_admin_endpoint_needs_the_admin_token(admin: TestClient, engine: Engine, endpoint: str, credential: str) -> None:
    method, url, body = ENDPOINTS[endpoint]
    headers, expected = CREDENTIALS[credential]
    sent = headers()
    r = admin.request(method, url, headers=sent, json=body)
    assert r.status_code == expected, (endpoint, credential, r.status_code, r.text)
    token = sent.get("Authorization", " ").split(" ", 1)[1]
    assert not token or token not in r.text  # never echoes what it was given
    if expected != 200:  # refused before anything was read or changed
        assert rows(engine, whatsapp_connections, whatsapp_connections.c.waba_id == FRESH_WABA) == []


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_admin_api_is_disabled_without_a_configured_token(settings: Settings, engine: Engine, endpoint: str) -> None:
    method, url, body = ENDPOINTS[endpoint]
    with TestClient(create_app(settings.model_copy(update={"admin_api_token": None}))) as c:
        assert c.request(method, url, headers=AUTH, json=body).status_code == 503


# --- status: materialised sections ------------------------------------------------------------
def test_status_without_snapshots_says_null_and_how_to_get_them(admin: TestClient) -> None:
    body = admin.get(STATUS, headers=AUTH).json()
    assert body["organization"] is None
    for section, key in (("status", "org_whatsapp_status"), ("timeline", "onboarding_timeline"), ("token_health", "token_health")):
        part = body[section]
        assert part["source"] == "materialised" and part["asset_key"] == key
        assert part["materialised"] is None
        assert "refresh_dashboards" in part["hint"]
    for section in ("connections", "failed_webhooks", "backlog"):
        assert body[section]["source"] == "live"


def test_status_reads_the_snapshots_the_dashboard_assets_write(admin: TestClient, engine: Engine, orgs) -> None:
    computed_at = utcnow() - timedelta(minutes=10)
    with engine.begin() as conn:
        for key, compute in (
            ("org_whatsapp_status", compute_org_status),
            ("onboarding_timeline", compute_onboarding_timeline),
            ("token_health", compute_token_health),
        ):
            save_snapshot(conn, key, compute(conn, computed_at).payload(), "run-abc")
    body = admin.get(STATUS, headers=AUTH).json()
    status = body["status"]["materialised"]
    assert body["status"]["hint"] is None
    assert datetime.fromisoformat(status["computed_at"]) == computed_at
    assert 599 <= status["age_seconds"] <= 660 and status["run_id"] == "run-abc"
    assert status["totals"]["organizations"] == 3
    assert {r["organization_external_id"] for r in status["rows"]} == {"acme", "globex", "initech"}
    tokens = body["token_health"]["materialised"]["rows"]
    assert {r["phone_number_id"] for r in tokens} == {ACME_PHONE, "200000000000002"}
    # filtered on one organization: only its rows, no all-organization totals
    acme = admin.get(STATUS, params={"org": "acme"}, headers=AUTH).json()
    assert [r["organization_external_id"] for r in acme["status"]["materialised"]["rows"]] == ["acme"]
    assert acme["status"]["materialised"]["totals"] is None
    assert [r["phone_number_id"] for r in acme["token_health"]["materialised"]["rows"]] == [ACME_PHONE]


def test_snapshot_rows_match_the_organization_by_id_or_external_id(admin: TestClient, engine: Engine, orgs) -> None:
    now = utcnow()
    snapshot(
        engine,
        "onboarding_timeline",
        now,
        [
            {"organization_id": str(orgs["acme"]), "organization_external_id": "acme", "started": 2},
            {"organization_id": str(orgs["acme"]).upper(), "organization_external_id": None, "started": 3},  # id only
            {"organization_id": None, "organization_external_id": "acme", "started": 4},  # external id only
            {"organization_id": str(orgs["globex"]), "organization_external_id": "globex", "started": 5},
            {"organization_id": None, "organization_external_id": None, "organization": "unrouted", "started": 6},
            "not a row",
        ],
    )
    found = admin.get(STATUS, params={"org": "acme"}, headers=AUTH).json()["timeline"]["materialised"]["rows"]
    assert [r["started"] for r in found] == [2, 3, 4]
    everything = admin.get(STATUS, headers=AUTH).json()["timeline"]["materialised"]
    assert [r["started"] for r in everything["rows"]] == [2, 3, 4, 5, 6] and everything["totals"] == {"rows": 6}
    # an organization the snapshot does not know yet: empty rows and a hint
    initech = admin.get(STATUS, params={"org": "initech"}, headers=AUTH).json()["timeline"]
    assert initech["materialised"]["rows"] == [] and "refresh_dashboards" in initech["hint"]


# --- status: live sections and the organization filter -----------------------------------------
def test_live_sections_show_a_change_at_once(admin: TestClient, engine: Engine, orgs) -> None:
    snapshot(engine, "org_whatsapp_status", utcnow() - timedelta(hours=1), [])
    before = admin.get(STATUS, params={"org": "acme"}, headers=AUTH).json()
    [conn_before] = before["connections"]["connections"]
    assert conn_before["status"] == "awaiting_confirmation" and conn_before["waba_id"] == ACME_WABA
    assert conn_before["phone_numbers"][0]["token_health"] == "not_checked"  # the token's state now (was null: as recorded)
    assert before["failed_webhooks"]["counts"] == [] and before["backlog"]["lanes"] == []

    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_connections).where(whatsapp_connections.c.waba_id == ACME_WABA).values(status="active"))
        conn.execute(
            sa.update(whatsapp_configs).where(whatsapp_configs.c.phone_number_id == ACME_PHONE).values(token_health="invalid", token_health_reason="190: expired")
        )
    waiting = land(engine, fixture_bytes("messages_text.json"))  # Acme's number: Acme's lane
    gone = dead(engine, fixture_bytes("messages_image.json"))

    after = admin.get(STATUS, params={"org": "acme"}, headers=AUTH).json()
    [conn_after] = after["connections"]["connections"]
    assert conn_after["status"] == "active" and after["connections"]["counts"] == {"active": 1}
    number = conn_after["phone_numbers"][0]
    assert (number["token_health"], number["token_health_reason"]) == ("invalid", "190: expired")
    assert after["failed_webhooks"]["counts"] == [{"status": "dead", "error_kind": "handler_error", "count": 1}]
    [row] = after["failed_webhooks"]["webhooks"]
    assert row["id"] == gone and row["organization_id"] == str(orgs["acme"]) and row["attempts"] == 5
    assert "body" not in row and "last_error" not in row
    [lane] = after["backlog"]["lanes"]
    assert lane["organization_id"] == str(orgs["acme"]) and lane["claimable"] == 1 and lane["oldest_claimable_age_seconds"] >= 0
    assert waiting != gone
    # the snapshot did not move: it is what refresh_dashboards computed
    assert after["status"]["materialised"]["computed_at"] == before["status"]["materialised"]["computed_at"]
    assert after["status"]["materialised"]["age_seconds"] >= 3599


def test_organization_filter_by_id_or_external_id(admin: TestClient, engine: Engine, orgs) -> None:
    land(engine, fixture_bytes("messages_text.json"))
    acme_failed = dead(engine, fixture_bytes("messages_image.json"), status="failed", error_kind="unroutable")
    dead(engine, fixture_bytes("not_json.txt"), error_kind="invalid_json")  # no WABA: no organization
    by_external = admin.get(STATUS, params={"org": "acme"}, headers=AUTH).json()
    by_id = admin.get(STATUS, params={"org": str(orgs["acme"])}, headers=AUTH).json()
    for body in (by_external, by_id):
        assert body["organization"] == {"id": str(orgs["acme"]), "external_id": "acme", "name": "Acme Store"}
        assert [c["waba_id"] for c in body["connections"]["connections"]] == [ACME_WABA]
        assert [w["id"] for w in body["failed_webhooks"]["webhooks"]] == [acme_failed]
        assert body["failed_webhooks"]["webhooks"][0]["next_attempt_at"] is not None
        assert [lane["organization_id"] for lane in body["backlog"]["lanes"]] == [str(orgs["acme"])]
    everything = admin.get(STATUS, headers=AUTH).json()
    assert {c["waba_id"] for c in everything["connections"]["connections"]} == {ACME_WABA, GLOBEX_WABA}
    assert {(c["status"], c["error_kind"]) for c in everything["failed_webhooks"]["counts"]} == {("failed", "unroutable"), ("dead", "invalid_json")}
    assert everything["organization"] is None
    limited = admin.get(STATUS, params={"limit": 1}, headers=AUTH).json()["failed_webhooks"]
    assert len(limited["webhooks"]) == 1 and sum(c["count"] for c in limited["counts"]) == 2
    globex = admin.get(STATUS, params={"org": "globex"}, headers=AUTH).json()
    assert globex["failed_webhooks"]["webhooks"] == [] and globex["backlog"]["lanes"] == []


def test_an_external_id_that_looks_like_an_id_still_finds_its_organization(admin: TestClient, engine: Engine, orgs) -> None:
    external = str(uuid.uuid4())
    with engine.begin() as conn:
        org_id = ensure_organization(conn, external, "Hooli")
    body = admin.get(STATUS, params={"org": external}, headers=AUTH).json()
    assert body["organization"]["id"] == str(org_id) and body["organization"]["external_id"] == external
    # an external id equal to another organization's id: the id wins, whatever the row order
    with engine.begin() as conn:
        ensure_organization(conn, str(orgs["acme"]), "Confusing Corp")
        ensure_organization(conn, str(orgs["globex"]), "Confusing Corp 2")
    for name in ("acme", "globex"):
        body = admin.get(STATUS, params={"org": str(orgs[name])}, headers=AUTH).json()
        assert body["organization"]["external_id"] == name


@pytest.mark.parametrize(
    ("org", "expected"),
    [
        ("nobody", 404),
        (str(uuid.UUID(int=7)), 404),
        ("", 422),
        ("   ", 422),
        ("x" * 256, 422),
        ("acme\x00", 422),
        ("ac\nme", 422),
    ],
)
def test_unknown_organization_is_404_and_a_bad_one_422(admin: TestClient, org: str, expected: int) -> None:
    r = admin.get(STATUS, params={"org": org}, headers=AUTH)
    assert r.status_code == expected, r.text
    if expected == 404:
        assert "no organization" in r.json()["detail"]


def test_status_is_documented_in_the_openapi_schema(admin: TestClient) -> None:
    schema = admin.app.openapi()  # /openapi.json itself is served per API_DOCS (test_api_docs.py)
    op = schema["paths"][STATUS]["get"]
    assert {p["name"] for p in op["parameters"]} == {"org", "limit"}
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][ref]["properties"]) == {
        "generated_at", "organization", "status", "timeline", "token_health", "connections", "failed_webhooks", "backlog",
        "webhook_fields",
    }
