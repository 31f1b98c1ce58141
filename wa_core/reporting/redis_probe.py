"""The Redis probe of the ``redis_answers`` check: where ``REDIS_URL`` points (without
credentials), whether redis-py can use it, and a PING with a deadline. Never raises."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

#: how long the Redis check waits for a connection and for PONG (seconds)
REDIS_TIMEOUT_SECONDS = 1.0


def redis_target(url: str) -> str:
    """``host:port/db`` of a Redis URL (``unix:/path`` for a socket), without credentials or
    query (safe for logs and alerts). Never raises: a URL without a scheme is read as
    ``host:port``, an invalid port shows as ``(invalid port)`` and an unparsable URL gives
    ``(unparsable REDIS_URL)``."""
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        if parts.scheme == "unix":
            return f"unix:{parts.path}"
        host = parts.hostname or "localhost"
    except ValueError:  # e.g. an unclosed "[" around an IPv6 host
        return "(unparsable REDIS_URL)"
    try:
        port: Any = parts.port or 6379
    except ValueError:  # not a number, or outside 0–65535
        port = "(invalid port)"
    return f"{host}:{port}{parts.path or ''}"


def redis_url_problem(url: str) -> str | None:
    """Why redis-py cannot use ``url``, None when it can. The phrase quotes no part of the
    URL (so never a password). Never raises."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "it cannot be parsed as a URL (an unclosed '[' around an IPv6 host?)"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "it must start with redis://, rediss:// or unix:// (e.g. redis://host:6379/0)"
    try:
        parts.port
    except ValueError:
        return "its port is not a number within 0-65535"
    try:
        from redis.connection import parse_url

        parse_url(url)
    except Exception as exc:
        return f"redis-py refuses it ({type(exc).__name__})"
    return None


def ping_redis(url: str, timeout: float = REDIS_TIMEOUT_SECONDS) -> tuple[bool, float | None, str | None]:
    """PING Redis at ``url`` waiting at most ``timeout`` seconds to connect and to read.

    Returns ``(answered, round-trip milliseconds or None, error or None)``; the error names
    the exception type and message (no credentials: redis-py does not put them there), or
    ``REDIS_URL is malformed: <type>`` when redis-py refuses the URL (type only: that
    message could quote the URL). Never raises.
    """
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False)
    except Exception as exc:
        return False, None, f"REDIS_URL is malformed: {type(exc).__name__}"
    started = time.perf_counter()
    try:
        answered = bool(client.ping())
        return answered, round((time.perf_counter() - started) * 1000, 2), None if answered else "PING returned no PONG"
    except Exception as exc:  # connection refused, timeout, auth, protocol: all mean "not answering"
        return False, None, f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        client.close()
