"""One media file from Meta into storage, streamed and verified (Meta, WhatsApp Cloud API "Media": download flow, errors).

Step 1 asks the Graph API for a fresh URL (:meth:`GraphClient.media_info
<wa_core.meta.graph.client.GraphClient.media_info>`); step 2 GETs that URL with the same
bearer token and streams the body in :data:`CHUNK_BYTES` chunks into storage, hashing and
counting as it goes. Nothing holds the file in memory. The file is accepted only when:

- the answer is not JSON (the step-1 metadata saved as the file is the classic bug, §9.1);
- it is at most ``max_bytes`` (checked against ``file_size``, ``Content-Length`` and while
  streaming: a lying server is cut off at the cap);
- its length equals ``file_size`` and its hex SHA-256 equals ``sha256`` of step 1 (the
  webhook's ``sha256`` is used when step 1 gives none).

A 401/403/404/410 from the download URL (expired after 5 minutes, §9.1; "get a new URL and
retry", §9.3) fetches a new URL once. 429, 5xx and transport errors are retried with
exponential backoff (:mod:`tenacity`) within the attempt; what still fails is raised as a
:class:`MediaError` whose ``outcome`` tells the state machine (:mod:`.download`) what to do.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from wa_core.meta.graph.client import USER_AGENT
from wa_core.meta.graph.errors import GraphError, GraphRequestError, PermissionDenied, RateLimited, TokenInvalid, TransientGraphError

from .storage import MediaStorage

#: bytes read from the network and written to storage at a time
CHUNK_BYTES = 256 * 1024
_HEX64 = frozenset("0123456789abcdef")


class MediaError(Exception):
    """A download that did not store the file.

    ``outcome``: ``retry`` (try again later: rate limits, Meta or the network down, a
    mismatching file, a refused token), ``failed`` (permanent: over the size cap) or
    ``expired`` (Meta says the media id is gone). ``kind`` is a short machine-readable
    reason stored in ``whatsapp_media.error_kind``; the message never holds a URL or token.
    """

    def __init__(self, kind: str, message: str, outcome: str = "retry") -> None:
        super().__init__(message)
        self.kind, self.outcome = kind, outcome


class _CdnTransient(Exception):
    """429, 5xx or a transport error from the download URL: retried with backoff."""


class _UrlRefused(Exception):
    """401/403/404/410 from the download URL: a new URL is fetched once."""


@dataclass(frozen=True)
class Fetched:
    """A stored file: its size in bytes, hex SHA-256 and MIME type (from step 1)."""

    size: int
    sha256: str
    mime_type: str | None


def file_size(value: Any) -> int | None:
    """``file_size`` of step 1 as an int: Meta sends a string, others a number (§9.1).

    None (the size is then unknown: not checked, the bytes still are against ``sha256``, and
    the stored ``file_size`` is the count of bytes received) for anything that is not a sane
    non-negative byte count below 2^63: a bool, a float, a negative number, ASCII digits
    longer than 19 or with other characters (``"²"`` passes ``str.isdigit`` and makes
    ``int()`` raise; so do 5,000 digits), an object. Break-it #4: such values used to fail
    the download as ``unexpected_error`` or ``size_mismatch``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
            return None
        value = int(text)
    if isinstance(value, int) and 0 <= value < 2**63:
        return value
    return None


def hex_sha256(value: Any) -> str | None:
    """``value`` as a lower-case 64-digit hex SHA-256, or None when it is not one."""
    if isinstance(value, str) and len(value) == 64 and set(value.lower()) <= _HEX64:
        return value.lower()
    return None


def step1(graph: Any, media_id: str, token: str, phone_number_id: str | None) -> dict[str, Any]:
    """:meth:`media_info` with its Graph errors mapped to :class:`MediaError` (§9.3): code 100
    (the object does not exist) → ``expired``; an invalid token, a permission error, a rate
    limit or Meta down → ``retry``; any other 4xx → ``retry`` with kind ``graph_refused``
    (the state machine expires it once the id is past its 7 days)."""
    try:
        return graph.media_info(media_id, token, phone_number_id=phone_number_id)
    except TokenInvalid as exc:
        raise MediaError("token_invalid", str(exc)) from None
    except (RateLimited, TransientGraphError) as exc:
        raise MediaError("graph_unavailable", str(exc)) from None
    except PermissionDenied as exc:
        raise MediaError("permission_denied", str(exc)) from None
    except GraphRequestError as exc:
        if exc.code == 100:
            raise MediaError("media_gone", str(exc), outcome="expired") from None
        raise MediaError("graph_refused", str(exc)) from None
    except GraphError as exc:  # another typed error: never permanent on our side
        raise MediaError("graph_error", str(exc)) from None


def fetch_media(
    graph: Any,
    http: httpx.Client,
    storage: MediaStorage,
    key: str,
    *,
    media_id: str,
    token: str,
    phone_number_id: str | None = None,
    webhook_sha256: str | None = None,
    max_bytes: int,
    retries: int = 3,
    backoff_initial: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Download media ``media_id`` into ``storage`` under ``key`` and verify it (module doc).

    ``graph`` is a :class:`~wa_core.meta.graph.client.GraphClient`, ``http`` the client of
    the download URL (its own pool; no base URL). ``retries`` bounds the in-attempt retries
    of 429/5xx/transport errors on the download URL (backoff ``backoff_initial`` × 2^n s with
    up to 1 s jitter, slept through ``sleep``). Raises :class:`MediaError`; a partial file is
    never left under ``key``.
    """
    info = step1(graph, media_id, token, phone_number_id)
    refreshed = False
    while True:
        expected = _expectations(info, webhook_sha256, max_bytes)
        retrying = Retrying(
            stop=stop_after_attempt(retries + 1),
            wait=wait_exponential_jitter(initial=backoff_initial, max=30.0, jitter=1.0),
            retry=retry_if_exception_type(_CdnTransient),
            sleep=sleep,
            reraise=True,
        )
        try:
            size, digest = retrying(_stream_once, http, storage, key, info["url"], token, expected, max_bytes)
        except _UrlRefused as exc:
            if refreshed:
                raise MediaError("cdn_refused", f"the download URL was refused twice ({exc}); check the business token") from None
            refreshed = True
            info = step1(graph, media_id, token, phone_number_id)  # a new URL (§9.3)
            continue
        except _CdnTransient as exc:
            raise MediaError("cdn_unavailable", str(exc)) from None
        mime = info.get("mime_type")
        return Fetched(size, digest, mime if isinstance(mime, str) else None)


def _expectations(info: dict[str, Any], webhook_sha256: str | None, max_bytes: int) -> tuple[int | None, str | None]:
    size = file_size(info.get("file_size"))
    if size is not None and size > max_bytes:
        raise MediaError("too_large", f"file_size {size} is over the {max_bytes}-byte cap", outcome="failed")
    return size, hex_sha256(info.get("sha256")) or hex_sha256(webhook_sha256)


def _stream_once(
    http: httpx.Client, storage: MediaStorage, key: str, url: str, token: str, expected: tuple[int | None, str | None], max_bytes: int
) -> tuple[int, str]:
    size_expected, sha_expected = expected
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    try:
        with http.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status in (401, 403, 404, 410):
                raise _UrlRefused(f"HTTP {status}")
            if status == 429 or status >= 500:
                raise _CdnTransient(f"download answered HTTP {status}")
            if status >= 300:
                raise MediaError("cdn_error", f"download answered HTTP {status}")
            if response.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
                raise MediaError("not_a_file", "the download answered JSON, not the file (§9.1)")
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise MediaError("too_large", f"Content-Length {length} is over the {max_bytes}-byte cap", outcome="failed")
            digest, count = hashlib.sha256(), 0
            with storage.writer(key) as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    count += len(chunk)
                    if count > max_bytes:
                        raise MediaError("too_large", f"the body passed the {max_bytes}-byte cap", outcome="failed")
                    if size_expected is not None and count > size_expected:
                        raise MediaError("size_mismatch", f"the body is longer than file_size {size_expected}")
                    digest.update(chunk)
                    out.write(chunk)
                _verify(count, digest.hexdigest(), size_expected, sha_expected)
            return count, digest.hexdigest()
    except httpx.TransportError as exc:  # raised before or while streaming: nothing kept
        raise _CdnTransient(f"download failed ({type(exc).__name__})") from None


def _verify(count: int, digest: str, size_expected: int | None, sha_expected: str | None) -> None:
    """Raise inside the writer (so the file is removed) when the bytes are not the media."""
    if size_expected is not None and count != size_expected:
        raise MediaError("size_mismatch", f"got {count} bytes, file_size says {size_expected}")
    if sha_expected is not None and digest != sha_expected:
        raise MediaError("sha256_mismatch", "the file's SHA-256 differs from the one Meta gave")


__all__ = ["CHUNK_BYTES", "Fetched", "MediaError", "fetch_media", "file_size", "hex_sha256", "step1"]
