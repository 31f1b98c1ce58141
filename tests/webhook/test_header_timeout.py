"""Slowloris on headers: a client that sends its request headers too slowly, over a real socket
to uvicorn with the receiver's protocol (:mod:`wa_webhook.http_guard`), gets 408 and a closed
connection, counted; a client that sends them in time, and an idle keep-alive connection
between requests, are not affected."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET
from tests.dev.test_simulate import free_port
from tests.webhook.test_receiver import count
from tests.webhook.test_receiver_edges import PATH, signed_post, status_line
from wa_core.meta.signature import sign
from wa_core.settings import Settings
from wa_webhook.app import create_app
from wa_webhook.http_guard import HeaderTimeoutProtocol


class QuickHeaders(HeaderTimeoutProtocol):
    header_timeout = 0.5


def timeouts() -> float:
    return REGISTRY.get_sample_value("wa_http_header_timeouts_total") or 0.0


@contextmanager
def serve_guarded(app) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=QuickHeaders))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_headers_dripped_byte_by_byte_get_408_and_a_closed_connection(settings: Settings, engine: Engine) -> None:
    before = timeouts()
    with serve_guarded(create_app(settings)) as base:
        sock = connect(base)
        try:
            head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Padding: {'a' * 200}\r\n".encode()
            sock.settimeout(0.1)
            answer = b""
            for byte in head:  # one byte every 0.1 s: each far inside a keep-alive timeout
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                try:
                    answer += sock.recv(4096)
                    break
                except TimeoutError:
                    continue
            sock.settimeout(30)
            while True:  # then the server closes the connection
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout") and b"connection: close" in answer
        assert signed_post(base, b'{"entry": []}').status_code == 200  # the receiver still serves
    assert timeouts() == before + 1
    assert count(engine) == 1


def test_headers_sent_in_time_and_an_idle_keep_alive_connection_are_served(settings: Settings, engine: Engine) -> None:
    before = timeouts()
    body = b'{"entry": []}'
    with serve_guarded(create_app(settings)) as base, httpx.Client() as client:
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}
        assert client.post(base + PATH, content=body, headers=headers).status_code == 200
        sock = connect(base)
        try:  # headers in two parts, the whole well inside the bound
            sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
            sock.sendall(f"X-Hub-Signature-256: {sign(body, APP_SECRET)}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            assert status_line(sock) == "HTTP/1.1 200 OK"
        finally:
            sock.close()
        # the first connection stayed idle past the header bound: it still serves (keep-alive rules)
        time.sleep(QuickHeaders.header_timeout * 2)
        assert client.post(base + PATH, content=body, headers=headers).status_code == 200
    assert timeouts() == before
    assert count(engine) == 3


def test_a_pipelined_request_whose_headers_drip_still_gets_408(settings: Settings, engine: Engine) -> None:
    """The first response completing does not disarm the bound of a request pipelined behind it
    (its first byte came in the same packet); uvicorn's keep-alive timer is cancelled by its bytes."""
    with serve_guarded(create_app(settings)) as base:
        sock = connect(base)
        try:
            # one complete request, and the first byte of the next one in the same packet
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nG")
            sock.settimeout(0.05)
            answer = b""
            drip = b"ET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 30
            started = time.monotonic()
            closed = False
            for byte in drip:  # ~8 s in all (past uvicorn's 5 s keep-alive too), one byte every ~0.13 s
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    chunk = None
                if chunk == b"":
                    closed = True
                    break
                if chunk:
                    answer += chunk
                time.sleep(0.08)
            waited = time.monotonic() - started
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]  # the first request was served
        # the second request's headers were still incomplete after ~16x the 0.5 s bound
        assert closed and b"408 Request Timeout" in answer, f"connection still open after {waited:.1f} s of dripped headers (bound {QuickHeaders.header_timeout} s)"


def test_wa_onboarding_serve_uses_the_guard(monkeypatch) -> None:
    from wa_webhook import cli

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(cli, "settings_or_exit", lambda: None)
    cli.main(["serve"])
    assert seen["http"] is HeaderTimeoutProtocol
