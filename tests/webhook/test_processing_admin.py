"""Processing controls from the outside: the admin API (``/api/admin/whatsapp/processing/…``)
and ``wa-onboarding pause|resume|caps``. Rows of a paused organization or WABA wait, a resume
lets them be processed, none is lost; every call is idempotent; malformed ids are 422,
unknown ones 404 (exit 2 / 1 on the command line)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.core.test_fairness import land_many, text_body
from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_PHONE, GLOBEX_WABA, bind_fixture_numbers, rows
from tests.webhook.test_admin_status import ADMIN, AUTH, CREDENTIALS, STATUS
from wa_core.db.schema import processing_org_controls, processing_waba_controls, whatsapp_messages, whatsapp_webhook_logs
from wa_core.processing.runner import run_processing
from wa_core.settings import Settings
from wa_webhook.app import create_app

BASE = "/api/admin/whatsapp/processing"
ENDPOINTS = {
    "pause": ("POST", f"{BASE}/pause", {"organization": "acme"}),
    "resume": ("POST", f"{BASE}/resume", {"waba_id": ACME_WABA}),
    "caps": ("PUT", f"{BASE}/caps", {"organization": "acme", "max_in_flight": 3}),
    "controls": ("GET", f"{BASE}/controls", None),
}


@pytest.fixture()
def admin(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    bind_fixture_numbers(engine)
    with TestClient(create_app(settings.model_copy(update={"admin_api_token": SecretStr(ADMIN)}))) as c:
        yield c


def drain(engine: Engine, settings: Settings) -> int:
    return run_processing(engine, settings, idle_exit_seconds=0).webhooks


def pending(engine: Engine, waba_id: str) -> int:
    return len(rows(engine, whatsapp_webhook_logs, whatsapp_webhook_logs.c.waba_id == waba_id, whatsapp_webhook_logs.c.status == "pending"))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("credential", CREDENTIALS)
def test_every_processing_control_needs_the_admin_token(admin: TestClient, engine: Engine, endpoint: str, credential: str) -> None:
    method, url, body = ENDPOINTS[endpoint]
    headers, expected = CREDENTIALS[credential]
    sent = headers()
    r = admin.request(method, url, headers=sent, json=body)
    assert r.status_code == expected, (endpoint, credential, r.status_code, r.text)
    if expected != 200:  # refused before anything was changed
        assert rows(engine, processing_org_controls) == [] and rows(engine, processing_waba_controls) == []


def test_pause_and_resume_an_organization_through_the_admin_api(admin: TestClient, engine: Engine, settings: Settings) -> None:
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(4)] + [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(2)])
    r = admin.post(f"{BASE}/pause", headers=AUTH, json={"organization": "acme", "reason": "incident 42"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["paused"], body["changed"], body["waiting"], body["organization_external_id"]) == (True, True, 4, "acme")
    assert admin.post(f"{BASE}/pause", headers=AUTH, json={"organization": "acme"}).json()["changed"] is False

    assert drain(engine, settings) == 2 and pending(engine, ACME_WABA) == 4  # Globex flows, Acme waits
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE)])
    lane = next(x for x in admin.get(STATUS, headers=AUTH).json()["backlog"]["lanes"] if x["organization_external_id"] == "acme")
    assert (lane["paused"], lane["waiting_paused"], lane["claimable"]) == (True, 5, 0)
    listed = admin.get(f"{BASE}/controls", headers=AUTH).json()
    assert [(o["organization_external_id"], o["paused"], o["paused_reason"]) for o in listed["organizations"]] == [("acme", True, "incident 42")]
    assert listed["global"] == {"max_in_flight": 0, "webhooks_per_minute": 0, "shards": 1}

    r = admin.post(f"{BASE}/resume", headers=AUTH, json={"organization": body["organization_id"]})
    assert (r.status_code, r.json()["changed"], r.json()["waiting"]) == (200, True, 5)
    assert admin.post(f"{BASE}/resume", headers=AUTH, json={"organization": "acme"}).json()["changed"] is False
    assert drain(engine, settings) == 5
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed"}
    assert len(rows(engine, whatsapp_messages)) == 7


def test_pause_and_resume_a_waba_given_as_a_number(admin: TestClient, engine: Engine, settings: Settings) -> None:
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(3)])
    r = admin.post(f"{BASE}/pause", headers=AUTH, json={"waba_id": int(ACME_WABA)})
    assert (r.status_code, r.json()["waba_id"], r.json()["waiting"]) == (200, ACME_WABA, 3)
    assert drain(engine, settings) == 0 and pending(engine, ACME_WABA) == 3
    assert admin.get(f"{BASE}/controls", headers=AUTH).json()["wabas"][0]["waba_id"] == ACME_WABA
    assert admin.post(f"{BASE}/resume", headers=AUTH, json={"waba_id": ACME_WABA}).json()["changed"] is True
    assert drain(engine, settings) == 3


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"organization": "nobody"}, 404),
        ({"waba_id": "100000000000888"}, 404),  # neither bound nor waiting
        ({"waba_id": "12ab"}, 422),
        ({"waba_id": "1" * 65}, 422),
        ({"waba_id": True}, 422),
        ({"organization": "bad\x00id"}, 422),
        ({"organization": "x" * 256}, 422),
        ({}, 422),  # no target
        ({"organization": "acme", "waba_id": ACME_WABA}, 422),  # two targets
        ({"org": "acme"}, 422),  # a misspelt field is not ignored
        ({"organization": "acme", "reason": "a\x01b"}, 422),
    ],
)
def test_malformed_or_unknown_targets_are_refused_and_change_nothing(admin: TestClient, engine: Engine, body: dict, status: int) -> None:
    for action in ("pause", "resume"):
        r = admin.post(f"{BASE}/{action}", headers=AUTH, json=body)
        assert r.status_code == status, (action, r.text)
    assert rows(engine, processing_org_controls) == [] and rows(engine, processing_waba_controls) == []


def test_caps_of_one_organization_through_the_admin_api(admin: TestClient, engine: Engine) -> None:
    r = admin.put(f"{BASE}/caps", headers=AUTH, json={"organization": "acme", "max_in_flight": 3, "webhooks_per_minute": 0})
    assert r.status_code == 200 and (r.json()["max_in_flight"], r.json()["webhooks_per_minute"]) == (3, 0)
    r = admin.put(f"{BASE}/caps", headers=AUTH, json={"organization": "acme", "webhooks_per_minute": None})
    assert (r.json()["max_in_flight"], r.json()["webhooks_per_minute"]) == (3, None)  # left out = unchanged
    assert admin.get(f"{BASE}/controls", headers=AUTH).json()["organizations"][0]["max_in_flight"] == 3
    for bad in ({"organization": "acme", "max_in_flight": -1}, {"organization": "acme", "max_in_flight": "many"}):
        assert admin.put(f"{BASE}/caps", headers=AUTH, json=bad).status_code == 422
    assert admin.put(f"{BASE}/caps", headers=AUTH, json={"organization": "nobody", "max_in_flight": 1}).status_code == 404


# --- wa-onboarding pause | resume | caps ------------------------------------------------------------
def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    from wa_webhook.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_pause_and_resume_from_the_command_line(engine: Engine, settings: Settings, capsys: pytest.CaptureFixture) -> None:
    bind_fixture_numbers(engine)
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(2)] + [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(2)])
    code, out, _ = cli(capsys, "pause", "--org", "acme", "--reason", "maintenance")
    assert code == 0 and json.loads(out)["paused"] is True
    code, out, _ = cli(capsys, "pause", "--waba-id", GLOBEX_WABA)
    assert code == 0 and json.loads(out)["waiting"] == 2
    assert drain(engine, settings) == 0

    code, out, _ = cli(capsys, "status")
    assert "paused=True" in out and f"paused_wabas=['{GLOBEX_WABA}']" in out and "waiting_paused=2" in out

    assert cli(capsys, "resume", "--waba-id", GLOBEX_WABA)[0] == 0
    assert drain(engine, settings) == 2 and pending(engine, ACME_WABA) == 2
    code, out, _ = cli(capsys, "resume", "--org", "acme")
    assert code == 0 and json.loads(out)["changed"] is True
    assert json.loads(cli(capsys, "resume", "--org", "acme")[1])["changed"] is False  # idempotent
    assert drain(engine, settings) == 2

    assert cli(capsys, "pause", "--org", "nobody")[0] == 1
    code, _, err = cli(capsys, "pause", "--waba-id", "12ab")
    assert code == 2 and "waba_id" in err
    code, out, _ = cli(capsys, "caps", "--org", "acme", "--max-in-flight", "4", "--per-minute", "default")
    assert code == 0 and (json.loads(out)["max_in_flight"], json.loads(out)["webhooks_per_minute"]) == (4, None)
    with pytest.raises(SystemExit):
        cli(capsys, "caps", "--org", "acme", "--max-in-flight", "-3")
    with engine.connect() as conn:
        assert conn.execute(sa.select(processing_org_controls.c.max_in_flight)).scalar_one() == 4
