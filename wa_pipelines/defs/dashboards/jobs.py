"""The dashboard refresh job and its clock: dashboards stay fresh without traffic too."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job, in_process_executor

from wa_pipelines.defs.dashboards.assets import DASHBOARD_ASSETS

dashboards_job = define_asset_job(
    "refresh_dashboards",
    selection=AssetSelection.assets(*DASHBOARD_ASSETS),
    executor_def=in_process_executor,
    tags={"wa/queue": "dashboards"},
    description="Recompute the dashboard assets from the app tables.",
)

dashboards_schedule = ScheduleDefinition(
    name="dashboards_every_15_minutes",
    job=dashboards_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
