"""Schedules: dashboards are also refreshed on a clock, so they stay fresh without traffic."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from wa_pipelines.jobs import dashboards_job

dashboards_schedule = ScheduleDefinition(
    name="dashboards_every_15_minutes",
    job=dashboards_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
