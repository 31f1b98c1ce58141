"""The pull API: cursor pagination, tenancy, types, and a long-poll woken by a new event."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.helpers import bind_fixture_numbers
from tests.webhook.test_onboarding import auth
from wa_core.db.schema import utcnow
from wa_core.events.outbox import write_events
from wa_core.processing.state import EventSpec
from wa_core.settings import Settings
from wa_webhook.app import create_app


@pytest.fixture()
def api(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def emit(engine: Engine, org, *keys: str, kind: str = "message.received") -> None:
    with engine.begin() as conn:
        write_events(conn, [EventSpec(org, kind, k, {"wamid": k}, utcnow()) for k in keys])


def test_pages_by_cursor_filters_by_type_and_never_shows_another_organizations_events(api: TestClient, engine: Engine) -> None:
    orgs = bind_fixture_numbers(engine)
    emit(engine, orgs["acme"], "a", "b", "c")
    emit(engine, orgs["acme"], "s", kind="message.status_updated")
    emit(engine, orgs["globex"], "g")
    r = api.get("/api/v1/whatsapp/events?limit=2", headers=auth("acme"))
    assert r.status_code == 200, r.text
    page = r.json()
    assert [e["data"]["wamid"] for e in page["events"]] == ["a", "b"] and page["next_cursor"] == 2
    page = api.get(f"/api/v1/whatsapp/events?after={page['next_cursor']}", headers=auth("acme")).json()
    assert [e["data"]["wamid"] for e in page["events"]] == ["c", "s"]
    only = api.get("/api/v1/whatsapp/events?types=message.status_updated", headers=auth("acme")).json()
    assert [e["type"] for e in only["events"]] == ["message.status_updated"]
    # a filter that matches nothing still moves the consumer past what it skipped
    none = api.get("/api/v1/whatsapp/events?types=call.*", headers=auth("acme")).json()
    assert none == {"events": [], "next_cursor": 4}
    first = api.get("/api/v1/whatsapp/events?types=message.received&limit=1", headers=auth("acme")).json()
    assert first["next_cursor"] == first["events"][0]["cursor"] == 1, "a full page continues after its last event"
    assert [e["data"]["wamid"] for e in api.get("/api/v1/whatsapp/events", headers=auth("globex")).json()["events"]] == ["g"]
    assert api.get("/api/v1/whatsapp/events", headers=auth("initech")).json() == {"events": [], "next_cursor": 0}
    assert api.get("/api/v1/whatsapp/events").status_code == 401
    assert api.get("/api/v1/whatsapp/events?types=bad;type", headers=auth("acme")).status_code == 422
    assert api.get("/api/v1/whatsapp/events?wait=31", headers=auth("acme")).status_code == 422


def test_a_long_poll_returns_as_soon_as_an_event_commits(api: TestClient, engine: Engine) -> None:
    orgs = bind_fixture_numbers(engine)
    answer: dict = {}

    def poll() -> None:
        started = time.monotonic()
        answer["response"] = api.get("/api/v1/whatsapp/events?wait=30", headers=auth("acme"))
        answer["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    waiter = api.app.state.event_waiter
    deadline = time.monotonic() + 20
    while not (waiter.listening and waiter._waiters) and time.monotonic() < deadline:  # the request is waiting
        time.sleep(0.01)
    assert waiter.listening and waiter._waiters
    emit(engine, orgs["globex"], "other")  # another organization's event does not answer it
    emit(engine, orgs["acme"], "new")
    thread.join(timeout=30)
    assert [e["data"]["wamid"] for e in answer["response"].json()["events"]] == ["new"]
    assert answer["seconds"] < 10, answer["seconds"]  # woken, not timed out (wait=30)


def test_admin_sets_rotates_disables_and_replays_an_endpoint(settings: Settings, engine: Engine) -> None:
    from pydantic import SecretStr

    orgs = bind_fixture_numbers(engine)
    emit(engine, orgs["acme"], "a")
    admin = {"Authorization": "Bearer admin-token-test"}
    with TestClient(create_app(settings.model_copy(update={"admin_api_token": SecretStr("admin-token-test")}))) as c:
        base = "/api/admin/whatsapp/events/acme"
        assert c.put(f"{base}/endpoint", json={"url": "https://crm.example/hooks"}, headers=auth("acme")).status_code == 403
        secret = c.put(f"{base}/endpoint", json={"url": "https://crm.example/hooks"}, headers=admin).json()["secret"]
        assert secret.startswith("whsec_")
        state = c.get(f"{base}/endpoint", headers=admin).json()
        assert state["enabled"] and state["delivered_cursor"] == 1 == state["last_cursor"] and secret not in str(state)
        assert c.post(f"{base}/endpoint/rotate", headers=admin).json()["secret"] != secret
        assert c.post(f"{base}/replay", json={"types": ["message.received"]}, headers=admin).json() == {"queued": 1}
        assert c.post(f"{base}/replay", json={}, headers=admin).status_code == 422, "an empty replay names nothing: refused"
        for when in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"):  # break-it #3: no UTC equivalent, was 500
            r = c.post(f"{base}/replay", json={"since": when}, headers=admin)
            assert r.status_code == 422 and "out of range once converted to UTC" in r.text
        assert c.post(f"{base}/endpoint/disable", headers=admin).json() == {"enabled": False}
        assert c.get("/api/admin/whatsapp/events/nobody/endpoint", headers=admin).status_code == 404
        assert c.put(f"{base}/endpoint", json={"url": "ftp://crm.example/x"}, headers=admin).status_code == 422
        r = c.put(f"{base}/endpoint", json={"url": "http://[::1/hooks"}, headers=admin)  # break-it (issue 13): was 200
        assert r.status_code == 422 and "cannot be parsed" in r.text
        assert c.get(f"{base}/endpoint", headers=admin).json()["url"] == "https://crm.example/hooks"  # the refused URL stored nothing


def test_the_command_sets_rotates_and_disables_an_endpoint(settings: Settings, engine: Engine, capsys) -> None:
    import json

    from wa_webhook.cli import main

    bind_fixture_numbers(engine)
    assert main(["events-endpoint", "set", "--org", "acme", "--url", "https://crm.example/hooks"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["secret"].startswith("whsec_") and first["enabled"]
    assert main(["events-endpoint", "rotate", "--org", "acme"]) == 0
    assert json.loads(capsys.readouterr().out)["secret"] != first["secret"]
    assert main(["events-endpoint", "disable", "--org", "acme"]) == 0
    assert json.loads(capsys.readouterr().out)["enabled"] is False
    assert main(["events-endpoint", "show", "--org", "acme"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["consecutive_failures"], shown["last_attempt"], shown["disabled_reason"]) == (0, None, "disabled by an operator")
    assert main(["events-endpoint", "set", "--org", "acme"]) == 2  # no URL
    assert main(["events-endpoint", "set", "--org", "acme", "--url", "http://[::1/hooks"]) == 2  # one httpx cannot parse
    assert "cannot be parsed" in capsys.readouterr().err
    assert main(["events-endpoint", "show", "--org", "nobody"]) == 1
