"""GraphClient against the Graph emulator over real HTTP on loopback (no database needed).

Covers the Embedded Signup back-end calls (code exchange, subscribed_apps, phone_numbers,
register, smb_app_data, debug_token), the typed errors, retries with backoff, secret hygiene,
and the signed PARTNER_ADDED webhook the emulator pushes like Meta.
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import traceback
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from wa_core.meta.graph import (
    GraphClient,
    GraphError,
    GraphRequestError,
    PermissionDenied,
    RateLimited,
    RegisterLimit,
    SyncAlreadyRequested,
    SyncWindowExpired,
    TokenInvalid,
    TransientGraphError,
    error_from_response,
)
from wa_dev.emulator import GraphEmulator, serve_in_thread
from wa_core.meta.signature import SignatureResult, verify_signature
from wa_core.settings import Settings
from wa_dev.simulate import wire_bytes

APP_ID = "1111222233334444"
APP_SECRET = "emulated-app-secret-do-not-log"
VERSION = "v25.0"
WABA = "100000000000101"
OTHER_WABA = "100000000000102"
OWNER = "300000000000101"
CLOUD = "200000000000101"
COEX = "200000000000102"
WEBHOOK_SECRET = "webhook-secret-for-tests"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    """The emulator's injectable clock."""

    def __init__(self, start: float = T0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


class SleepRecorder:
    """Stands in for time.sleep in the client's backoff: records the delays, never sleeps."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def emulator(clock: Clock) -> GraphEmulator:
    em = GraphEmulator(APP_ID, APP_SECRET, now=clock)
    em.add_waba(WABA, OWNER, numbers=[
        {"id": CLOUD, "display_phone_number": "15550000101", "verified_name": "Cloud Co", "coexistence": False},
        {"id": COEX, "display_phone_number": "15550000102", "verified_name": "Coex Co", "coexistence": True},
    ])
    em.add_waba(OTHER_WABA, "300000000000102", numbers=[
        {"id": "200000000000201", "display_phone_number": "15550000201", "verified_name": "Other", "coexistence": False},
    ])
    return em


@pytest.fixture()
def base_url(emulator: GraphEmulator) -> Iterator[str]:
    url, stop = serve_in_thread(emulator)
    yield url
    stop()


@pytest.fixture()
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture()
def client(base_url: str, sleeps: SleepRecorder) -> Iterator[GraphClient]:
    with GraphClient(base_url, VERSION, app_id=APP_ID, app_secret=APP_SECRET, timeout=5.0, sleep=sleeps) as c:
        yield c


@pytest.fixture()
def token(emulator: GraphEmulator, client: GraphClient) -> str:
    return client.exchange_code(emulator.issue_code(WABA))["access_token"]


class Receiver:
    """A tiny webhook endpoint that records raw bodies and headers."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> PlainTextResponse:
        self.received.append((await request.body(), dict(request.headers)))
        return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    url, stop = serve_in_thread(rec.app)
    yield rec, f"{url}/hook"
    stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leaks(exc: BaseException, *secrets: str) -> list[str]:
    """Which of ``secrets`` appear in the exception's str, repr or formatted traceback."""
    text = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    return [s for s in secrets if s and s in text]


# --- code exchange (Meta, "Onboarding customers as a Tech Provider", step 1) ----------------------------------------------------
def test_exchange_code_returns_business_token_bound_to_the_waba(emulator: GraphEmulator, client: GraphClient) -> None:
    answer = client.exchange_code(emulator.issue_code(WABA))
    assert answer["token_type"] == "bearer" and answer["access_token"].startswith("EAA")
    assert "expires_in" not in answer  # never-expiring by default
    assert emulator.tokens[answer["access_token"]].waba_ids == [WABA]
    (call,) = emulator.calls_to("^/oauth/access_token$")
    assert call.version == VERSION and call.params["client_id"] == APP_ID
    assert call.params["client_secret"] == "[redacted]" and call.params["code"] == "[redacted]"


def test_reused_code_is_error_100_and_not_retried(emulator: GraphEmulator, client: GraphClient, sleeps: SleepRecorder) -> None:
    code = emulator.issue_code(WABA)
    client.exchange_code(code)
    with pytest.raises(GraphRequestError) as info:
        client.exchange_code(code)
    assert info.value.code == 100 and info.value.subcode == 36007 and not info.value.retryable
    assert "used" in info.value.message
    assert sleeps.delays == [] and len(emulator.calls_to("oauth")) == 2
    bogus = "AQnot-a-code-" + "we-issued"  # built at run time: traceback source lines must not show it
    with pytest.raises(GraphRequestError) as unknown:
        client.exchange_code(bogus)
    assert unknown.value.code == 100
    assert not leaks(info.value, code, APP_SECRET) and not leaks(unknown.value, bogus, APP_SECRET)


def test_code_expires_after_30_seconds(emulator: GraphEmulator, client: GraphClient, clock: Clock) -> None:
    fresh = emulator.issue_code(WABA)
    stale = emulator.issue_code(WABA)
    clock.t += 29
    assert client.exchange_code(fresh)["access_token"]
    clock.t += 2  # 31 s after issue
    with pytest.raises(GraphRequestError) as info:
        client.exchange_code(stale)
    assert info.value.code == 100 and "expired" in info.value.message


def test_wrong_client_secret_is_a_request_error_not_transient(emulator: GraphEmulator, base_url: str) -> None:
    sleeps, wrong = SleepRecorder(), "wrong-secret-" + "xyz"
    with GraphClient(base_url, VERSION, app_id=APP_ID, app_secret=wrong, sleep=sleeps) as bad:
        with pytest.raises(GraphRequestError) as info:
            bad.exchange_code(emulator.issue_code(WABA))
    assert info.value.code == 1 and info.value.message == "Error validating client secret."
    assert not info.value.retryable and sleeps.delays == [] and not leaks(info.value, wrong)


def test_exchange_code_accepts_bare_string_and_json_string_bodies() -> None:
    bodies = iter([b"EAAbareTokenValue123", b'"EAAjsonStringToken456"'])
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=next(bodies)))
    with GraphClient("https://graph.example.invalid", VERSION, app_id=APP_ID, app_secret=APP_SECRET,
                     transport=transport) as c:
        assert c.exchange_code("code-1") == {"access_token": "EAAbareTokenValue123"}
        assert c.exchange_code("code-2") == {"access_token": "EAAjsonStringToken456"}


def test_expiring_tokens_report_expires_in(clock: Clock) -> None:
    em = GraphEmulator(APP_ID, APP_SECRET, now=clock, token_expires_in=60 * 24 * 3600)
    em.add_waba(WABA, OWNER)
    url, stop = serve_in_thread(em)
    try:
        with GraphClient(url, VERSION, app_id=APP_ID, app_secret=APP_SECRET) as c:
            answer = c.exchange_code(em.issue_code(WABA))
            assert answer["expires_in"] == 60 * 24 * 3600
            data = c.debug_token(answer["access_token"])
            assert data["is_valid"] is True and data["expires_at"] == int(T0) + 60 * 24 * 3600
            clock.t += 61 * 24 * 3600
            expired = c.debug_token(answer["access_token"])
            assert expired["is_valid"] is False and expired["error"]["code"] == 190
            with pytest.raises(TokenInvalid) as info:
                c.subscribe_app(WABA, answer["access_token"])
            assert "expired" in info.value.message
    finally:
        stop()


# --- subscribed_apps (§5.2 step 2, §1.6) ----------------------------------------------------------
def test_subscribe_list_unsubscribe(emulator: GraphEmulator, client: GraphClient, token: str) -> None:
    assert client.subscribed_apps(WABA, token) == []
    assert client.subscribe_app(WABA, token) is True
    (app,) = client.subscribed_apps(WABA, token)
    assert app["whatsapp_business_api_data"]["id"] == APP_ID
    assert client.unsubscribe_app(WABA, token) is True
    assert client.subscribed_apps(WABA, token) == []
    calls = emulator.calls_to("/subscribed_apps$")
    assert [c.method for c in calls] == ["GET", "POST", "GET", "DELETE", "GET"]
    assert all(c.auth == "bearer" and "access_token" not in c.params for c in calls)


def test_token_of_another_waba_and_bad_tokens(emulator: GraphEmulator, client: GraphClient, token: str,
                                              sleeps: SleepRecorder) -> None:
    with pytest.raises(GraphRequestError) as other:
        client.subscribe_app(OTHER_WABA, token)  # valid token, WABA not shared with it
    assert other.value.code == 100 and other.value.subcode == 33
    bogus = "EAAnot-a-token-" + "we-issued"
    with pytest.raises(TokenInvalid) as unknown:
        client.subscribe_app(WABA, bogus)
    assert unknown.value.code == 190 and not unknown.value.retryable
    emulator.invalidate_token(token)
    with pytest.raises(TokenInvalid):
        client.subscribed_apps(WABA, token)
    assert sleeps.delays == []
    assert not leaks(unknown.value, bogus) and not leaks(other.value, token)


# --- phone numbers (§5.2, §4) ---------------------------------------------------------------------
def test_phone_numbers_follow_paging(clock: Clock) -> None:
    em = GraphEmulator(APP_ID, APP_SECRET, now=clock, page_size=2)
    em.add_waba(WABA, OWNER, numbers=[
        {"id": f"20000000000030{i}", "display_phone_number": f"1555000030{i}", "verified_name": f"N{i}",
         "coexistence": i == 3}
        for i in range(5)
    ])
    tok = em.add_token(WABA)
    url, stop = serve_in_thread(em)
    try:
        with GraphClient(url, VERSION, app_id=APP_ID, app_secret=APP_SECRET) as c:
            numbers = c.phone_numbers(WABA, tok)
            assert [n["id"] for n in numbers] == [f"20000000000030{i}" for i in range(5)]
            assert all(n["platform_type"] == "CLOUD_API" for n in numbers)
            assert [n["is_on_biz_app"] for n in numbers] == [False, False, False, True, False]
            assert set(numbers[0]) == {"id", "display_phone_number", "verified_name", "code_verification_status",
                                       "quality_rating", "platform_type", "is_on_biz_app"}
            calls = em.calls_to("/phone_numbers$")
            assert len(calls) == 3  # pages of 2, 2, 1
            assert "after" not in calls[0].params and all("after" in call.params for call in calls[1:])
            assert all(call.auth == "bearer" and "access_token" not in call.params for call in calls)
            assert [n["id"] for n in c.phone_numbers(WABA, tok, limit=5)] == [n["id"] for n in numbers]
    finally:
        stop()


# --- register (§5.2 step 3) -----------------------------------------------------------------------
def test_register_cloud_number_and_refuse_coexistence(emulator: GraphEmulator, client: GraphClient, token: str) -> None:
    assert client.register(CLOUD, token, "123456") is True
    assert emulator.numbers[CLOUD].registered
    (call,) = emulator.calls_to("/register$")
    assert call.body == {"messaging_product": "whatsapp", "pin": "[redacted]"}
    with pytest.raises(GraphRequestError) as coex:
        client.register(COEX, token, "123456")
    assert coex.value.code == 100 and "coexistence" in coex.value.message
    with pytest.raises(GraphRequestError) as mismatch:
        client.register(CLOUD, token, "654321")  # two-step PIN already set
    assert mismatch.value.code == 133005
    with pytest.raises(ValueError):
        client.register(CLOUD, token, "12ab")


def test_register_limit_is_133016(emulator: GraphEmulator, client: GraphClient, token: str, clock: Clock) -> None:
    for _ in range(10):
        assert client.register(CLOUD, token, "123456")
    with pytest.raises(RegisterLimit) as info:
        client.register(CLOUD, token, "123456")
    assert info.value.code == 133016 and not info.value.retryable
    clock.t += 72 * 3600 + 1  # the 72 h window rolls
    assert client.register(CLOUD, token, "123456")


# --- coexistence sync (§4) ------------------------------------------------------------------------
def test_sync_each_type_once(emulator: GraphEmulator, client: GraphClient, token: str) -> None:
    contacts = client.request_sync(COEX, token, "smb_app_state_sync")
    history = client.request_sync(COEX, token, "history")
    assert contacts and history and contacts != history
    with pytest.raises(SyncAlreadyRequested) as again:
        client.request_sync(COEX, token, "history")
    assert again.value.code == 2593107 and not again.value.retryable
    with pytest.raises(GraphRequestError) as cloud:
        client.request_sync(CLOUD, token, "history")
    assert cloud.value.code == 100
    bodies = [c.body for c in emulator.calls_to("/smb_app_data$")]
    assert bodies[0] == {"messaging_product": "whatsapp", "sync_type": "smb_app_state_sync"}


def test_sync_window_expires_after_24_hours(emulator: GraphEmulator, client: GraphClient, token: str,
                                            clock: Clock) -> None:
    clock.t += 24 * 3600 + 1
    with pytest.raises(SyncWindowExpired) as info:
        client.request_sync(COEX, token, "smb_app_state_sync")
    assert info.value.code == 2593108


# --- debug_token (§6) -----------------------------------------------------------------------------
def test_debug_token_valid_never_expires_and_invalid(emulator: GraphEmulator, client: GraphClient, token: str) -> None:
    data = client.debug_token(token)
    assert data["is_valid"] is True and data["expires_at"] == 0 and data["app_id"] == APP_ID
    assert data["type"] == "SYSTEM_USER" and "whatsapp_business_management" in data["scopes"]
    assert {"scope": "whatsapp_business_management", "target_ids": [WABA]} in data["granular_scopes"]
    emulator.invalidate_token(token)
    dead = client.debug_token(token)
    assert dead["is_valid"] is False and dead["error"]["code"] == 190
    unknown = client.debug_token("EAAgarbage")
    assert unknown["is_valid"] is False
    (call, *_) = emulator.calls_to("^/debug_token$")
    assert call.params == {"input_token": "[redacted]", "access_token": "[redacted]"}


def test_debug_token_app_token_variants(emulator: GraphEmulator, base_url: str, token: str) -> None:
    emulator.app_access_token = "configured-app-token-abc"
    with GraphClient(base_url, VERSION, app_id=None, app_secret=None,
                     app_access_token="configured-app-token-abc") as c:
        assert c.debug_token(token)["is_valid"] is True
    wrong = "wrong-app-" + "token"
    with GraphClient(base_url, VERSION, app_id=APP_ID, app_secret=None, app_access_token=wrong) as c:
        with pytest.raises(TokenInvalid) as info:
            c.debug_token(token)
        assert not leaks(info.value, wrong, token)
    with GraphClient(base_url, VERSION, app_id=APP_ID, app_secret=None) as c, pytest.raises(ValueError):
        c.debug_token(token)


def test_from_settings(emulator: GraphEmulator, base_url: str, token: str) -> None:
    settings = Settings(graph_api_base_url=base_url, graph_api_version="v24.0", meta_app_id=APP_ID,
                        meta_app_secret=APP_SECRET)
    with GraphClient.from_settings(settings, max_retries=0) as c:
        assert c.api_url == f"{base_url}/v24.0" and c.max_retries == 0
        assert c.debug_token(token)["is_valid"] is True
    assert emulator.calls[-1].version == "v24.0"


# --- retries --------------------------------------------------------------------------------------
def test_rate_limit_retried_with_exponential_backoff(emulator: GraphEmulator, client: GraphClient, token: str,
                                                     sleeps: SleepRecorder) -> None:
    emulator.fail_next("/phone_numbers$", code=80007, times=2, message="(#80007) Rate limit issues")
    assert len(client.phone_numbers(WABA, token)) == 2
    assert len(emulator.calls_to("/phone_numbers$")) == 3
    first, second = sleeps.delays
    assert 1.0 <= first <= 2.0 and 2.0 <= second <= 3.0 and second > first  # 1·2^(n-1) + jitter ≤ 1


def test_backoff_without_jitter_doubles(emulator: GraphEmulator, base_url: str, token: str) -> None:
    sleeps = SleepRecorder()
    emulator.fail_next("/subscribed_apps$", code=4, times=3)
    with GraphClient(base_url, VERSION, app_id=APP_ID, app_secret=APP_SECRET, sleep=sleeps, backoff_jitter=0) as c:
        assert c.subscribe_app(WABA, token) is True
    assert sleeps.delays == [1.0, 2.0, 4.0]


def test_rate_limit_gives_up_after_max_retries(emulator: GraphEmulator, client: GraphClient, token: str,
                                               sleeps: SleepRecorder) -> None:
    emulator.fail_next("/subscribed_apps$", code=130429, times=10)
    with pytest.raises(RateLimited) as info:
        client.subscribed_apps(WABA, token)
    assert info.value.code == 130429 and info.value.retryable
    assert len(sleeps.delays) == 3 and len(emulator.calls_to("/subscribed_apps$")) == 4


def test_token_error_is_not_retried(emulator: GraphEmulator, client: GraphClient, token: str,
                                    sleeps: SleepRecorder) -> None:
    emulator.fail_next("/subscribed_apps$", code=190, message="Error validating access token")
    with pytest.raises(TokenInvalid) as info:
        client.subscribe_app(WABA, token)
    assert str(info.value) == "Graph error 190: Error validating access token"
    assert sleeps.delays == [] and len(emulator.calls_to("/subscribed_apps$")) == 1


def test_http_500_retried_then_transient_error(emulator: GraphEmulator, client: GraphClient, token: str,
                                               sleeps: SleepRecorder) -> None:
    emulator.fail_next("/phone_numbers$", code=2, times=2, http_status=500, message="Service temporarily unavailable")
    assert len(client.phone_numbers(WABA, token)) == 2  # recovered on the third attempt
    emulator.fail_next("/phone_numbers$", code=2, times=10, http_status=500, message="Service temporarily unavailable")
    with pytest.raises(TransientGraphError) as info:
        client.phone_numbers(WABA, token)
    assert info.value.http_status == 500 and info.value.code == 2 and info.value.retryable
    assert len(sleeps.delays) == 2 + 3 and len(emulator.calls_to("/phone_numbers$")) == 3 + 4


def test_non_idempotent_calls_are_not_retried_after_ambiguous_failures(
    emulator: GraphEmulator, client: GraphClient, token: str, sleeps: SleepRecorder
) -> None:
    emulator.fail_next("/smb_app_data$", code=1, http_status=500, message="An unknown error occurred")
    with pytest.raises(TransientGraphError):
        client.request_sync(COEX, token, "history")
    assert sleeps.delays == [] and len(emulator.calls_to("/smb_app_data$")) == 1
    emulator.fail_next("/smb_app_data$", code=80007)  # a rate-limit refusal is safe to repeat
    assert client.request_sync(COEX, token, "history")
    assert len(sleeps.delays) == 1


def test_non_json_5xx_is_transient_and_4xx_is_request_error() -> None:
    answers = iter([httpx.Response(502, text="<html>Bad gateway</html>"), httpx.Response(404, text="nope")])
    transport = httpx.MockTransport(lambda request: next(answers))
    with GraphClient("https://graph.example.invalid", VERSION, app_id=APP_ID, app_secret=APP_SECRET,
                     transport=transport, max_retries=0) as c:
        with pytest.raises(TransientGraphError) as gateway:
            c.subscribed_apps(WABA, "EAAtoken")
        assert gateway.value.code is None and gateway.value.http_status == 502
        with pytest.raises(GraphRequestError) as missing:
            c.subscribed_apps(WABA, "EAAtoken")
        assert missing.value.http_status == 404 and "nope" not in str(missing.value)


def test_connection_refused_is_transient_and_retried(sleeps: SleepRecorder) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, inspected = "AQsome-" + "code", "EAAinspected-" + "token"
    with GraphClient(url, VERSION, app_id=APP_ID, app_secret=APP_SECRET, sleep=sleeps, max_retries=2) as c:
        with pytest.raises(TransientGraphError) as info:
            c.exchange_code(code)  # never reached Meta, so even the single-use call is retried
        assert info.value.request_sent is False and info.value.http_status is None
        assert info.value.path == f"/{VERSION}/oauth/access_token"
        assert len(sleeps.delays) == 2
        with pytest.raises(TransientGraphError) as dbg:
            c.debug_token(inspected)
    for exc in (info.value, dbg.value):
        assert not leaks(exc, APP_SECRET, code, inspected, "client_secret=", "input_token=")


def test_timeout_is_transient_and_single_use_calls_are_not_repeated(
    emulator: GraphEmulator, base_url: str
) -> None:
    sleeps = SleepRecorder()
    emulator.delay_next("^/oauth/access_token$", 1.0)
    with GraphClient(base_url, VERSION, app_id=APP_ID, app_secret=APP_SECRET, sleep=sleeps, timeout=0.2) as c:
        with pytest.raises(TransientGraphError) as info:
            c.exchange_code(emulator.issue_code(WABA))
    assert "timed out" in info.value.message and info.value.request_sent is True
    assert sleeps.delays == []


# --- secret hygiene -------------------------------------------------------------------------------
def test_errors_never_carry_tokens_or_the_app_secret(emulator: GraphEmulator, client: GraphClient, token: str) -> None:
    # worst case: an upstream message that quotes the credentials
    emulator.fail_next("/subscribed_apps$", code=190, message=f"Bad token {token} for app secret {APP_SECRET}")
    with pytest.raises(TokenInvalid) as info:
        client.subscribe_app(WABA, token)
    assert not leaks(info.value, token, APP_SECRET) and "[redacted]" in str(info.value)
    emulator.fail_next("^/debug_token$", code=100, message=f"cannot use {APP_ID}|{APP_SECRET} on {token}")
    with pytest.raises(GraphRequestError) as dbg:
        client.debug_token(token)
    assert not leaks(dbg.value, token, APP_SECRET, f"{APP_ID}|{APP_SECRET}")
    assert dbg.value.path == f"/{VERSION}/debug_token"  # the path, never the query
    assert not any(s in repr(emulator.calls) for s in (token, APP_SECRET))


def test_httpx_request_log_has_no_query_secrets(emulator: GraphEmulator, client: GraphClient,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    code = emulator.issue_code(WABA)
    tok = client.exchange_code(code)["access_token"]
    client.debug_token(tok)
    text = caplog.text
    assert "HTTP Request" in text and "REDACTED" in text
    assert not any(s in text for s in (APP_SECRET, code, tok))


def test_ids_cannot_change_the_request_path(client: GraphClient, token: str) -> None:
    with pytest.raises(ValueError):
        client.subscribe_app("../me", token)
    with pytest.raises(ValueError):
        client.request_sync(COEX, token, "everything")  # type: ignore[arg-type]


# --- emulator details -----------------------------------------------------------------------------
def test_emulator_needs_a_version_prefix_and_serves_number_nodes(emulator: GraphEmulator, base_url: str,
                                                                 token: str) -> None:
    unversioned = httpx.get(f"{base_url}/oauth/access_token")
    assert unversioned.status_code == 400 and unversioned.json()["error"]["code"] == 2500
    node = httpx.get(f"{base_url}/v23.0/{COEX}", params={"fields": "is_on_biz_app,platform_type"},
                     headers={"Authorization": f"Bearer {token}"})
    assert node.json() == {"id": COEX, "is_on_biz_app": True, "platform_type": "CLOUD_API"}


# --- PARTNER_ADDED webhook (§3.1) -----------------------------------------------------------------
def test_send_partner_added_is_signed_and_shaped_like_meta(emulator: GraphEmulator,
                                                           receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.received.clear()
    emulator.solution_id = "600000000000101"
    assert emulator.send_partner_added(WABA, url, WEBHOOK_SECRET, entry_time=1767225700) == 200
    ((body, headers),) = rec.received
    assert verify_signature(body, headers["x-hub-signature-256"], WEBHOOK_SECRET) is SignatureResult.VALID
    assert verify_signature(body, headers["x-hub-signature-256"], "other-secret") is SignatureResult.MISMATCH
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert body == wire_bytes(payload)
    assert payload["object"] == "whatsapp_business_account"
    (entry,) = payload["entry"]
    assert entry["id"] == emulator.partner_business_id and entry["time"] == 1767225700
    (change,) = entry["changes"]
    assert change["field"] == "account_update" and change["value"]["event"] == "PARTNER_ADDED"
    assert change["value"]["waba_info"] == {
        "waba_id": WABA, "owner_business_id": OWNER, "solution_id": "600000000000101",
        "solution_partner_business_ids": [emulator.partner_business_id],
    }
    assert emulator.send_partner_added(WABA, f"http://127.0.0.1:{closed_port()}/hook", WEBHOOK_SECRET) == 0


def test_partner_added_is_pushed_after_code_exchange(clock: Clock, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.received.clear()
    em = GraphEmulator(APP_ID, APP_SECRET, now=clock, auto_partner_added=(url, WEBHOOK_SECRET))
    em.add_waba(WABA, OWNER)
    base, stop = serve_in_thread(em)
    try:
        with GraphClient(base, VERSION, app_id=APP_ID, app_secret=APP_SECRET) as c:
            c.exchange_code(em.issue_code(WABA))
        (sent,) = em.wait_for_webhooks(1)
    finally:
        stop()
    assert sent.status == 200
    ((body, headers),) = rec.received
    assert verify_signature(body, headers["x-hub-signature-256"], WEBHOOK_SECRET) is SignatureResult.VALID
    value = json.loads(body)["entry"][0]["changes"][0]["value"]
    assert value["waba_info"]["waba_id"] == WABA and "solution_id" not in value["waba_info"]


# --- error mapping --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        (190, 401, TokenInvalid), (102, 400, TokenInvalid), (463, 400, TokenInvalid), (467, 400, TokenInvalid),
        (10, 403, PermissionDenied), (200, 403, PermissionDenied), (299, 403, PermissionDenied),
        (4, 400, RateLimited), (17, 400, RateLimited), (32, 400, RateLimited), (613, 400, RateLimited),
        (80007, 400, RateLimited), (130429, 400, RateLimited), (131056, 400, RateLimited),
        (133016, 400, RegisterLimit), (2593107, 400, SyncAlreadyRequested), (2593108, 400, SyncWindowExpired),
        (1, 500, TransientGraphError), (2, 400, TransientGraphError), (100, 500, TransientGraphError),
        (100, 400, GraphRequestError), (131048, 400, GraphRequestError),
        (190, 500, TokenInvalid),  # the code decides, not the HTTP status
    ],
)
def test_error_from_response_maps_codes(code: int, status: int, cls: type[GraphError]) -> None:
    err = error_from_response(status, {"error": {"message": "m", "type": "GraphMethodException", "code": code,
                                                 "error_subcode": 99, "fbtrace_id": "T",
                                                 "error_data": {"details": "d"}}})
    assert type(err) is cls
    assert (err.code, err.subcode, err.http_status, err.fbtrace_id, err.details) == (code, 99, status, "T", "d")
    assert err.retryable is (cls in (RateLimited, TransientGraphError))
    assert str(err) == f"Graph error {code}: m"


def test_errors_pickle() -> None:
    err = error_from_response(400, {"error": {"code": 80007, "message": "m", "fbtrace_id": "T"}}, path="/v25.0/1/x")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RateLimited and (back.code, back.path, back.retryable, str(back)) == (80007, "/v25.0/1/x", True, str(err))
    own = pickle.loads(pickle.dumps(_NoArgs()))  # subclasses with their own __init__ survive too
    assert type(own) is _NoArgs and own.retryable is True and str(own) == "Graph error: not yet"


class _NoArgs(GraphError):
    def __init__(self) -> None:
        super().__init__("not yet", retryable=True)


def test_error_from_response_edge_cases() -> None:
    secret_client = error_from_response(400, {"error": {"message": "Error validating client secret.",
                                                        "type": "OAuthException", "code": 1}})
    assert type(secret_client) is GraphRequestError and not secret_client.retryable
    transient = error_from_response(500, {"error": {"message": "An unexpected error has occurred. Please retry your "
                                                    "request later.", "type": "OAuthException", "is_transient": True,
                                                    "code": 2}})
    assert type(transient) is TransientGraphError and transient.retryable
    not_transient = error_from_response(400, {"error": {"message": "x", "code": 2, "is_transient": False}})
    assert type(not_transient) is GraphRequestError
    assert type(error_from_response(503, "<html>down</html>")) is TransientGraphError
    assert type(error_from_response(400, b'{"error": {"code": "190", "message": "x"}}')) is TokenInvalid
    assert type(error_from_response(400, None)) is GraphRequestError
    redacted = error_from_response(400, {"error": {"code": 100, "message": "token EAAsecret bad",
                                                   "error_data": {"details": "EAAsecret"}}}, secrets=["EAAsecret"])
    assert "EAAsecret" not in str(redacted) and redacted.details == "[redacted]"
