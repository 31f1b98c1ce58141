"""The Graph emulator's Media API (Meta, WhatsApp Cloud API "Media"): media nodes and an expiring CDN.

=============================================  ==================================================
``GET /{version}/{media-id}[?phone_number_id]`` bearer of the media's WABA → ``{messaging_product,
                                               url, mime_type, sha256, file_size (a string, as
                                               Meta's example), id}``; a gone or unknown id →
                                               100 / subcode 33; another number → 100 / 33
``GET /media-cdn/{signature}``                 the bytes, with the **same** bearer token (401
                                               without, 403 for another WABA's token); the URL
                                               lives ``url_ttl`` (300 s, §9.1), then 404 (§9.3)
=============================================  ==================================================

Cases for tests: ``add_media(..., wrong_sha=True)`` reports a SHA-256 the bytes do not have;
``expire_next_urls(n)`` issues the next ``n`` URLs already expired; ``gone(media_id)`` makes
the id answer as deleted; ``GraphEmulator.fail_next("^/media-cdn/", 4, http_status=429)``
refuses downloads. Large files are generated (``size=``, deterministic bytes streamed in
256 KiB chunks), never held in memory.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

CHUNK = 256 * 1024
#: what a demo number's media id downloads as when the id was never added (``serve_any_of``)
DEMO_MEDIA_BYTES = b"\xff\xd8\xff\xe0 a demo photo from the Graph emulator"


def generated_bytes(size: int, seed: int = 0) -> Iterator[bytes]:
    """``size`` deterministic bytes in chunks of 256 KiB (a pattern derived from ``seed``)."""
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(CHUNK // 32))
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        yield block
    if rest:
        yield block[:rest]


@dataclass
class EmulatedMedia:
    """One media object: its bytes (``content``) or a generated body of ``size`` bytes."""

    id: str
    phone_number_id: str
    mime_type: str
    size: int
    sha256: str
    content: bytes | None = None
    seed: int = 0
    reported_sha256: str | None = None
    #: the ``file_size`` step 1 answers instead of ``str(size)`` (any JSON value; break-it tests)
    reported_file_size: Any = None
    is_gone: bool = False

    def chunks(self) -> Iterator[bytes]:
        """The body, in chunks."""
        if self.content is not None:
            for start in range(0, len(self.content), CHUNK):
                yield self.content[start : start + CHUNK]
            return
        yield from generated_bytes(self.size, self.seed)


class MediaCdn:
    """Media objects and their signed URLs (state of :class:`wa_dev.emulator.GraphEmulator`)."""

    def __init__(self, now: Callable[[], float], url_ttl: float = 300.0) -> None:
        self.now = now
        self.url_ttl = url_ttl
        self.media: dict[str, EmulatedMedia] = {}
        self.urls: dict[str, tuple[str, float]] = {}  # signature -> (media id, expires at)
        self._born_expired = 0
        #: phone numbers whose every media id exists (asked with ``?phone_number_id=``): the
        #: demo's numbers receive media ids nobody added (the corpus's, the synthetic stream's)
        self.serve_any_of: set[str] = set()

    def serves_any(self, media_id: str, phone_number_id: Any) -> bool:
        """True when ``media_id`` is unknown and should be made up on the spot for
        ``phone_number_id`` (one of :attr:`serve_any_of`)."""
        return media_id not in self.media and phone_number_id is not None and str(phone_number_id) in self.serve_any_of

    def add_media(
        self, media_id: str, phone_number_id: str, *, content: bytes | None = None, size: int | None = None,
        mime_type: str = "image/jpeg", seed: int = 0, wrong_sha: bool = False,
    ) -> EmulatedMedia:
        """Add a media object of ``phone_number_id``: ``content`` bytes, or ``size`` generated
        bytes. ``wrong_sha`` reports a SHA-256 of other bytes."""
        if content is None and size is None:
            raise ValueError("give content or size")
        digest = hashlib.sha256()
        media = EmulatedMedia(str(media_id), str(phone_number_id), mime_type, len(content) if content is not None else int(size or 0),
                              "", content=content, seed=seed)
        for chunk in media.chunks():
            digest.update(chunk)
        media.sha256 = digest.hexdigest()
        if wrong_sha:
            media.reported_sha256 = hashlib.sha256(b"other bytes" + media.sha256.encode()).hexdigest()
        self.media[media.id] = media
        return media

    def gone(self, media_id: str) -> None:
        """From now on ``media_id`` answers as deleted (100 / 33), like an id past its 7 days."""
        self.media[str(media_id)].is_gone = True

    def expire_next_urls(self, count: int = 1) -> None:
        """The next ``count`` URLs are issued already expired (their download answers 404)."""
        self._born_expired += count

    def info(self, emulator: Any, request: Request, params: dict[str, Any], media_id: str) -> Response:
        """``GET /{media-id}`` (called with the emulator's lock held)."""
        media = self.media[media_id]
        number = emulator.numbers.get(media.phone_number_id)
        emulator._require_token(request, params, number.waba_id if number else "", media_id)
        wanted = params.get("phone_number_id")
        if media.is_gone or (wanted and str(wanted) != media.phone_number_id):
            emulator._unsupported(media_id)
        signature = secrets.token_urlsafe(24)
        expires = self.now() + (0.0 if self._born_expired else self.url_ttl)
        self._born_expired = max(0, self._born_expired - 1)
        self.urls[signature] = (media_id, expires)
        base = str(request.base_url).rstrip("/")
        return JSONResponse({
            "messaging_product": "whatsapp", "url": f"{base}/media-cdn/{signature}?mid={media_id}", "mime_type": media.mime_type,
            "sha256": media.reported_sha256 or media.sha256, "file_size": str(media.size) if media.reported_file_size is None else media.reported_file_size, "id": media.id,
        })

    def download(self, emulator: Any, request: Request, path: str) -> Response:
        """``GET /media-cdn/{signature}``: the bytes with the bearer of the media's WABA."""
        with emulator._lock:
            entry = self.urls.get(path.removeprefix("/media-cdn/"))
            if entry is None or entry[1] <= self.now() or entry[0] not in self.media:
                return Response(b"", status_code=404)
            media = self.media[entry[0]]
            token = emulator.tokens.get(emulator._token(request, {}) or "")
            if token is None or not token.valid:
                return Response(b"", status_code=401)
            number = emulator.numbers.get(media.phone_number_id)
            if number is None or number.waba_id not in token.waba_ids:
                return Response(b"", status_code=403)
        headers = {"Content-Length": str(media.size)}
        return StreamingResponse(media.chunks(), media_type=media.mime_type, headers=headers)


__all__ = ["DEMO_MEDIA_BYTES", "EmulatedMedia", "MediaCdn", "generated_bytes"]
