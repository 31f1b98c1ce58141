"""The one ``Definitions`` object, loaded by ``workspace.yaml`` from the ``wa_pipelines`` module."""

from __future__ import annotations

from dagster import Definitions

from wa_pipelines.alerting import ALERT_SENSORS
from wa_pipelines.assets.checks import DASHBOARD_CHECKS
from wa_pipelines.assets.dashboards import DASHBOARD_ASSETS
from wa_pipelines.assets.tables import EXTERNAL_TABLES
from wa_pipelines.housekeeping import HOUSEKEEPING_JOBS, HOUSEKEEPING_SCHEDULES
from wa_pipelines.jobs import dashboards_job, process_webhooks_job
from wa_pipelines.maintenance import (
    assign_waba_job,
    purge_dead_letters_job,
    purge_webhook_bodies_job,
    replay_dead_letters_job,
    retention_schedule,
)
from wa_pipelines.processing_assets import apply_landed_webhooks
from wa_pipelines.onboarding.jobs import (
    check_token_health_job,
    expire_onboardings_job,
    expire_onboardings_schedule,
    finish_onboarding_job,
    onboarding_follow_up_sensor,
    token_health_schedule,
)
from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys
from wa_pipelines.schedules import dashboards_schedule
from wa_pipelines.sensors import dashboards_after_processing, pending_webhooks_sensor

defs = Definitions(
    assets=[*EXTERNAL_TABLES, apply_landed_webhooks, *DASHBOARD_ASSETS],
    asset_checks=DASHBOARD_CHECKS,
    jobs=[
        process_webhooks_job,
        dashboards_job,
        finish_onboarding_job,
        expire_onboardings_job,
        check_token_health_job,
        replay_dead_letters_job,
        purge_dead_letters_job,
        assign_waba_job,
        purge_webhook_bodies_job,
        *HOUSEKEEPING_JOBS,
    ],
    sensors=[pending_webhooks_sensor, dashboards_after_processing, onboarding_follow_up_sensor, *ALERT_SENSORS],
    schedules=[
        dashboards_schedule,
        retention_schedule,
        expire_onboardings_schedule,
        token_health_schedule,
        *HOUSEKEEPING_SCHEDULES,
    ],
    resources={"app_db": AppDatabase(), "meta_graph": MetaGraph(), "token_keys": TokenKeys()},
)
