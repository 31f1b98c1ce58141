"""The dashboard checks without Dagster: each evaluation reads live data and says whether it
passes, why, with which figures and which alerts; :func:`apply_alerts` sends and resolves
those alerts. ``wa_pipelines.defs.dashboards.checks`` wraps each evaluation as an asset check.

| check (asset) | fails when | severity | alert kind, key |
|---|---|---|---|
| ``dead_letters_24h`` (failed_webhooks) | dead rows received in the last 24 h > ``CHECK_DEAD_LETTERS_MAX`` | ERROR | ``dead_letter``, ``dead_letters_24h`` |
| ``backlog_age`` (webhook_lag) | the oldest claimable webhook waits > ``CHECK_BACKLOG_MAX_AGE_SECONDS`` | ERROR | ``asset_check_failed``, ``backlog_age`` |
| ``parked_items_age`` (webhook_lag) | an edit/revoke waits for its message > ``CHECK_PARKED_MAX_AGE_SECONDS`` (statuses are only counted) | WARN | ``asset_check_failed``, ``parked_items_age`` |
| ``unclaimed_wabas`` (onboarding_timeline) | a PARTNER_ADDED waits for a WABA no organization owns | WARN | ``unclaimed_waba``, the WABA id |
| ``tokens_healthy`` (token_health) | a token is expired, invalid, missing a permission (ERROR) or expires within ``TOKEN_EXPIRING_SOON_DAYS`` (WARN) | ERROR/WARN | ``token_unhealthy``, the phone_number_id |
| ``redis_answers`` (org_whatsapp_status) | ``REDIS_URL`` is set and is malformed, or Redis does not answer PING within 1 s | WARN | ``redis_down``, ``redis-check`` |

Redis is best effort for the service (the database is the source of truth; rate limits
fall back to an in-process counter), hence WARN. The receiver raises its own
``redis_down``/``redis`` alert (in-process grouping, resolved by the process that sees
Redis again); the check's key is ``redis-check`` so the two are told apart in Slack and
Sentry. A passing Redis check also resolves a ``redis_down:redis`` row an earlier version
of the check left open in ``ops_alerts`` (only checks write ``redis_down`` rows there).

Each check owns some open alerts (:attr:`CheckOutcome.owns`, within
:attr:`CheckOutcome.alert_kind`): those it does not send again are resolved, so an alert
whose key is an id (one per WABA or phone number) closes once its id no longer fails. The
open ones are read from ``ops_alerts`` (``resolved_at IS NULL``), where the notifier keeps them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.alerts import Alert
from wa_core.db.schema import ops_alerts
from wa_core.reporting.check_queries import IDS_SHOWN, dead_letters_since, parked_items, unclaimed_wabas
from wa_core.reporting.lag import compute_backlog
from wa_core.reporting.redis_probe import REDIS_TIMEOUT_SECONDS, ping_redis, redis_target, redis_url_problem
from wa_core.reporting.tokens import compute_token_health
from wa_core.token_health import ALERT_KIND as TOKEN_ALERT_KIND, IGNORED_NUMBER_STATES, UNHEALTHY, token_alert

#: the Redis check's alert key (kind ``redis_down``); the receiver's own alert uses ``redis``
REDIS_ALERT_KEY = "redis-check"


def _every_key(key: str) -> bool:
    return True


@dataclass
class CheckOutcome:
    """What one evaluation found.

    ``passed``, ``severity`` (``"ERROR"`` or ``"WARN"``), ``description`` (one line) and
    ``metadata`` (numbers, strings, and lists or dicts shown as JSON). ``alerts``: sent
    (the notifier groups repeats); ``alert_kind``/``owns``: the open alerts of that kind
    whose key ``owns`` accepts and that are not in ``alerts`` are resolved.
    """

    passed: bool
    severity: str
    description: str
    metadata: dict[str, Any]
    alerts: list[Alert] = field(default_factory=list)
    alert_kind: str | None = None
    owns: Callable[[str], bool] = _every_key


def open_alert_keys(engine: Engine, kind: str) -> set[str]:
    """Keys of the open alerts of ``kind`` (the notifier keeps them in ``ops_alerts``)."""
    with engine.connect() as conn:
        return set(
            conn.execute(sa.select(ops_alerts.c.key).where(ops_alerts.c.kind == kind, ops_alerts.c.resolved_at.is_(None))).scalars()
        )


def apply_alerts(outcome: CheckOutcome, notifier: Any, engine: Engine, warn: Callable[[str], None]) -> dict[str, int]:
    """Send ``outcome.alerts`` and resolve the open alerts it owns and no longer sends.

    A notifier or ``ops_alerts`` error is passed to ``warn`` and counted, never raised (an
    alert problem must not fail the check). Returns ``{"alerts_sent", "alerts_resolved"}``
    and ``alert_errors`` when there were any.
    """
    counts = Counter(alerts_sent=0, alerts_resolved=0)

    def call(what: str, fn: Callable[..., Any], *args: Any) -> bool:
        try:
            return bool(fn(*args))
        except Exception as exc:
            counts["alert_errors"] += 1
            warn(f"alert {what} failed: {type(exc).__name__}: {exc}")
            return False

    for alert in outcome.alerts:
        counts["alerts_sent"] += call(f"notify {alert.fingerprint}", notifier.notify, alert)
    if outcome.alert_kind:
        kind, sent = outcome.alert_kind, {a.key for a in outcome.alerts if a.kind == outcome.alert_kind}
        try:
            stale = {key for key in open_alert_keys(engine, kind) - sent if outcome.owns(key)}
        except sa.exc.SQLAlchemyError as exc:
            counts["alert_errors"] += 1
            warn(f"reading open {kind} alerts failed: {type(exc).__name__}")
            stale = set()
        for key in sorted(stale):
            counts["alerts_resolved"] += call(f"resolve {kind}:{key}", notifier.resolve, kind, key)
    return dict(counts)


def _ids(values: list[Any]) -> list[str]:
    return [str(v) for v in values[:IDS_SHOWN]]


# --- the six evaluations: (conn, settings, now) -> CheckOutcome ------------------------------------------


def check_dead_letters(conn: Connection, settings: Any, now: datetime) -> CheckOutcome:
    """``dead_letters_24h``: fails (ERROR) when more dead rows arrived in the last 24 h than
    ``check_dead_letters_max``. The per-error-kind alerts processing raised when rows went
    dead (key ``kind[, kind…]``) are resolved once no dead row of any of their kinds arrived
    in the last 24 h."""
    limit = settings.check_dead_letters_max
    dead = dead_letters_since(conn, now - timedelta(hours=24))
    passed = dead.count <= limit
    kinds_now = {kind for kinds in dead.by_error_kind for kind in kinds.split(",") if kind}
    alerts = []
    if not passed:
        alerts.append(
            Alert(
                "dead_letter",
                "dead_letters_24h",
                f"{dead.count} dead-letter webhooks received in the last 24 h (allowed: {limit}); "
                f"kinds: {', '.join(f'{k} {n}' for k, n in dead.by_error_kind.items())}; replay them with replay_dead_letters once fixed",
                severity="error",
                details={"count": dead.count, "max": limit, "by_error_kind": dead.by_error_kind, "webhook_ids": dead.webhook_ids},
            )
        )
    return CheckOutcome(
        passed,
        "ERROR",
        f"{dead.count} dead in 24 h (max {limit})",
        {
            "dead_24h": dead.count,
            "unrouted": dead.unrouted,
            "max_allowed": limit,
            "by_error_kind": dead.by_error_kind,
            "webhook_ids": _ids(dead.webhook_ids),
        },
        alerts,
        "dead_letter",
        lambda key: key == "dead_letters_24h" or not ({k.strip() for k in key.split(",")} & kinds_now),
    )


def check_backlog_age(conn: Connection, settings: Any, now: datetime) -> CheckOutcome:
    """``backlog_age``: fails (ERROR) when a claimable row (:func:`wa_core.backlog.claimable_condition`)
    has waited longer than ``check_backlog_max_age_seconds`` since it arrived, was replayed,
    or its retry fell due. A row leased by a live run is in flight, not waiting."""
    limit = settings.check_backlog_max_age_seconds
    backlog = compute_backlog(conn, now)
    age = backlog.oldest_age_seconds
    passed = age is None or age <= limit
    figures = {"claimable": backlog.claimable, "pending": backlog.pending, "failed_due": backlog.failed_due}
    alerts = []
    if not passed:
        alerts.append(
            Alert(
                "asset_check_failed",
                "backlog_age",
                f"processing backlog: the oldest claimable webhook ({backlog.oldest_webhook_id}) has waited {age:.0f} s "
                f"(max {limit:.0f} s); {backlog.claimable} claimable. Is a processing run (and the Dagster daemon) running?",
                severity="error",
                details={"oldest_age_seconds": age, "max_age_seconds": limit, "oldest_webhook_id": backlog.oldest_webhook_id, **figures},
            )
        )
    meta: dict[str, Any] = {
        **figures,
        "in_flight": backlog.in_flight,
        "waiting_retry": backlog.waiting_retry,
        "max_age_seconds": limit,
    }
    if age is not None:
        meta["oldest_age_seconds"] = age
        meta["oldest_webhook_id"] = backlog.oldest_webhook_id
    description = "nothing claimable" if age is None else f"oldest claimable waited {age:.0f} s (max {limit:.0f} s)"
    return CheckOutcome(passed, "ERROR", description, meta, alerts, "asset_check_failed", lambda key: key == "backlog_age")


def check_parked_items(conn: Connection, settings: Any, now: datetime) -> CheckOutcome:
    """``parked_items_age``: fails (WARN) when edits/revokes wait for their original message
    longer than ``check_parked_max_age_seconds``. Statuses whose message is not stored are
    counted but do not fail it: outbound messages the SaaS sends through the Cloud API are
    never stored by this service, so their statuses have no message by design."""
    limit = settings.check_parked_max_age_seconds
    parked = parked_items(conn, now, timedelta(seconds=limit))
    passed = parked.revisions == 0
    alerts = []
    if not passed:
        alerts.append(
            Alert(
                "asset_check_failed",
                "parked_items_age",
                f"{parked.revisions} edits/revokes have waited more than {limit:.0f} s for their original message "
                f"({parked.statuses} statuses without a message too)",
                severity="warning",
                details={"statuses": parked.statuses, "revisions": parked.revisions, "max_age_seconds": limit, "oldest_age_seconds": parked.oldest_age_seconds},
            )
        )
    meta: dict[str, Any] = {
        "parked_statuses_over_limit": parked.statuses,
        "parked_revisions_over_limit": parked.revisions,
        "parked_statuses_all": parked.statuses_all,
        "parked_revisions_all": parked.revisions_all,
        "max_age_seconds": limit,
    }
    if parked.oldest_age_seconds is not None:
        meta["oldest_age_seconds"] = parked.oldest_age_seconds
    description = f"{parked.count} items parked longer than {limit:.0f} s"
    return CheckOutcome(passed, "WARN", description, meta, alerts, "asset_check_failed", lambda key: key == "parked_items_age")


def check_unclaimed_wabas(conn: Connection, settings: Any, now: datetime) -> CheckOutcome:
    """``unclaimed_wabas``: fails (WARN) when WABAs wait for an owner; one alert per WABA."""
    waiting = unclaimed_wabas(conn)
    alerts = [
        Alert(
            "unclaimed_waba",
            w.waba_id,
            f"WABA {w.waba_id} was shared with the app (PARTNER_ADDED) but belongs to no organization; "
            f"assign it with the assign_waba job or POST /api/admin/whatsapp/wabas/{w.waba_id}/assign",
            severity="warning",
            details={
                "waba_id": w.waba_id,
                "webhook_ids": w.webhook_ids,
                "first_received_at": w.first_received_at.isoformat() if w.first_received_at else None,
            },
        )
        for w in waiting
    ]
    description = f"{len(waiting)} unclaimed WABAs" + (f": {', '.join(w.waba_id for w in waiting[:10])}" if waiting else "")
    meta = {
        "unclaimed": len(waiting),
        "waba_ids": _ids([w.waba_id for w in waiting]),
        "waiting_webhooks": sum(len(w.webhook_ids) for w in waiting),
    }
    return CheckOutcome(not waiting, "WARN", description, meta, alerts, "unclaimed_waba")


def check_tokens(conn: Connection, settings: Any, now: datetime) -> CheckOutcome:
    """``tokens_healthy``: fails when a number in use (not disconnected or offboarded) has an
    unhealthy token (ERROR) or one expiring soon (WARN only), by the ``token_health``
    dashboard's classifier; one alert per phone_number_id (:func:`wa_core.token_health.token_alert`)."""
    board = compute_token_health(conn, now, expiring_soon_days=settings.token_expiring_soon_days)
    bad = [t for t in board.rows if t.needs_action and t.number_status not in IGNORED_NUMBER_STATES]
    unhealthy = [t for t in bad if t.state in UNHEALTHY]
    alerts = [
        token_alert(t.phone_number_id, t.waba_id, t.state, t.days_to_expiry, uuid.UUID(t.organization_id) if t.organization_id else None) for t in bad
    ]
    by_state = Counter(t.state for t in bad)
    meta = {
        "unhealthy": len(unhealthy),
        "expiring_soon": by_state.get("expiring_soon", 0),
        "by_state": dict(sorted(by_state.items())),
        "phone_number_ids": _ids([t.phone_number_id for t in bad]),
        "expiring_soon_days": settings.token_expiring_soon_days,
    }
    description = f"{len(unhealthy)} unhealthy, {by_state.get('expiring_soon', 0)} expiring soon"
    return CheckOutcome(not bad, "ERROR" if unhealthy else "WARN", description, meta, alerts, TOKEN_ALERT_KIND)


def check_redis(conn: Connection, settings: Any, now: datetime) -> CheckOutcome:
    """``redis_answers``: fails (WARN) when ``REDIS_URL`` is set and is malformed
    (description ``REDIS_URL is malformed: …``) or Redis does not answer PING within
    :data:`~wa_core.reporting.redis_probe.REDIS_TIMEOUT_SECONDS`; passes when unset (embedded
    in-process cache). Never raises; never shows credentials."""
    url = settings.redis_url
    if not url:
        meta = {"redis": "not configured", "cache": "embedded in-process cache (REDIS_URL unset)"}
        return CheckOutcome(True, "WARN", "REDIS_URL unset: embedded in-process cache and rate-limit counters", meta, [], "redis_down")
    target, problem = redis_target(url), redis_url_problem(url)
    if problem:
        answered, millis, error = False, None, f"REDIS_URL is malformed: {problem}"
    else:
        answered, millis, error = ping_redis(url)
    alerts = []
    if not answered:
        summary = (
            f"{error}; fix it (e.g. redis://host:6379/0): onboarding cache off and rate limits per process until then"
            if problem
            else f"Redis at {target} did not answer PING within {REDIS_TIMEOUT_SECONDS:.0f} s ({error}); "
            "onboarding cache off and rate limits per process until it is back"
        )
        alerts.append(Alert("redis_down", REDIS_ALERT_KEY, summary, severity="warning", details={"target": target, "error": error}))
    meta: dict[str, Any] = {"redis": target, "cache": "redis"}
    if millis is not None:
        meta["ping_ms"] = millis
    if error:
        meta["error"] = error
    description = error if problem else f"Redis at {target} " + (f"answered in {millis} ms" if answered else f"did not answer: {error}")
    return CheckOutcome(answered, "WARN", description, meta, alerts, "redis_down", lambda key: answered)
