"""docs/integrate.md's Python example runs against the app as written (only the service URL
and the shared secret are the test's), so the integration guide cannot rot."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import JWT_SECRET
from wa_core.settings import Settings
from wa_webhook.app import create_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrate.md"


def example() -> str:
    """The block fenced ```python integrate-example."""
    [block] = re.findall(r"```python integrate-example\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return block


def test_the_example_is_ten_lines_of_code_or_so() -> None:
    code = [line for line in example().splitlines() if line.strip() and not line.startswith(("import", "#"))]
    assert len(code) <= 12, code


def test_the_integration_example_runs_against_the_app(settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    s = settings.model_copy(update={"meta_app_id": "123456", "meta_config_id": "cfg", "jwt_audience": "wa-integrate-test"})
    code = example()
    code, n_api = re.subn(r'^API = .*$', 'API = "http://testserver"', code, flags=re.M)
    code, n_secret = re.subn(r'^JWT_SECRET = .*$', f"JWT_SECRET = {JWT_SECRET!r}", code, flags=re.M)
    code, n_aud = re.subn(r'^JWT_AUDIENCE = .*$', 'JWT_AUDIENCE = "wa-integrate-test"', code, flags=re.M)
    assert n_api == 1 and n_secret == 1 and n_aud == 1  # the three lines a reader changes
    with TestClient(create_app(s)) as app_client:
        # the example's own httpx.Client, served by the app in-process (same base URL, same headers)
        monkeypatch.setattr(httpx, "Client", lambda base_url, headers: TestClient(app_client.app, base_url=base_url, headers=headers))
        exec(compile(code, str(DOC), "exec"), {"__name__": "integrate_example"})
    out = capsys.readouterr().out
    assert "launch Embedded Signup with https://business.facebook.com/messaging/whatsapp/onboard/?app_id=123456" in out
    assert "then poll /api/v1/whatsapp/onboarding/" in out
    assert "connections: []" in out  # acme has connected nothing yet
    assert "events; next time pass after =" in out


def test_the_example_mints_the_aud_the_service_requires(settings: Settings, engine: Engine) -> None:
    """With JWT_AUDIENCE set, the example's token passes only because it carries "aud"."""
    s = settings.model_copy(update={"jwt_audience": "wa-integrate-test"})
    code = re.sub(r'^JWT_SECRET = .*$', f"JWT_SECRET = {JWT_SECRET!r}", example(), flags=re.M)
    code = re.sub(r'^JWT_AUDIENCE = .*$', 'JWT_AUDIENCE = "wa-integrate-test"', code, flags=re.M)
    namespace: dict = {"__name__": "integrate_example"}
    exec(compile(code.split("\napi = ")[0], str(DOC), "exec"), namespace)  # the imports and org_token only
    token = namespace["org_token"]("acme", "alice@acme.example")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "wa-integrate-test"
    unaud = jwt.encode({"org_id": "acme", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    with TestClient(create_app(s)) as client:
        assert client.get("/api/v1/whatsapp/check-connection", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        refused = client.get("/api/v1/whatsapp/check-connection", headers={"Authorization": f"Bearer {unaud}"})
        assert refused.status_code == 401 and "'aud'" in refused.json()["detail"]


def test_the_push_verification_snippet_accepts_our_signature_and_refuses_a_forged_one() -> None:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    [snippet] = re.findall(r"```python\n(\s*from standardwebhooks.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    namespace: dict = {}
    exec(compile(textwrap.dedent(snippet), str(DOC), "exec"), namespace)
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"events":[{"id":"e1","type":"message.received"}]}'
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": Webhook(secret).sign("msg_1", now, body.decode())}
    assert namespace["verified_events"](body, headers, secret) == [{"id": "e1", "type": "message.received"}]
    with pytest.raises(WebhookVerificationError):
        namespace["verified_events"](body.replace(b"e1", b"e2"), headers, secret)
