"""The read API: conversations, a conversation's messages, contacts; pagination and tenancy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.core.test_processing import drain
from tests.explorer import corpus as c
from tests.helpers import bind_fixture_numbers, land
from tests.webhook.test_onboarding import auth
from wa_core.settings import Settings
from wa_webhook.app import create_app

T0 = 1767225600  # 2026-01-01T00:00:00Z


@pytest.fixture()
def api(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    bind_fixture_numbers(engine, acme_status="active")
    bodies = [c.inbound(f"wamid.IN{n:03d}", T0 + n) for n in range(5)]  # 5 inbound from CUSTOMER
    bodies += [
        c.echo("wamid.OUT001", T0 + 2, to=c.CUSTOMER),  # the business answered after the 3rd
        c.status("wamid.OUT001", "delivered", T0 + 3),
        c.status("wamid.OUT001", "read", T0 + 4),
        c.reaction("wamid.RX001", "wamid.OUT001", "👍", T0 + 10),  # newest message of the thread
        c.inbound("wamid.IN_EDIT", T0 + 11, type="edit", edit={"original_message_id": "wamid.IN000", "message": {"type": "text", "text": {"body": "edited"}}}),
        c.image("wamid.IMG001", T0 - 100),  # another contact, older thread
        c.group_text("wamid.GRP001", T0 - 50),  # a group thread
        c.inbound("wamid.GLOBEX1", T0 + 1, phone=c.GLOBEX_PHONE, waba=c.GLOBEX_WABA),  # another organization
    ]
    for body in bodies:
        land(engine, body)
    drain(engine, settings)
    with TestClient(create_app(settings)) as client:
        yield client


def _get(api: TestClient, url: str, org: str = "acme", **params):
    r = api.get(url, headers=auth(org), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_conversations_show_last_message_unread_and_last_outbound_status(api: TestClient) -> None:
    found = _get(api, "/api/v1/whatsapp/conversations")
    kinds = [(x["kind"], x["last_message"]["wamid"]) for x in found["conversations"]]
    # newest last message first (reactions and edits annotate messages, they are not ones)
    assert kinds == [("contact", "wamid.IN004"), ("group", "wamid.GRP001"), ("contact", "wamid.IMG001")]
    customer = found["conversations"][0]
    assert customer["contact"]["wa_id"] == c.CUSTOMER and customer["id"] == f"contact:{customer['contact']['id']}"
    assert customer["last_outbound_status"] == "read"
    # inbound newer than the answer at T0+2: IN003 and IN004
    assert customer["unread_inbound"] == 2 and customer["messages"] == 6
    assert found["conversations"][1]["group_id"] == "120363000000000001@g.us" and found["conversations"][1]["contact"] is None
    assert found["conversations"][2]["unread_inbound"] == 1 and found["conversations"][2]["last_outbound_status"] is None
    assert found["next_cursor"] is None


@pytest.mark.parametrize("step", [500, 2])
def test_conversations_page_with_a_cursor_without_gaps_or_repeats(api: TestClient, monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Also with a scan step smaller than a thread (the newest-first scan continues across steps
    and skips the threads an earlier page showed)."""
    import wa_core.read.conversations as conversations

    monkeypatch.setattr(conversations, "SCAN_STEP", step)
    everything = [x["id"] for x in _get(api, "/api/v1/whatsapp/conversations")["conversations"]]
    seen, cursor = [], None
    while True:
        page = _get(api, "/api/v1/whatsapp/conversations", limit=1, **({"cursor": cursor} if cursor else {}))
        seen += [x["id"] for x in page["conversations"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything and len(seen) == 3
    assert [x["id"] for x in _get(api, "/api/v1/whatsapp/conversations", limit=2)["conversations"]] == everything[:2]


def test_messages_page_newest_first_with_statuses_reactions_revisions_and_media(api: TestClient) -> None:
    conversations = _get(api, "/api/v1/whatsapp/conversations")["conversations"]
    customer = conversations[0]["id"]
    pages, cursor = [], None
    while True:
        page = _get(api, f"/api/v1/whatsapp/conversations/{customer}/messages", limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["messages"]) <= 2
        pages.append(page["messages"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    messages = [m for p in pages for m in p]
    wamids = [m["wamid"] for m in messages]
    assert len(wamids) == len(set(wamids)) == 6 and len(pages) == 3
    assert [m["at"] for m in messages] == sorted((m["at"] for m in messages), reverse=True)
    assert wamids == ["wamid.IN004", "wamid.IN003", "wamid.OUT001", "wamid.IN002", "wamid.IN001", "wamid.IN000"]
    out = next(m for m in messages if m["wamid"] == "wamid.OUT001")
    assert out["direction"] == "outbound" and [s["status"] for s in out["statuses"]] == ["delivered", "read"]
    assert out["reactions"] == [{"reactor": c.CUSTOMER, "emoji": "👍", "at": "2026-01-01T00:00:10+00:00"}]
    first = next(m for m in messages if m["wamid"] == "wamid.IN000")
    assert [r["kind"] for r in first["revisions"]] == ["edit"] and first["edited_at"] is not None
    image_thread = conversations[2]["id"]
    [img] = _get(api, f"/api/v1/whatsapp/conversations/{image_thread}/messages")["messages"]
    assert img["media"] == {"media_id": "1234567890123456", "mime_type": "image/jpeg", "url": "/api/v1/whatsapp/media/1234567890123456"}
    group = conversations[1]["id"]
    assert [m["wamid"] for m in _get(api, f"/api/v1/whatsapp/conversations/{group}/messages")["messages"]] == ["wamid.GRP001"]


def test_contact_and_tenancy_another_organizations_ids_are_404(api: TestClient) -> None:
    acme = _get(api, "/api/v1/whatsapp/conversations")["conversations"]
    contact = acme[0]["contact"]
    assert _get(api, f"/api/v1/whatsapp/contacts/{contact['id']}") == {**contact, "conversation_id": acme[0]["id"]}
    globex = _get(api, "/api/v1/whatsapp/conversations", org="globex")["conversations"]
    assert [x["last_message"]["wamid"] for x in globex] == ["wamid.GLOBEX1"]
    for url in (f"/api/v1/whatsapp/contacts/{contact['id']}", f"/api/v1/whatsapp/conversations/{acme[0]['id']}/messages",
                f"/api/v1/whatsapp/conversations/{acme[1]['id']}/messages"):
        r = api.get(url, headers=auth("globex"))
        assert r.status_code == 404, (url, r.text)
    assert api.get(f"/api/v1/whatsapp/contacts/{globex[0]['contact']['id']}", headers=auth("acme")).status_code == 404
    assert api.get("/api/v1/whatsapp/conversations").status_code == 401
    assert api.get("/api/v1/whatsapp/conversations", headers=auth("acme"), params={"cursor": "not-a-cursor"}).status_code == 422
    assert api.get("/api/v1/whatsapp/conversations/nonsense/messages", headers=auth("acme")).status_code == 422
    import base64
    import json as _json

    for crafted in (["2026-01-01T00:00:00+00:00", 10**30], ["2026-01-01T00:00:00+00:00", True]):  # break-it: were 500
        cursor = base64.urlsafe_b64encode(_json.dumps(crafted).encode()).decode().rstrip("=")
        assert api.get("/api/v1/whatsapp/conversations", headers=auth("acme"), params={"cursor": cursor}).status_code == 422
    assert api.get("/api/v1/whatsapp/conversations/group:%00/messages", headers=auth("acme")).status_code == 422
