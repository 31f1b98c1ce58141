"""Sensors: start processing when webhooks are waiting; refresh dashboards after processing."""


from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    run_status_sensor,
    sensor,
)

from wa_pipelines.jobs import dashboards_job, process_webhooks_job
from wa_pipelines.processing.claim import count_claimable
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
    """Request one ``process_webhooks`` run when rows are claimable and none is in flight."""
    in_flight = context.instance.get_runs_count(RunsFilter(job_name=process_webhooks_job.name, statuses=IN_FLIGHT))
    if in_flight:
        return SkipReason(f"{in_flight} processing run(s) in flight")
    with app_db.get_engine().connect() as conn:
        waiting = count_claimable(conn)
    if not waiting:
        return SkipReason("no claimable webhooks")
    idle = app_db.settings.processing_idle_exit_seconds
    return RunRequest(
        run_config={"ops": {"apply_landed_webhooks": {"config": {"idle_exit_seconds": idle}}}},
        tags={"wa/claimable_at_launch": str(waiting), "wa/launched_by": "pending_webhooks_sensor"},
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[process_webhooks_job],
    request_job=dashboards_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refresh the dashboards after each successful processing run.",
)
def dashboards_after_processing(context):
    """One dashboard refresh per finished processing run."""
    return RunRequest(run_key=f"after-{context.dagster_run.run_id}")
