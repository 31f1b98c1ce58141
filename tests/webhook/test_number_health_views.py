"""Number and WABA health in the views: ``check-connection``, the admin status and the
``number_health`` dashboard, after the WABA-family fixtures were processed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.conftest import fixture_bytes
from tests.core.test_waba_state import WABA_FIXTURES, drain
from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_WABA, bind_fixture_numbers, land
from tests.webhook.test_onboarding import auth
from wa_core.db.schema import metadata
from wa_core.reporting.dashboards import DASHBOARDS_BY_KEY
from wa_core.reporting.number_health import compute_number_health, number_health_markdown
from wa_core.reporting.summary import stored_summary
from wa_core.settings import Settings
from wa_webhook.app import create_app

ADMIN = "admin-secret-for-tests"


@pytest.fixture()
def processed(engine: Engine, settings: Settings) -> Engine:
    bind_fixture_numbers(engine)
    for name in WABA_FIXTURES:
        land(engine, fixture_bytes(name))
    drain(engine, settings)
    return engine


@pytest.fixture()
def api(settings: Settings, processed: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"admin_api_token": SecretStr(ADMIN)}))) as c:
        yield c


def test_check_connection_shows_waba_and_number_health(api: TestClient) -> None:
    [acme] = api.get("/api/v1/whatsapp/check-connection", headers=auth("acme")).json()["connections"]
    health = acme["health"]
    assert (health["review_decision"], health["business_limit"], health["max_phone_numbers_per_waba"]) == ("APPROVED", "TIER_10K", 25)
    assert health["templates"] == {"APPROVED": 1, "REJECTED": 1, "unknown": 2}
    [alert] = health["open_alerts"]
    assert (alert["entity_type"], alert["entity_id"], alert["alert_type"]) == ("BUSINESS", "300000000000001", "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED")
    [number] = acme["phone_numbers"]
    assert number["phone_number_id"] == ACME_PHONE
    h = number["health"]
    assert (h["messaging_limit"], h["throughput_level"], h["quality_event"]) == ("TIER_10K", "high", "UPGRADE")
    assert (h["name_decision"], h["name_rejection_reason"], h["username_decision"], h["pin_event"]) == ("REJECTED", "NAME_FORMAT_UNACCEPTABLE", "APPROVED", "PIN_CHANGED")
    assert h["pin_event_at"].startswith("2026-01-05")
    [globex] = api.get("/api/v1/whatsapp/check-connection", headers=auth("globex")).json()["connections"]
    assert globex["health"] == {"review_decision": None, "business_limit": None, "max_phone_numbers_per_waba": None,
                                "max_phone_numbers_per_business": None, "open_alerts": [], "templates": {}}
    assert globex["phone_numbers"][0]["health"] is None


def test_admin_status_shows_health_per_connection_and_number(api: TestClient) -> None:
    body = api.get("/api/admin/whatsapp/status", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    by_waba = {c["waba_id"]: c for c in body["connections"]["connections"]}
    assert by_waba[ACME_WABA]["health"]["review_decision"] == "APPROVED"
    assert by_waba[ACME_WABA]["phone_numbers"][0]["health"]["requested_verified_name"] == "Fake Shop Test"
    assert by_waba[GLOBEX_WABA]["phone_numbers"][0]["health"] is None


def test_number_health_dashboard(processed: Engine, settings: Settings, tmp_path: Path) -> None:
    with processed.connect() as conn:
        board = DASHBOARDS_BY_KEY["number_health"].compute(conn, settings)
        summary = stored_summary(conn)
    [row] = board.rows
    assert (row.organization, row.waba_id, row.display_phone_number, row.phone_number_id) == ("Acme Store", ACME_WABA, "15550000001", ACME_PHONE)
    assert (row.messaging_limit, row.throughput_level, row.name_decision, row.pin_event, row.review_decision) == ("TIER_10K", "high", "REJECTED", "PIN_CHANGED", "APPROVED")
    assert (row.open_alerts, row.templates_needing_attention, row.needs_action) == (1, 1, True)
    assert board.totals == {
        "numbers": 1, "needs_action": 1, "throughput_high": 1, "names_rejected": 1, "pin_changes": 1, "open_alerts": 1,
        "templates_needing_attention": 1, "messaging_limits": {"TIER_10K": 1}, "templates_by_status": {"APPROVED": 1, "REJECTED": 1, "unknown": 2},
    }
    assert "| 15550000001 |" in number_health_markdown(board.rows)
    assert board.payload()["rows"][0]["waba_id"] == ACME_WABA
    assert summary["templates"] == {"APPROVED": 1, "REJECTED": 1, "unknown": 2} and summary["account_alerts"] == {"ACTIVE": 1}
    assert summary["waba_events"]["security"] == 2
    # the same figures on SQLite (the embedded default)
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'health.sqlite3'}")
    metadata.create_all(lite)
    with processed.connect() as pg, lite.begin() as sq:
        for table in metadata.sorted_tables:
            found = [dict(r._mapping) for r in pg.execute(sa.select(table))]
            if found:
                sq.execute(table.insert(), found)
    with lite.connect() as sq:
        assert compute_number_health(sq).totals == board.totals
    lite.dispose()
