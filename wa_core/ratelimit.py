"""Rate limits: atomic moving windows in Redis (the ``limits`` library), falling back to an
in-process limiter when Redis is absent or down (a warning, a metric, never an error).

Meta treats any non-200 as a failed delivery and retries it for days, so a correctly
signed webhook is never refused for rate reasons: the webhook limit counts only deliveries
that fail the signature check (where abuse comes from). The web app's API is limited per IP
and per organization and answers 429 with ``Retry-After``.

Alerts (:mod:`wa_core.alerts.notifier`, grouped in process): ``redis_down``/``redis`` when Redis
fails (resolved when it answers again), ``rate_limit_exceeded``/<limit name> when a limit
refuses a request (keyed by the limit's name, never by IP; an organization's id is in the
details for per-organization limits).
"""

from __future__ import annotations

import logging
import math
import time

import limits
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from wa_core.alerts import Alert, Notifier, get_notifier

log = logging.getLogger("wa_core.ratelimit")

FALLBACKS = Counter("wa_ratelimit_fallback_total", "Rate-limit checks served by the in-process limiter because Redis failed.")
#: after a Redis failure, use the in-process limiter this long before trying Redis again
REDIS_RETRY_SECONDS = 30.0


class RateLimiter:
    """``hit(limit, *identifiers)`` → ``(allowed, retry_after_seconds)``; thread-safe.

    ``notifier`` receives the alerts (default: :func:`~wa_core.alerts.notifier.get_notifier` for
    the process settings, created on first alert; in-process grouping, background sends).
    """

    def __init__(self, redis_url: str | None, prefix: str = "wa", notifier: Notifier | None = None) -> None:
        self._prefix = prefix
        self._notifier = notifier
        self._redis_alerted = False
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis = None
        if redis_url:
            storage = storage_from_string(redis_url, socket_timeout=0.3, socket_connect_timeout=0.3)
            self._redis = MovingWindowRateLimiter(storage)
        self._redis_failed_at = 0.0
        self._warned_at = 0.0

    def _alerts(self) -> Notifier | None:
        if self._notifier is None:
            try:
                self._notifier = get_notifier()
            except Exception as exc:  # settings unreadable: no alert, never an error
                log.warning("alerts unavailable for rate limits: %s", type(exc).__name__)
        return self._notifier

    def _alert(self, alert: Alert) -> None:
        notifier = self._alerts()
        if notifier is not None:
            notifier.notify(alert)

    def _limiter(self) -> tuple[MovingWindowRateLimiter, bool]:
        if self._redis is not None and time.monotonic() - self._redis_failed_at > REDIS_RETRY_SECONDS:
            return self._redis, True
        if self._redis is not None:
            FALLBACKS.inc()
        return self._memory, False

    def hit(self, limit: str, *identifiers: str) -> tuple[bool, int]:
        """Count one hit against ``limit`` (e.g. ``"100/minute"``) for ``identifiers``."""
        item = limits.parse(limit)
        keys = (self._prefix, *identifiers)
        limiter, is_redis = self._limiter()
        try:
            allowed = limiter.hit(item, *keys)
            stats = limiter.get_window_stats(item, *keys) if not allowed else None
        except Exception as exc:  # Redis down or misbehaving: the in-process limiter serves
            if not is_redis:
                raise
            self._redis_failed_at = time.monotonic()
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("Redis unavailable for rate limits, using the in-process limiter: %s", type(exc).__name__)
            FALLBACKS.inc()
            self._redis_alerted = True
            self._alert(
                Alert(
                    "redis_down",
                    "redis",
                    "Redis unavailable for rate limits: the in-process limiter serves (limits count per worker)",
                    details={"component": "rate_limits", "error": type(exc).__name__},
                )
            )
            is_redis = False
            allowed = self._memory.hit(item, *keys)
            stats = self._memory.get_window_stats(item, *keys) if not allowed else None
        if is_redis and self._redis_alerted:  # Redis answers again
            self._redis_alerted = False
            notifier = self._alerts()
            if notifier is not None:
                notifier.resolve("redis_down", "redis")
        if allowed:
            return True, 0
        name = identifiers[0] if identifiers else "default"
        details = {"limit": limit, "backend": "redis" if is_redis else "in-process"}
        if "org" in name and len(identifiers) > 1:  # an organization's id is fine; an IP never is
            details["organization"] = identifiers[1]
        self._alert(Alert("rate_limit_exceeded", name, f"rate limit {name} ({limit}) refused requests (429)", severity="warning", details=details))
        return False, max(1, math.ceil(stats.reset_time - time.time()))
