"""Refresh the dashboards after processing runs."""

from __future__ import annotations

import time

from dagster import DagsterEventType, DagsterRunStatus, DefaultSensorStatus, RunRequest, SkipReason, run_status_sensor

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
    (the run key), so sparse traffic does not double the number of runs. A run that applied no
    webhook (an idle shard's rollover, every PROCESSING_RUN_MAX_SECONDS) changed nothing to show:
    no refresh (the 15-minute schedule still refreshes what ages, e.g. the lag)."""
    records = context.instance.get_records_for_run(
        context.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=1
    ).records
    webhooks = records[0].event_log_entry.asset_materialization.metadata.get("webhooks") if records else None
    if webhooks is not None and webhooks.value == 0:
        return SkipReason("the processing run applied no webhooks")
    return RunRequest(run_key=f"dashboards-{int(time.time() // DASHBOARD_REFRESH_SECONDS)}")
