"""The sensor that starts processing when webhooks are waiting."""


import time

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from wa_pipelines.defs.ingest.jobs import process_webhooks_job
from wa_core.processing.claim import count_claimable
from wa_pipelines.resources import AppDatabase

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@sensor(
    job=process_webhooks_job,
    minimum_interval_seconds=1,  # the daemon ticks every 5 s at best; 1 gives a steady 5 s
    default_status=DefaultSensorStatus.RUNNING,
    description="Start a processing run when webhooks are claimable and no processing run is in flight.",
)
def pending_webhooks_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
    """Request one ``process_webhooks`` run when rows are claimable and none is in flight.

    A run that has been STARTED for longer than it can legitimately live
    (``PROCESSING_RUN_MAX_SECONDS`` + ``PROCESSING_LEASE_SECONDS``) lost its process (the
    default run launcher cannot check a run worker's health): it is reported failed so that
    processing does not stop for good. Its leased rows are claimable again anyway.
    """
    settings = app_db.settings
    stale_after = settings.processing_run_max_seconds + settings.processing_lease_seconds
    records = context.instance.get_run_records(RunsFilter(job_name=process_webhooks_job.name, statuses=IN_FLIGHT))
    alive = 0
    for record in records:
        started = record.start_time or record.create_timestamp.timestamp()
        if record.dagster_run.status == DagsterRunStatus.STARTED and time.time() - started > stale_after:
            context.instance.report_run_failed(
                record.dagster_run, message=f"processing run exceeded {stale_after:.0f}s: its process is presumed dead"
            )
            context.log.warning(f"reported stale processing run {record.dagster_run.run_id} as failed")
            continue
        alive += 1
    if alive:
        return SkipReason(f"{alive} processing run(s) in flight")
    with app_db.get_engine().connect() as conn:
        waiting = count_claimable(conn)
    if not waiting:
        return SkipReason("no claimable webhooks")
    idle = settings.processing_idle_exit_seconds
    return RunRequest(
        run_config={"ops": {"apply_landed_webhooks": {"config": {"idle_exit_seconds": idle}}}},
        tags={"wa/claimable_at_launch": str(waiting), "wa/launched_by": "pending_webhooks_sensor"},
    )
