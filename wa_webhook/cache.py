"""Best-effort cache of onboarding sessions in Redis (``whatsapp:onboarding:{tracking_code}``).

The database is the source of truth: with no ``REDIS_URL``, or Redis down, every operation
logs a warning (once a minute at most) and carries on. Never an error for the caller.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

log = logging.getLogger("wa_webhook.cache")

KEY_PREFIX = "whatsapp:onboarding:"


class OnboardingCache:
    """Redis-backed when ``redis_url`` is set; does nothing otherwise."""

    def __init__(self, redis_url: str | None) -> None:
        self._client = None
        self._warned_at = 0.0
        if redis_url:
            import redis

            self._client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def _warn(self, exc: Exception) -> None:
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("Redis unavailable, the database alone serves onboarding sessions: %s", type(exc).__name__)

    def remember(self, tracking_code: str, value: dict[str, Any], ttl_seconds: int) -> bool:
        """``SET whatsapp:onboarding:{code} value EX ttl``; False when not cached."""
        if self._client is None:
            return False
        try:
            self._client.set(KEY_PREFIX + tracking_code, json.dumps(value), ex=max(1, int(ttl_seconds)))
            return True
        except Exception as exc:  # redis errors of any kind: best effort
            self._warn(exc)
            return False

    def get(self, tracking_code: str) -> dict[str, Any] | None:
        """The cached value, or None (absent, expired, or Redis unavailable)."""
        if self._client is None:
            return None
        try:
            raw = self._client.get(KEY_PREFIX + tracking_code)
        except Exception as exc:
            self._warn(exc)
            return None
        return json.loads(raw) if raw else None

    def forget(self, tracking_codes: list[str]) -> int:
        """Delete exactly these keys (never a pattern scan); returns how many existed."""
        if self._client is None or not tracking_codes:
            return 0
        try:
            return int(self._client.delete(*(KEY_PREFIX + c for c in tracking_codes)))
        except Exception as exc:
            self._warn(exc)
            return 0


def onboarding_cache(app) -> OnboardingCache:
    """The app's cache (created on first use from ``REDIS_URL``)."""
    cache = getattr(app.state, "onboarding_cache", None)
    if cache is None:
        cache = app.state.onboarding_cache = OnboardingCache(app.state.settings.redis_url)
    return cache
