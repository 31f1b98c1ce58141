"""The webhook explorer on real rows: search by every kind, trace, admin-only body, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import given, settings as hsettings, strategies as st
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.core.test_processing import drain
from tests.explorer import corpus as c
from tests.helpers import bind_fixture_numbers, land
from tests.webhook.test_admin_status import ADMIN, AUTH
from tests.webhook.test_onboarding import auth
from wa_core.db.schema import utcnow, whatsapp_webhook_logs as logs
from wa_core.dead_letters import purge_processed_bodies
from wa_core.explorer.keys import extract_keys
from wa_core.settings import Settings
from wa_webhook.app import create_app

T0 = 1767225600
SEARCH = "/api/admin/whatsapp/webhooks"


@pytest.fixture()
def landed(settings: Settings, engine: Engine) -> dict[str, int]:
    bind_fixture_numbers(engine, acme_status="active")
    now = utcnow()
    ids = {
        "old": land(engine, c.inbound("wamid.OLD", T0 - 3600), received_at=now - timedelta(hours=3)),
        "in": land(engine, c.inbound("wamid.IN1", T0)),
        "status": land(engine, c.status("wamid.IN1", "read", T0 + 1)),
        "bsuid": land(engine, c.envelope({"messaging_product": "whatsapp", "metadata": {"phone_number_id": c.ACME_PHONE},
                                          "contacts": [{"user_id": "US.13491208655302741918", "profile": {"name": "U"}}],
                                          "messages": [{"from_user_id": "US.13491208655302741918", "id": "wamid.BSUID1",
                                                        "timestamp": str(T0), "type": "text", "text": {"body": "x"}}]})),
        "unknown_number": land(engine, c.inbound("wamid.NOWHERE", T0, phone="299999999999999", waba="199999999999999")),
        "not_json": land(engine, b"{not json"),
        "redelivered": 0,
    }
    ids["redelivered"] = land(engine, c.inbound("wamid.IN1", T0))  # Meta delivering the same message again
    drain(engine, settings)
    return ids


@pytest.fixture()
def admin(settings: Settings, landed: dict[str, int]) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"admin_api_token": SecretStr(ADMIN)}))) as client:
        yield client


def _ids(admin: TestClient, **params) -> list[int]:
    r = admin.get(SEARCH, headers=AUTH, params=params)
    assert r.status_code == 200, r.text
    assert all("body" not in w for w in r.json()["webhooks"])
    return [w["id"] for w in r.json()["webhooks"]]


def test_search_by_every_kind(admin: TestClient, landed: dict[str, int]) -> None:
    L = landed
    assert _ids(admin, wamid="wamid.IN1") == [L["redelivered"], L["status"], L["in"]]
    assert _ids(admin, wa_id=c.CUSTOMER) == [L["redelivered"], L["unknown_number"], L["status"], L["in"], L["old"]]
    assert _ids(admin, user_id="US.13491208655302741918") == [L["bsuid"]]
    assert _ids(admin, phone_number_id="299999999999999") == [L["unknown_number"]]
    assert _ids(admin, waba_id=c.ACME_WABA, wamid="wamid.IN1", field="messages") == [L["redelivered"], L["status"], L["in"]]
    assert _ids(admin, wamid="wamid.IN1", field="history") == []
    assert _ids(admin, status="dead") == [L["not_json"]]
    assert _ids(admin, status="failed", wa_id=c.CUSTOMER) == [L["unknown_number"]]
    assert _ids(admin, error_kind="invalid_json") == [L["not_json"]]
    assert L["unknown_number"] in _ids(admin, error_kind="unroutable")
    recent = _ids(admin, received_from=(utcnow() - timedelta(hours=1)).isoformat())
    assert L["old"] not in recent and L["in"] in recent
    assert _ids(admin, received_to=(utcnow() - timedelta(hours=1)).isoformat()) == [L["old"]]
    assert _ids(admin, wa_id=c.CUSTOMER, received_to=(utcnow() - timedelta(hours=1)).isoformat()) == [L["old"]]


def test_search_pages_with_before_id(admin: TestClient, landed: dict[str, int]) -> None:
    everything = _ids(admin, limit=500)
    assert everything == sorted(landed.values(), reverse=True)
    seen, before = [], None
    while True:
        r = admin.get(SEARCH, headers=AUTH, params={"limit": 2, **({"before_id": before} if before else {})}).json()
        seen += [w["id"] for w in r["webhooks"]]
        before = r["next_before_id"]
        if before is None:
            break
    assert seen == everything


def test_trace_shows_arrival_items_and_rows_and_the_body_only_on_request(admin: TestClient, engine: Engine, landed: dict[str, int]) -> None:
    t = admin.get(f"{SEARCH}/{landed['in']}/trace", headers=AUTH).json()
    assert t["arrival"]["signature_status"] == "valid" and t["arrival"]["body_size"] > 0 and len(t["arrival"]["body_sha256"]) == 64
    assert t["processing"]["status"] == "processed" and "body" not in t
    assert [(i["place"], i["result"]) for i in t["items"]] == [("entry[0].changes[0].messages[0]", "processed")]
    [message] = t["rows"]["whatsapp_messages"]
    assert message["wamid"] == "wamid.IN1" and message["written_by_this_webhook"] is True
    assert t["keys"]["wamid"] == ["wamid.IN1"] and t["keys"]["field"] == ["messages"]
    # the redelivery found the message already stored by the first delivery
    again = admin.get(f"{SEARCH}/{landed['redelivered']}/trace", headers=AUTH).json()
    assert again["rows"]["whatsapp_messages"][0]["written_by"] == landed["in"]
    assert again["rows"]["whatsapp_messages"][0]["written_by_this_webhook"] is False
    # the events the first delivery produced; the redelivery produced none
    assert "message.received" in [e["type"] for e in t["events"]]
    assert [e["payload"].get("wamid") for e in t["events"] if e["type"] == "message.received"] == ["wamid.IN1"]
    assert [e for e in again["events"] if e["type"].startswith("message.")] == []
    failed = admin.get(f"{SEARCH}/{landed['unknown_number']}/trace", headers=AUTH).json()
    assert [(i["result"], i["error_kind"]) for i in failed["items"]] == [("failed", "unroutable")]
    dead = admin.get(f"{SEARCH}/{landed['not_json']}/trace", headers=AUTH).json()
    assert [(i["result"], i["error_kind"]) for i in dead["items"]] == [("failed", "invalid_json")]
    with_body = admin.get(f"{SEARCH}/{landed['in']}/trace", headers=AUTH, params={"include_body": "true"}).json()
    assert with_body["body"]["kept"] is True and json.loads(with_body["body"]["text"])["entry"][0]["id"] == c.ACME_WABA
    with engine.begin() as conn:
        assert purge_processed_bodies(conn, 0, now=utcnow() + timedelta(seconds=1)) >= 1
    purged = admin.get(f"{SEARCH}/{landed['in']}/trace", headers=AUTH, params={"include_body": "true"}).json()
    assert purged["body"]["kept"] is False and purged["body"]["purged_at"] and "text" not in purged["body"]
    assert purged["keys"] is None and purged["rows"]["whatsapp_messages"][0]["wamid"] == "wamid.IN1"  # rows found by its items
    assert _ids(admin, wamid="wamid.IN1")[-1] == landed["in"]  # still found by its ids
    assert admin.get(f"{SEARCH}/999999999/trace", headers=AUTH).status_code == 404


@pytest.mark.parametrize("headers,code", [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ("jwt", 403)])
def test_the_explorer_needs_the_admin_token(admin: TestClient, landed: dict[str, int], headers, code: int) -> None:
    sent = auth("acme") if headers == "jwt" else headers
    for url in (SEARCH, f"{SEARCH}/{landed['in']}/trace?include_body=true", "/api/admin/whatsapp/rejected-webhooks"):
        r = admin.get(url, headers=sent)
        assert r.status_code == code, (url, r.text)
        assert "entry" not in r.text


def test_malformed_searches_are_422(admin: TestClient) -> None:
    for params in ({"status": "nope"}, {"received_from": "2026-01-02T00:00:00Z", "received_to": "2026-01-01T00:00:00Z"},
                   {"limit": 0}, {"wamid": "a\x00b"}):
        assert admin.get(SEARCH, headers=AUTH, params=params).status_code == 422, params


def test_the_command_line_searches_and_traces(landed: dict[str, int], capsys: pytest.CaptureFixture) -> None:
    from wa_webhook.cli import main

    assert main(["webhooks", "search", "--wamid", "wamid.IN1", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [w["id"] for w in found["webhooks"]] == [landed["redelivered"], landed["status"], landed["in"]]
    assert main(["webhooks", "search", "--error-kind", "invalid_json"]) == 0
    assert f"{landed['not_json']:>10}" in capsys.readouterr().out
    assert main(["webhooks", "trace", str(landed["in"])]) == 0
    trace = json.loads(capsys.readouterr().out)
    assert trace["id"] == landed["in"] and "body" not in trace
    assert main(["webhooks", "trace", "999999999"]) == 1
    assert main(["webhooks", "search", "--status", "bogus"]) == 2


def test_keys_are_extracted_from_any_shape() -> None:
    body = json.loads(c.status("wamid.X", "sent", T0))
    assert extract_keys(body) == [("waba_id", c.ACME_WABA), ("field", "messages"), ("phone_number_id", c.ACME_PHONE),
                                  ("wamid", "wamid.X"), ("wa_id", c.CUSTOMER)]
    for weird in (None, [], {"entry": "x"}, {"entry": [1, {"changes": [None, {"field": 3, "value": [[["wamid.deep"]]]}]}]},
                  {"entry": [{"id": "a\x00", "changes": [{"field": "f" * 300, "value": {"from": 5}}]}]}):
        extract_keys(weird)  # never raises
    assert ("wamid", "wamid.deep") in extract_keys({"entry": [{"changes": [{"value": [[["wamid.deep"]]]}]}]})


def test_items_follow_the_latest_attempt(engine: Engine, settings: Settings, landed: dict[str, int]) -> None:
    """A retried webhook's items are replaced, not appended (one row per item)."""
    from wa_core.db.schema_explorer import whatsapp_webhook_items as items

    with engine.begin() as conn:
        conn.execute(sa.update(logs).where(logs.c.id == landed["unknown_number"]).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    drain(engine, settings)
    with engine.connect() as conn:
        found = conn.execute(sa.select(items.c.attempt).where(items.c.webhook_log_id == landed["unknown_number"])).scalars().all()
    assert found == [2]


def test_search_and_trace_on_the_embedded_sqlite(tmp_path) -> None:
    from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
    from wa_core.db.engine import create_sync_engine
    from wa_core.db.migrate import upgrade
    from wa_core.explorer.search import WebhookSearch, search_webhooks
    from wa_core.explorer.trace import trace_webhook

    lite_settings = Settings(_env_file=None, database_url=None, data_dir=str(tmp_path))
    upgrade(lite_settings)
    lite = create_sync_engine(lite_settings)
    with lite.begin() as conn:
        bind_waba(conn, ensure_organization(conn, "acme"), c.ACME_WABA, [PhoneNumber(c.ACME_PHONE, "15550000001", "Acme")], status="active")
    first = land(lite, c.inbound("wamid.LITE", T0))
    second = land(lite, c.inbound("wamid.LITE", T0))
    drain(lite, lite_settings)
    drain(lite, lite_settings)
    with lite.connect() as conn:
        found = search_webhooks(conn, WebhookSearch(wamid="wamid.LITE", field="messages"), 1)
        assert [w["id"] for w in found["webhooks"]] == [second] and found["next_before_id"] == second
        assert [w["id"] for w in search_webhooks(conn, WebhookSearch(wamid="wamid.LITE", before_id=second))["webhooks"]] == [first]
        trace = trace_webhook(conn, second)
        assert trace["rows"]["whatsapp_messages"][0]["written_by"] == first
        assert [i["result"] for i in trace["items"]] == ["processed"]
    lite.dispose()


OVERFLOWING = ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00")


@pytest.mark.parametrize("when", OVERFLOWING)
def test_a_time_without_a_utc_equivalent_is_422_with_the_reason(admin: TestClient, when: str) -> None:
    """Break-it #3 of the event feed: these used to answer 500."""
    for url, params in ((SEARCH, {"received_from": when}), (SEARCH, {"received_to": when}),
                        ("/api/admin/whatsapp/rejected-webhooks", {"since": when})):
        r = admin.get(url, headers=AUTH, params=params)
        assert r.status_code == 422, (url, params, r.text)
        assert "out of range once converted to UTC" in r.text
    r = admin.post("/api/admin/whatsapp/webhooks/replay", headers=AUTH, json={"received_from": when})
    assert r.status_code == 422 and "out of range once converted to UTC" in r.text


@pytest.mark.parametrize("edge", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_a_time_at_the_ends_of_the_range_searches_without_error(admin: TestClient, edge: str) -> None:
    for params in ({"received_from": edge}, {"received_to": edge}):
        assert admin.get(SEARCH, headers=AUTH, params=params).status_code == 200, params


def test_the_command_line_refuses_a_time_without_a_utc_equivalent(landed: dict[str, int], capsys: pytest.CaptureFixture) -> None:
    from wa_webhook.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["webhooks", "search", "--from", OVERFLOWING[0]])
    assert exit_.value.code == 2 and "out of range once converted to UTC" in capsys.readouterr().err


_ID_KEYS = {"wa_id": "wa_id", "from": "wa_id", "to": "wa_id", "recipient_id": "wa_id", "user_id": "user_id", "from_user_id": "user_id",
            "recipient_user_id": "user_id", "to_user_id": "user_id", "phone_number_id": "phone_number_id"}


def _walked(node, out) -> None:
    """What the explorer's keys mean, by walking the parsed tree (the regular expression over the
    body text must find exactly these)."""
    usable = lambda v: isinstance(v, str) and 0 < len(v) <= 255 and v.isprintable()  # noqa: E731
    if isinstance(node, dict):
        for key, value in node.items():
            if usable(value) and value.startswith("wamid."):
                out.add(("wamid", value))
            elif usable(value) and key in _ID_KEYS:
                out.add((_ID_KEYS[key], value))
            _walked(value, out)
    elif isinstance(node, list):
        for value in node:
            if usable(value) and value.startswith("wamid."):
                out.add(("wamid", value))
            _walked(value, out)


_texts = st.one_of(st.sampled_from(["wamid.A", "wamid.\"q\"", "wamid.a\\b", "15550001", "x\"from\":\"1", "wamid./+=", "é☃", ""]),
                   st.text(alphabet=st.sampled_from('ab"\\:/{}, wamid.é\u2028\x00\t'), max_size=12).map(lambda t: st_prefix(t)))


def st_prefix(text: str) -> str:
    return "wamid." + text if len(text) % 2 else text


_trees = st.recursive(
    _texts | st.integers() | st.none(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from([*_ID_KEYS, "id", "body", "wamid.k", "x"]), children, max_size=4),
    max_leaves=12,
)


@hsettings(max_examples=300, deadline=None)
@given(value=_trees)
def test_the_keys_are_those_of_a_plain_walk_of_the_parsed_tree(value) -> None:
    payload = {"entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}]}
    expected: set = {("waba_id", "W"), ("field", "messages")}
    _walked([value], expected)  # a bare string as the change's value counts too
    assert set(extract_keys(payload)) == expected


def _keys_of(value_json: str) -> set:
    from wa_core.processing.records import parse_body

    body = ('{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":%s}]}]}' % value_json).encode()
    return set(extract_keys(parse_body(body)[0]))


def test_keys_follow_what_the_json_means_not_how_it_is_written() -> None:
    # an escaped name or prefix is the same name or string (RFC 8259 §7) for processing and for the keys
    assert ("wa_id", "88") in _keys_of('{"messages":[{"fr\\u006fm":"88","id":"wamid.V"}]}')
    assert ("wamid", "wamid.V") in _keys_of('{"messages":[{"id":"\\u0077amid.V"}]}')
    # of duplicate names json.loads (and so processing) keeps the last: the first is no key
    dup = _keys_of('{"messages":[{"from":"111","from":"222","id":"wamid.A","id":"wamid.B"}]}')
    assert {("wa_id", "222"), ("wamid", "wamid.B")} <= dup and not {("wa_id", "111"), ("wamid", "wamid.A")} & dup
    # a usable wamid however long its escaped text (206 characters, 2,406 bytes of \\ud83d\\ude00)
    wamid = "wamid." + "\U0001F600" * 200
    assert ("wamid", wamid) in _keys_of(json.dumps({"messages": [{"id": wamid}]}))


def test_a_processed_webhooks_trace_never_invents_items_after_its_number_is_unbound(engine: Engine, settings: Settings) -> None:
    """Its items are listed again from the body only while a parse gives what processing applied."""
    from wa_core.db.schema import whatsapp_configs, whatsapp_connections
    from wa_core.explorer.trace import trace_webhook

    bind_fixture_numbers(engine, acme_status="active")
    wid = land(engine, c.inbound("wamid.TR1", T0))
    drain(engine, settings)
    with engine.connect() as conn:
        assert [(i["result"], i["error_kind"]) for i in trace_webhook(conn, wid)["items"]] == [("processed", None)]
    with engine.begin() as conn:  # later, no organization has the number any more
        conn.execute(sa.delete(whatsapp_configs))
        conn.execute(sa.delete(whatsapp_connections))
    with engine.connect() as conn:
        trace = trace_webhook(conn, wid)
    assert trace["items"] == [] and trace["processing"]["items_processed"] == 1  # no "unroutable" made up
    assert [m["wamid"] for m in trace["rows"]["whatsapp_messages"]] == ["wamid.TR1"]  # found by its keys
