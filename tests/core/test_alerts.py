"""Alerts: the notifier's sinks (Slack and Sentry through local HTTP receivers), grouping in
``ops_alerts`` and in process, a failing sink, the run failure sensor, and the receiver's
Redis-down and rate-limit alerts."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, build_run_status_sensor_context, job, op
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

import wa_core.ratelimit as ratelimit
from tests.webhook.test_onboarding import auth
from wa_pipelines.defs.alerting.sensors import ALERT_SENSORS, run_failure_alerts, scrub
from wa_pipelines.resources import AppDatabase
from wa_core.alerts import PROCESS_GROUPS, Alert, LogSink, Notifier, SlackSink, drain, get_notifier
from wa_webhook.app import create_app
from wa_core.cache import OnboardingCache
from wa_core.db.schema import ops_alerts, utcnow
from wa_core.settings import Settings, get_settings

CLOSED_REDIS = "redis://127.0.0.1:1/0"


class Receiver:
    """A local HTTP server on 127.0.0.1 recording every POST (path, headers, decoded body)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict] = []
        received = self.requests
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with lock:
                    received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}" if status == 200 else b"no")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        # a short poll interval: shutdown() waits for the loop to notice (0.5 s by default)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def texts(self) -> list[str]:
        """Slack: the ``text`` of every posted JSON body."""
        return [json.loads(r["body"])["text"] for r in self.requests]

    def events(self) -> list[dict]:
        """Sentry: the event items of every posted envelope."""
        found = []
        for r in self.requests:
            lines = r["body"].split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def slack() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture()
def sentry() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def _fresh_groups() -> Iterator[None]:
    drain(5)
    PROCESS_GROUPS.clear()
    yield
    drain(5)
    PROCESS_GROUPS.clear()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plain_settings(**update) -> Settings:
    """Settings that do not need the database (no env file influence on alerts)."""
    base = Settings(_env_file=None, slack_webhook_url=None, sentry_dsn=None, alert_environment="test")
    return base.model_copy(update=update)


def slack_and_sentry(slack_url: str | None, sentry_port: int | None, **update) -> Settings:
    return plain_settings(
        slack_webhook_url=SecretStr(slack_url) if slack_url else None,
        sentry_dsn=SecretStr(f"http://public@127.0.0.1:{sentry_port}/1") if sentry_port else None,
        **update,
    )


def test_alert_contract() -> None:
    a = Alert("unclaimed_waba", "100000000000001", "WABA bound to no organization")
    assert a.fingerprint == "unclaimed_waba:100000000000001"
    assert a.severity == "error" and dict(a.details) == {} and a.organization_id is None
    sinks = get_notifier(plain_settings()).sinks
    assert [s.name for s in sinks] == ["log"]
    assert [s.name for s in get_notifier(slack_and_sentry("http://127.0.0.1:9/x", 9)).sinks] == ["log", "sentry", "slack"]


def test_slack_sink_posts_the_alert_as_json_text(slack: Receiver) -> None:
    notifier = Notifier(slack_and_sentry(slack.url, None), background=False)
    alert = Alert("token_unhealthy", "200000000000001", "token expires in 2 days", severity="warning", details={"state": "expiring_soon"})
    assert notifier.notify(alert) is True
    assert len(slack.requests) == 1
    request = slack.requests[0]
    assert request["path"] == "/hook" and request["headers"]["content-type"] == "application/json"
    (text,) = slack.texts()
    assert "*WARNING*" in text and "[test]" in text and "`token_unhealthy`" in text
    assert "200000000000001: token expires in 2 days" in text and "state: expiring_soon" in text


def test_slack_text_is_escaped() -> None:
    text = SlackSink("http://unused", "prod").text(Alert("dead_letter", "7", "a <b> & c"), 3)
    assert "a &lt;b&gt; &amp; c" in text and "occurrences since first seen: 3" in text


def test_sentry_sink_sends_an_envelope_with_level_tags_and_fingerprint(sentry: Receiver) -> None:
    notifier = Notifier(slack_and_sentry(None, sentry.port), background=False)
    assert notifier.notify(Alert("redis_down", "redis", "Redis unavailable", severity="critical", details={"component": "rate_limits"}))
    assert [r["path"] for r in sentry.requests] == ["/api/1/envelope/"]
    assert "sentry_key=public" in sentry.requests[0]["headers"]["x-sentry-auth"]
    (event,) = sentry.events()
    assert event["message"] == "redis_down redis: Redis unavailable"
    assert event["level"] == "fatal" and event["environment"] == "test"
    assert event["fingerprint"] == ["redis_down", "redis"]
    assert event["tags"]["kind"] == "redis_down" and event["tags"]["key"] == "redis" and event["tags"]["environment"] == "test"
    assert event["extra"]["details"] == {"component": "rate_limits"} and event["extra"]["occurrences"] == 1


def test_the_log_sink_logs_at_the_severity_level(caplog) -> None:
    notifier = Notifier(plain_settings(), background=False)
    with caplog.at_level(logging.INFO, logger="wa_core.alerts"):
        notifier.notify(Alert("rate_limit_exceeded", "api-org", "rate limit refused requests", severity="warning"))
        notifier.notify(Alert("dead_letter", "42", "webhook 42 is dead", severity="bogus"))
    records = [r for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "ALERT rate_limit_exceeded:api-org [warning] rate limit refused requests"),
        (logging.ERROR, "ALERT dead_letter:42 [error] webhook 42 is dead"),  # unknown severity: error
    ]
    assert records[0].alert_kind == "rate_limit_exceeded" and records[0].alert_occurrences == 1


def test_grouping_in_ops_alerts_sends_once_counts_and_reopens_after_resolve(slack: Receiver, engine: Engine) -> None:
    notifier = Notifier(slack_and_sentry(slack.url, None), engine)
    assert notifier.background is False  # with an engine, sends happen in the caller's thread
    alert = Alert("dead_letter", "unroutable", "dead letters: unroutable", details={"count": 1})
    assert notifier.notify(alert) is True
    assert notifier.notify(Alert("dead_letter", "unroutable", "dead letters: unroutable", details={"count": 2})) is False
    assert len(slack.requests) == 1
    with engine.connect() as conn:
        row = conn.execute(sa.select(ops_alerts)).one()
    assert row.fingerprint == "dead_letter:unroutable" and row.kind == "dead_letter" and row.key == "unroutable"
    assert row.occurrences == 2 and row.details == {"count": 2} and row.resolved_at is None
    assert row.last_seen_at > row.last_sent_at == row.first_seen_at

    # another notifier (another process) shares the state
    assert Notifier(slack_and_sentry(slack.url, None), engine).notify(alert) is False
    assert notifier.resolve("dead_letter", "unroutable") is True
    assert notifier.resolve("dead_letter", "unroutable") is False  # nothing open any more
    assert len(slack.requests) == 2 and "resolved" in slack.texts()[1]
    assert notifier.notify(alert) is True  # reopened
    with engine.connect() as conn:
        row = conn.execute(sa.select(ops_alerts)).one()
    assert row.resolved_at is None and row.occurrences == 1
    assert len(slack.requests) == 3

    # an open alert last sent longer ago than ALERT_REPEAT_SECONDS is sent again, with its count
    with engine.begin() as conn:
        conn.execute(sa.update(ops_alerts).values(last_sent_at=utcnow() - timedelta(seconds=3601)))
    assert notifier.notify(alert) is True
    assert len(slack.requests) == 4 and "occurrences since first seen: 2" in slack.texts()[3]


def test_concurrent_occurrences_in_ops_alerts_are_sent_once(slack: Receiver, engine: Engine) -> None:
    notifier = Notifier(slack_and_sentry(slack.url, None), engine)
    alert = Alert("asset_check_failed", "whatsapp_webhook_logs:backlog", "backlog too old")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: notifier.notify(alert), range(16)))
    assert results.count(True) == 1 and len(slack.requests) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(ops_alerts.c.occurrences)).scalar_one() == 16


def test_grouping_on_the_embedded_sqlite_database(slack: Receiver, tmp_path) -> None:
    from wa_core.db.engine import create_sync_engine
    from wa_core.db.migrate import upgrade

    lite = plain_settings(database_url=None, data_dir=tmp_path, slack_webhook_url=SecretStr(slack.url))
    upgrade(lite)
    eng = create_sync_engine(lite)
    try:
        notifier = Notifier(lite, eng)
        alert = Alert("token_unhealthy", "conn-1", "token expired")
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: notifier.notify(alert), range(6)))
        assert results.count(True) == 1 and len(slack.requests) == 1
        assert notifier.resolve("token_unhealthy", "conn-1") and notifier.notify(alert)
        with eng.begin() as conn:
            row = conn.execute(sa.select(ops_alerts)).one()
            assert row.occurrences == 1 and row.resolved_at is None
            conn.execute(sa.update(ops_alerts).values(last_sent_at=utcnow() - timedelta(hours=2)))
        assert notifier.notify(alert) is True and notifier.notify(alert) is False
        assert len(slack.requests) == 4  # alert, resolved, reopened, repeat after the window
    finally:
        eng.dispose()


def test_a_failing_sink_does_not_stop_the_others_nor_raise(sentry: Receiver, caplog) -> None:
    dead_slack = f"http://127.0.0.1:{closed_port()}/services/T000/B000/secret-part"
    notifier = Notifier(slack_and_sentry(dead_slack, sentry.port), background=False)
    with caplog.at_level(logging.INFO, logger="wa_core.alerts"):
        assert notifier.notify(Alert("unclaimed_waba", "100000000000009", "WABA bound to no organization")) is True
    assert len(sentry.events()) == 1
    assert "ALERT unclaimed_waba:100000000000009" in caplog.text
    assert "alert sink slack failed for unclaimed_waba:100000000000009: ConnectError" in caplog.text
    assert "secret-part" not in caplog.text  # the webhook URL is a secret


def test_a_slack_error_answer_is_a_sink_failure(caplog) -> None:
    refusing = Receiver(status=404)
    try:
        notifier = Notifier(slack_and_sentry(refusing.url, None), background=False)
        with caplog.at_level(logging.WARNING, logger="wa_core.alerts"):
            assert notifier.notify(Alert("dead_letter", "x", "x")) is True
        assert "alert sink slack failed for dead_letter:x: HTTPStatusError 404" in caplog.text
    finally:
        refusing.close()


def test_in_process_grouping_without_an_engine(slack: Receiver) -> None:
    settings = slack_and_sentry(slack.url, None)
    notifier = get_notifier(settings)
    assert notifier.engine is None and notifier.background is True
    alert = Alert("redis_down", "redis", "Redis unavailable")
    assert notifier.notify(alert) is True
    assert notifier.notify(alert) is False
    assert get_notifier(settings).notify(alert) is False  # one state per process
    assert notifier.flush(5)
    assert len(slack.requests) == 1
    assert notifier.resolve("redis_down", "redis") is True
    assert notifier.notify(alert) is True
    assert notifier.flush(5)
    assert [t.split(" ")[0] for t in slack.texts()] == [":rotating_light:", ":white_check_mark:", ":rotating_light:"]
    # ALERT_REPEAT_SECONDS=0: every occurrence is sent
    eager = Notifier(slack_and_sentry(slack.url, None, alert_repeat_seconds=0))
    assert eager.notify(Alert("dead_letter", "a", "a")) and eager.notify(Alert("dead_letter", "a", "a"))


def test_background_sends_do_not_block_the_caller() -> None:
    gate = threading.Event()

    class SlowSink:
        name, blocking, calls = "slow", True, []

        def send(self, alert: Alert, occurrences: int) -> None:
            gate.wait(5)
            self.calls.append(alert.fingerprint)

    sink = SlowSink()
    notifier = Notifier(plain_settings(), sinks=[LogSink(), sink], background=True)
    assert notifier.notify(Alert("redis_down", "redis", "down")) is True  # returns at once
    assert sink.calls == []
    gate.set()
    assert notifier.flush(5) and sink.calls == ["redis_down:redis"]


def test_an_unreachable_grouping_store_falls_back_to_in_process(slack: Receiver, caplog) -> None:
    broken = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nothing")
    notifier = Notifier(slack_and_sentry(slack.url, None), broken)
    with caplog.at_level(logging.WARNING, logger="wa_core.alerts"):
        assert notifier.notify(Alert("dead_letter", "k", "k")) is True
        assert notifier.notify(Alert("dead_letter", "k", "k")) is False
    assert "grouping in process" in caplog.text and len(slack.requests) == 1


def test_run_failure_sensor_alerts_once_per_job(slack: Receiver, settings: Settings, engine: Engine, pg_url: str, monkeypatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    monkeypatch.setenv("ALERT_ENVIRONMENT", "test")
    get_settings.cache_clear()
    assert run_failure_alerts in ALERT_SENSORS

    @op
    def explode() -> None:
        raise ValueError("customer +5511999990000 wrote secret text")

    @job
    def tiny_failing_job() -> None:
        explode()

    with DagsterInstance.ephemeral() as instance:
        for _ in range(2):
            result = tiny_failing_job.execute_in_process(instance=instance, raise_on_error=False)
            assert not result.success
            with build_run_status_sensor_context(
                sensor_name="run_failure_alerts",
                dagster_event=result.get_run_failure_event(),
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                resources={"app_db": AppDatabase(database_url=pg_url)},
            ) as context:
                run_failure_alerts(context)
    (text,) = slack.texts()  # the second failure of the same job is grouped
    assert "`run_failed` tiny_failing_job: run " in text
    assert "explode" in text and "ValueError" in text
    assert "5511999990000" not in text and "secret text" not in text
    with engine.connect() as conn:
        row = conn.execute(sa.select(ops_alerts)).one()
    assert row.fingerprint == "run_failed:tiny_failing_job" and row.occurrences == 2
    assert row.details["failed_steps"] == [{"step": "explode", "error_type": "ValueError"}]


def test_scrub_removes_numbers_and_emails_and_truncates() -> None:
    assert scrub("from +5511999990000 and a@b.example\nnext") == "from <number> and <email> next"
    assert len(scrub("x" * 1000)) == 300


def test_redis_down_and_rate_limit_alerts_from_the_receiver_are_grouped(
    slack: Receiver, settings: Settings, engine: Engine, monkeypatch
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    get_settings.cache_clear()
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_SECONDS", 0.0)  # every request tries (and fails) Redis
    s = get_settings().model_copy(update={"redis_url": CLOSED_REDIS, "api_org_limit": "3/minute"})
    with TestClient(create_app(s)) as c:
        codes = [c.get("/api/v1/whatsapp/check-connection", headers=auth("acme")).status_code for _ in range(6)]
    assert codes == [200] * 3 + [429] * 3
    assert drain(10)
    texts = slack.texts()
    redis = [t for t in texts if "`redis_down`" in t]
    limited = [t for t in texts if "`rate_limit_exceeded`" in t]
    assert len(redis) == 1 and "component: rate_limits" in redis[0]
    assert len(limited) == 1 and "api-org" in limited[0] and "organization: acme" in limited[0]
    assert len(texts) == 2
    assert "testclient" not in "".join(texts)  # the caller's address never reaches an alert


def test_rate_limiter_resolves_redis_down_when_redis_answers_again(monkeypatch) -> None:
    sent: list[str] = []

    class Recorder:
        name, blocking = "recorder", False

        def send(self, alert: Alert, occurrences: int) -> None:
            sent.append(alert.fingerprint)

        def send_resolved(self, kind: str, key: str) -> None:
            sent.append(f"resolved {kind}:{key}")

    notifier = Notifier(plain_settings(), sinks=[Recorder()])
    limiter = ratelimit.RateLimiter("redis://127.0.0.1:6379/0", prefix=f"wa-test-alerts-{uuid.uuid4().hex[:8]}", notifier=notifier)
    real = limiter._redis
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_SECONDS", 0.0)
    limiter._redis = ratelimit.RateLimiter(CLOSED_REDIS)._redis  # Redis "down"
    assert limiter.hit("100/minute", "api-ip", "x")[0] and limiter.hit("100/minute", "api-ip", "x")[0]
    limiter._redis = real  # Redis back
    assert limiter.hit("100/minute", "api-ip", "x")[0]
    assert sent == ["redis_down:redis", "resolved redis_down:redis"]


def test_the_onboarding_cache_raises_redis_down_once(slack: Receiver) -> None:
    notifier = Notifier(slack_and_sentry(slack.url, None), background=False)
    cache = OnboardingCache(CLOSED_REDIS, notifier=notifier)
    assert cache.remember("abc", {"status": "pending"}, 60) is False
    assert cache.get("abc") is None and cache.forget(["abc"]) == 0
    (text,) = slack.texts()
    assert "`redis_down`" in text and "component: onboarding_cache" in text


# --- regressions: bounded sends, Sentry failures, one BadDsn warning ------------------------------


class RawServer:
    """A local TCP server running ``handle(conn)`` for every connection (on daemon threads)."""

    def __init__(self, handle) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()

        def serve() -> None:
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                threading.Thread(target=self._run, args=(handle, conn), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

    @staticmethod
    def _run(handle, conn: socket.socket) -> None:
        try:
            handle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_trickling_slack_server_cannot_hold_a_send_past_the_timeout(engine: Engine, caplog) -> None:
    def trickle(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
        for _ in range(30):  # one byte every 0.3 s: each read is quick, the whole answer ~9 s
            time.sleep(0.3)
            conn.sendall(b"a")
        conn.sendall(b"\r\ncontent-length: 0\r\n\r\n")

    server = RawServer(trickle)
    try:
        sink = SlackSink(f"http://127.0.0.1:{server.port}/hook", "test", timeout=1.0)
        notifier = Notifier(plain_settings(), engine, sinks=[LogSink(), sink])  # database mode: sends in this thread
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="wa_core.alerts"):
            assert notifier.notify(Alert("dead_letter", "slow", "slow slack")) is True
            assert notifier.resolve("dead_letter", "slow") is True
        assert time.monotonic() - started < 3.5  # two posts, 1 s each at most
        assert "alert sink slack failed for dead_letter:slow: TimeoutError" in caplog.text
    finally:
        server.close()


def _sentry_failure(caplog, port: int) -> str:
    notifier = Notifier(slack_and_sentry(None, port), background=False)
    with caplog.at_level(logging.WARNING, logger="wa_core.alerts"):
        assert notifier.notify(Alert("dead_letter", f"sentry-{port}", "sentry down")) is True
    return caplog.text


def test_a_sentry_error_answer_is_a_sink_failure(caplog) -> None:
    failing = Receiver(status=500)
    try:
        text = _sentry_failure(caplog, failing.port)
    finally:
        failing.close()
    assert len(failing.requests) == 1
    assert f"alert sink sentry failed for dead_letter:sentry-{failing.port}: SentryDeliveryError status_500" in text
    assert "public@" not in text  # the DSN's key never reaches the log


def test_a_refused_or_closed_sentry_connection_is_a_sink_failure(caplog) -> None:
    refused = closed_port()
    text = _sentry_failure(caplog, refused)
    assert f"alert sink sentry failed for dead_letter:sentry-{refused}: SentryDeliveryError network" in text
    server = RawServer(lambda conn: conn.recv(65536))  # reads the request, closes without answering
    try:
        text = _sentry_failure(caplog, server.port)
    finally:
        server.close()
    assert f"alert sink sentry failed for dead_letter:sentry-{server.port}: SentryDeliveryError network" in text


def test_an_invalid_sentry_dsn_is_reported_once_per_process(caplog) -> None:
    settings = plain_settings(sentry_dsn=SecretStr(f"not-a-dsn-{time.time_ns()}"))
    with caplog.at_level(logging.WARNING, logger="wa_core.alerts"):
        for _ in range(5):
            assert [s.name for s in Notifier(settings).sinks] == ["log"]
    assert caplog.text.count("Sentry alert sink disabled: BadDsn") == 1
