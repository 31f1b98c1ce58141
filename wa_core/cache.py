"""Best-effort cache of onboarding sessions in Redis (``whatsapp:onboarding:{tracking_code}``).

The database is the source of truth: with no ``REDIS_URL``, or Redis down, every operation
logs a warning (once a minute at most) and carries on. Never an error for the caller.
Redis failing raises the ``redis_down``/``redis`` alert (grouped; resolved when Redis
answers again).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from wa_core.alerts import Alert, Notifier, get_notifier

log = logging.getLogger("wa_core.cache")

KEY_PREFIX = "whatsapp:onboarding:"


class OnboardingCache:
    """Redis-backed when ``redis_url`` is set; does nothing otherwise. ``notifier`` receives
    the ``redis_down`` alert (default: the process notifier, created on first failure)."""

    def __init__(self, redis_url: str | None, notifier: Notifier | None = None) -> None:
        self._client = None
        self._warned_at = 0.0
        self._notifier = notifier
        self._down = False
        if redis_url:
            import redis

            self._client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def _warn(self, exc: Exception) -> None:
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("Redis unavailable, the database alone serves onboarding sessions: %s", type(exc).__name__)
        self._down = True
        try:
            self._notifier = self._notifier or get_notifier()
            self._notifier.notify(
                Alert(
                    "redis_down",
                    "redis",
                    "Redis unavailable: the database alone serves onboarding sessions",
                    details={"component": "onboarding_cache", "error": type(exc).__name__},
                )
            )
        except Exception as alert_exc:  # settings unreadable: the warning above stands
            log.debug("redis_down alert not raised: %s", type(alert_exc).__name__)

    def _up(self) -> None:
        if self._down:
            self._down = False
            try:
                self._notifier = self._notifier or get_notifier()
                self._notifier.resolve("redis_down", "redis")
            except Exception as alert_exc:
                log.debug("redis_down alert not resolved: %s", type(alert_exc).__name__)

    def remember(self, tracking_code: str, value: dict[str, Any], ttl_seconds: int) -> bool:
        """``SET whatsapp:onboarding:{code} value EX ttl``; False when not cached."""
        if self._client is None:
            return False
        try:
            self._client.set(KEY_PREFIX + tracking_code, json.dumps(value), ex=max(1, int(ttl_seconds)))
            self._up()
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
        self._up()
        return json.loads(raw) if raw else None

    def forget(self, tracking_codes: list[str]) -> int:
        """Delete exactly these keys (never a pattern scan); returns how many existed."""
        if self._client is None or not tracking_codes:
            return 0
        try:
            removed = int(self._client.delete(*(KEY_PREFIX + c for c in tracking_codes)))
            self._up()
            return removed
        except Exception as exc:
            self._warn(exc)
            return 0


def onboarding_cache(app) -> OnboardingCache:
    """The app's cache (created on first use from ``REDIS_URL``)."""
    cache = getattr(app.state, "onboarding_cache", None)
    if cache is None:
        cache = app.state.onboarding_cache = OnboardingCache(
            app.state.settings.redis_url, notifier=get_notifier(app.state.settings)
        )
    return cache
