"""Business-token health: a nightly ``debug_token`` check, and immediate marks on Graph errors.

Source: Meta, Graph API "debug_token" (``is_valid``, ``expires_at`` with 0 = never,
``data_access_expires_at``, ``scopes``) and error handling (190 = token invalid or
expired; 10 and 200-299 = permission). Meta never notifies when a token dies, so the state
comes from these checks. The state lives in ``whatsapp_configs.token_health`` (per phone
number, its own type); inbound webhooks keep being processed whatever it says.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.db.schema import utcnow, whatsapp_configs, whatsapp_connections

log = logging.getLogger("wa_core.token_health")

#: permissions a business token needs for this service (webhooks and management)
REQUIRED_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
UNHEALTHY = ("expiring_soon", "expired", "invalid", "missing_permission")


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def classify(data: dict[str, Any], now: datetime, expiring_soon: timedelta) -> dict[str, Any]:
    """A ``debug_token`` ``data`` object → ``{state, reason, expires_at, data_access_expires_at, scopes}``."""
    expires_at, data_access = _time(data.get("expires_at")), _time(data.get("data_access_expires_at"))
    scopes = [s for s in data.get("scopes") or [] if isinstance(s, str)]
    result = {"expires_at": expires_at, "data_access_expires_at": data_access, "scopes": scopes}
    if expires_at is not None and expires_at <= now:
        return {**result, "state": "expired", "reason": f"token expired at {expires_at.isoformat()}"}
    if not data.get("is_valid"):
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        return {**result, "state": "invalid", "reason": f"{error.get('code', '?')}: {error.get('message') or 'token is not valid'}"[:500]}
    missing = [s for s in REQUIRED_SCOPES if s not in scopes]
    if missing:
        return {**result, "state": "missing_permission", "reason": "missing " + ", ".join(missing)}
    if expires_at is not None and expires_at - now < expiring_soon:
        return {**result, "state": "expiring_soon", "reason": f"expires at {expires_at.isoformat()}"}
    return {**result, "state": "valid", "reason": None}


def record(conn: Connection, connection_id: uuid.UUID, state: str, reason: str | None, **extra: Any) -> None:
    """Set the token health of every phone number of a connection."""
    values = {"token_health": state, "token_health_reason": reason, "token_checked_at": utcnow(), **extra}
    conn.execute(sa.update(whatsapp_configs).where(whatsapp_configs.c.connection_id == connection_id).values(**values))
    if state in UNHEALTHY:
        log.warning("ALERT token %s for connection %s: %s", state, connection_id, reason)


def mark_from_graph_error(engine: Engine, connection_id: uuid.UUID, exc: Exception) -> str | None:
    """Any Graph call that fails with 190 (or a permission error) sets the state at once.
    Returns the state set, or None when the error says nothing about the token."""
    from wa_core.meta.graph.errors import PermissionDenied, TokenInvalid

    state = "invalid" if isinstance(exc, TokenInvalid) else "missing_permission" if isinstance(exc, PermissionDenied) else None
    if state:
        with engine.begin() as conn:
            record(conn, connection_id, state, str(exc)[:500])
    return state


def check_all(engine: Engine, graph: Any, cipher: Any, expiring_soon: timedelta) -> Counter:
    """``debug_token`` every stored business token; returns the count per state."""
    c = whatsapp_connections.c
    with engine.connect() as conn:
        stored = conn.execute(sa.select(c.id, c.business_token_encrypted).where(c.business_token_encrypted.is_not(None))).all()
    counts: Counter = Counter()
    now = utcnow()
    for row in stored:
        try:
            data = graph.debug_token(cipher.decrypt(row.business_token_encrypted, row.id))
            health = classify(data, now, expiring_soon)
        except Exception as exc:  # the check itself failed (Meta down, app token wrong): unknown
            health = {"state": "unknown", "reason": f"check failed: {type(exc).__name__}: {str(exc)[:300]}"}
        state, reason = health.pop("state"), health.pop("reason")
        extra = {}
        if "expires_at" in health:
            extra = {"token_expires_at": health["expires_at"], "token_data_access_expires_at": health["data_access_expires_at"], "token_scopes": health["scopes"]}
        with engine.begin() as conn:
            record(conn, row.id, state, reason, **extra)
        counts[state] += 1
    return counts
