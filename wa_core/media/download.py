"""The media state machine: claim due ``whatsapp_media`` rows, download them, record the outcome.

``pending`` rows whose ``next_attempt_at`` is due are claimed in batches (``FOR UPDATE SKIP
LOCKED`` on Postgres: several runs never take the same row); a claim counts the attempt and
pushes ``next_attempt_at`` out by :data:`LEASE` (a run that dies leaves its rows to be
claimed again then). Each row is then downloaded (:func:`~.fetch.fetch_media`) in a thread
pool of ``MEDIA_DOWNLOAD_CONCURRENCY`` with the business token of its connection, and ends:

- ``stored``: the verified file is under ``storage_key`` (``<org>/<phone>/<media id>``);
- ``pending`` again with backoff ``MEDIA_RETRY_BASE_SECONDS × 2^(attempts−1)`` (≤ 1 h): rate
  limits, Meta or storage down, a refused token, a sha/size mismatch;
- ``failed``: over ``MEDIA_MAX_BYTES`` (permanent), or ``MEDIA_MAX_ATTEMPTS`` used up;
- ``expired``: Meta says the id is gone (code 100), or the id is past its 7 days (§9.1:
  inbound media ids expire after 7 days; nothing is asked of Meta for those).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.db.schema import as_utc, utcnow, whatsapp_connections
from wa_core.db.schema_media import whatsapp_media
from wa_core.events.outbox import write_events
from wa_core.processing.state import EventSpec

from .fetch import Fetched, MediaError, fetch_media
from .storage import MediaStorage

log = logging.getLogger("wa_core.media")

#: how long a claimed row stays out of other claims (a 100 MB download takes seconds)
LEASE = timedelta(minutes=15)
MAX_BACKOFF_SECONDS = 3600.0


def storage_key(row: Any) -> str:
    """Where a media row's file goes: ``<organization id>/<phone_number_id>/<media id>``
    (ids checked when the row was planned: no ``/`` or ``..``)."""
    return f"{row.organization_id}/{row.phone_number_id}/{row.media_id}"


def due_count(conn: Connection, now: datetime | None = None) -> int:
    """Pending media rows due at ``now`` (UTC; default now), for the sensor."""
    m = whatsapp_media.c
    return conn.execute(
        sa.select(sa.func.count()).select_from(whatsapp_media).where(m.state == "pending", m.next_attempt_at <= (now or utcnow()))
    ).scalar_one()


def expire_overdue(conn: Connection, now: datetime) -> int:
    """Mark pending rows past ``expires_at`` as ``expired`` (Meta forgot their id); returns how many."""
    m = whatsapp_media.c
    result = conn.execute(
        sa.update(whatsapp_media)
        .where(m.state == "pending", m.expires_at <= now)
        .values(state="expired", next_attempt_at=None, error_kind="id_expired",
                last_error="media id older than 7 days (Meta forgets inbound media ids then)", updated_at=now)
    )
    return result.rowcount or 0


def claim(conn: Connection, now: datetime, limit: int) -> list[Any]:
    """Claim up to ``limit`` due pending rows, oldest due first: counts their attempt and
    leases them for :data:`LEASE`. Returns the claimed rows (with their new ``attempts``)."""
    m = whatsapp_media.c
    due = (
        sa.select(m.id)
        .where(m.state == "pending", m.next_attempt_at <= now)
        .order_by(m.next_attempt_at, m.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        sa.update(whatsapp_media)
        .where(m.id.in_(due.scalar_subquery()))
        .values(attempts=m.attempts + 1, next_attempt_at=now + LEASE, updated_at=now)
        .returning(*whatsapp_media.c)
    )
    return list(conn.execute(stmt).all())


def tokens(conn: Connection, cipher: Any, connection_ids: set[Any]) -> dict[Any, str | None]:
    """The decrypted business token per connection id (None when it has none or it cannot be
    decrypted: the row then waits for a reconnect)."""
    c = whatsapp_connections.c
    out: dict[Any, str | None] = {}
    if not connection_ids:
        return out
    for row in conn.execute(sa.select(c.id, c.business_token_encrypted).where(c.id.in_(connection_ids))):
        try:
            out[row.id] = cipher.decrypt(row.business_token_encrypted, row.id) if row.business_token_encrypted else None
        except Exception as exc:  # noqa: BLE001 - a bad stored value must not stop other downloads
            log.warning("media: business token of connection %s cannot be decrypted (%s)", row.id, type(exc).__name__)
            out[row.id] = None
    return out


def backoff(attempts: int, base: float) -> timedelta:
    """Delay before the next attempt after ``attempts`` attempts: ``base × 2^(attempts−1)`` s, ≤ 1 h."""
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempts - 1)))


def outcome_values(row: Any, result: Fetched | MediaError, now: datetime, settings: Any) -> dict[str, Any]:
    """The columns to set on ``row`` after one attempt ended with ``result`` (module doc)."""
    if isinstance(result, Fetched):
        return {
            "state": "stored", "storage_key": storage_key(row), "stored_at": now, "file_size": result.size, "sha256": result.sha256,
            "mime_type": result.mime_type or row.mime_type, "next_attempt_at": None, "error_kind": None,
            "last_error": None, "updated_at": now,
        }
    error = {"error_kind": result.kind, "last_error": str(result)[:1000], "updated_at": now}
    if result.outcome == "expired" or (result.outcome == "retry" and as_utc(row.expires_at) <= now):
        return {**error, "state": "expired", "next_attempt_at": None}
    if result.outcome == "failed" or row.attempts >= settings.media_max_attempts:
        return {**error, "state": "failed", "next_attempt_at": None}
    return {**error, "state": "pending", "next_attempt_at": now + backoff(row.attempts, settings.media_retry_base_seconds)}


def download_due(
    engine: Engine,
    settings: Any,
    *,
    graph: Any,
    storage: MediaStorage,
    cipher: Any,
    http: httpx.Client | None = None,
    now: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    max_rounds: int | None = None,
) -> Counter:
    """Download every due media file, in claims of 4 × concurrency, until none is due (or
    ``max_rounds`` claims). ``graph`` is a :class:`~wa_core.meta.graph.client.GraphClient`,
    ``cipher`` the business-token :class:`~wa_core.meta.crypto.TokenCipher`; ``http`` the
    download client (default: a new one, timeouts 10 s connect / 60 s read). Returns counts
    per outcome (``stored``, ``pending``, ``failed``, ``expired``). Never raises for one
    file: its error is recorded on its row."""
    counts: Counter = Counter()
    own_http = http is None
    http = http or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)
    workers = settings.media_download_concurrency
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="media") as pool:
            rounds = 0
            while max_rounds is None or rounds < max_rounds:
                rounds += 1
                with engine.begin() as conn:
                    counts["expired"] += expire_overdue(conn, now())
                    rows = claim(conn, now(), 4 * workers)
                    keys = tokens(conn, cipher, {r.connection_id for r in rows if r.connection_id is not None})
                if not rows:
                    break
                results = pool.map(lambda r: (r, _attempt(r, keys.get(r.connection_id), graph, http, storage, settings, sleep)), rows)
                for row, result in results:
                    values = outcome_values(row, result, now(), settings)
                    with engine.begin() as conn:
                        conn.execute(sa.update(whatsapp_media).where(whatsapp_media.c.id == row.id).values(**values))
                        if values["state"] != "pending":  # the event in the same transaction as the state
                            write_events(conn, [media_event(row, values)])
                    counts[values["state"]] += 1
                    if values["state"] != "stored":
                        log.warning("media %s (%s): %s → %s", row.id, row.kind, values["error_kind"], values["state"])
    finally:
        if own_http:
            http.close()
    return counts


def media_event(row: Any, values: dict[str, Any]) -> EventSpec:
    """``media.stored`` / ``media.failed`` / ``media.expired`` for the event feed: once per
    media file and final state (key ``<phone_number_id>:<media id>``), with the ids the CRM
    needs to fetch it (``GET /api/v1/whatsapp/media/{media_id}``) and, when not stored, why."""
    payload = {"media_id": row.media_id, "wamid": row.wamid, "phone_number_id": row.phone_number_id, "kind": row.kind,
               "mime_type": values.get("mime_type") or row.mime_type}
    if values["state"] == "stored":
        payload.update(file_size=values["file_size"], sha256=values["sha256"])
    else:
        payload["error_kind"] = values.get("error_kind")
    return EventSpec(row.organization_id, f"media.{values['state']}", f"{row.phone_number_id}:{row.media_id}", payload, values["updated_at"])


def _attempt(row: Any, token: str | None, graph: Any, http: httpx.Client, storage: MediaStorage, settings: Any,
             sleep: Callable[[float], None]) -> Fetched | MediaError:
    if not token:
        return MediaError("no_token", "the number's connection has no usable business token")
    try:
        return fetch_media(
            graph, http, storage, storage_key(row), media_id=row.media_id, token=token, phone_number_id=row.phone_number_id,
            webhook_sha256=row.sha256, max_bytes=settings.media_max_bytes, sleep=sleep,
        )
    except MediaError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - storage or anything unexpected: retried later, recorded
        log.warning("media %s: %s", row.id, type(exc).__name__, exc_info=log.isEnabledFor(logging.DEBUG))
        return MediaError("storage_error" if isinstance(exc, OSError) else "unexpected_error", type(exc).__name__)


__all__ = ["LEASE", "backoff", "claim", "download_due", "due_count", "expire_overdue", "media_event", "outcome_values", "storage_key", "tokens"]
