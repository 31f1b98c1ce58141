"""The ``apply_landed_webhooks`` multi-asset (run by the ``process_webhooks`` job): one run claims and applies landed webhooks of one shard.

A sensor-launched run stays alive while idle, woken by the receiver's NOTIFY (see
:mod:`wa_core.processing.runner`), and rolls over after ``PROCESSING_RUN_MAX_SECONDS``: it
hands over to the shard's next run, which the sensor starts shortly before, so run history
shows one run per shard per rollover period with that period's figures.
"""

import time

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    DagsterRunStatus,
    MaterializeResult,
    MetadataValue,
    RunsFilter,
    multi_asset,
)
from pydantic import Field

import sqlalchemy as sa

from wa_core.backlog import OrgBacklog, backlog_by_organization, lane_label
from wa_core.db.schema import organizations
from wa_pipelines.defs.ingest.tables import BINDINGS, PROCESSED_TABLES, RAW_WEBHOOKS
from wa_core.processing.handlers.number_health import NUMBER_FIELDS
from wa_core.processing.handlers.templates import TEMPLATE_FIELDS
from wa_core.processing.runner import RunStats, run_processing
from wa_pipelines.resources import AppDatabase

#: which tables a field's items write to (for materialisation metadata)
FIELD_TABLES = {
    "messages": ("whatsapp_messages", "whatsapp_message_statuses", "whatsapp_contacts"),
    "history": ("whatsapp_messages", "whatsapp_contacts"),
    "smb_message_echoes": ("whatsapp_messages", "whatsapp_contacts"),
    "smb_app_state_sync": ("whatsapp_contacts",),
    "account_update": ("whatsapp_connections",),
    **{f: ("whatsapp_templates",) for f in TEMPLATE_FIELDS},
    **{f: ("whatsapp_number_health",) for f in (*NUMBER_FIELDS, "security")},
    "account_review_update": ("whatsapp_waba_health",),
    "business_capability_update": ("whatsapp_waba_health",),
    "account_alerts": ("whatsapp_account_alerts",),
}


#: The shard a run works on (0..PROCESSING_SHARDS-1), set by the sensor; dagster.yaml limits
#: runs per unique value to 2 (the shard's run and, during a rollover, its successor).
SHARD_TAG = "wa/shard"
#: PROCESSING_SHARDS when the run was requested.
SHARDS_TAG = "wa/shards"
#: once a run sees its successor STARTED it keeps claiming this long (seconds), so that the
#: successor is past its start-up and claiming before the old run stops
HANDOVER_GRACE_SECONDS = 5.0
#: a progress line in the run's log at most this often (seconds)
PROGRESS_LOG_SECONDS = 60.0


class ProcessingConfig(Config):
    """Per-run limits; unset values come from the ``PROCESSING_*`` settings."""

    shard: int = Field(default=0, ge=0, description="The shard this run claims (0..shards-1).")
    shards: int = Field(default=1, ge=1, description="How many shards the lanes are split into (PROCESSING_SHARDS).")
    batch_size: int | None = Field(default=None, description="Rows claimed per batch.")
    max_seconds: float | None = Field(default=None, description="Stop claiming after this long (seconds): the rollover.")
    idle_exit_seconds: float | None = Field(
        default=0.0,
        description=(
            "End after this long with nothing to do (seconds); null stays alive until the rollover. 0 drains what is "
            "waiting and ends, which is what a manual run wants; the sensor passes PROCESSING_IDLE_EXIT_SECONDS "
            "(unset: null)."
        ),
    )


def _handover(context: AssetExecutionContext, config: ProcessingConfig, max_seconds: float, lead: float):
    """``should_stop`` for the run: True ``HANDOVER_GRACE_SECONDS`` after a newer STARTED run of
    the same shard appeared; asks Dagster only in the last ``lead`` seconds of the run."""
    ask_from = time.monotonic() + max_seconds - lead
    record = context.instance.get_run_record_by_id(context.run_id)
    created = record.create_timestamp if record else None
    seen_at: list[float] = []

    def successor_up() -> bool:
        if time.monotonic() < ask_from or created is None:
            return False
        if not seen_at:
            runs = context.instance.get_run_records(
                RunsFilter(
                    job_name=context.dagster_run.job_name,
                    statuses=[DagsterRunStatus.STARTED],
                    tags={SHARD_TAG: str(config.shard)},
                    created_after=created,
                ),
                limit=5,
            )
            if not any(r.dagster_run.run_id != context.run_id for r in runs):
                return False
            seen_at.append(time.monotonic())
            context.log.info(f"shard {config.shard}: successor is up; handing over in {HANDOVER_GRACE_SECONDS:g}s")
        return time.monotonic() - seen_at[0] >= HANDOVER_GRACE_SECONDS

    return successor_up


def _backlog_markdown(backlog: list[OrgBacklog]) -> str:
    lines = [
        "| organization | claimable | in flight | waiting retry | claimed last minute | oldest claimable (UTC) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for b in backlog:
        name = lane_label(b.organization_id, b.organization_external_id)
        oldest = b.oldest_claimable_at.strftime("%Y-%m-%d %H:%M:%S") if b.oldest_claimable_at else ""
        lines.append(f"| {name} | {b.claimable} | {b.in_flight} | {b.waiting_retry} | {b.claimed_last_minute} | {oldest} |")
    return "\n".join(lines) if backlog else "no backlog"


@multi_asset(
    name="apply_landed_webhooks",
    specs=[
        AssetSpec(key, description=text, deps=[RAW_WEBHOOKS.key, BINDINGS.key], group_name="processing", kinds={"sql"})
        for key, text in PROCESSED_TABLES.items()
    ],
    can_subset=False,
    description="Claim landed webhooks and apply every entry × change × item to the app tables.",
)
def apply_landed_webhooks(context: AssetExecutionContext, config: ProcessingConfig, app_db: AppDatabase):
    """Process landed webhooks of one shard until the rollover (or idle exit, or the handover to
    the shard's next run); report counts per outcome, field and error kind, and the run's pace."""
    settings = app_db.settings
    engine = app_db.get_engine()
    max_seconds = settings.processing_run_max_seconds if config.max_seconds is None else config.max_seconds
    logged_at = [time.monotonic()]

    def progress(stats: RunStats) -> None:
        if time.monotonic() - logged_at[0] >= PROGRESS_LOG_SECONDS:
            logged_at[0] = time.monotonic()
            context.log.info(f"shard {stats.shard}: batch {stats.batches}, {stats.webhooks} webhooks so far, {dict(stats.by_status)}")

    context.log.info(f"shard {config.shard} of {config.shards}: claiming for up to {max_seconds:g}s")
    stats = run_processing(
        engine,
        settings,
        batch_size=config.batch_size,
        max_seconds=max_seconds,
        idle_exit_seconds=config.idle_exit_seconds if config.idle_exit_seconds is not None else float("inf"),
        on_batch=progress,
        shard=config.shard,
        shards=config.shards,
        should_stop=_handover(context, config, max_seconds, settings.processing_rollover_lead_seconds),
    )
    context.log.info(
        f"shard {stats.shard}: processed {stats.webhooks} webhooks in {stats.seconds:.1f}s ({stats.ended}): {dict(stats.by_status)}; "
        f"items {stats.items_processed} processed, {stats.items_ignored} ignored, {stats.items_failed} failed; "
        f"fields {dict(stats.by_field)}; errors {dict(stats.by_error)}; wakes {dict(stats.wakes)}"
    )
    with engine.connect() as conn:
        backlog = backlog_by_organization(conn)
        ids = [k for k in stats.by_organization if k is not None]
        names = dict(conn.execute(sa.select(organizations.c.id, organizations.c.external_id).where(organizations.c.id.in_(ids))).all()) if ids else {}
    touched = {table for fieldname in stats.by_field for table in FIELD_TABLES.get(fieldname, ())}
    common = {
        "shard": stats.shard,
        "shards": stats.shards,
        "batches": stats.batches,
        "webhooks": stats.webhooks,
        "webhooks_processed": stats.by_status.get("processed", 0),
        "webhooks_failed": stats.by_status.get("failed", 0),
        "webhooks_dead": stats.by_status.get("dead", 0),
        "items_processed": stats.items_processed,
        "items_ignored": stats.items_ignored,
        "items_failed": stats.items_failed,
        "errors_by_kind": MetadataValue.json(dict(stats.by_error)),
        "fields": MetadataValue.json(dict(stats.by_field)),
        "run_seconds": round(stats.seconds, 2),
        "busy_seconds": round(stats.busy_seconds, 2),
        "items_per_second": round(stats.items_per_second, 1),
        "ended": stats.ended,
        "wakes": MetadataValue.json(dict(stats.wakes)),
        "throttled_claims": stats.throttled_claims,
        "backlog_claimable": sum(b.claimable for b in backlog),
        "backlog_organizations": sum(1 for b in backlog if b.claimable),
        "backlog_by_organization": MetadataValue.md(_backlog_markdown(backlog)),
        "processed_by_organization": MetadataValue.json(
            {lane_label(k, names.get(k)): v for k, v in stats.by_organization.items()}
        ),
    }
    for key in PROCESSED_TABLES:
        yield MaterializeResult(asset_key=AssetKey(key), metadata={**common, "written_this_run": key in touched})
