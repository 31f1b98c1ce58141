"""The receiver as operators run it: a real ``wa-onboarding serve`` process (its uvicorn options,
the request deadlines of :mod:`wa_webhook.http_guard`) on the test database, over real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET
from tests.dev.test_simulate import free_port
from tests.webhook.test_receiver import count
from tests.webhook.test_receiver_edges import PATH, signed_post, status_line
from wa_core.meta.signature import sign
from wa_core.settings import Settings


@contextmanager
def wa_onboarding_serve(settings: Settings, log_path: Path, **env: str) -> Iterator[str]:
    """``wa-onboarding serve`` on a free port with the test settings (already in the
    environment) plus ``env``; yields its base URL once ``/healthz`` answers."""
    port = free_port()
    cli = str(Path(sys.executable).parent / "wa-onboarding")
    with log_path.open("w") as log:
        proc = subprocess.Popen([cli, "serve", "--host", "127.0.0.1", "--port", str(port)], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log_path.read_text()[-2000:]
                try:
                    if httpx.get(base + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "wa-onboarding serve did not start"
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(10)


def test_a_webhook_post_with_websocket_upgrade_headers_is_answered_and_does_not_hold_the_connection(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    """The receiver serves no WebSocket. A POST carrying ``Upgrade: websocket`` was handed to
    uvicorn's WebSocket protocol, outside both request bounds, which never answered it: one
    packet held a connection for as long as the client liked (no dripping needed), a slowloris
    the header and body deadlines did not see. Served as plain HTTP it is answered (its body
    is the upgraded protocol's, so the signature fails) and the connection goes the usual way."""
    body = b'{"entry": []}'
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {sign(body, APP_SECRET)}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode() + body
    with wa_onboarding_serve(settings, tmp_path / "receiver.log", HTTP_HEADER_TIMEOUT_SECONDS="1", WEBHOOK_BODY_TIMEOUT_SECONDS="1") as base:
        host, port = base.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=30)  # ~15x the bounds and uvicorn's keep-alive
        try:
            sock.sendall(request)
            answer = status_line(sock)
        except TimeoutError:
            answer = "no answer within 30 s"
        finally:
            sock.close()
        assert answer.startswith("HTTP/1.1 4"), answer
        assert signed_post(base, body).status_code == 200  # and the receiver serves deliveries
    assert count(engine) == 1
    # and no advice to install a WebSocket library: serve turns WebSockets off on purpose
    assert "WebSocket library" not in (tmp_path / "receiver.log").read_text()


def test_serve_refuses_a_malformed_token_key_in_one_line(settings: Settings) -> None:
    """A TOKEN_ENCRYPTION_KEY that is not 64 hex characters (here a Fernet key, a common mix-up)
    stops ``serve`` with exit 2 and one line saying what is wrong and how to make one, not
    uvicorn's traceback."""
    cli = str(Path(sys.executable).parent / "wa-onboarding")
    env = {**os.environ, "TOKEN_ENCRYPTION_KEY": "x" * 43 + "="}
    out = subprocess.run([cli, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "TOKEN_ENCRYPTION_KEY must be 64 hex characters" in out.stderr and "secrets.token_hex(32)" in out.stderr
