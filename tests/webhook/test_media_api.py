"""``GET /api/v1/whatsapp/media/{media_id}``: the stored file, for its organization only."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.core.test_media import AUDIO_ID, IMAGE_ID, acme, download, land_and_process, local, meta  # noqa: F401 (fixtures)
from tests.helpers import ACME_PHONE
from tests.webhook.test_onboarding import auth
from wa_core.settings import Settings
from wa_webhook.app import create_app


@pytest.fixture()
def api(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def test_the_stored_file_is_streamed_to_its_organization_only(api: TestClient, engine: Engine, settings: Settings, acme, meta) -> None:
    emulator, base_url, _ = meta
    land_and_process(engine, settings, "messages_image.json", "messages_audio_voice.json")
    photo = b"\xff\xd8" + bytes(range(256)) * 4000  # ~1 MB: several chunks
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, content=photo)
    emulator.media.add_media(AUDIO_ID, ACME_PHONE, content=b"voice", wrong_sha=True)  # stays pending
    download(engine, settings, base_url, local(settings))

    r = api.get(f"/api/v1/whatsapp/media/{IMAGE_ID}", headers=auth("acme"))
    assert r.status_code == 200 and r.content == photo
    assert r.headers["content-type"] == "image/jpeg" and r.headers["content-length"] == str(len(photo))
    assert r.headers["etag"] == f'"{hashlib.sha256(photo).hexdigest()}"'

    assert api.get(f"/api/v1/whatsapp/media/{IMAGE_ID}", headers=auth("globex")).status_code == 404
    assert api.get("/api/v1/whatsapp/media/123", headers=auth("acme")).status_code == 404
    pending = api.get(f"/api/v1/whatsapp/media/{AUDIO_ID}", headers=auth("acme"))
    assert pending.status_code == 409 and pending.json() == {"media_id": AUDIO_ID, "state": "pending", "error_kind": "sha256_mismatch"}
    assert api.get(f"/api/v1/whatsapp/media/{IMAGE_ID}").status_code == 401
    assert api.get("/api/v1/whatsapp/media/..%2F..%2Fetc", headers=auth("acme")).status_code in (404, 422)
