"""Push delivery in Dagster: one long-lived run (``deliver_events``) kept alive by a sensor,
like processing (no run per event); ``replay_events`` queues events to be pushed again;
``purge_events_daily`` applies ``EVENT_RETENTION_DAYS``."""

from datetime import datetime

from dagster import (
    Config,
    DefaultSensorStatus,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    op,
    sensor,
)
from pydantic import Field

from wa_core.events.delivery import run_delivery
from wa_core.events.feed import purge_events
from wa_core.events.push import enqueue_replay
from wa_core.organizations import resolve_organization
from wa_pipelines.defs.factories import one_op_job, running_schedule
from wa_pipelines.defs.ingest.sensors import IN_FLIGHT
from wa_pipelines.resources import AppDatabase, TokenKeys


class DeliverEventsConfig(Config):
    """How long the run lives; ``idle_exit_seconds`` unset = stays while idle."""

    max_seconds: float | None = Field(default=None, gt=0, description="default EVENT_PUSH_RUN_MAX_SECONDS")
    idle_exit_seconds: float | None = Field(default=None, ge=0, description="end after this long without a request")


@op(description="Push events to the organizations' endpoints until the rollover time (long-lived).")
def deliver_events_op(context: OpExecutionContext, config: DeliverEventsConfig, app_db: AppDatabase, token_keys: TokenKeys) -> int:
    stats = run_delivery(
        app_db.get_engine(), app_db.settings, token_keys.cipher(),
        max_seconds=config.max_seconds, idle_exit_seconds=config.idle_exit_seconds,
    )
    context.add_output_metadata({"requests": stats.requests, "delivered": stats.delivered, "failed": stats.failed,
                                 "disabled": stats.disabled, "replayed": stats.replayed, "rounds": stats.rounds})
    return stats.delivered


#: the run queue of the long-lived delivery run (``dagster/dagster.yaml``): its own, so the
#: always-running run never holds the maintenance queue's one slot that operators' jobs need
DELIVERY_QUEUE = "delivery"
deliver_events_job = one_op_job("deliver_events", deliver_events_op, "Long-lived push delivery of the event feed (Standard Webhooks).",
                                queue=DELIVERY_QUEUE)



@sensor(job=deliver_events_job, minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING,
        description="Keeps one deliver_events run alive (EVENT_PUSH_KEEP_ALIVE=false: only while an endpoint is enabled).")
def event_delivery_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
    """One ``deliver_events`` run alive. With ``EVENT_PUSH_KEEP_ALIVE`` (off by default) always, so a
    newly set endpoint is served at once by the run already listening; with it false, only
    while some push endpoint is enabled (an install whose SaaS only pulls keeps no idle run;
    the first push after enabling an endpoint then waits for this tick and a run launch). It
    ticks every 5 s (the daemon's best: Dagster docs "Sensors", ``minimum_interval_seconds``; the sensor daemon loop runs every 5 s): a run that
    ended (``EVENT_PUSH_RUN_MAX_SECONDS`` rollover, crash) is replaced within 5 s plus a launch."""
    from wa_core.events.push import has_enabled_endpoint

    runs = context.instance.get_run_records(RunsFilter(job_name="deliver_events", statuses=IN_FLIGHT), limit=1)
    if runs:
        return SkipReason("a delivery run is alive")
    if not app_db.settings.event_push_keep_alive and not has_enabled_endpoint(app_db.get_engine()):
        return SkipReason("no organization has an enabled push endpoint")
    return RunRequest(tags={"wa/launched_by": "event_delivery_sensor"})


class ReplayEventsConfig(Config):
    """Which events to push again (filters combine with AND)."""

    organization: str = Field(description="organization id or external id")
    event_id: str | None = Field(default=None, description="one event's id")
    since: str | None = Field(default=None, description="ISO time, inclusive (occurred_at)")
    until: str | None = Field(default=None, description="ISO time, exclusive")
    types: list[str] = Field(default_factory=list, description="event types; empty = all")
    everything: bool = Field(default=False, description="with no other filter: replay every event kept (required then)")


@op(description="Queue events to be pushed again to the organization's endpoint.")
def replay_events_op(context: OpExecutionContext, config: ReplayEventsConfig, app_db: AppDatabase) -> int:
    import uuid

    parse = lambda v: datetime.fromisoformat(v) if v else None  # noqa: E731
    if not (config.event_id or config.since or config.until or config.types or config.everything):
        raise ValueError("replay_events: name event_id, since/until or types, or set everything: true")
    with app_db.get_engine().begin() as conn:
        org = resolve_organization(conn, config.organization)
        queued = enqueue_replay(conn, org.id, event_id=uuid.UUID(config.event_id) if config.event_id else None,
                                since=parse(config.since), until=parse(config.until), types=config.types)
    context.log.info(f"{queued} events queued for replay to organization {org.id}")
    return queued


replay_events_job = one_op_job("replay_events", replay_events_op, "Queue one event or a filter (time, types) to be pushed again.")


@op(description="Delete events and push attempts older than EVENT_RETENTION_DAYS.")
def purge_events_op(context: OpExecutionContext, app_db: AppDatabase) -> int:
    with app_db.get_engine().begin() as conn:
        deleted = purge_events(conn, app_db.settings.event_retention_days)
    context.add_output_metadata({"deleted": deleted})
    return deleted


purge_events_job = one_op_job("purge_events", purge_events_op, "Delete events older than EVENT_RETENTION_DAYS.")
purge_events_schedule = running_schedule("purge_events_daily", purge_events_job, "30 3 * * *", "UTC",
                                         description="Daily at 03:30 UTC: delete events older than EVENT_RETENTION_DAYS.")
