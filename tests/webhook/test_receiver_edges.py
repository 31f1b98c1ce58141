"""The receiver's edges against misbehaving clients, over a real socket to uvicorn: a body that
never finishes (408), a sender that hangs up mid-body (one log line and a metric, no
traceback), and more slow bodies at once than the receiver reads (503 at once, Meta redelivers)."""

from __future__ import annotations

import logging
import socket
import time

import httpx
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET
from tests.dev.test_simulate import serve
from tests.webhook.test_receiver import count
from wa_core.meta.signature import sign
from wa_core.settings import Settings
from wa_webhook.app import create_app

PATH = "/api/v1/whatsapp/webhook"


def outcome_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("wa_webhook_requests_total", {"outcome": outcome}) or 0.0


def open_partial_body(base: str, declared: int = 1000, sent: bytes = b'{"object":') -> socket.socket:
    """A connection that sends its headers and the start of a body, then stalls."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature-256: sha256={'0' * 64}\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def status_line(sock: socket.socket) -> str:
    """The response's status line (blocks until the server answers or closes)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def wait_until(condition, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def signed_post(base: str, body: bytes) -> httpx.Response:
    return httpx.post(
        base + PATH, content=body, headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}
    )


def test_a_body_that_never_finishes_gets_408_and_nothing_is_stored(settings: Settings, engine: Engine) -> None:
    app = create_app(settings.model_copy(update={"webhook_body_timeout_seconds": 0.5}))
    before = outcome_count("body_timeout")
    with serve(app) as base:
        sock = open_partial_body(base)
        try:
            assert status_line(sock) == "HTTP/1.1 408 Request Timeout"
        finally:
            sock.close()
        assert signed_post(base, b'{"entry": []}').status_code == 200  # the receiver still serves
    assert outcome_count("body_timeout") == before + 1
    assert count(engine) == 1


def test_a_sender_hanging_up_mid_body_is_one_log_line_and_a_metric(settings: Settings, engine: Engine, caplog) -> None:
    app = create_app(settings)
    before = outcome_count("client_disconnect")
    with caplog.at_level(logging.INFO), serve(app) as base:
        for _ in range(3):
            open_partial_body(base).close()
        wait_until(lambda: outcome_count("client_disconnect") == before + 3, "three disconnects counted")
    lines = [r for r in caplog.records if "disconnected before the body was complete" in r.getMessage()]
    assert len(lines) == 3 and all(r.levelno == logging.WARNING and r.exc_info is None for r in lines)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no "Exception in ASGI application"
    assert count(engine) == 0


def test_past_the_concurrent_body_bound_a_delivery_gets_503_at_once(settings: Settings, engine: Engine) -> None:
    app = create_app(settings.model_copy(update={"webhook_max_concurrent_bodies": 1, "webhook_body_timeout_seconds": 30}))
    before = outcome_count("busy")
    with serve(app) as base:
        start, rest = b'{"entry"', b": []}".ljust(12)
        stalled = open_partial_body(base, declared=len(start + rest), sent=start)
        try:
            wait_until(lambda: app.state.body_reads.active == 1, "the stalled body holds the slot")
            busy = signed_post(base, b'{"entry": []}')
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            stalled.sendall(rest)  # the stalled body completes (and fails its signature)
            assert status_line(stalled).startswith("HTTP/1.1 401")
        finally:
            stalled.close()
        assert app.state.body_reads.active == 0
        assert signed_post(base, b'{"entry": []}').status_code == 200
    assert outcome_count("busy") == before + 1
    assert count(engine) == 1
