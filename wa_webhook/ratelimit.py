"""Rate limits: atomic moving windows in Redis (the ``limits`` library), falling back to an
in-process limiter when Redis is absent or down (a warning, a metric, never an error).

Meta treats any non-200 as a failed delivery and retries it for days, so a correctly
signed webhook is never refused for rate reasons: the webhook limit counts only deliveries
that fail the signature check (where abuse comes from). The web app's API is limited per IP
and per organization and answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
import time

import limits
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

log = logging.getLogger("wa_webhook.ratelimit")

FALLBACKS = Counter("wa_ratelimit_fallback_total", "Rate-limit checks served by the in-process limiter because Redis failed.")
#: after a Redis failure, use the in-process limiter this long before trying Redis again
REDIS_RETRY_SECONDS = 30.0


class RateLimiter:
    """``hit(limit, *identifiers)`` → ``(allowed, retry_after_seconds)``; thread-safe."""

    def __init__(self, redis_url: str | None, prefix: str = "wa") -> None:
        self._prefix = prefix
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis = None
        if redis_url:
            storage = storage_from_string(redis_url, socket_timeout=0.3, socket_connect_timeout=0.3)
            self._redis = MovingWindowRateLimiter(storage)
        self._redis_failed_at = 0.0
        self._warned_at = 0.0

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
            allowed = self._memory.hit(item, *keys)
            stats = self._memory.get_window_stats(item, *keys) if not allowed else None
        if allowed:
            return True, 0
        return False, max(1, math.ceil(stats.reset_time - time.time()))
