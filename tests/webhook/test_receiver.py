"""The receiver: handshake, signature, size limit, durable landing before 200, 503 paths."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, TOKEN_KEY, VERIFY_TOKEN, fixture_bytes
from tests.helpers import rows
from wa_webhook.app import create_app
from wa_core.db.schema import whatsapp_webhook_logs
from wa_core.meta.signature import sign
from wa_core.settings import Settings

URL = "/api/v1/whatsapp/webhook"


@pytest.fixture()
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(whatsapp_webhook_logs)).scalar_one()


def post(client: TestClient, body: bytes, header: str | None, **headers: str):
    h = {"Content-Type": "application/json", **headers}
    if header is not None:
        h["X-Hub-Signature-256"] = header
    return client.post(URL, content=body, headers=h)


# --- handshake -------------------------------------------------------------------------
def test_handshake_echoes_the_challenge(client: TestClient) -> None:
    r = client.get(URL, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
    assert r.status_code == 200
    assert r.text == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "tökén-ñ-✓", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
def test_handshake_refuses_wrong_non_ascii_or_missing_token_with_403(client: TestClient, params: dict) -> None:
    assert client.get(URL, params=params).status_code == 403


def test_handshake_with_raw_non_utf8_query_is_403_not_500(client: TestClient) -> None:
    r = client.get(URL + "?hub.mode=subscribe&hub.verify_token=%FF%FE&hub.challenge=1")
    assert r.status_code == 403


def test_handshake_without_configured_token_is_503(settings: Settings, engine: Engine) -> None:
    with TestClient(create_app(settings.model_copy(update={"meta_webhook_verify_token": None}))) as c:
        r = c.get(URL, params={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1"})
    assert r.status_code == 503


# --- POST ------------------------------------------------------------------------------
def test_signed_delivery_is_stored_byte_exact_before_200(client: TestClient, engine: Engine, signatures: dict) -> None:
    name = "messages_text_unicode_escaped.json"
    body = fixture_bytes(name)
    r = post(client, body, signatures[name], **{"X-Request-Id": "req-123"})
    assert r.status_code == 200
    [row] = rows(engine, whatsapp_webhook_logs)
    assert bytes(row.body) == body
    assert row.body_sha256 == hashlib.sha256(body).hexdigest()
    assert row.body_size == len(body)
    assert row.signature_status == "valid"
    assert row.status == "pending" and row.attempts == 0
    assert row.organization_id is None  # filled by processing, not at landing
    assert row.waba_id == "100000000000001"  # the routing hint read from the envelope
    assert row.request_id == "req-123"
    assert row.received_at.tzinfo is not None


def test_reserialized_body_with_original_signature_is_401(client: TestClient, engine: Engine, signatures: dict) -> None:
    import json

    name = "messages_text_unicode_escaped.json"
    reserialized = json.dumps(json.loads(fixture_bytes(name)), separators=(",", ":")).encode()
    assert post(client, reserialized, signatures[name]).status_code == 401
    assert count(engine) == 0


@pytest.mark.parametrize("header", [None, "", "sha256=deadbeef", "sha256=" + "a" * 64, "sha1=" + "a" * 40])
def test_missing_or_wrong_signature_is_401_and_nothing_stored(client: TestClient, engine: Engine, header) -> None:
    assert post(client, fixture_bytes("messages_text.json"), header).status_code == 401
    assert count(engine) == 0


def test_no_app_secret_configured_refuses_with_503(settings: Settings, engine: Engine, signatures: dict) -> None:
    with TestClient(create_app(settings.model_copy(update={"meta_app_secret": None}))) as c:
        r = post(c, fixture_bytes("messages_text.json"), signatures["messages_text.json"])
    assert r.status_code == 503
    assert count(engine) == 0


def test_empty_app_secret_also_refuses(settings: Settings, engine: Engine) -> None:
    with TestClient(create_app(settings.model_copy(update={"meta_app_secret": SecretStr("")}))) as c:
        r = post(c, b"{}", sign(b"{}", ""))
    assert r.status_code == 503
    assert count(engine) == 0


def test_body_over_limit_is_413_by_content_length(settings: Settings, engine: Engine) -> None:
    limit = 3 * 1024 * 1024
    with TestClient(create_app(settings.model_copy(update={"webhook_max_body_bytes": limit}))) as c:
        body = b"x" * (limit + 1)
        assert post(c, body, sign(body, APP_SECRET)).status_code == 413
        ok = b'{"entry":[]}' + b" " * (limit - 12)  # exactly at the limit: accepted
        assert post(c, ok, sign(ok, APP_SECRET)).status_code == 200
    assert count(engine) == 1


def test_body_over_limit_is_413_while_streaming_without_content_length(settings: Settings, engine: Engine) -> None:
    limit = 3 * 1024 * 1024
    body = b"y" * (limit + 10)

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    with TestClient(create_app(settings.model_copy(update={"webhook_max_body_bytes": limit}))) as c:
        r = c.post(URL, content=chunks(), headers={"X-Hub-Signature-256": sign(body, APP_SECRET)})
    assert r.status_code == 413
    assert count(engine) == 0


def test_limit_cannot_be_configured_below_metas_3mb() -> None:
    with pytest.raises(ValueError):
        Settings(webhook_max_body_bytes=1024)


def test_signed_non_json_body_is_stored_and_acknowledged(client: TestClient, engine: Engine, signatures: dict) -> None:
    body = fixture_bytes("not_json.txt")
    assert post(client, body, signatures["not_json.txt"]).status_code == 200
    [row] = rows(engine, whatsapp_webhook_logs)
    assert bytes(row.body) == body


def test_database_unreachable_is_503_so_meta_redelivers(settings: Settings, signatures: dict) -> None:
    down = settings.model_copy(
        update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere", "db_timeout_seconds": 1.0}
    )
    with TestClient(create_app(down)) as c:
        r = post(c, fixture_bytes("messages_text.json"), signatures["messages_text.json"])
        assert r.status_code == 503
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200


def test_missing_table_is_503_not_500(settings: Settings, signatures: dict) -> None:
    # a database that exists but was never migrated: still a 503, Meta retries
    down = settings.model_copy(update={"database_url": settings.database_url.rsplit("/", 1)[0] + "/postgres"})
    with TestClient(create_app(down)) as c:
        r = post(c, fixture_bytes("messages_text.json"), signatures["messages_text.json"])
    assert r.status_code == 503


def test_health_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ok"


def test_embedded_sqlite_default_lands_too(tmp_path, signatures: dict) -> None:
    from wa_core.db.migrate import upgrade

    local = Settings(
        data_dir=tmp_path, database_url=None, meta_app_secret=APP_SECRET, meta_webhook_verify_token=VERIFY_TOKEN,
        token_encryption_key=TOKEN_KEY,
    )
    assert not local.is_postgres
    upgrade(local)
    with TestClient(create_app(local)) as c:
        assert post(c, fixture_bytes("history.json"), signatures["history.json"]).status_code == 200
        assert c.get("/readyz").status_code == 200
    from wa_core.db.engine import create_sync_engine

    eng = create_sync_engine(local)
    [row] = rows(eng, whatsapp_webhook_logs)
    assert bytes(row.body) == fixture_bytes("history.json")
    eng.dispose()


def test_database_down_answers_fast_503s_not_a_queue_of_timeouts(settings: Settings, signatures: dict) -> None:
    import time

    import socket

    # a local "database" that accepts connections and never answers: each connection attempt
    # waits out its 1 s timeout; without failing fast, 5 requests would take 5 s
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    down = settings.model_copy(update={"database_url": f"postgresql://postgres@127.0.0.1:{port}/x", "db_timeout_seconds": 1.0})
    body, header = fixture_bytes("messages_text.json"), signatures["messages_text.json"]
    try:
        with TestClient(create_app(down)) as c:
            started = time.monotonic()
            codes = [post(c, body, header).status_code for _ in range(5)]
            elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert codes == [503] * 5
    assert elapsed < 3.5  # the first waits its timeout; the next fail fast


def test_an_unusable_request_id_header_never_costs_a_delivery(client: TestClient, engine: Engine, signatures: dict) -> None:
    body, header = fixture_bytes("messages_text.json"), signatures["messages_text.json"]
    for request_id in ("x" * 65, "a b\tc", "ünïcode".encode()):
        assert post(client, body, header, **{"X-Request-Id": request_id}).status_code == 200
    stored = [r.request_id for r in rows(engine, whatsapp_webhook_logs)]
    assert len(stored) == 3 and all(len(r) == 32 for r in stored)


def test_handshake_refuses_repeated_parameters_and_odd_challenges(client: TestClient) -> None:
    ok = f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"
    assert client.get(f"{URL}?{ok}&hub.verify_token=wrong&hub.challenge=1").status_code == 403
    assert client.get(f"{URL}?hub.verify_token=wrong&{ok}&hub.challenge=1").status_code == 403
    assert client.get(f"{URL}?{ok}&hub.challenge=%3Cscript%3E").status_code == 400
    r = client.get(f"{URL}?{ok}&hub.challenge=987654321")
    assert r.status_code == 200 and r.text == "987654321" and r.headers["x-content-type-options"] == "nosniff"


def test_sqlite_file_deleted_under_the_receiver_is_503_not_a_lost_200(tmp_path, signatures: dict) -> None:
    import os

    from wa_core.db.migrate import upgrade

    local = Settings(data_dir=tmp_path, database_url=None, meta_app_secret=APP_SECRET, meta_webhook_verify_token=VERIFY_TOKEN, token_encryption_key=TOKEN_KEY)
    upgrade(local)
    body, header = fixture_bytes("messages_text.json"), signatures["messages_text.json"]
    with TestClient(create_app(local)) as c:
        assert post(c, body, header).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(str(local.sqlite_path) + suffix):
                os.remove(str(local.sqlite_path) + suffix)
        assert post(c, body, header).status_code == 503
        assert c.get("/readyz").status_code == 503
        upgrade(local)  # the operator restores a database: deliveries land in it again
        assert post(c, body, header).status_code == 200
    from wa_core.db.engine import create_sync_engine

    eng = create_sync_engine(local)
    assert len(rows(eng, whatsapp_webhook_logs)) == 1
    eng.dispose()


def test_previous_app_secret_still_verifies_during_a_rotation(settings: Settings, engine: Engine) -> None:
    rotated = settings.model_copy(update={"meta_app_secret": SecretStr("new-secret"), "meta_app_secret_previous": SecretStr(APP_SECRET)})
    body = fixture_bytes("messages_text.json")
    with TestClient(create_app(rotated)) as c:
        assert post(c, body, sign(body, "new-secret")).status_code == 200
        assert post(c, body, sign(body, APP_SECRET)).status_code == 200  # Meta's retries of older deliveries
        assert post(c, body, sign(body, "some-other-secret")).status_code == 401
    assert sorted(r.signature_status for r in rows(engine, whatsapp_webhook_logs)) == ["valid", "valid_previous"]
    with TestClient(create_app(settings.model_copy(update={"meta_app_secret": SecretStr("new-secret")}))) as c:
        assert post(c, body, sign(body, APP_SECRET)).status_code == 401  # grace period over


def test_metrics_count_outcomes_signature_failures_latency_and_sizes(client: TestClient, signatures: dict) -> None:
    import re as _re

    def value(text: str, name: str) -> float:
        m = _re.search(rf"^{_re.escape(name)} (\S+)$", text, _re.M)
        return float(m.group(1)) if m else 0.0

    before = client.get("/metrics").text
    body = fixture_bytes("messages_text.json")
    assert post(client, body, signatures["messages_text.json"]).status_code == 200
    assert post(client, body, "sha256=" + "0" * 64).status_code == 401
    after = client.get("/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert value(text, 'wa_webhook_requests_total{outcome="landed"}') == value(before, 'wa_webhook_requests_total{outcome="landed"}') + 1
    assert value(text, 'wa_webhook_signature_failures_total{reason="mismatch"}') == value(before, 'wa_webhook_signature_failures_total{reason="mismatch"}') + 1
    assert value(text, "wa_webhook_landing_seconds_count") == value(before, "wa_webhook_landing_seconds_count") + 1
    assert value(text, "wa_webhook_body_bytes_sum") - value(before, "wa_webhook_body_bytes_sum") == len(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [("webhook_bad_signature_limit", "1000 per min"), ("api_ip_limit", "300 per min"), ("api_org_limit", "1/second;2/minute"), ("api_ip_limit", "")],
)
def test_a_malformed_rate_limit_is_refused_when_the_settings_load(settings: Settings, field: str, value: str) -> None:
    """A rate limit the limiter cannot parse would turn each client request it meters into a
    500: it is refused at start-up, naming the setting."""
    with pytest.raises(ValidationError, match=field.upper()):
        Settings(**{**settings.model_dump(), field: value})


def test_a_well_formed_rate_limit_still_meters_bad_signatures(settings: Settings) -> None:
    limited = Settings(**{**settings.model_dump(), "webhook_bad_signature_limit": " 1 per 1 minute "})
    assert limited.webhook_bad_signature_limit == "1 per 1 minute"
    with TestClient(create_app(limited), raise_server_exceptions=False) as client:
        bad = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
        codes = [client.post("/api/v1/whatsapp/webhook", content=b"{}", headers=bad).status_code for _ in range(2)]
    assert codes == [401, 429]


@pytest.mark.parametrize("field", ["graph_api_base_url", "graph_api_version"])
def test_graph_settings_are_stripped_and_a_control_character_is_refused(field: str) -> None:
    """A ``.env`` file saved with CRLF line ends leaves a carriage return at the end of a value:
    surrounding blanks are stripped; a control character inside is refused, naming the setting."""
    value = Settings.model_fields[field].default
    assert getattr(Settings(**{field: f" {value}\r"}), field) == value
    with pytest.raises(ValidationError, match=f"{field.upper()} contains a control character"):
        Settings(**{field: value[:3] + "\x00" + value[3:]})
