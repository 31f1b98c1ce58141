"""Logs of a full run carry no personal data; JSON lines are valid JSON."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, FIXTURES, TOKEN_KEY
from tests.helpers import bind_fixture_numbers
from tests.dev.test_simulate import free_port
from wa_core.settings import Settings
from wa_dev.simulate import SendReport, load_corpus, send_corpus

# personal data in the fixture corpus: phone numbers, names and message texts
PERSONAL = ["15550000101", "15550000102", "Test User", "Hello, is this shop open today?", "Your order is ready for pickup", "T\\u00ebst", "Tëst Üser"]


def test_a_full_run_logs_no_personal_data_and_json_lines_parse(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    import asyncio
    import os
    import time

    import httpx

    bind_fixture_numbers(engine)
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "DATABASE_URL": settings.database_url,
           "META_APP_SECRET": APP_SECRET, "META_WEBHOOK_VERIFY_TOKEN": "vt", "TOKEN_ENCRYPTION_KEY": TOKEN_KEY}
    cli = str(Path(sys.executable).parent / "wa-onboarding")
    log_file = (tmp_path / "receiver.log").open("w")
    server = subprocess.Popen([cli, "serve", "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        # until it answers (a busy machine may take well over 10 s to import and start it); the
        # bound only turns a hang into a failure
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "receiver.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the receiver never answered /healthz"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        report = SendReport()
        asyncio.run(send_corpus(f"http://127.0.0.1:{port}/api/v1/whatsapp/webhook", APP_SECRET, load_corpus(FIXTURES), report))
        asyncio.run(send_corpus(f"http://127.0.0.1:{port}/api/v1/whatsapp/webhook", "wrong-secret", load_corpus(FIXTURES)[:1], SendReport()))
        assert report.delivered == len(load_corpus(FIXTURES))
    finally:
        server.terminate()
        server.wait(10)
        log_file.close()
    processing = subprocess.run([cli, "process"], env=env, capture_output=True, text=True, timeout=120)
    assert processing.returncode == 0, processing.stderr
    text = (tmp_path / "receiver.log").read_text() + processing.stdout + processing.stderr
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, text[:2000]
    parsed = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(p) for p in parsed)
    assert any("signature" in p["message"] for p in parsed)  # the refused deliveries were logged
    for needle in PERSONAL + [APP_SECRET]:
        assert needle not in text, needle
