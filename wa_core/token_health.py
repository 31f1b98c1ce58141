"""Business-token health: a nightly ``debug_token`` check, and immediate marks on Graph errors.

Source: Meta, Graph API "debug_token" (``is_valid``, ``expires_at`` with 0 = never,
``data_access_expires_at``, ``scopes``) and error handling (190 = token invalid or
expired; 10 and 200-299 = permission). Meta never notifies when a token dies, so the state
comes from these checks. The state lives in ``whatsapp_configs.token_health`` (per phone
number, its own type); inbound webhooks keep being processed whatever it says.

What every view shows is :func:`current_state`: the recorded state re-read against its
expiry at the time of reading (a token recorded ``valid`` a week ago may have expired
since), ``not_checked`` ("not checked yet") before the first check. :data:`UNHEALTHY` and
:data:`NEEDS_ACTION` are the one pair of sets; alerts go through the notifier
(:func:`token_alert`, kind ``token_unhealthy``, one per phone_number_id, the key the
``tokens_healthy`` check resolves).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.alerts import Alert, get_notifier
from wa_core.db.schema import TOKEN_HEALTH_STATES, as_utc, utcnow, whatsapp_configs, whatsapp_connections

#: permissions a business token needs for this service (webhooks and management)
REQUIRED_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
#: the state of a number whose token was never checked (nothing recorded yet)
NOT_CHECKED = "not_checked"
#: every state a number's token can be in now: the recorded ones, and not checked yet
TOKEN_STATES = (*TOKEN_HEALTH_STATES, NOT_CHECKED)
#: states that need an operator whatever the expiry says (alerted as errors)
UNHEALTHY = ("expired", "invalid", "missing_permission")
#: states that need action: unhealthy, or expiring soon (alerted as a warning)
NEEDS_ACTION = (*UNHEALTHY, "expiring_soon")
#: numbers whose token no longer matters: the customer disconnected or offboarded them
IGNORED_NUMBER_STATES = ("disconnected", "offboarded")
#: the alert kind of a number's token (key: its phone_number_id)
ALERT_KIND = "token_unhealthy"
#: how a state reads for a person (CLI, dashboard tables); the API answers the state itself
STATE_LABELS = {NOT_CHECKED: "not checked yet", "expiring_soon": "expiring soon", "missing_permission": "missing permission"}


def state_label(state: str) -> str:
    """How ``state`` reads for a person (``not_checked`` → ``not checked yet``)."""
    return STATE_LABELS.get(state, state)


def current_state(recorded: str | None, expires_at: datetime | None, now: datetime, expiring_soon: timedelta) -> str:
    """A phone number's business-token state at ``now`` (one of :data:`TOKEN_STATES`): the one
    classifier every view uses (``check-connection``, the admin API, the ``token_health``
    dashboard and its ``tokens_healthy`` check, ``wa-onboarding status``).

    ``recorded`` is ``whatsapp_configs.token_health`` (set by the nightly ``debug_token``
    check, :func:`classify`, and by Graph errors), ``expires_at`` its ``token_expires_at``
    (None = never or unknown; naive times are UTC). ``expired``/``invalid``/
    ``missing_permission`` recorded stay as they are; a known expiry is re-read against
    ``now``: past → ``expired``, within ``expiring_soon`` → ``expiring_soon``, further away
    turns a recorded ``expiring_soon`` back to ``valid``. Nothing recorded →
    :data:`NOT_CHECKED`; ``unknown`` means the last check itself failed.
    """
    if recorded in UNHEALTHY:
        return recorded
    expires_at = as_utc(expires_at)
    if expires_at is not None:
        if expires_at <= now:
            return "expired"
        if expires_at - now < expiring_soon:
            return "expiring_soon"
        if recorded == "expiring_soon":
            return "valid"
    return recorded or NOT_CHECKED


def days_to_expiry(expires_at: datetime | None, now: datetime) -> float | None:
    """Days from ``now`` to ``expires_at`` (negative once past, 2 decimals); None = never."""
    expires_at = as_utc(expires_at)
    return None if expires_at is None else round((expires_at - now).total_seconds() / 86400, 2)


def token_alert(
    phone_number_id: str, waba_id: str, state: str, days: float | None = None, organization_id: uuid.UUID | None = None
) -> Alert:
    """The alert of a number whose token needs action (``state`` in :data:`NEEDS_ACTION`):
    kind :data:`ALERT_KIND`, key the phone_number_id, an error when unhealthy, a warning when
    expiring soon; ``days``: days to expiry (None = never or unknown). No personal data."""
    return Alert(
        ALERT_KIND,
        phone_number_id,
        f"business token of phone_number_id {phone_number_id} (WABA {waba_id}) is {state_label(state)}"
        + (f", {days} days to expiry" if days is not None else "")
        + "; the customer must reconnect (Embedded Signup) or the token be replaced",
        severity="error" if state in UNHEALTHY else "warning",
        details={"state": state, "waba_id": waba_id, "phone_number_id": phone_number_id, "days_to_expiry": days},
        organization_id=organization_id,
    )


@dataclass
class TokenAlerts:
    """What recorded token states ask of the notifier: alerts to send, phone_number_ids whose
    token alert to resolve. Delivered after the state is committed (:meth:`deliver`)."""

    send: list[Alert] = field(default_factory=list)
    resolve: list[str] = field(default_factory=list)

    def deliver(self, notifier: Any) -> None:
        """Send and resolve through ``notifier`` (:func:`wa_core.alerts.get_notifier`; it
        never raises)."""
        for alert in self.send:
            notifier.notify(alert)
        for key in self.resolve:
            notifier.resolve(ALERT_KIND, key)


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


def record(conn: Connection, connection_id: uuid.UUID, state: str, reason: str | None, **extra: Any) -> TokenAlerts:
    """Set the token health of every phone number of a connection (``extra``: more
    ``whatsapp_configs`` columns, e.g. ``token_expires_at``). Returns what to tell the
    notifier once the caller has committed: an alert per number in use (not
    :data:`IGNORED_NUMBER_STATES`) when ``state`` needs action, its alert resolved when
    ``valid``; nothing for ``unknown`` (the check failed: the state is not known)."""
    now = utcnow()
    values = {"token_health": state, "token_health_reason": reason, "token_checked_at": now, **extra}
    cfg = whatsapp_configs.c
    numbers = conn.execute(
        sa.update(whatsapp_configs)
        .where(cfg.connection_id == connection_id)
        .values(**values)
        .returning(cfg.phone_number_id, cfg.waba_id, cfg.organization_id, cfg.status)
    ).all()
    alerts = TokenAlerts()
    days = days_to_expiry(extra.get("token_expires_at"), now)
    for n in sorted(numbers, key=lambda n: n.phone_number_id):
        if n.status in IGNORED_NUMBER_STATES:
            continue
        if state in NEEDS_ACTION:
            alerts.send.append(token_alert(n.phone_number_id, n.waba_id, state, days, n.organization_id))
        elif state == "valid":
            alerts.resolve.append(n.phone_number_id)
    return alerts


def mark_from_graph_error(engine: Engine, connection_id: uuid.UUID, exc: Exception, notifier: Any = None) -> str | None:
    """Any Graph call that fails with 190 (or a permission error) sets the state at once and
    alerts through ``notifier`` (default :func:`~wa_core.alerts.get_notifier` on ``engine``).
    Returns the state set, or None when the error says nothing about the token."""
    from wa_core.meta.graph.errors import PermissionDenied, TokenInvalid

    state = "invalid" if isinstance(exc, TokenInvalid) else "missing_permission" if isinstance(exc, PermissionDenied) else None
    if state:
        with engine.begin() as conn:
            alerts = record(conn, connection_id, state, str(exc)[:500])
        alerts.deliver(notifier or get_notifier(engine=engine))
    return state


def check_connection(engine: Engine, graph: Any, connection_id: uuid.UUID, token: str, expiring_soon: timedelta,
                     notifier: Any = None, now: datetime | None = None) -> str:
    """``debug_token`` one connection's business ``token`` (Meta: Graph API ``GET
    /debug_token``), record the state of each of its numbers (:func:`record`), commit, then
    alert through ``notifier`` (default :func:`~wa_core.alerts.get_notifier` on ``engine``).
    Returns the state; a check that fails records ``unknown`` with the reason (never raises
    for it)."""
    try:
        health = classify(graph.debug_token(token), now or utcnow(), expiring_soon)
    except Exception as exc:  # the check itself failed (Meta down, app token wrong): unknown
        health = {"state": "unknown", "reason": f"check failed: {type(exc).__name__}: {str(exc)[:300]}"}
    state, reason = health.pop("state"), health.pop("reason")
    extra = {}
    if "expires_at" in health:
        extra = {"token_expires_at": health["expires_at"], "token_data_access_expires_at": health["data_access_expires_at"], "token_scopes": health["scopes"]}
    with engine.begin() as conn:
        alerts = record(conn, connection_id, state, reason, **extra)
    alerts.deliver(notifier or get_notifier(engine=engine))
    return state


def check_all(engine: Engine, graph: Any, cipher: Any, expiring_soon: timedelta, notifier: Any = None) -> Counter:
    """``debug_token`` every stored business token, record each state (:func:`record`) and
    alert through ``notifier`` (default :func:`~wa_core.alerts.get_notifier` on ``engine``);
    returns the count per state."""
    notifier = notifier or get_notifier(engine=engine)
    c = whatsapp_connections.c
    with engine.connect() as conn:
        stored = conn.execute(sa.select(c.id, c.business_token_encrypted).where(c.business_token_encrypted.is_not(None))).all()
    counts: Counter = Counter()
    now = utcnow()
    for row in stored:
        try:
            token = cipher.decrypt(row.business_token_encrypted, row.id)
        except Exception as exc:  # noqa: BLE001 - a token we cannot read: its state is unknown
            with engine.begin() as conn:
                alerts = record(conn, row.id, "unknown", f"check failed: {type(exc).__name__}: {str(exc)[:300]}")
            alerts.deliver(notifier)
            counts["unknown"] += 1
            continue
        counts[check_connection(engine, graph, row.id, token, expiring_soon, notifier, now)] += 1
    return counts
