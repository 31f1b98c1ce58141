"""The ``apply_landed_webhooks`` multi-asset (run by the ``process_webhooks`` job): one run claims and applies landed webhooks.

A run keeps working while webhooks keep landing (see :mod:`wa_core.processing.runner`),
so the sensor starts one only when there is a backlog and none is in flight.
"""


from dagster import AssetExecutionContext, AssetKey, AssetSpec, Config, MaterializeResult, MetadataValue, multi_asset
from pydantic import Field

import sqlalchemy as sa

from wa_core.backlog import OrgBacklog, backlog_by_organization, lane_label
from wa_core.db.schema import organizations
from wa_pipelines.defs.ingest.tables import BINDINGS, PROCESSED_TABLES, RAW_WEBHOOKS
from wa_core.processing.runner import RunStats, run_processing
from wa_pipelines.resources import AppDatabase

#: which tables a field's items write to (for materialisation metadata)
FIELD_TABLES = {
    "messages": ("whatsapp_messages", "whatsapp_message_statuses", "whatsapp_contacts"),
    "history": ("whatsapp_messages", "whatsapp_contacts"),
    "smb_message_echoes": ("whatsapp_messages", "whatsapp_contacts"),
    "smb_app_state_sync": ("whatsapp_contacts",),
    "account_update": ("whatsapp_connections",),
}


class ProcessingConfig(Config):
    """Per-run limits; unset values come from the ``PROCESSING_*`` settings."""

    batch_size: int | None = Field(default=None, description="Rows claimed per batch.")
    max_seconds: float | None = Field(default=None, description="Stop claiming after this long (seconds).")
    idle_exit_seconds: float = Field(
        default=0.0,
        description=(
            "End after this long with nothing to do (seconds). 0 drains what is waiting and ends, which is what a "
            "manual run wants; the sensor sets PROCESSING_IDLE_EXIT_SECONDS so its runs linger while webhooks arrive."
        ),
    )


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
    """Process landed webhooks until idle; report counts per outcome, field and error kind."""
    settings = app_db.settings
    engine = app_db.get_engine()

    def progress(stats: RunStats) -> None:
        if stats.batches % 50 == 1:
            context.log.info(f"batch {stats.batches}: {stats.webhooks} webhooks so far, {dict(stats.by_status)}")

    stats = run_processing(
        engine,
        settings,
        batch_size=config.batch_size,
        max_seconds=config.max_seconds,
        idle_exit_seconds=config.idle_exit_seconds,
        on_batch=progress,
    )
    context.log.info(
        f"processed {stats.webhooks} webhooks in {stats.seconds:.1f}s: {dict(stats.by_status)}; "
        f"items {stats.items_processed} processed, {stats.items_ignored} ignored, {stats.items_failed} failed; "
        f"fields {dict(stats.by_field)}; errors {dict(stats.by_error)}"
    )
    with engine.connect() as conn:
        backlog = backlog_by_organization(conn)
        ids = [k for k in stats.by_organization if k is not None]
        names = dict(conn.execute(sa.select(organizations.c.id, organizations.c.external_id).where(organizations.c.id.in_(ids))).all()) if ids else {}
    touched = {table for fieldname in stats.by_field for table in FIELD_TABLES.get(fieldname, ())}
    common = {
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
