"""Inbound media end to end: a signed media webhook is processed into a ``whatsapp_media`` row,
then downloaded through the Graph emulator's Media API into a local folder or a real S3 API
(moto in server mode on loopback), verified, and its failures land in the right state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import s3fs
from pydantic import SecretStr
import sqlalchemy as sa
from moto.server import ThreadedMotoServer
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, TOKEN_KEY, fixture_bytes
from tests.helpers import ACME_PHONE, ACME_WABA, bind_fixture_numbers, land, rows, webhook_row
from wa_core.db.schema import utcnow, whatsapp_connections, whatsapp_messages
from wa_core.db.schema_media import whatsapp_media
from wa_core.media.download import download_due
from wa_core.media.fetch import MediaError, fetch_media
from wa_core.media.storage import MediaStorage
from wa_core.meta.crypto import TokenCipher
from wa_core.meta.graph.client import GraphClient
from wa_core.meta.signature import SignatureResult, verify_signature
from wa_core.processing.runner import run_processing
from wa_core.settings import Settings
from wa_dev.emulator import GraphEmulator, serve_in_thread

IMAGE_ID, AUDIO_ID, ASSET_ID = "500000000000001", "500000000000002", "500000000000002"
S3_KEY, S3_SECRET = "testing-key", "testing-secret"


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    """A real S3 API (moto server mode) on a free loopback port; its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture()
def meta() -> Iterator[tuple[GraphEmulator, str, str]]:
    """(emulator, base URL, Acme's business token) with Acme's WABA and number."""
    emulator = GraphEmulator()
    emulator.add_waba(ACME_WABA, "300000000000001", [{"id": ACME_PHONE, "display_phone_number": "15550000001", "coexistence": True}])
    token = emulator.add_token(ACME_WABA)
    base_url, stop = serve_in_thread(emulator)
    try:
        yield emulator, base_url, token
    finally:
        stop()


@pytest.fixture()
def acme(engine: Engine, meta) -> dict:
    """The fixture numbers bound, Acme's connection holding the emulator's token (encrypted)."""
    orgs = bind_fixture_numbers(engine)
    cipher = TokenCipher.from_hex(TOKEN_KEY)
    with engine.begin() as conn:
        conn_id = conn.execute(sa.select(whatsapp_connections.c.id).where(whatsapp_connections.c.waba_id == ACME_WABA)).scalar_one()
        conn.execute(sa.update(whatsapp_connections).where(whatsapp_connections.c.id == conn_id)
                     .values(business_token_encrypted=cipher.encrypt(meta[2], conn_id)))
    return orgs


def graph(base_url: str) -> GraphClient:
    return GraphClient(base_url, "v25.0", app_id=None, app_secret=None, max_retries=2, sleep=lambda s: None, backoff_initial=0.01)


def download(engine: Engine, settings: Settings, base_url: str, storage: MediaStorage, **kw):
    with graph(base_url) as g:
        return download_due(engine, settings, graph=g, storage=storage, cipher=TokenCipher.from_hex(TOKEN_KEY), sleep=lambda s: None, **kw)


def media(engine: Engine, media_id: str):
    [row] = rows(engine, whatsapp_media, whatsapp_media.c.media_id == media_id)
    return row


def land_and_process(engine: Engine, settings: Settings, *names: str) -> list[int]:
    ids = [land(engine, fixture_bytes(name)) for name in names]
    run_processing(engine, settings, idle_exit_seconds=0)
    for row_id, name in zip(ids, names):
        assert webhook_row(engine, row_id).status == "processed", name
    return ids


def local(settings: Settings) -> MediaStorage:
    return MediaStorage.from_settings(settings)


# --- planning ----------------------------------------------------------------------------
def test_media_messages_plan_one_pending_row_each_and_redelivery_adds_nothing(engine: Engine, settings: Settings, acme) -> None:
    land_and_process(engine, settings, "messages_image.json", "messages_audio_voice.json", "messages_image.json")
    image, audio = media(engine, IMAGE_ID), media(engine, AUDIO_ID)
    assert (image.state, image.kind, image.source, image.mime_type, image.wamid) == (
        "pending", "image", "cloud_api", "image/jpeg", "wamid.FAKEIN00000000000000000002")
    assert audio.kind == "audio" and audio.mime_type.startswith("audio/ogg")
    assert image.organization_id == acme["acme"] and image.connection_id is not None
    assert image.expires_at - image.first_seen_at == timedelta(days=7)
    assert image.next_attempt_at <= utcnow() and image.attempts == 0
    assert len(rows(engine, whatsapp_media)) == 2


def test_history_media_asset_stores_the_message_and_its_media(engine: Engine, settings: Settings, acme) -> None:
    land_and_process(engine, settings, "history.json", "history_media_asset.json", "history_media_messages.json")
    [message] = rows(engine, whatsapp_messages, whatsapp_messages.c.wamid == "wamid.FAKEHIST00000000000000002")
    assert message.type == "image" and message.source == "history"  # the placeholder was filled
    assert {(r.media_id, r.source, r.state) for r in rows(engine, whatsapp_media)} == {
        (ASSET_ID, "history", "pending"), ("500000000000010", "history", "pending")}


# --- downloads ---------------------------------------------------------------------------
def test_signed_media_webhook_lands_in_s3(engine: Engine, settings: Settings, acme, meta, moto_s3: str, signatures) -> None:
    emulator, base_url, _ = meta
    body = fixture_bytes("messages_image.json")
    assert verify_signature(body, signatures["messages_image.json"], APP_SECRET) is SignatureResult.VALID
    land_and_process(engine, settings, "messages_image.json", "history_media_asset.json")
    photo, asset = b"\xff\xd8jpeg" + bytes(range(256)) * 3000, b"history-photo" * 1000
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, content=photo)
    emulator.media.add_media(ASSET_ID, ACME_PHONE, content=asset)
    fs = s3fs.S3FileSystem(key=S3_KEY, secret=S3_SECRET, endpoint_url=moto_s3)
    fs.mkdir("wa-media")
    s3 = settings.model_copy(update={
        "media_storage_url": "s3://wa-media/inbound", "media_s3_endpoint_url": moto_s3,
        "media_s3_access_key_id": SecretStr(S3_KEY), "media_s3_secret_access_key": SecretStr(S3_SECRET),
    })
    counts = download(engine, s3, base_url, MediaStorage.from_settings(s3))
    assert counts["stored"] == 2
    for media_id, content in ((IMAGE_ID, photo), (ASSET_ID, asset)):
        row = media(engine, media_id)
        assert (row.state, row.attempts, row.file_size, row.sha256) == ("stored", 1, len(content), hashlib.sha256(content).hexdigest())
        assert row.storage_key == f"{acme['acme']}/{ACME_PHONE}/{media_id}"
        fs.invalidate_cache()
        assert fs.cat(f"wa-media/inbound/{row.storage_key}") == content
    # every call carried the bearer token, the step-1 call named the number
    [info] = emulator.calls_to(f"^/{IMAGE_ID}$")
    assert info.auth == "bearer" and info.params == {"phone_number_id": ACME_PHONE}
    assert all(c.auth == "bearer" for c in emulator.calls_to("^/media-cdn/"))
    assert download(engine, s3, base_url, MediaStorage.from_settings(s3)) == {"expired": 0}  # nothing due any more
    # the event feed heard of both files, once each, in the organization's stream
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT organization_id, type, payload FROM whatsapp_events WHERE type LIKE 'media.%' ORDER BY cursor")).all()
    assert sorted((str(e.organization_id), e.type, e.payload["media_id"], e.payload["file_size"]) for e in events) == sorted([
        (str(acme["acme"]), "media.stored", IMAGE_ID, len(photo)), (str(acme["acme"]), "media.stored", ASSET_ID, len(asset))])


def test_audio_lands_in_the_local_folder(engine: Engine, settings: Settings, acme, meta) -> None:
    emulator, base_url, _ = meta
    land_and_process(engine, settings, "messages_audio_voice.json")
    voice = b"OggS" + b"\x01" * 70_000
    emulator.media.add_media(AUDIO_ID, ACME_PHONE, content=voice, mime_type="audio/ogg")
    assert download(engine, settings, base_url, local(settings))["stored"] == 1
    row = media(engine, AUDIO_ID)
    assert (Path(settings.data_dir) / "media" / row.storage_key).read_bytes() == voice
    assert row.mime_type == "audio/ogg"


def test_sha_mismatch_is_retried_with_backoff_then_failed(engine: Engine, settings: Settings, acme, meta) -> None:
    emulator, base_url, _ = meta
    land_and_process(engine, settings, "messages_image.json")
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, content=b"not what Meta hashed", wrong_sha=True)
    s = settings.model_copy(update={"media_max_attempts": 2, "media_retry_base_seconds": 60})
    assert download(engine, s, base_url, local(s))["pending"] == 1
    row = media(engine, IMAGE_ID)
    assert (row.state, row.error_kind, row.attempts) == ("pending", "sha256_mismatch", 1)
    assert row.next_attempt_at - utcnow() > timedelta(seconds=50)
    assert not list((Path(s.data_dir) / "media").rglob(IMAGE_ID))  # no partial file left
    assert download(engine, s, base_url, local(s)) == {"expired": 0}  # not due yet
    later = utcnow() + timedelta(minutes=2)
    assert download(engine, s, base_url, local(s), now=lambda: later)["failed"] == 1
    row = media(engine, IMAGE_ID)
    assert (row.state, row.error_kind, row.attempts, row.next_attempt_at) == ("failed", "sha256_mismatch", 2, None)


def test_an_expired_url_is_refreshed_once(engine: Engine, settings: Settings, acme, meta) -> None:
    emulator, base_url, _ = meta
    land_and_process(engine, settings, "messages_image.json")
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, content=b"image bytes")
    emulator.media.expire_next_urls(1)
    assert download(engine, settings, base_url, local(settings))["stored"] == 1
    assert len(emulator.calls_to(f"^/{IMAGE_ID}$")) == 2  # a new URL after the 404
    assert [c.status for c in emulator.calls_to("^/media-cdn/")] == [404, 200]


def test_gone_media_is_expired_and_old_ids_are_never_asked(engine: Engine, settings: Settings, acme, meta) -> None:
    emulator, base_url, _ = meta
    land_and_process(engine, settings, "messages_image.json", "messages_audio_voice.json")
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, content=b"x")
    emulator.media.gone(IMAGE_ID)
    with engine.begin() as conn:  # the audio was first seen 8 days ago
        conn.execute(sa.update(whatsapp_media).where(whatsapp_media.c.media_id == AUDIO_ID)
                     .values(expires_at=utcnow() - timedelta(days=1)))
    counts = download(engine, settings, base_url, local(settings))
    assert counts["expired"] == 2
    assert (media(engine, IMAGE_ID).state, media(engine, IMAGE_ID).error_kind) == ("expired", "media_gone")
    assert (media(engine, AUDIO_ID).state, media(engine, AUDIO_ID).error_kind) == ("expired", "id_expired")
    assert not emulator.calls_to(f"^/{AUDIO_ID}$")


def test_rate_limits_on_both_steps_are_retried_then_succeed(engine: Engine, settings: Settings, acme, meta) -> None:
    emulator, base_url, _ = meta
    land_and_process(engine, settings, "messages_image.json")
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, content=b"after the rate limit")
    emulator.fail_next(f"^/{IMAGE_ID}$", 4, http_status=400, message="(#4) Application request limit reached")
    emulator.fail_next("^/media-cdn/", 4, http_status=429, message="Too many requests")
    assert download(engine, settings, base_url, local(settings))["stored"] == 1
    assert [c.status for c in emulator.calls_to(f"^/{IMAGE_ID}$")] == [400, 200]
    assert [c.status for c in emulator.calls_to("^/media-cdn/")] == [429, 200]


def test_media_over_the_cap_fails_without_downloading(engine: Engine, settings: Settings, acme, meta) -> None:
    emulator, base_url, _ = meta
    land_and_process(engine, settings, "messages_image.json")
    cap = settings.media_max_bytes
    assert cap == 100 * 1024 * 1024
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, size=cap + 1)  # generated, never in memory
    assert download(engine, settings, base_url, local(settings))["failed"] == 1
    row = media(engine, IMAGE_ID)
    assert (row.state, row.error_kind, row.attempts) == ("failed", "too_large", 1)
    assert not emulator.calls_to("^/media-cdn/")


def test_a_body_past_the_cap_is_cut_off_while_streaming(tmp_path: Path) -> None:
    """A server that announces no size and streams past the cap: stopped at the cap."""
    sent = []

    def body():
        for _ in range(64):
            sent.append(1)
            yield b"\0" * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/999"):
            return httpx.Response(200, json={"url": "https://lookaside.example.invalid/f", "sha256": "0" * 64, "id": "999"})
        return httpx.Response(200, content=body(), headers={"Content-Type": "image/jpeg"})

    transport = httpx.MockTransport(handler)
    storage = MediaStorage(str(tmp_path / "media"), auto_mkdir=True)
    with GraphClient("https://graph.example.invalid", "v25.0", app_id=None, app_secret=None, transport=transport) as g, \
            httpx.Client(transport=transport) as http:
        with pytest.raises(MediaError) as caught:
            fetch_media(g, http, storage, "org/phone/999", media_id="999", token="t", max_bytes=1024 * 1024)
    assert (caught.value.kind, caught.value.outcome) == ("too_large", "failed")
    assert len(sent) < 64 and not storage.exists("org/phone/999")


def test_json_from_the_download_url_is_never_stored(tmp_path: Path) -> None:
    """The step-1 metadata saved as the file (§9.1): refused."""
    def handler(request: httpx.Request) -> httpx.Response:
        meta_json = {"url": "https://lookaside.example.invalid/f", "sha256": "0" * 64, "file_size": 10, "id": "7"}
        return httpx.Response(200, json=meta_json)

    transport = httpx.MockTransport(handler)
    storage = MediaStorage(str(tmp_path / "media"), auto_mkdir=True)
    with GraphClient("https://graph.example.invalid", "v25.0", app_id=None, app_secret=None, transport=transport) as g, \
            httpx.Client(transport=transport) as http:
        with pytest.raises(MediaError) as caught:
            fetch_media(g, http, storage, "org/phone/7", media_id="7", token="t", max_bytes=1024)
    assert caught.value.kind == "not_a_file" and not storage.exists("org/phone/7")


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "..", ".", "ok\n"])
def test_no_token_waits_and_a_bad_media_id_is_failed_at_once(engine: Engine, settings: Settings, meta, bad_id: str) -> None:
    bind_fixture_numbers(engine)  # no business token stored
    message = json.loads(fixture_bytes("messages_image.json"))
    message["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["id"] = bad_id
    land(engine, json.dumps(message).encode())
    land_and_process(engine, settings, "messages_audio_voice.json")
    bad = media(engine, bad_id)
    assert (bad.state, bad.error_kind, bad.next_attempt_at) == ("failed", "invalid_media_id", None)
    assert download(engine, settings, meta[1], local(settings))["pending"] == 1
    assert media(engine, AUDIO_ID).error_kind == "no_token"


ODD_SIZES = ["abc", -5, "-3", 1.5, 10**30, "9" * 5000, "\u00b2", "\uff11\uff12", True, {"bytes": 1}, [], ""]


@pytest.mark.parametrize("odd", ODD_SIZES, ids=repr)
def test_an_odd_file_size_is_unknown_and_the_media_is_stored(engine: Engine, settings: Settings, acme, meta, odd) -> None:
    """Break-it #4 of the event feed: a string, negative, float, huge or non-ASCII ``file_size``
    from step 1 (§9.1) used to fail the download (``unexpected_error``, ``size_mismatch``); now the
    size is unknown, the bytes are still checked against ``sha256`` and stored."""
    emulator, base_url, _ = meta
    [row_id] = land_and_process(engine, settings, "messages_image.json")
    image = b"\xff\xd8\xff" + b"\x02" * 5000
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, content=image).reported_file_size = odd
    assert download(engine, settings, base_url, local(settings))["stored"] == 1
    row = media(engine, IMAGE_ID)
    assert (row.state, row.error_kind, row.file_size) == ("stored", None, len(image))
    assert webhook_row(engine, row_id).status == "processed"


def test_file_size_accepts_only_a_sane_byte_count() -> None:
    from wa_core.media.fetch import file_size

    assert [file_size(v) for v in ("303833", " 61901 ", 61901, 0, 2**63 - 1)] == [303833, 61901, 61901, 0, 2**63 - 1]
    assert {file_size(v) for v in [*ODD_SIZES, 2**63, None]} == {None}
