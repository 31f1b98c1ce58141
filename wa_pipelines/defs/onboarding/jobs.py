"""The ``finish_onboarding`` job and the sensor that starts it for each exchanged token."""

from datetime import timedelta

import sqlalchemy as sa
from dagster import (
    Config,
    DefaultSensorStatus,
    OpExecutionContext,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    op,
    sensor,
)
from pydantic import Field

from wa_core.onboarding.steps import MAX_FOLLOW_UP_ATTEMPTS, finish_onboarding
from wa_pipelines.defs.factories import one_op_job, running_schedule
from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys
from wa_core.db.schema import utcnow, whatsapp_onboarding

#: a follow-up still "running" this long after its last update lost its run: start another
STALE_RUNNING = timedelta(minutes=15)


class FinishOnboardingConfig(Config):
    """Which onboarding to follow up (``whatsapp_onboarding.id``)."""

    onboarding_id: str = Field(description="whatsapp_onboarding.id")


@op(description="Subscribe the app, list and register numbers, request coexistence syncs once.")
def finish_onboarding_op(context: OpExecutionContext, config: FinishOnboardingConfig, app_db: AppDatabase, meta_graph: MetaGraph, token_keys: TokenKeys) -> str:
    import uuid

    with meta_graph.client() as graph:
        report = finish_onboarding(
            app_db.get_engine(), graph, token_keys.cipher(), uuid.UUID(config.onboarding_id), register_pin=app_db.settings.register_pin.get_secret_value() if app_db.settings.register_pin else None,
            token_expiring_soon=timedelta(days=app_db.settings.token_expiring_soon_days),
        )
    for step in report.steps:
        context.log.info(step)
    if report.error:
        context.log.warning(f"follow-up {report.outcome}: {report.error}")
    context.add_output_metadata({"outcome": report.outcome, "steps": report.steps, "error": report.error or ""})
    if report.outcome == "failed":
        raise RuntimeError(f"onboarding {config.onboarding_id} failed: {report.error}")
    return report.outcome


finish_onboarding_job = one_op_job(
    "finish_onboarding",
    finish_onboarding_op,
    "Follow up one Embedded Signup; safe to rerun from the UI (every step is idempotent).",
    queue="onboarding",
)


@sensor(
    job=finish_onboarding_job,
    minimum_interval_seconds=1,
    default_status=DefaultSensorStatus.RUNNING,
    description="Start finish_onboarding for each onboarding whose token exchange succeeded (and retries when due).",
)
def onboarding_follow_up_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
    """One run per due onboarding (run key = onboarding id and attempt, so never twice)."""
    o = whatsapp_onboarding.c
    now = utcnow()
    with app_db.get_engine().connect() as conn:
        due = conn.execute(
            sa.select(o.id, o.follow_up_attempts)
            .where(
                o.status == "token_exchanged",
                sa.or_(
                    sa.and_(o.follow_up_status == "waiting", sa.or_(o.follow_up_next_at.is_(None), o.follow_up_next_at <= now)),
                    sa.and_(o.follow_up_status == "running", o.updated_at < now - STALE_RUNNING, o.follow_up_attempts < MAX_FOLLOW_UP_ATTEMPTS),
                ),
            )
            .order_by(o.token_exchanged_at)
            .limit(20)
        ).all()
    if not due:
        return SkipReason("no onboarding waiting for its follow-up")
    return [
        RunRequest(
            run_key=f"finish-{row.id}-{row.follow_up_attempts}",
            run_config={"ops": {"finish_onboarding_op": {"config": {"onboarding_id": str(row.id)}}}},
            tags={"wa/onboarding": str(row.id)},
        )
        for row in due
    ]


@op(description="Mark pending onboardings past their expiry as expired; delete exactly their cache keys.")
def expire_onboardings_op(context: OpExecutionContext, app_db: AppDatabase) -> int:
    from wa_core.cache import OnboardingCache
    from wa_core.onboarding.service import expire_due

    with app_db.get_engine().begin() as conn:
        codes = expire_due(conn)
    removed = OnboardingCache(app_db.settings.redis_url).forget(codes)  # no KEYS scan: live sessions stay
    context.log.info(f"expired {len(codes)} onboardings; removed {removed} cache keys")
    context.add_output_metadata({"expired": len(codes), "cache_keys_removed": removed})
    return len(codes)


expire_onboardings_job = one_op_job(
    "expire_onboardings", expire_onboardings_op, "Expire pending onboardings whose 24 h tracking code ran out."
)

expire_onboardings_schedule = running_schedule("expire_onboardings_daily", expire_onboardings_job, "0 0 * * *", "America/Sao_Paulo")
