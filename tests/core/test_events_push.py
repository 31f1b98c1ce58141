"""Push delivery against a local receiver that fails, times out and recovers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from standardwebhooks.webhooks import Webhook

from tests.helpers import bind_fixture_numbers
from wa_core.db.schema import as_utc, utcnow
from wa_core.db.schema_events import whatsapp_event_deliveries, whatsapp_event_endpoints
from wa_core.events.delivery import run_delivery
from wa_core.events.outbox import write_events
from wa_core.events.push import deliver_endpoint, endpoint_status, enqueue_replay, rotate_secret, set_endpoint
from wa_core.meta.crypto import TokenCipher
from wa_core.processing.state import EventSpec
from wa_core.settings import Settings


class Receiver:
    """A local endpoint: ``mode`` is ``ok``, ``fail`` (500) or ``slow`` (answers after the timeout)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.mode == "slow":
                    time.sleep(0.6)
                self.send_response(500 if receiver.mode == "fail" else 204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        # a short poll interval: shutdown() waits for the loop to notice (0.5 s by default)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture()
def push_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"event_push_retry_base_seconds": 0.01, "event_push_retry_max_seconds": 0.02,
                                       "event_push_disable_after_failures": 4, "event_push_timeout_seconds": 0.3})


def cipher(settings: Settings) -> TokenCipher:
    return TokenCipher.from_hex(settings.token_encryption_key, settings.token_encryption_previous_keys)


def emit(engine: Engine, org, *keys: str) -> None:
    with engine.begin() as conn:
        write_events(conn, [EventSpec(org, "message.received", k, {"wamid": k}, utcnow()) for k in keys])


def deliver(engine: Engine, settings: Settings) -> None:
    run_delivery(engine, settings, cipher(settings), idle_exit_seconds=0)


def verified(secret: str, request: tuple[dict, bytes]) -> list[str]:
    headers, body = request
    return [e["data"]["wamid"] for e in Webhook(secret).verify(body, headers)["events"]]


def endpoint(engine: Engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(whatsapp_event_endpoints)).one()


def attempts(engine: Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(whatsapp_event_deliveries).order_by(whatsapp_event_deliveries.c.id)).all()


def test_signed_in_order_batched_when_behind_retried_disabled_and_replayed(engine: Engine, push_settings: Settings, receiver: Receiver, caplog) -> None:
    s = push_settings
    org = bind_fixture_numbers(engine)["acme"]
    emit(engine, org, "before")  # older than the endpoint: not pushed unless replayed
    with engine.begin() as conn:
        secret = set_endpoint(conn, cipher(s), org, receiver.url)
    emit(engine, org, "a")
    deliver(engine, s)
    assert [verified(secret, r) for r in receiver.requests] == [["a"]]
    # the receiver fails: retried with backoff, every attempt logged, disabled after 4 with an alert
    receiver.mode = "fail"
    emit(engine, org, "b", "c")
    deadline = time.monotonic() + 30
    while endpoint(engine).enabled and time.monotonic() < deadline:
        deliver(engine, s)
    row = endpoint(engine)
    assert not row.enabled and row.failures == 4 and "4 consecutive failed deliveries" in row.disabled_reason
    failed = [a for a in attempts(engine) if not a.ok]
    assert [(a.status_code, a.error, a.events) for a in failed] == [(500, "HTTP 500", 2)] * 4
    assert len({a.webhook_id for a in failed}) == 1  # the same events keep their webhook-id
    assert any("ALERT event_endpoint_disabled" in r.getMessage() for r in caplog.records)
    with engine.connect() as conn:  # break-it #5: the status says why (was: only the failure count)
        status = endpoint_status(conn, org)
    assert (status["enabled"], status["consecutive_failures"]) == (False, 4) and "4 consecutive" in status["disabled_reason"]
    last = status["last_attempt"]
    assert (last["ok"], last["status_code"], last["error"], last["events"]) == (False, 500, "HTTP 500", 2)
    assert last["attempted_at"] == status["last_attempt_at"] == as_utc(failed[-1].attempted_at).isoformat()
    # timeouts are failures too
    receiver.mode = "slow"
    with engine.begin() as conn:
        set_endpoint(conn, cipher(s), org, receiver.url, secret)
    with httpx.Client() as client:
        assert deliver_endpoint(engine, s, cipher(s), client, org).failed == 1  # one attempt
    assert attempts(engine)[-1].error == "timeout" and attempts(engine)[-1].status_code is None
    # it recovers: b and c arrive in order, batched with what came meanwhile
    receiver.mode = "ok"
    emit(engine, org, "d")
    deadline = time.monotonic() + 30
    while endpoint(engine).delivered_cursor < 5 and time.monotonic() < deadline:
        deliver(engine, s)
    assert verified(secret, receiver.requests[-1]) == ["b", "c", "d"]
    assert endpoint(engine).failures == 0
    # replay: one event, then a filter by type
    with engine.begin() as conn:
        new = rotate_secret(conn, cipher(s), org)
        assert enqueue_replay(conn, org, types=["message.received"]) == 5
    deliver(engine, s)
    last = receiver.requests[-1]
    assert verified(new, last) == ["before", "a", "b", "c", "d"] == verified(secret, last)  # both signatures during the grace period
    assert attempts(engine)[-1].replay and attempts(engine)[-1].ok


def test_a_forged_signature_is_refused_by_the_librarys_verifier(engine: Engine, push_settings: Settings, receiver: Receiver) -> None:
    org = bind_fixture_numbers(engine)["acme"]
    with engine.begin() as conn:
        secret = set_endpoint(conn, cipher(push_settings), org, receiver.url)
    emit(engine, org, "x")
    deliver(engine, push_settings)
    headers, body = receiver.requests[0]
    tampered = json.loads(body)
    tampered["events"][0]["data"]["wamid"] = "y"
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(json.dumps(tampered), headers)
    assert verified(secret, (headers, body)) == ["x"]


def test_a_kept_alive_run_serves_the_first_endpoint_at_once_and_idles_without_spinning(
    engine: Engine, push_settings: Settings, receiver: Receiver
) -> None:
    """Break-it #6: the delivery run used to end while no endpoint was enabled, so the first
    push after setting one waited for the sensor and a run launch (~30 s). Kept alive, it is
    woken by the commit (NOTIFY wa_events) and pushes at once; idle it waits, it does not poll."""
    s = push_settings.model_copy(update={"event_push_idle_poll_seconds": 5.0, "event_push_keep_alive": True})
    org = bind_fixture_numbers(engine)["acme"]
    rounds: list[int] = []
    stop = threading.Event()
    run = threading.Thread(target=run_delivery, args=(engine, s, cipher(s)), daemon=True,
                           kwargs={"should_stop": stop.is_set, "on_round": lambda st: rounds.append(st.rounds)})
    run.start()
    try:
        deadline = time.monotonic() + 30
        while not rounds and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # idle with no endpoint: still alive, and no round without a wake-up
        assert run.is_alive() and len(rounds) == 1
        with engine.begin() as conn:
            secret = set_endpoint(conn, cipher(s), org, receiver.url)
        emit(engine, org, "first")
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [verified(secret, r) for r in receiver.requests] == [["first"]]
    finally:
        stop.set()
        with engine.begin() as conn:  # wake it to see the stop
            write_events(conn, [EventSpec(org, "test.stop", "stop", {}, utcnow())])
        run.join(30)
    assert not run.is_alive()


def deliver_until_disabled(engine: Engine, settings: Settings, org) -> None:
    """Run delivery until ``org``'s endpoint is disabled (the condition; max_seconds only guards a hang)."""
    def disabled() -> bool:
        with engine.connect() as conn:
            return not conn.execute(sa.select(whatsapp_event_endpoints.c.enabled).where(whatsapp_event_endpoints.c.organization_id == org)).scalar_one()

    run_delivery(engine, settings, cipher(settings), should_stop=disabled, max_seconds=120)
    assert disabled()


@pytest.mark.parametrize("url", ["http://[::1/hooks", "https://", "http://:8080/hooks"])
def test_an_endpoint_url_the_client_cannot_parse_is_refused(engine: Engine, push_settings: Settings, url: str) -> None:
    org = bind_fixture_numbers(engine)["acme"]
    with engine.begin() as conn, pytest.raises(ValueError, match="http"):
        set_endpoint(conn, cipher(push_settings), org, url)


def test_an_unusable_stored_url_fails_its_endpoint_and_the_other_organizations_are_served(
    engine: Engine, push_settings: Settings, receiver: Receiver
) -> None:
    """Break-it (issue 13): a URL stored before it was validated (or by hand) made httpx raise
    InvalidURL out of the run, which then served no organization at all."""
    orgs = bind_fixture_numbers(engine)
    c = cipher(push_settings)
    with engine.begin() as conn:
        set_endpoint(conn, c, orgs["globex"], receiver.url)
        set_endpoint(conn, c, orgs["acme"], receiver.url)
        conn.execute(sa.update(whatsapp_event_endpoints).where(whatsapp_event_endpoints.c.organization_id == orgs["acme"])
                     .values(url="http://[::1/hooks"))
    emit(engine, orgs["acme"], "wamid.A1")
    emit(engine, orgs["globex"], "wamid.G1")
    deliver_until_disabled(engine, push_settings, orgs["acme"])  # retried, counted, disabled, never raised
    with engine.connect() as conn:
        states = {r.organization_id: r for r in conn.execute(sa.select(whatsapp_event_endpoints))}
        failed = conn.execute(sa.select(whatsapp_event_deliveries).where(whatsapp_event_deliveries.c.organization_id == orgs["acme"])).all()
    assert states[orgs["globex"]].delivered_cursor == 1 and [json.loads(b)["events"][0]["data"]["wamid"] for _, b in receiver.requests] == ["wamid.G1"]
    assert len(failed) == push_settings.event_push_disable_after_failures and not any(a.ok for a in failed)
    assert failed[0].error.startswith("invalid endpoint URL") and failed[0].status_code is None
    assert states[orgs["acme"]].enabled is False and "invalid endpoint URL" in states[orgs["acme"]].disabled_reason


def test_an_undecryptable_endpoint_secret_fails_that_endpoint_not_the_run(engine: Engine, push_settings: Settings, receiver: Receiver) -> None:
    """Break-it (issue 13): a secret encrypted under a key no longer configured (a rotation
    whose previous key was dropped too early) raised DecryptionFailed out of the run."""
    orgs = bind_fixture_numbers(engine)
    c = cipher(push_settings)
    with engine.begin() as conn:
        set_endpoint(conn, c, orgs["globex"], receiver.url)
        set_endpoint(conn, TokenCipher.from_hex("22" * 32), orgs["acme"], receiver.url)  # another key's secret
    emit(engine, orgs["acme"], "wamid.A1")
    emit(engine, orgs["globex"], "wamid.G1")
    deliver_until_disabled(engine, push_settings, orgs["acme"])
    with engine.connect() as conn:
        status = {org: endpoint_status(conn, orgs[org]) for org in ("acme", "globex")}
    assert status["globex"]["delivered_cursor"] == 1 and len(receiver.requests) == 1  # nothing unsigned was sent for acme
    assert status["acme"]["delivered_cursor"] == 0 and status["acme"]["enabled"] is False
    assert "cannot be decrypted" in status["acme"]["last_attempt"]["error"]


def test_setting_the_endpoint_again_during_a_failing_request_keeps_it_enabled(engine: Engine, push_settings: Settings, receiver: Receiver) -> None:
    """Break-it (issue 13): the operator sets an endpoint that is one failure from being
    disabled again ("Setting the endpoint again enables it", failures cleared) while a request
    to it is in flight; that request then fails. It counts as the first failure of the new
    setting, not as the one that disables it with the counter the operator cleared."""
    org = bind_fixture_numbers(engine)["acme"]
    c = cipher(push_settings)
    with engine.begin() as conn:
        set_endpoint(conn, c, org, receiver.url)
        conn.execute(sa.update(whatsapp_event_endpoints).values(failures=push_settings.event_push_disable_after_failures - 1))
    emit(engine, org, "wamid.A1")
    receiver.mode = "slow"  # answers after the push timeout: this attempt fails
    with httpx.Client() as client:
        worker = threading.Thread(target=deliver_endpoint, args=(engine, push_settings, c, client, org))
        worker.start()
        while not receiver.requests:  # the request is in flight
            time.sleep(0.01)
        with engine.begin() as conn:
            set_endpoint(conn, c, org, receiver.url)  # the operator: fixed, enable it again
        worker.join()
    row = endpoint(engine)
    assert row.enabled is True, row.disabled_reason
    assert row.failures == 1 and row.next_attempt_at is not None
    assert [a.error for a in attempts(engine)] == ["timeout"]


def test_an_event_written_twice_leaves_no_endpoint_due_once_everything_is_delivered(engine: Engine, push_settings: Settings, receiver: Receiver) -> None:
    """Break-it (issue 13): the second write of one event id did nothing (ON CONFLICT) but took
    a cursor, so the endpoint stayed "behind" forever (a lease, a read and an unlease every
    round, and a push status that never settled)."""
    from wa_core.events.push import due_endpoints

    org = bind_fixture_numbers(engine)["acme"]
    with engine.begin() as conn:
        set_endpoint(conn, cipher(push_settings), org, receiver.url)
    emit(engine, org, "wamid.SAME")
    emit(engine, org, "wamid.SAME")  # the same event id again
    deliver(engine, push_settings)
    assert len(receiver.requests) == 1
    with engine.connect() as conn:
        status = endpoint_status(conn, org)
    assert status["delivered_cursor"] == status["last_cursor"] == 1
    assert due_endpoints(engine) == []


def test_a_redelivered_calls_webhook_is_pushed_once_and_leaves_no_endpoint_due(engine: Engine, push_settings: Settings, receiver: Receiver) -> None:
    """The same reached by what Meta does every day: one ``calls`` webhook delivered twice."""
    from tests.conftest import fixture_bytes
    from tests.core.test_processing import drain
    from tests.helpers import land
    from wa_core.db.schema_events import whatsapp_events
    from wa_core.events.push import due_endpoints

    orgs = bind_fixture_numbers(engine, acme_status="active")
    with engine.begin() as conn:
        for org in orgs.values():
            set_endpoint(conn, cipher(push_settings), org, receiver.url)
    body = fixture_bytes("calls_connect_user_initiated.json")
    for _ in range(2):  # Meta's redelivery
        land(engine, body)
        drain(engine, push_settings)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(whatsapp_events).where(whatsapp_events.c.type.like("call.%"))).scalar_one() == 1
    deliver(engine, push_settings)
    pushed = [e["type"] for _, b in receiver.requests for e in json.loads(b)["events"]]
    assert pushed.count("call.connect") == 1 and len(pushed) == len(set(pushed)), pushed
    assert due_endpoints(engine) == []
