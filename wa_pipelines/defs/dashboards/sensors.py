"""Refresh the dashboards after processing runs."""

from __future__ import annotations

import time

from dagster import DagsterRunStatus, DefaultSensorStatus, RunRequest, run_status_sensor

from wa_pipelines.defs.dashboards.jobs import dashboards_job
from wa_pipelines.defs.ingest.jobs import process_webhooks_job

#: at most one dashboard refresh per this many seconds after processing runs
DASHBOARD_REFRESH_SECONDS = 300


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[process_webhooks_job],
    request_job=dashboards_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
    description="Refresh the dashboards after processing runs (at most one refresh per 5 minutes).",
)
def dashboards_after_processing(context):
    """A dashboard refresh after a finished processing run, deduplicated per 5-minute window
    (the run key), so sparse traffic does not double the number of runs."""
    return RunRequest(run_key=f"dashboards-{int(time.time() // DASHBOARD_REFRESH_SECONDS)}")
