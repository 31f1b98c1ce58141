"""The sensor that keeps one long-lived processing run alive per shard."""


import time

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRecord,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from wa_pipelines.defs.ingest.jobs import SHARD_TAG, SHARDS_TAG, process_webhooks_job
from wa_core.processing.claim import count_claimable
from wa_core.settings import Settings
from wa_pipelines.resources import AppDatabase

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def run_shard(record: RunRecord) -> int:
    """The shard a processing run works on (runs from before shards count as shard 0)."""
    try:
        return int(record.dagster_run.tags.get(SHARD_TAG, "0"))
    except ValueError:
        return 0


def _started_at(record: RunRecord) -> float:
    return record.start_time or record.create_timestamp.timestamp()


def _request(settings: Settings, shard: int, reason: str, predecessor: str | None = None) -> RunRequest:
    shards = settings.processing_shards
    tags = {SHARD_TAG: str(shard), SHARDS_TAG: str(shards), "wa/launched_by": "pending_webhooks_sensor", "wa/reason": reason}
    if predecessor:
        tags["wa/successor_of"] = predecessor
    return RunRequest(
        # a successor is requested once per predecessor, even if a tick is evaluated twice
        run_key=f"shard-{shard}-after-{predecessor}" if predecessor else None,
        run_config={
            "ops": {
                "apply_landed_webhooks": {
                    "config": {
                        "shard": shard,
                        "shards": shards,
                        "idle_exit_seconds": settings.processing_idle_exit_seconds,
                        "max_seconds": settings.processing_run_max_seconds,
                    }
                }
            }
        },
        tags=tags,
    )


@sensor(
    job=process_webhooks_job,
    minimum_interval_seconds=1,  # the daemon ticks every 5 s at best; 1 gives a steady 5 s
    default_status=DefaultSensorStatus.RUNNING,
    description="Keep one process_webhooks run alive per shard (PROCESSING_SHARDS), roll it over, fail dead ones.",
)
def pending_webhooks_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
    """Keep exactly one ``process_webhooks`` run alive for each shard ``k`` in
    ``0..PROCESSING_SHARDS-1`` (tag ``wa/shard: k``; run config ``shard``/``shards``).

    - No run in flight for a shard: request one (when ``PROCESSING_IDLE_EXIT_SECONDS`` is set,
      runs end when idle, so only while rows are claimable).
    - Rollover: once the shard's newest run has been STARTED for ``PROCESSING_RUN_MAX_SECONDS``
      minus ``PROCESSING_ROLLOVER_LEAD_SECONDS``, request its successor; the old run stops
      claiming as soon as the successor is STARTED, or at its deadline. No further request
      while a shard's run is queued or starting, or two are in flight.
    - A run STARTED longer than it can legitimately live (``PROCESSING_RUN_MAX_SECONDS`` +
      ``PROCESSING_LEASE_SECONDS``) lost its process (the default run launcher cannot check a
      run worker's health): it is reported failed and its shard gets a new run. Its leased
      rows are claimable again when the leases expire.
    """
    settings = app_db.settings
    shards = settings.processing_shards
    run_max = settings.processing_run_max_seconds
    stale_after = run_max + settings.processing_lease_seconds
    now = time.time()
    records = context.instance.get_run_records(RunsFilter(job_name=process_webhooks_job.name, statuses=IN_FLIGHT))
    alive: dict[int, list[RunRecord]] = {}
    for record in records:
        if record.dagster_run.status == DagsterRunStatus.STARTED and now - _started_at(record) > stale_after:
            context.instance.report_run_failed(
                record.dagster_run, message=f"processing run exceeded {stale_after:.0f}s: its process is presumed dead"
            )
            context.log.warning(f"reported stale processing run {record.dagster_run.run_id} (shard {run_shard(record)}) as failed")
            continue
        alive.setdefault(run_shard(record), []).append(record)

    requests: list[RunRequest] = []
    waiting: int | None = None
    for shard in range(shards):
        runs = alive.get(shard, [])
        if not runs:
            if settings.processing_idle_exit_seconds is not None:
                if waiting is None:
                    with app_db.get_engine().connect() as conn:
                        waiting = count_claimable(conn)
                if not waiting:
                    continue
            requests.append(_request(settings, shard, "start"))
            continue
        if len(runs) > 1 or any(r.dagster_run.status != DagsterRunStatus.STARTED for r in runs):
            continue  # a successor is on its way, or the handover is under way
        [current] = runs
        if now - _started_at(current) >= run_max - settings.processing_rollover_lead_seconds:
            requests.append(_request(settings, shard, "rollover", predecessor=current.dagster_run.run_id))
    if requests:
        return requests
    if waiting == 0:
        return SkipReason("no claimable webhooks")
    return SkipReason(f"{sum(len(v) for v in alive.values())} processing run(s) in flight for {shards} shard(s)")
