"""The long-lived push delivery run: deliver, then sleep until events commit or a retry is due.

Like processing (:mod:`wa_core.processing.runner`), one run stays alive (the Dagster sensor
keeps one going) instead of a run per event: it delivers a round to every due endpoint
(:func:`~.push.deliver_round`) and, when nothing was sent, waits on ``LISTEN wa_events``
(Postgres; ``PRAGMA data_version`` on SQLite) or until the earliest backed-off endpoint is
due, at most ``EVENT_PUSH_IDLE_POLL_SECONDS``.

**Latency.** A processing batch's events ``NOTIFY wa_events`` at its commit, and so do an
endpoint set and a replay queued (:func:`~.push.wake_delivery`): the run wakes at once and
pushes, so an event reaches a consumer's endpoint within the push request's own time. Idle,
it blocks on ``LISTEN`` (no spinning): one look for due retries every
``EVENT_PUSH_IDLE_POLL_SECONDS``. With ``EVENT_PUSH_KEEP_ALIVE`` (off by default) the run also stays
while no endpoint is enabled, so the first endpoint set is served at once too, instead of
after the sensor's tick and a run launch (about 10-15 s; it used to be about 30 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from wa_core.processing.wake import LandingListener, SqliteChangeWaker, Waker
from wa_core.settings import Settings

from .outbox import EVENTS_CHANNEL
from .push import DeliveryStats, deliver_round, has_enabled_endpoint, next_due_in


def make_events_waker(settings: Settings) -> Waker:
    """A waker that returns when events commit: LISTEN ``wa_events`` on Postgres (any
    organization), ``data_version`` on SQLite."""
    poll = min(0.2, settings.event_push_idle_poll_seconds)
    if settings.is_postgres:
        return LandingListener(settings.asyncpg_dsn, shard=None, poll_seconds=poll,
                               listen_poll_seconds=settings.event_push_idle_poll_seconds, channel=EVENTS_CHANNEL)
    return SqliteChangeWaker(str(settings.sqlite_path.resolve()), poll_seconds=0.05, listen_poll_seconds=settings.event_push_idle_poll_seconds)


def run_delivery(
    engine: Engine,
    settings: Settings,
    cipher: Any,
    *,
    max_seconds: float | None = None,
    idle_exit_seconds: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    client: httpx.Client | None = None,
    on_round: Callable[[DeliveryStats], None] | None = None,
) -> DeliveryStats:
    """Deliver until ``max_seconds`` (default ``EVENT_PUSH_RUN_MAX_SECONDS``), ``should_stop()``,
    ``idle_exit_seconds`` without a request (None: stay; 0: drain what is due and return), or,
    with ``EVENT_PUSH_KEEP_ALIVE`` false, an idle moment with no enabled endpoint left (the
    sensor starts a run again when one is set).
    Returns the run's counts. Database errors propagate."""
    max_seconds = settings.event_push_run_max_seconds if max_seconds is None else max_seconds
    stats = DeliveryStats()
    started = last_work = time.monotonic()
    waker = make_events_waker(settings)
    own_client = client is None
    client = client or httpx.Client(follow_redirects=False, headers={"user-agent": "wa-onboarding-events/1"})
    pool = ThreadPoolExecutor(max_workers=settings.event_push_concurrency, thread_name_prefix="event-push")
    try:
        waker.ready()
        while time.monotonic() - started < max_seconds and not (should_stop and should_stop()):
            waker.drain()
            result = deliver_round(engine, settings, cipher, client, pool)
            stats.add(result)
            stats.rounds += 1
            if on_round:
                on_round(stats)
            if result.requests:
                last_work = time.monotonic()
                continue
            if idle_exit_seconds is not None and time.monotonic() - last_work >= idle_exit_seconds:
                break
            if not settings.event_push_keep_alive and not has_enabled_endpoint(engine):
                break  # every endpoint disabled or removed, and no run kept alive for a new one
            due = next_due_in(engine)
            timeout = settings.event_push_idle_poll_seconds if due is None else min(due, settings.event_push_idle_poll_seconds)
            if idle_exit_seconds is not None:
                timeout = min(timeout, max(0.0, last_work + idle_exit_seconds - time.monotonic()))
            waker.wait(max(0.01, timeout))
    finally:
        pool.shutdown(wait=True)
        waker.close()
        if own_client:
            client.close()
    return stats


__all__ = ["make_events_waker", "run_delivery"]
