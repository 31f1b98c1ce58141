"""The simulator behaves like Meta: exact signed bytes, retries on non-200, a realistic stream."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.conftest import APP_SECRET, FIXTURES
from tests.helpers import rows
from wa_webhook.app import create_app
from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.schema import whatsapp_messages, whatsapp_webhook_logs
from wa_core.meta.signature import SignatureResult, verify_signature
from wa_core.settings import Settings
from wa_dev.simulate import SendReport, SyntheticStream, deliver, load_corpus, send_corpus, send_stream, synthetic_numbers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app, **config) -> Iterator[tuple[str, uvicorn.Server]]:
    """Run ``app`` with uvicorn in a thread (``config``: more ``uvicorn.Config`` options); yields
    its base URL and the server, and stops it on the way out."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(5)


@contextmanager
def serve(app) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread; yields its base URL."""
    with serving(app) as (base, _):
        yield base


def test_corpus_replay_lands_every_body_byte_exact(engine: Engine, settings: Settings) -> None:
    corpus = load_corpus(FIXTURES)
    assert len(corpus) >= 40 and all(name not in ("signatures.json", "expected.json") for name, _ in corpus)
    report = SendReport()
    with serve(create_app(settings)) as base:
        asyncio.run(send_corpus(f"{base}/api/v1/whatsapp/webhook", APP_SECRET, corpus, report))
    assert report.delivered == len(corpus) and report.gave_up == 0 and report.retries == 0
    landed = sorted(bytes(r.body) for r in rows(engine, whatsapp_webhook_logs))
    assert landed == sorted(body for _, body in corpus)


def test_deliveries_are_retried_like_meta_until_200() -> None:
    calls: list[tuple[bytes, str]] = []

    async def flaky(request: Request) -> PlainTextResponse:
        calls.append((await request.body(), request.headers["x-hub-signature-256"]))
        return PlainTextResponse("busy", status_code=503 if len(calls) < 3 else 200)

    async def broken(request: Request) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=500)

    app = Starlette(routes=[Route("/flaky", flaky, methods=["POST"]), Route("/broken", broken, methods=["POST"])])
    body = (FIXTURES / "messages_text.json").read_bytes()
    report = SendReport()

    async def go(base: str) -> tuple[int, int]:
        import httpx

        async with httpx.AsyncClient() as client:
            ok = await deliver(client, f"{base}/flaky", body, APP_SECRET, report, first_retry_seconds=0.01)
            bad = await deliver(client, f"{base}/broken", body, APP_SECRET, report, max_attempts=3, first_retry_seconds=0.01)
        return ok, bad

    with serve(app) as base:
        ok, bad = asyncio.run(go(base))
    assert (ok, bad) == (200, 500)
    assert len(calls) == 3 and all(b == body for b, _ in calls)  # same exact bytes each time
    assert all(verify_signature(b, h, APP_SECRET) is SignatureResult.VALID for b, h in calls)
    assert report.delivered == 1 and report.gave_up == 1 and report.retries == 2 + 2


def test_synthetic_stream_is_signed_routable_and_processed(engine: Engine, settings: Settings) -> None:
    numbers = synthetic_numbers(3)
    with engine.begin() as conn:
        for n in numbers:
            bind_waba(conn, ensure_organization(conn, n.org_external_id, n.org_name), n.waba_id, [PhoneNumber(n.phone_number_id, n.display_phone_number)], status="active")
    stream = SyntheticStream(numbers, seed=7)
    report = SendReport()
    with serve(create_app(settings)) as base:
        asyncio.run(send_stream(f"{base}/api/v1/whatsapp/webhook", APP_SECRET, stream, rate=100, duration=1.0, report=report))
    assert report.delivered == 100 and report.gave_up == 0
    bodies = [bytes(r.body) for r in rows(engine, whatsapp_webhook_logs)]
    assert len(bodies) == 100
    assert all(b.isascii() for b in bodies)  # wire style: non-ASCII escaped as \uXXXX
    phone_ids = {json.loads(b)["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] for b in bodies}
    assert phone_ids <= {n.phone_number_id for n in numbers}
    from wa_core.processing.runner import run_processing

    stats = run_processing(engine, settings, idle_exit_seconds=0)
    assert stats.by_status == {"processed": 100}
    assert len(rows(engine, whatsapp_messages)) > 30


def test_simulate_without_an_app_secret_exits_2_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("META_APP_SECRET", "DATABASE_URL")}
    cli = str(Path(sys.executable).parent / "wa-dev")
    out = subprocess.run([cli, "simulate", "--no-corpus"], cwd=tmp_path, env={**env, "WA_DATA_DIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "no app secret: set META_APP_SECRET or pass --app-secret" in out.stderr
