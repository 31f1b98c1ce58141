"""Slowloris on headers and bodies: a client that sends its request headers, or its body, too
slowly, over a real socket to uvicorn with the receiver's protocol (:mod:`wa_webhook.http_guard`),
gets 408 and a closed connection, counted, and nothing is stored; a client that sends them in
time, and an idle keep-alive connection between requests, are not affected."""

from __future__ import annotations

import re
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
from tests.dev.test_simulate import serving
from tests.webhook.test_receiver import count
from tests.webhook.test_receiver_edges import PATH, open_partial_body, outcome_count, signed_post, status_line, wait_until
from wa_core.meta.signature import sign
from wa_core.settings import Settings
from wa_webhook.app import create_app
from wa_webhook.http_guard import RequestTimeoutProtocol


class QuickHeaders(RequestTimeoutProtocol):
    header_timeout = 0.5
    body_timeout = 0.5


def timeouts() -> float:
    return REGISTRY.get_sample_value("wa_http_header_timeouts_total") or 0.0


def body_timeouts() -> float:
    return REGISTRY.get_sample_value("wa_http_body_timeouts_total") or 0.0


@contextmanager
def guarded_server(app) -> Iterator[tuple[str, uvicorn.Server]]:
    """``app`` served in a thread by uvicorn with :class:`QuickHeaders`: its base URL and the
    server (whose ``server_state`` holds the deadline sweep)."""
    with serving(app, http=QuickHeaders) as served:
        yield served


@contextmanager
def serve_guarded(app) -> Iterator[str]:
    with guarded_server(app) as (base, _):
        yield base


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
    monkeypatch.setattr(cli, "_cipher_or_exit", lambda settings, hint="": None)
    cli.main(["serve"])
    assert seen["http"] is RequestTimeoutProtocol
    assert seen["ws"] == "none"  # no WebSocket protocol outside the deadlines


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return answer


def test_a_webhook_body_that_stalls_gets_408_from_the_server_and_nothing_is_stored(settings: Settings, engine: Engine) -> None:
    """Served by the receiver's protocol, the body bound is the server's (no timer in the route):
    the stalled delivery gets 408 and a closed connection, counted by the server and as the
    route's ``body_timeout`` outcome, and the receiver goes on serving."""
    # the route's own bound is far away: only the server's can answer within this test
    app = create_app(settings.model_copy(update={"webhook_body_timeout_seconds": 300}))
    before, before_outcome = body_timeouts(), outcome_count("body_timeout")
    with serve_guarded(app) as base:
        sock = open_partial_body(base)
        try:
            answer = read_all(sock)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout") and b"connection: close" in answer, answer[:200]
        assert answer.endswith(b"request body timeout") and answer.count(b"HTTP/1.1") == 1
        assert signed_post(base, b'{"entry": []}').status_code == 200
        assert app.state.body_reads.active == 0  # the stalled body's slot was given back
    assert body_timeouts() == before + 1
    assert outcome_count("body_timeout") == before_outcome + 1
    assert count(engine) == 1


def test_a_body_sent_in_parts_within_the_bound_is_landed(settings: Settings, engine: Engine) -> None:
    body = b'{"object": "whatsapp_business_account", "entry": []}'
    before = body_timeouts()
    with serve_guarded(create_app(settings)) as base:
        sock = connect(base)
        try:
            sock.sendall(
                f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: {sign(body, APP_SECRET)}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10]
            )
            time.sleep(QuickHeaders.body_timeout / 5)
            sock.sendall(body[10:])
            assert status_line(sock) == "HTTP/1.1 200 OK"
        finally:
            sock.close()
    assert body_timeouts() == before
    assert count(engine) == 1


def test_a_body_still_coming_after_an_early_answer_is_cut_off(settings: Settings, engine: Engine) -> None:
    """A route that answers before reading the body (here: an unknown path's 404) leaves the
    body on the wire; a client that drips it (each byte well inside uvicorn's keep-alive timer)
    does not keep the connection past the body bound."""
    with serve_guarded(create_app(settings)) as base:
        sock = connect(base)
        answer, closed, sent = b"", False, 0
        try:
            sock.sendall(b"POST /no-such-path HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n{")
            sock.settimeout(0.05)
            for _ in range(399):  # ~40 s of dripping in all, 80x the bound
                try:
                    sock.sendall(b" ")
                    sent += 1
                    chunk = sock.recv(65536)
                except TimeoutError:
                    chunk = None
                except OSError:
                    closed = True
                    break
                if chunk == b"":
                    closed = True
                    break
                answer += chunk or b""
                time.sleep(0.05)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
        assert closed, f"connection still open after {sent} dripped body bytes (bound {QuickHeaders.body_timeout} s)"
    assert count(engine) == 0


WEBSOCKET_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_websocket_upgrade_requests_leave_nothing_in_the_deadline_sweep(settings: Settings, engine: Engine) -> None:
    """An upgrade request hands its connection to uvicorn's WebSocket protocol, and the HTTP
    protocol it leaves never sees ``connection_lost``: it must leave the sweep then, or every
    upgrade request (anyone can send one) stays in the sweep's set for good, ~7 kB each, and is
    checked again at every sweep (measured on ``wa-onboarding serve``: +144 MB of RSS after 20,000)."""
    with guarded_server(create_app(settings)) as (base, server):
        for _ in range(20):
            sock = connect(base)
            try:
                sock.sendall(WEBSOCKET_UPGRADE)
                assert status_line(sock) == "HTTP/1.1 403 Forbidden"  # the app has no WebSocket route
            finally:
                sock.close()
        wait_until(lambda: not server.server_state.connections, "the upgraded connections are closed")
        sweep = server.server_state.wa_request_sweep
        wait_until(lambda: not sweep.connections, f"the sweep let go of the upgraded connections ({len(sweep.connections)} left)", limit=10)
        assert signed_post(base, b'{"entry": []}').status_code == 200
    assert count(engine) == 1


def headers_too_large() -> float:
    return REGISTRY.get_sample_value("wa_http_headers_too_large_total") or 0.0


def test_request_headers_past_the_size_bound_get_431_at_once(settings: Settings, engine: Engine) -> None:
    """The header deadline bounds time, not bytes: within it one client sent ~137 MB of tiny
    headers (``wa-onboarding serve``, default 10 s bound), which uvicorn keeps as a list of
    tuples (3.1 GB of RSS from that one connection), or one huge header value, which httptools
    grows by concatenation (the event loop stalled: a delivery waited 4 s). A head past
    ``max_header_bytes`` gets 431 and a closed connection as soon as it passes the bound."""
    limit = QuickHeaders.max_header_bytes
    before = headers_too_large()
    with serve_guarded(create_app(settings)) as base:
        for filler in (b"a:b\r\n" * (limit // 5 + 1000), b"X-Big: " + b"a" * (limit + 1000)):
            sock = connect(base)
            try:
                sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
                try:
                    sock.sendall(filler)  # the head still incomplete: no blank line
                except OSError:
                    pass  # the server may close before the last bytes are in
                answer = read_all(sock)
            finally:
                sock.close()
            # not 408: the answer came on the size, not after the (0.5 s) header bound
            assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large") and b"connection: close" in answer, answer[:200]
        assert signed_post(base, b'{"entry": []}').status_code == 200
    assert headers_too_large() == before + 2
    assert count(engine) == 1


def test_heads_within_the_size_bound_and_bodies_sharing_their_packets_are_served(settings: Settings, engine: Engine) -> None:
    """Only head bytes count: a head of half the bound, and a 3 MB delivery sent in one write
    with a second request behind it (its head in the same reads as the body), are served."""
    limit = QuickHeaders.max_header_bytes
    before = headers_too_large()
    small = b'{"entry": []}'
    big = b'{"entry": [], "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'

    def request(body: bytes, extra: bytes = b"") -> bytes:
        return (
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: {sign(body, APP_SECRET)}\r\n"
            f"Content-Length: {len(body)}\r\n".encode() + extra + b"\r\n" + body
        )

    with serve_guarded(create_app(settings)) as base:
        sock = connect(base)
        try:
            sock.sendall(request(small, b"X-Padding: " + b"a" * (limit // 2) + b"\r\n"))
            assert status_line(sock) == "HTTP/1.1 200 OK"
        finally:
            sock.close()
        sock = connect(base)
        try:
            sock.sendall(request(big) + request(small))
            answer = b""
            while answer.count(b"EVENT_RECEIVED") < 2:
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.count(b"HTTP/1.1 200 OK") == 2
        finally:
            sock.close()
    assert headers_too_large() == before
    assert count(engine) == 3


def test_a_head_too_large_behind_a_response_in_progress_is_refused_after_it(settings: Settings, engine: Engine) -> None:
    """A huge head pipelined behind a delivery still landing: the delivery's 200 is not cut
    (nor preceded) by the refusal; reading stops meanwhile, then 431 and the connection closes."""
    import sqlalchemy as sa

    from tests.helpers import waiting_on_a_lock

    body = b'{"entry": []}'
    delivery = (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: {sign(body, APP_SECRET)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    huge = f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode() + b"a:b\r\n" * (8 * QuickHeaders.max_header_bytes // 5)  # past the bound by more than one read
    before = headers_too_large()
    with guarded_server(create_app(settings)) as (base, server), engine.connect() as lock:
        lock.execute(sa.text("LOCK TABLE whatsapp_webhook_logs IN ACCESS EXCLUSIVE MODE"))  # the landing waits
        sock = connect(base)

        def send() -> None:
            try:
                sock.sendall(delivery + huge)  # blocks once the server stops reading
            except OSError:
                pass  # the server closed the connection first

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            wait_until(
                lambda: any(p._head_bytes > p.max_header_bytes for p in server.server_state.connections),
                "the server saw the head pass its bound",
            )

            def landing_waits() -> bool:  # (pg_stat_activity read outside the lock's transaction, which caches it)
                with engine.connect() as conn:
                    pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE query LIKE '%INSERT INTO whatsapp_webhook_logs%' AND pid <> pg_backend_pid()")).scalars().all()
                return any(waiting_on_a_lock(engine, pid) for pid in pids)

            wait_until(landing_waits, "the delivery's insert waits on the lock")
            lock.rollback()  # the delivery lands and is answered
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass  # closed with the client's bytes unread: a reset, after what was sent
        finally:
            sock.close()
        statuses = re.findall(rb"HTTP/1\.1 \d{3}[^\r]*", answer)
        assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 431 Request Header Fields Too Large"], answer[:400]
        sender.join(30)
        assert not sender.is_alive()
    assert headers_too_large() == before + 1
    assert count(engine) == 1
