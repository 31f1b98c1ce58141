"""Asset checks guarding the dashboards; they run in every ``refresh_dashboards`` run.

``AssetSelection.assets(*DASHBOARD_ASSETS)`` (the job's selection) includes the checks that
target those assets, so each check runs right after its asset. Every check evaluates live
data (the app tables, Redis), not the asset's metadata. A failing check also sends an alert
through :func:`wa_core.alerts.notifier.get_notifier`; a passing one resolves it.

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
``redis_down``/``redis`` alert (in-process grouping, severity error, resolved by the process
that sees Redis again); the check's key is ``redis-check`` so the two are told apart in
Slack and Sentry and each has one "resolved" notice. A passing Redis check also resolves a
``redis_down:redis`` row an earlier version of the check left open in ``ops_alerts``.

Alerts whose key is an id (one per WABA or phone number) are resolved when their id no
longer fails: the open ones are read from ``ops_alerts`` (``resolved_at IS NULL``), where the notifier keeps them.
"""

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check
from sqlalchemy.engine import Connection, Engine

from wa_pipelines.defs.dashboards.assets import (
    UNHEALTHY_TOKEN_STATES,
    compute_token_health,
    failed_webhooks,
    onboarding_timeline,
    org_whatsapp_status,
    token_health,
    webhook_lag,
)
from wa_core.reporting.lag import compute_backlog
from wa_pipelines.resources import AppDatabase
from wa_core.alerts import Alert, get_notifier
from wa_core.db.schema import (
    as_utc,
    ops_alerts,
    utcnow,
    whatsapp_connections,
    whatsapp_message_revisions,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_webhook_logs,
)

#: how many ids a check lists in its metadata and alert details
IDS_SHOWN = 50
#: how long the Redis check waits for a connection and for PONG (seconds)
REDIS_TIMEOUT_SECONDS = 1.0
#: the Redis check's alert key (kind ``redis_down``); the receiver's own alert uses ``redis``
REDIS_ALERT_KEY = "redis-check"
#: numbers whose token no longer matters: the customer disconnected or offboarded them
IGNORED_NUMBER_STATES = ("disconnected", "offboarded")

# the message account_update processing records for a PARTNER_ADDED whose WABA no one owns
# (wa_core.processing.handlers.account_update: Unroutable(f"no organization is bound to WABA {waba_id} ({event})"))
_UNCLAIMED = re.compile(r"no organization is bound to WABA (\S+) \(PARTNER_ADDED\)")


# --- live queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetters:
    """Dead webhook rows received since ``since`` (UTC): ``count``, ``by_error_kind`` and the
    newest ids (at most :data:`IDS_SHOWN`)."""

    since: datetime
    count: int
    by_error_kind: dict[str, int]
    webhook_ids: list[int]


def dead_letters_since(conn: Connection, since: datetime) -> DeadLetters:
    """Dead webhook rows received at or after ``since`` (UTC)."""
    logs = whatsapp_webhook_logs.c
    where = sa.and_(logs.status == "dead", logs.received_at >= since)
    kind = sa.func.coalesce(logs.error_kind, "(none)")
    by_kind = {k: int(n) for k, n in conn.execute(sa.select(kind, sa.func.count()).where(where).group_by(kind))}
    ids = list(conn.execute(sa.select(logs.id).where(where).order_by(logs.id.desc()).limit(IDS_SHOWN)).scalars())
    return DeadLetters(since, sum(by_kind.values()), dict(sorted(by_kind.items())), ids)


@dataclass
class UnclaimedWaba:
    """A WABA shared with the app (PARTNER_ADDED) that no organization owns yet.

    ``webhook_ids``: its waiting webhook rows (``failed``: still retried, ``dead``: given up
    after an onboarding's life, 24 h); ``first_received_at``: when the oldest arrived (UTC).
    """

    waba_id: str
    webhook_ids: list[int] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    first_received_at: datetime | None = None


def unclaimed_wabas(conn: Connection) -> list[UnclaimedWaba]:
    """WABAs waiting for an owner, by WABA id.

    Processing records a PARTNER_ADDED for a WABA bound to no organization (and whose owner
    business matches no single organization) as an ``unroutable`` failure whose
    ``last_error`` names the WABA; it is retried for 24 h, then dead. An operator binds it
    with the ``assign_waba`` job or the admin API, which replays those rows. A WABA that is
    bound by now is not listed, even while its row waits for the next attempt.
    """
    logs = whatsapp_webhook_logs.c
    rows = conn.execute(
        sa.select(logs.id, logs.status, logs.received_at, logs.last_error)
        .where(
            logs.status.in_(("failed", "dead")),
            logs.error_kind.like("%unroutable%"),
            logs.last_error.like("%(PARTNER_ADDED)%"),
        )
        .order_by(logs.received_at, logs.id)
    ).all()
    found: dict[str, UnclaimedWaba] = {}
    for row in rows:
        for waba_id in dict.fromkeys(_UNCLAIMED.findall(row.last_error or "")):
            item = found.setdefault(waba_id, UnclaimedWaba(waba_id))
            item.webhook_ids.append(row.id)
            item.states.append(row.status)
            if item.first_received_at is None:
                item.first_received_at = as_utc(row.received_at)
    if found:
        bound = set(
            conn.execute(sa.select(whatsapp_connections.c.waba_id).where(whatsapp_connections.c.waba_id.in_(list(found)))).scalars()
        )
        for waba_id in bound:
            found.pop(waba_id, None)
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class Parked:
    """Items parked because their message is not stored, older than the threshold.

    ``statuses``: status rows whose (phone_number_id, wamid) has no message; ``revisions``:
    edits and revokes not applied yet (``applied_at IS NULL``). ``oldest_received_at``: the
    oldest such item's arrival (UTC, None when none); ``oldest_age_seconds`` its age.
    ``statuses_all``/``revisions_all``: parked items of any age (context).
    """

    statuses: int
    revisions: int
    statuses_all: int
    revisions_all: int
    oldest_received_at: datetime | None
    oldest_age_seconds: float | None

    @property
    def count(self) -> int:
        """Parked items older than the threshold."""
        return self.statuses + self.revisions


def parked_items(conn: Connection, now: datetime, older_than: timedelta) -> Parked:
    """Statuses and revisions waiting for their message, received more than ``older_than``
    before ``now`` (UTC). Statuses of a message not stored yet are applied when it arrives
    (:func:`wa_core.processing.store.insert_message`), and so are edits and revokes."""
    cutoff = now - older_than
    st, m, rev = whatsapp_message_statuses.c, whatsapp_messages.c, whatsapp_message_revisions.c
    no_message = ~sa.exists().where(m.phone_number_id == st.phone_number_id, m.wamid == st.wamid)
    old_st = sa.func.count().filter(st.received_at <= cutoff)
    statuses = conn.execute(sa.select(old_st, sa.func.count(), sa.func.min(st.received_at)).where(no_message)).one()
    old_rev = sa.func.count().filter(rev.received_at <= cutoff)
    revisions = conn.execute(
        sa.select(old_rev, sa.func.count(), sa.func.min(rev.received_at)).where(rev.applied_at.is_(None))
    ).one()
    oldest = [as_utc(t) for t in (statuses[2], revisions[2]) if t is not None]
    first = min(oldest) if oldest else None
    return Parked(
        int(statuses[0]),
        int(revisions[0]),
        int(statuses[1]),
        int(revisions[1]),
        first,
        round((now - first).total_seconds(), 3) if first else None,
    )


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


# --- alerts --------------------------------------------------------------------------------------------


def _open_alert_keys(engine: Engine, kind: str) -> set[str]:
    """Keys of the open alerts of ``kind`` (the notifier keeps them in ``ops_alerts``)."""
    with engine.connect() as conn:
        return set(
            conn.execute(sa.select(ops_alerts.c.key).where(ops_alerts.c.kind == kind, ops_alerts.c.resolved_at.is_(None))).scalars()
        )


class _Alerts:
    """Send and resolve a check's alerts; a notifier error is logged, never fails the check."""

    def __init__(self, context: AssetCheckExecutionContext, app_db: AppDatabase) -> None:
        self.context = context
        self.engine = app_db.get_engine()
        self.notifier = get_notifier(app_db.settings, self.engine)
        self.sent = 0
        self.resolved = 0
        self.errors = 0

    def _call(self, what: str, fn, *args) -> bool:
        try:
            return bool(fn(*args))
        except Exception as exc:
            self.errors += 1
            self.context.log.warning(f"alert {what} failed: {type(exc).__name__}: {exc}")
            return False

    def notify(self, alert: Alert) -> None:
        """Send ``alert`` (the notifier groups repeats)."""
        self.sent += self._call(f"notify {alert.fingerprint}", self.notifier.notify, alert)

    def resolve(self, kind: str, key: str) -> None:
        """Close the alert ``kind:key`` if open."""
        self.resolved += self._call(f"resolve {kind}:{key}", self.notifier.resolve, kind, key)

    def sync(self, kind: str, alerts: Iterable[Alert]) -> None:
        """Send one alert per failing key and resolve the open ones of ``kind`` no longer failing."""
        alerts = list(alerts)
        current = {a.key for a in alerts}
        for alert in alerts:
            self.notify(alert)
        try:
            stale = _open_alert_keys(self.engine, kind) - current
        except sa.exc.SQLAlchemyError as exc:
            self.errors += 1
            self.context.log.warning(f"reading open {kind} alerts failed: {type(exc).__name__}")
            stale = set()
        for key in sorted(stale):
            self.resolve(kind, key)

    def metadata(self) -> dict[str, Any]:
        """How many alerts this check sent and resolved (and notifier errors, if any)."""
        meta: dict[str, Any] = {"alerts_sent": self.sent, "alerts_resolved": self.resolved}
        if self.errors:
            meta["alert_errors"] = self.errors
        return meta


def _ids(values: list[Any]) -> MetadataValue:
    return MetadataValue.json([str(v) for v in values[:IDS_SHOWN]])


# --- checks -----------------------------------------------------------------------------------------------


@asset_check(
    asset=failed_webhooks,
    name="dead_letters_24h",
    description="Dead-letter webhooks received in the last 24 h stay at or below CHECK_DEAD_LETTERS_MAX.",
)
def dead_letters_check(context: AssetCheckExecutionContext, app_db: AppDatabase) -> AssetCheckResult:
    """Fails (ERROR) when more dead rows arrived in the last 24 h than ``check_dead_letters_max``."""
    limit = app_db.settings.check_dead_letters_max
    with app_db.get_engine().connect() as conn:
        dead = dead_letters_since(conn, utcnow() - timedelta(hours=24))
    passed = dead.count <= limit
    alerts = _Alerts(context, app_db)
    # the per-error-kind alerts processing raised when rows went dead (key "kind[, kind…]")
    # are resolved once no dead row of any of their kinds arrived in the last 24 h
    kinds_now = {kind for kinds in dead.by_error_kind for kind in kinds.split(",") if kind}
    try:
        open_keys = _open_alert_keys(alerts.engine, "dead_letter") - {"dead_letters_24h"}
    except sa.exc.SQLAlchemyError as exc:
        context.log.warning(f"reading open dead_letter alerts failed: {type(exc).__name__}")
        open_keys = set()
    for key in sorted(open_keys):
        if not {k.strip() for k in key.split(",")} & kinds_now:
            alerts.resolve("dead_letter", key)
    if passed:
        alerts.resolve("dead_letter", "dead_letters_24h")
    else:
        alerts.notify(
            Alert(
                "dead_letter",
                "dead_letters_24h",
                f"{dead.count} dead-letter webhooks received in the last 24 h (allowed: {limit}); "
                f"kinds: {', '.join(f'{k} {n}' for k, n in dead.by_error_kind.items())}; replay them with replay_dead_letters once fixed",
                severity="error",
                details={"count": dead.count, "max": limit, "by_error_kind": dead.by_error_kind, "webhook_ids": dead.webhook_ids},
            )
        )
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=f"{dead.count} dead in 24 h (max {limit})",
        metadata={
            "dead_24h": dead.count,
            "max_allowed": limit,
            "by_error_kind": MetadataValue.json(dead.by_error_kind),
            "webhook_ids": _ids(dead.webhook_ids),
            **alerts.metadata(),
        },
    )


@asset_check(
    asset=webhook_lag,
    name="backlog_age",
    description="The oldest claimable webhook has waited at most CHECK_BACKLOG_MAX_AGE_SECONDS.",
)
def backlog_age_check(context: AssetCheckExecutionContext, app_db: AppDatabase) -> AssetCheckResult:
    """Fails (ERROR) when a claimable row (pending, or failed and due) has waited longer than
    ``check_backlog_max_age_seconds`` since it arrived, was replayed, or its retry fell due."""
    limit = app_db.settings.check_backlog_max_age_seconds
    with app_db.get_engine().connect() as conn:
        backlog = compute_backlog(conn)
    age = backlog.oldest_age_seconds
    passed = age is None or age <= limit
    alerts = _Alerts(context, app_db)
    if passed:
        alerts.resolve("asset_check_failed", "backlog_age")
    else:
        alerts.notify(
            Alert(
                "asset_check_failed",
                "backlog_age",
                f"processing backlog: the oldest claimable webhook ({backlog.oldest_webhook_id}) has waited {age:.0f} s "
                f"(max {limit:.0f} s); {backlog.claimable} claimable. Is a processing run (and the Dagster daemon) running?",
                severity="error",
                details={
                    "oldest_age_seconds": age,
                    "max_age_seconds": limit,
                    "oldest_webhook_id": backlog.oldest_webhook_id,
                    "claimable": backlog.claimable,
                    "pending": backlog.pending,
                    "failed_due": backlog.failed_due,
                },
            )
        )
    meta: dict[str, Any] = {
        "claimable": backlog.claimable,
        "pending": backlog.pending,
        "failed_due": backlog.failed_due,
        "failed_waiting": backlog.failed_waiting,
        "max_age_seconds": limit,
        **alerts.metadata(),
    }
    if age is not None:
        meta["oldest_age_seconds"] = age
        meta["oldest_webhook_id"] = backlog.oldest_webhook_id
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description="nothing claimable" if age is None else f"oldest claimable waited {age:.0f} s (max {limit:.0f} s)",
        metadata=meta,
    )


@asset_check(
    asset=webhook_lag,
    name="parked_items_age",
    description=(
        "No edit/revoke has waited for its original message longer than CHECK_PARKED_MAX_AGE_SECONDS; "
        "statuses without a stored message are reported, not failed (Cloud API sends are not stored here)."
    ),
)
def parked_items_check(context: AssetCheckExecutionContext, app_db: AppDatabase) -> AssetCheckResult:
    """Fails (WARN) when edits/revokes wait for their original message longer than
    ``check_parked_max_age_seconds``. Statuses whose message is not stored are counted in the
    metadata but do not fail it: outbound messages the SaaS sends through the Cloud API are
    never stored by this service, so their statuses have no message by design (they stay in
    the status history and are applied if the message ever appears, e.g. by an echo)."""
    limit = app_db.settings.check_parked_max_age_seconds
    with app_db.get_engine().connect() as conn:
        parked = parked_items(conn, utcnow(), timedelta(seconds=limit))
    passed = parked.revisions == 0
    alerts = _Alerts(context, app_db)
    if passed:
        alerts.resolve("asset_check_failed", "parked_items_age")
    else:
        alerts.notify(
            Alert(
                "asset_check_failed",
                "parked_items_age",
                f"{parked.revisions} edits/revokes have waited more than {limit:.0f} s for their original message "
                f"({parked.statuses} statuses without a message too)",
                severity="warning",
                details={
                    "statuses": parked.statuses,
                    "revisions": parked.revisions,
                    "max_age_seconds": limit,
                    "oldest_age_seconds": parked.oldest_age_seconds,
                },
            )
        )
    meta: dict[str, Any] = {
        "parked_statuses_over_limit": parked.statuses,
        "parked_revisions_over_limit": parked.revisions,
        "parked_statuses_all": parked.statuses_all,
        "parked_revisions_all": parked.revisions_all,
        "max_age_seconds": limit,
        **alerts.metadata(),
    }
    if parked.oldest_age_seconds is not None:
        meta["oldest_age_seconds"] = parked.oldest_age_seconds
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=f"{parked.count} items parked longer than {limit:.0f} s",
        metadata=meta,
    )


@asset_check(
    asset=onboarding_timeline,
    name="unclaimed_wabas",
    description="No PARTNER_ADDED is waiting for a WABA that no organization owns (assign it with assign_waba or the admin API).",
)
def unclaimed_wabas_check(context: AssetCheckExecutionContext, app_db: AppDatabase) -> AssetCheckResult:
    """Fails (WARN) when WABAs wait for an owner; lists them and alerts once per WABA."""
    with app_db.get_engine().connect() as conn:
        waiting = unclaimed_wabas(conn)
    alerts = _Alerts(context, app_db)
    alerts.sync(
        "unclaimed_waba",
        [
            Alert(
                "unclaimed_waba",
                w.waba_id,
                f"WABA {w.waba_id} was shared with the app (PARTNER_ADDED) but belongs to no organization; "
                f"assign it with the assign_waba job or POST /api/admin/whatsapp/wabas/{w.waba_id}/assign",
                severity="warning",
                details={"waba_id": w.waba_id, "webhook_ids": w.webhook_ids, "first_received_at": w.first_received_at.isoformat() if w.first_received_at else None},
            )
            for w in waiting
        ],
    )
    return AssetCheckResult(
        passed=not waiting,
        severity=AssetCheckSeverity.WARN,
        description=f"{len(waiting)} unclaimed WABAs" + (f": {', '.join(w.waba_id for w in waiting[:10])}" if waiting else ""),
        metadata={
            "unclaimed": len(waiting),
            "waba_ids": _ids([w.waba_id for w in waiting]),
            "waiting_webhooks": sum(len(w.webhook_ids) for w in waiting),
            **alerts.metadata(),
        },
    )


@asset_check(
    asset=token_health,
    name="tokens_healthy",
    description="No business token is expired, invalid or missing a permission, or expires within TOKEN_EXPIRING_SOON_DAYS.",
)
def tokens_healthy_check(context: AssetCheckExecutionContext, app_db: AppDatabase) -> AssetCheckResult:
    """Fails when a number in use (not disconnected or offboarded) has an unhealthy token
    (ERROR) or one expiring soon (WARN only); alerts once per phone_number_id."""
    settings = app_db.settings
    with app_db.get_engine().connect() as conn:
        board = compute_token_health(conn, expiring_soon_days=settings.token_expiring_soon_days)
    bad = [t for t in board.rows if t.needs_action and t.number_status not in IGNORED_NUMBER_STATES]
    unhealthy = [t for t in bad if t.state in UNHEALTHY_TOKEN_STATES]
    alerts = _Alerts(context, app_db)
    alerts.sync(
        "token_unhealthy",
        [
            Alert(
                "token_unhealthy",
                t.phone_number_id,
                f"business token of phone_number_id {t.phone_number_id} (WABA {t.waba_id}) is {t.state.replace('_', ' ')}"
                + (f", {t.days_to_expiry} days to expiry" if t.days_to_expiry is not None else "")
                + "; the customer must reconnect (Embedded Signup) or the token be replaced",
                severity="error" if t.state in UNHEALTHY_TOKEN_STATES else "warning",
                details={"state": t.state, "waba_id": t.waba_id, "phone_number_id": t.phone_number_id, "days_to_expiry": t.days_to_expiry},
                organization_id=uuid.UUID(t.organization_id) if t.organization_id else None,
            )
            for t in bad
        ],
    )
    by_state = Counter(t.state for t in bad)
    return AssetCheckResult(
        passed=not bad,
        severity=AssetCheckSeverity.ERROR if unhealthy else AssetCheckSeverity.WARN,
        description=f"{len(unhealthy)} unhealthy, {by_state.get('expiring_soon', 0)} expiring soon",
        metadata={
            "unhealthy": len(unhealthy),
            "expiring_soon": by_state.get("expiring_soon", 0),
            "by_state": MetadataValue.json(dict(sorted(by_state.items()))),
            "phone_number_ids": _ids([t.phone_number_id for t in bad]),
            "expiring_soon_days": settings.token_expiring_soon_days,
            **alerts.metadata(),
        },
    )


@asset_check(
    asset=org_whatsapp_status,
    name="redis_answers",
    description="With REDIS_URL set, Redis answers PING within a second; without it, the embedded in-process cache is used.",
)
def redis_answers_check(context: AssetCheckExecutionContext, app_db: AppDatabase) -> AssetCheckResult:
    """Fails (WARN) when ``REDIS_URL`` is set and is malformed (description ``REDIS_URL is
    malformed: …``) or Redis does not answer PING within :data:`REDIS_TIMEOUT_SECONDS`;
    passes when unset (embedded in-process cache). Never raises.

    Alerts as ``redis_down`` / :data:`REDIS_ALERT_KEY` (``redis-check``), distinct from the
    receiver's ``redis_down``/``redis``; passing resolves every open ``redis_down`` row in
    ``ops_alerts`` (only checks write them: the receiver groups in process)."""
    url = app_db.settings.redis_url
    alerts = _Alerts(context, app_db)
    if not url:
        alerts.sync("redis_down", [])
        return AssetCheckResult(
            passed=True,
            severity=AssetCheckSeverity.WARN,
            description="REDIS_URL unset: embedded in-process cache and rate-limit counters",
            metadata={"redis": "not configured", "cache": "embedded in-process cache (REDIS_URL unset)", **alerts.metadata()},
        )
    target = redis_target(url)
    problem = redis_url_problem(url)
    if problem:
        answered, millis, error = False, None, f"REDIS_URL is malformed: {problem}"
    else:
        answered, millis, error = ping_redis(url)
    if answered:
        alerts.sync("redis_down", [])
    else:
        alerts.notify(
            Alert(
                "redis_down",
                REDIS_ALERT_KEY,
                (
                    f"{error}; fix it (e.g. redis://host:6379/0): onboarding cache off and rate limits per process until then"
                    if problem
                    else f"Redis at {target} did not answer PING within {REDIS_TIMEOUT_SECONDS:.0f} s ({error}); "
                    "onboarding cache off and rate limits per process until it is back"
                ),
                severity="warning",
                details={"target": target, "error": error},
            )
        )
    meta: dict[str, Any] = {"redis": target, "cache": "redis", **alerts.metadata()}
    if millis is not None:
        meta["ping_ms"] = millis
    if error:
        meta["error"] = error
    return AssetCheckResult(
        passed=answered,
        severity=AssetCheckSeverity.WARN,
        description=error
        if problem
        else f"Redis at {target} " + (f"answered in {millis} ms" if answered else f"did not answer: {error}"),
        metadata=meta,
    )


#: every dashboard check (Definitions(asset_checks=...)); the refresh_dashboards job runs them
DASHBOARD_CHECKS = [
    dead_letters_check,
    backlog_age_check,
    parked_items_check,
    unclaimed_wabas_check,
    tokens_healthy_check,
    redis_answers_check,
]
