"""Push delivery of the event feed to each organization's endpoint (Standard Webhooks).

An organization has at most one endpoint (``whatsapp_event_endpoints``: URL, secret
encrypted with ``TOKEN_ENCRYPTION_KEY``). Deliveries are ``POST`` requests whose body is
``{"events": [<event>, …]}`` (:func:`~.feed.event_json`), signed as the Standard Webhooks
spec says with the ``standardwebhooks`` library: ``webhook-id`` (the same on every retry of
the same events), ``webhook-timestamp`` (unix seconds) and ``webhook-signature`` (``v1,…``;
during a rotation's grace period also the previous secret's signature).

- **In order per organization:** events go after the endpoint's ``delivered_cursor``, one
  request at a time per endpoint (a lease on the row keeps a second run off it); when behind,
  up to ``EVENT_PUSH_BATCH_SIZE`` events a request.
- **One endpoint's fault is its own:** a non-2xx answer, a timeout, a connection error, a URL
  the client cannot use (stored before :func:`check_url` refused it) or a secret no
  configured key decrypts fails that attempt (logged, counted), never the run serving the
  other organizations. :func:`set_endpoint` refuses a URL httpx cannot parse (ValueError).
- **Retries:** a failed attempt is retried after
  ``EVENT_PUSH_RETRY_BASE_SECONDS`` × 2^(failures − 1), at most ``EVENT_PUSH_RETRY_MAX_SECONDS``;
  after ``EVENT_PUSH_DISABLE_AFTER_FAILURES`` consecutive failures, or failing for
  ``EVENT_PUSH_RETRY_WINDOW_HOURS`` (3 days), the endpoint is disabled with an alert
  (``event_endpoint_disabled``). Setting the endpoint again enables it. Failures are counted
  on the endpoint's current row: a request that fails after the operator set the endpoint
  again counts as the first failure of the new setting, it never disables it with the
  counter the operator cleared.
- **Every attempt is logged** in ``whatsapp_event_deliveries`` (status, latency, error).
- **Replay:** :func:`enqueue_replay` queues one event or a filter (time, types); queued events
  are sent (again) after the live ones, with the same signing, marked delivered on a 2xx.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from standardwebhooks.webhooks import Webhook

from wa_core.alerts import Alert, get_notifier
from wa_core.db.schema import as_utc, utcnow
from wa_core.db.schema_events import (
    whatsapp_event_cursors,
    whatsapp_event_deliveries,
    whatsapp_event_endpoints,
    whatsapp_event_replays,
    whatsapp_events,
)
from wa_core.meta.crypto import TokenCryptoError
from wa_core.settings import Settings

from .feed import event_json, last_cursor
from .outbox import EVENT_NAMESPACE, EVENTS_CHANNEL, jsonable

log = logging.getLogger("wa_core.events")
ep, ev, rp = whatsapp_event_endpoints.c, whatsapp_events.c, whatsapp_event_replays.c


class UnknownEndpoint(LookupError):
    """The organization has no push endpoint."""


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def check_url(url: str) -> None:
    """Raise :class:`ValueError` unless ``url`` is an ``http(s)`` URL with a host, of at most
    2000 characters, that the delivery client (httpx) can parse."""
    message = "the endpoint URL must be an http(s) URL with a host, of at most 2000 characters"
    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > 2000:
        raise ValueError(message)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ValueError(f"{message}: it cannot be parsed") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(message)


def set_endpoint(conn: Connection, cipher: Any, organization_id: uuid.UUID, url: str, secret: str | None = None) -> str:
    """Create or replace the organization's endpoint (enabled, failures cleared) and return
    its secret (a new one unless ``secret`` is given; shown once). A new endpoint starts
    after the newest event (older ones can be replayed); a changed URL keeps the position.
    Raises :class:`ValueError` for a URL :func:`check_url` refuses or a malformed secret."""
    check_url(url)
    secret = secret or new_secret()
    Webhook(secret)  # refuses an empty or malformed secret
    now = utcnow()
    values = {"url": url, "secret_encrypted": cipher.encrypt(secret, organization_id), "previous_secret_encrypted": None,
              "previous_secret_expires_at": None, "enabled": True, "disabled_at": None, "disabled_reason": None, "failures": 0,
              "first_failure_at": None, "next_attempt_at": None, "updated_at": now}
    changed = conn.execute(sa.update(whatsapp_event_endpoints).where(ep.organization_id == organization_id).values(**values)).rowcount
    if not changed:
        conn.execute(sa.insert(whatsapp_event_endpoints).values(
            organization_id=organization_id, delivered_cursor=last_cursor(conn, organization_id), created_at=now, **values))
    wake_delivery(conn, organization_id)
    return secret


def wake_delivery(conn: Connection, organization_id: Any) -> None:
    """Wake the delivery run and long-polls at commit (Postgres ``NOTIFY wa_events``; no-op on
    SQLite, whose waker sees every commit): an endpoint set or a replay queued is served at
    once, not at the run's next idle poll (``EVENT_PUSH_IDLE_POLL_SECONDS``)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_notify(%(c)s, %(o)s)", {"c": EVENTS_CHANNEL, "o": str(organization_id)})


def rotate_secret(conn: Connection, cipher: Any, organization_id: uuid.UUID, grace_hours: float = 24.0) -> str:
    """A new secret for the endpoint; the old one keeps signing alongside for ``grace_hours``.
    Raises :class:`UnknownEndpoint`."""
    row = _endpoint(conn, organization_id)
    secret = new_secret()
    conn.execute(sa.update(whatsapp_event_endpoints).where(ep.organization_id == organization_id).values(
        secret_encrypted=cipher.encrypt(secret, organization_id), previous_secret_encrypted=row.secret_encrypted,
        previous_secret_expires_at=utcnow() + timedelta(hours=grace_hours), updated_at=utcnow()))
    return secret


def disable_endpoint(conn: Connection, organization_id: uuid.UUID, reason: str = "disabled by an operator") -> None:
    """Stop delivering to the endpoint (events keep accumulating; set it again to resume)."""
    _endpoint(conn, organization_id)
    conn.execute(sa.update(whatsapp_event_endpoints).where(ep.organization_id == organization_id).values(
        enabled=False, disabled_at=utcnow(), disabled_reason=reason[:500], updated_at=utcnow()))


def endpoint_status(conn: Connection, organization_id: uuid.UUID) -> dict[str, Any]:
    """The endpoint's state without its secret: ``url``, ``enabled``, ``disabled_at`` /
    ``disabled_reason``, ``delivered_cursor`` and ``last_cursor`` (the organization's newest),
    ``failures`` (= ``consecutive_failures``) since ``first_failure_at``, ``next_attempt_at``,
    ``last_attempt_at``, ``last_success_at``, ``previous_secret_expires_at``, and ``last_attempt``:
    the latest logged attempt (``attempted_at``, ``ok``, ``status_code`` — None when no
    response came —, ``error``, ``latency_ms``, ``events``, ``replay``) or None before the
    first one. Times are UTC ISO 8601. Raises :class:`UnknownEndpoint`."""
    row = _endpoint(conn, organization_id)
    keep = ("url", "enabled", "disabled_at", "disabled_reason", "delivered_cursor", "failures", "first_failure_at", "next_attempt_at",
            "last_attempt_at", "last_success_at", "previous_secret_expires_at")
    d = whatsapp_event_deliveries.c
    last = conn.execute(  # index (organization_id, attempted_at): one row
        sa.select(d.attempted_at, d.ok, d.status_code, d.error, d.latency_ms, d.events, d.replay)
        .where(d.organization_id == organization_id).order_by(d.attempted_at.desc(), d.id.desc()).limit(1)
    ).first()
    state = {k: getattr(row, k) for k in keep} | {"consecutive_failures": row.failures, "last_cursor": last_cursor(conn, organization_id)}
    state["last_attempt"] = None if last is None else {**last._mapping, "attempted_at": as_utc(last.attempted_at)}
    return jsonable(state)


def _endpoint(conn: Connection, organization_id: uuid.UUID) -> Any:
    row = conn.execute(sa.select(whatsapp_event_endpoints).where(ep.organization_id == organization_id)).first()
    if row is None:
        raise UnknownEndpoint(f"organization {organization_id} has no event endpoint")
    return row


def enqueue_replay(
    conn: Connection, organization_id: uuid.UUID, *, event_id: uuid.UUID | None = None, since: datetime | None = None,
    until: datetime | None = None, types: Sequence[str] = (),
) -> int:
    """Queue events of the organization to be pushed again: ``event_id`` alone, or those whose
    ``occurred_at`` is in [``since``, ``until``) and whose type is in ``types`` (all when empty).
    Returns how many were queued."""
    query = sa.select(ev.organization_id, ev.id).where(ev.organization_id == organization_id)
    if event_id is not None:
        query = query.where(ev.id == event_id)
    if since is not None:
        query = query.where(ev.occurred_at >= since)
    if until is not None:
        query = query.where(ev.occurred_at < until)
    if types:
        query = query.where(ev.type.in_(list(types)))
    query = query.order_by(ev.cursor)
    stmt = sa.insert(whatsapp_event_replays).from_select(["organization_id", "event_id"], query).returning(rp.id)
    queued = len(conn.execute(stmt).all())
    if queued:
        wake_delivery(conn, organization_id)
    return queued


def retry_delay(failures: int, settings: Settings) -> float:
    """Seconds before the next attempt after ``failures`` consecutive failures."""
    return min(settings.event_push_retry_max_seconds, settings.event_push_retry_base_seconds * 2 ** max(0, failures - 1))


@dataclass
class DeliveryStats:
    """What delivery rounds did (Dagster metadata)."""

    requests: int = 0
    delivered: int = 0
    failed: int = 0
    disabled: int = 0
    replayed: int = 0
    rounds: int = 0
    latencies_ms: list[int] = field(default_factory=list)

    def add(self, other: DeliveryStats) -> None:
        """Fold ``other`` in."""
        for name in ("requests", "delivered", "failed", "disabled", "replayed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies_ms = (self.latencies_ms + other.latencies_ms)[-1000:]


def _secrets(cipher: Any, row: Any, now: datetime) -> list[str]:
    secrets = [cipher.decrypt(row.secret_encrypted, row.organization_id)]
    if row.previous_secret_encrypted and row.previous_secret_expires_at and as_utc(row.previous_secret_expires_at) > now:
        secrets.append(cipher.decrypt(row.previous_secret_encrypted, row.organization_id))
    return secrets


def signed_headers(secrets: Sequence[str], webhook_id: str, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of ``body`` (one ``v1,`` signature per secret)."""
    signature = " ".join(Webhook(s).sign(webhook_id, now, body) for s in secrets)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
            "content-type": "application/json"}


def _lease(engine: Engine, organization_id: Any, seconds: float) -> Any:
    now = utcnow()
    with engine.begin() as conn:
        return conn.execute(
            sa.update(whatsapp_event_endpoints)
            .where(ep.organization_id == organization_id, ep.enabled.is_(True), sa.or_(ep.leased_until.is_(None), ep.leased_until < now))
            .values(leased_until=now + timedelta(seconds=seconds))
            .returning(*whatsapp_event_endpoints.c)
        ).first()


def deliver_endpoint(engine: Engine, settings: Settings, cipher: Any, client: httpx.Client, organization_id: Any) -> DeliveryStats:
    """One request to the organization's endpoint: the next live events, else queued replays.
    Never raises for the endpoint's behaviour; database errors propagate."""
    stats = DeliveryStats()
    row = _lease(engine, organization_id, settings.event_push_timeout_seconds * 2 + 30)
    if row is None:
        return stats
    try:
        with engine.connect() as conn:
            live = conn.execute(sa.select(whatsapp_events).where(ev.organization_id == row.organization_id, ev.cursor > row.delivered_cursor)
                                .order_by(ev.cursor).limit(settings.event_push_batch_size)).all()
            replays = [] if live else conn.execute(
                sa.select(rp.id.label("replay_id"), whatsapp_events).join(whatsapp_events, ev.id == rp.event_id)
                .where(rp.organization_id == row.organization_id, rp.delivered_at.is_(None)).order_by(rp.id).limit(settings.event_push_batch_size)
            ).all()
        batch = live or replays
        if not batch:
            return stats
        _attempt(engine, settings, cipher, client, row, batch, replay=not live, stats=stats)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.update(whatsapp_event_endpoints).where(ep.organization_id == row.organization_id).values(leased_until=None))
    return stats


def _attempt(engine: Engine, settings: Settings, cipher: Any, client: httpx.Client, row: Any, batch: list, *, replay: bool,
             stats: DeliveryStats) -> None:
    now = utcnow()
    first, last = batch[0].cursor, batch[-1].cursor
    kind = "replay" if replay else "live"
    webhook_id = "msg_" + uuid.uuid5(EVENT_NAMESPACE, f"{row.organization_id}|{kind}|{batch[0].id}|{batch[-1].id}|{len(batch)}").hex
    import json

    body = json.dumps({"events": [event_json(e) for e in batch]}, separators=(",", ":"), ensure_ascii=False)
    started = time.perf_counter()
    status_code, error = None, None
    try:  # the endpoint's own faults fail this attempt only, never the run of the others
        headers = signed_headers(_secrets(cipher, row, now), webhook_id, body, now)
    except TokenCryptoError:
        headers, error = None, "the endpoint's secret cannot be decrypted with the configured keys (set the endpoint again)"
    if headers is not None:
        try:
            response = client.post(row.url, content=body.encode(), headers=headers, timeout=settings.event_push_timeout_seconds)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}"
        except (httpx.InvalidURL, ValueError, UnicodeError) as exc:  # a URL stored before check_url refused it
            error = f"invalid endpoint URL ({type(exc).__name__})"
    latency = int((time.perf_counter() - started) * 1000)
    ok = error is None
    stats.requests += 1
    stats.latencies_ms.append(latency)
    done = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(whatsapp_event_deliveries).values(
            organization_id=row.organization_id, attempted_at=now, webhook_id=webhook_id, url=row.url, events=len(batch), first_cursor=first,
            last_cursor=last, replay=replay, ok=ok, status_code=status_code, latency_ms=latency, error=error))
        values: dict[str, Any] = {"last_attempt_at": now, "updated_at": done}
        this = sa.update(whatsapp_event_endpoints).where(ep.organization_id == row.organization_id)
        failures = 0
        if ok:
            values.update(failures=0, first_failure_at=None, next_attempt_at=None, last_success_at=done)
            if replay:
                conn.execute(sa.update(whatsapp_event_replays).where(rp.id.in_([e.replay_id for e in batch])).values(delivered_at=done))
                stats.replayed += len(batch)
            else:
                values["delivered_cursor"] = last
                stats.delivered += len(batch)
        else:
            # counted on the row as it is now (locked by this update), not as leased: an operator
            # who set the endpoint again during the request cleared the counter this failure adds to
            current = conn.execute(this.values(failures=ep.failures + 1, first_failure_at=sa.func.coalesce(ep.first_failure_at, now))
                                   .returning(ep.failures, ep.first_failure_at, ep.enabled)).one()
            failures, since = current.failures, as_utc(current.first_failure_at)
            values["next_attempt_at"] = done + timedelta(seconds=retry_delay(failures, settings))
            stats.failed += 1
            too_long = done - since >= timedelta(hours=settings.event_push_retry_window_hours)
            if current.enabled and (failures >= settings.event_push_disable_after_failures or too_long):
                reason = f"{failures} consecutive failed deliveries (last: {error})" if not too_long else f"failing since {since.isoformat()} (last: {error})"
                values.update(enabled=False, disabled_at=done, disabled_reason=reason)
                stats.disabled += 1
        conn.execute(this.values(**values))
    if not ok:
        log.warning("event push to organization %s failed (%s, attempt %d)", row.organization_id, error, failures)
    if values.get("enabled") is False:
        get_notifier(settings, engine).notify(Alert(
            "event_endpoint_disabled", str(row.organization_id),
            f"event push endpoint of organization {row.organization_id} disabled: {values['disabled_reason']}; set it again to resume",
            details={"failures": failures, "last_error": error}, organization_id=row.organization_id))


def due_endpoints(engine: Engine, now: datetime | None = None) -> list[Any]:
    """Organizations whose enabled endpoint has live events or queued replays and is due."""
    now = now or utcnow()
    cur = whatsapp_event_cursors.c
    pending_replay = sa.exists().where(rp.organization_id == ep.organization_id, rp.delivered_at.is_(None))
    with engine.connect() as conn:
        return conn.execute(
            sa.select(ep.organization_id).select_from(whatsapp_event_endpoints.outerjoin(whatsapp_event_cursors, cur.organization_id == ep.organization_id))
            .where(ep.enabled.is_(True), sa.or_(ep.next_attempt_at.is_(None), ep.next_attempt_at <= now),
                   sa.or_(ep.leased_until.is_(None), ep.leased_until < now), sa.or_(cur.last_cursor > ep.delivered_cursor, pending_replay))
        ).scalars().all()


def has_enabled_endpoint(engine: Engine) -> bool:
    """Whether any organization has an enabled push endpoint (a delivery run has work to wait
    for: without one no run is kept alive, so an install that only pulls pays nothing)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.literal(1)).where(ep.enabled.is_(True)).limit(1)).first() is not None


def next_due_in(engine: Engine, now: datetime | None = None) -> float | None:
    """Seconds until the earliest backed-off endpoint is due (None: none is waiting)."""
    now = now or utcnow()
    with engine.connect() as conn:
        at = conn.execute(sa.select(sa.func.min(ep.next_attempt_at)).where(ep.enabled.is_(True), ep.next_attempt_at > now)).scalar()
    return None if at is None else max(0.0, (as_utc(at) - now).total_seconds())


def deliver_round(engine: Engine, settings: Settings, cipher: Any, client: httpx.Client, pool: ThreadPoolExecutor | None = None) -> DeliveryStats:
    """One request to every due endpoint, ``EVENT_PUSH_CONCURRENCY`` at a time."""
    stats = DeliveryStats(rounds=1)
    orgs = due_endpoints(engine)
    if pool is None or len(orgs) <= 1:
        results = [deliver_endpoint(engine, settings, cipher, client, org) for org in orgs]
    else:
        results = list(pool.map(lambda org: deliver_endpoint(engine, settings, cipher, client, org), orgs))
    for result in results:
        stats.add(result)
    return stats


__all__ = [
    "DeliveryStats", "UnknownEndpoint", "check_url", "deliver_endpoint", "deliver_round", "disable_endpoint", "due_endpoints", "endpoint_status",
    "enqueue_replay", "new_secret", "next_due_in", "retry_delay", "rotate_secret", "set_endpoint", "signed_headers",
]
