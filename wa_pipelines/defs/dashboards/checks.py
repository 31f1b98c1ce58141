"""Asset checks guarding the dashboards; they run in every ``refresh_dashboards`` run.

``AssetSelection.assets(*DASHBOARD_ASSETS)`` (the job's selection) includes the checks that
target those assets, so each check runs right after its asset. Each check is one evaluation
of :mod:`wa_core.reporting.checks` (what it checks, its severity and alerts are listed
there) run by one skeleton, :func:`run_check`: evaluate live data (not the asset's
metadata) → pass or fail → send and resolve its alerts through
:func:`wa_core.alerts.get_notifier` → the result with its metadata.
"""

from collections.abc import Callable
from typing import Any

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetChecksDefinition, AssetsDefinition, MetadataValue, asset_check

from wa_core.alerts import get_notifier
from wa_core.db.schema import utcnow
from wa_core.reporting.checks import (
    CheckOutcome,
    apply_alerts,
    check_backlog_age,
    check_dead_letters,
    check_parked_items,
    check_redis,
    check_tokens,
    check_unclaimed_wabas,
)
from wa_pipelines.defs.dashboards.assets import failed_webhooks, onboarding_timeline, org_whatsapp_status, token_health, webhook_lag
from wa_pipelines.resources import AppDatabase

Evaluation = Callable[[Any, Any, Any], CheckOutcome]


def _metadata_value(value: Any) -> Any:
    return MetadataValue.json(value) if isinstance(value, (list, dict)) else value


def run_check(context: AssetCheckExecutionContext, app_db: AppDatabase, evaluate: Evaluation) -> AssetCheckResult:
    """The skeleton of every dashboard check: ``evaluate(conn, settings, now)`` on the app
    database, its alerts sent and resolved (a notifier error is logged, never fails the
    check), its outcome as the check result with ``alerts_sent``/``alerts_resolved``."""
    engine = app_db.get_engine()
    with engine.connect() as conn:
        outcome = evaluate(conn, app_db.settings, utcnow())
    counts = apply_alerts(outcome, get_notifier(app_db.settings, engine), engine, context.log.warning)
    return AssetCheckResult(
        passed=outcome.passed,
        severity=AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata={**{k: _metadata_value(v) for k, v in outcome.metadata.items()}, **counts},
    )


def dashboard_check(asset: AssetsDefinition, name: str, description: str, evaluate: Evaluation) -> AssetChecksDefinition:
    """The asset check ``name`` on ``asset``, run by :func:`run_check`."""

    @asset_check(asset=asset, name=name, description=description)
    def _check(context: AssetCheckExecutionContext, app_db: AppDatabase) -> AssetCheckResult:
        return run_check(context, app_db, evaluate)

    return _check


dead_letters_check = dashboard_check(
    failed_webhooks, "dead_letters_24h", "Dead-letter webhooks received in the last 24 h stay at or below CHECK_DEAD_LETTERS_MAX.", check_dead_letters
)
backlog_age_check = dashboard_check(
    webhook_lag, "backlog_age", "The oldest claimable webhook has waited at most CHECK_BACKLOG_MAX_AGE_SECONDS.", check_backlog_age
)
parked_items_check = dashboard_check(
    webhook_lag,
    "parked_items_age",
    "No edit/revoke has waited for its original message longer than CHECK_PARKED_MAX_AGE_SECONDS; "
    "statuses without a stored message are reported, not failed (Cloud API sends are not stored here).",
    check_parked_items,
)
unclaimed_wabas_check = dashboard_check(
    onboarding_timeline,
    "unclaimed_wabas",
    "No PARTNER_ADDED is waiting for a WABA that no organization owns (assign it with assign_waba or the admin API).",
    check_unclaimed_wabas,
)
tokens_healthy_check = dashboard_check(
    token_health,
    "tokens_healthy",
    "No business token is expired, invalid or missing a permission, or expires within TOKEN_EXPIRING_SOON_DAYS.",
    check_tokens,
)
redis_answers_check = dashboard_check(
    org_whatsapp_status,
    "redis_answers",
    "With REDIS_URL set, Redis answers PING within a second; without it, the embedded in-process cache is used.",
    check_redis,
)

#: every dashboard check (the refresh_dashboards job runs them)
DASHBOARD_CHECKS = [
    dead_letters_check,
    backlog_age_check,
    parked_items_check,
    unclaimed_wabas_check,
    tokens_healthy_check,
    redis_answers_check,
]
