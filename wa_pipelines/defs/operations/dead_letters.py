"""Operator jobs: replay or purge dead letters, and the retention of processed bodies."""

from datetime import datetime
from typing import Any

from dagster import Config, Failure, OpExecutionContext, op
from pydantic import Field

from wa_core.bindings import BindingConflict
from wa_core.dead_letters import DeadLetterSelection, assign_waba, purge_dead_letters, purge_processed_bodies, replay_dead_letters
from wa_core.explorer.rejections import purge_rejections
from wa_core.processing.controls import organization_ref, waba_ref
from wa_pipelines.defs.factories import one_op_job, running_schedule
from wa_pipelines.resources import AppDatabase


class DeadLetterConfig(Config):
    """Which dead webhooks to act on (filters combine with AND; at least one, or ``everything``)."""

    ids: list[int] = Field(default_factory=list, description="whatsapp_webhook_logs ids")
    received_from: str | None = Field(default=None, description="ISO time, inclusive (UTC if no offset)")
    received_to: str | None = Field(default=None, description="ISO time, exclusive (UTC if no offset)")
    error_kind: str | None = Field(default=None, description="e.g. unroutable, invalid_json, handler_error")
    organization: str | None = Field(default=None, description="organization id or external id")
    everything: bool = Field(default=False, description="select every dead webhook (no other filter needed)")
    dry_run: bool = Field(default=False, description="replay only: list what would be replayed")

    def selection(self) -> DeadLetterSelection:
        """The :class:`DeadLetterSelection` this config describes."""
        parse = lambda v: datetime.fromisoformat(v) if v else None  # noqa: E731
        return DeadLetterSelection(
            ids=list(self.ids),
            received_from=parse(self.received_from),
            received_to=parse(self.received_to),
            error_kind=self.error_kind,
            organization=self.organization,
            everything=self.everything,
        )


@op(description="Put the selected dead webhooks back in line; the sensor then processes them.")
def replay_dead_letters_op(context: OpExecutionContext, config: DeadLetterConfig, app_db: AppDatabase) -> list[int]:
    with app_db.get_engine().begin() as conn:
        ids = replay_dead_letters(conn, config.selection(), dry_run=config.dry_run)
    verb = "would replay" if config.dry_run else "replayed"
    context.log.info(f"{verb} {len(ids)} dead webhooks: {ids[:50]}{' …' if len(ids) > 50 else ''}")
    context.add_output_metadata({"replayed": 0 if config.dry_run else len(ids), "selected": len(ids), "ids": ids[:1000]})
    return ids


@op(description="Remove the bodies of the selected dead webhooks (personal data), keeping their metadata.")
def purge_dead_letters_op(context: OpExecutionContext, config: DeadLetterConfig, app_db: AppDatabase) -> list[int]:
    with app_db.get_engine().begin() as conn:
        ids = purge_dead_letters(conn, config.selection())
    context.log.info(f"purged the bodies of {len(ids)} dead webhooks")
    context.add_output_metadata({"purged": len(ids), "ids": ids[:1000]})
    return ids


@op(description="Retention: remove bodies of processed webhooks older than RETENTION_DAYS, and records of rejected deliveries older than WEBHOOK_REJECTION_RETENTION_DAYS.")
def purge_webhook_bodies_op(context: OpExecutionContext, app_db: AppDatabase) -> int:
    days = app_db.settings.retention_days
    rejection_days = app_db.settings.webhook_rejection_retention_days
    with app_db.get_engine().begin() as conn:
        count = purge_processed_bodies(conn, days)
        rejected = purge_rejections(conn, rejection_days)
    context.log.info(f"removed the bodies of {count} processed webhooks older than {days:g} days")
    context.log.info(f"deleted {rejected} records of rejected deliveries older than {rejection_days:g} days")
    context.add_output_metadata({"purged": count, "retention_days": days, "rejections_deleted": rejected})
    return count


replay_dead_letters_job = one_op_job("replay_dead_letters", replay_dead_letters_op, "Put the selected dead webhooks back in line (config: ids, time range, error kind, organization).")


purge_dead_letters_job = one_op_job("purge_dead_letters", purge_dead_letters_op, "Remove the bodies of the selected dead webhooks, keeping their metadata.")


purge_webhook_bodies_job = one_op_job("purge_webhook_bodies", purge_webhook_bodies_op, "Retention: remove bodies of processed webhooks older than RETENTION_DAYS.")


retention_schedule = running_schedule("purge_webhook_bodies_daily", purge_webhook_bodies_job, "30 3 * * *", "UTC")


class AssignWabaConfig(Config):
    """An unclaimed WABA and the organization it belongs to. Both may be written as a string or
    a number: run config typed by hand in the launchpad often has ``waba_id: 100000000000777``."""

    waba_id: Any = Field(description="the WABA id from the PARTNER_ADDED webhook (string or number)")
    organization: Any = Field(description="organization id or external id (string or number)")


@op(description="Bind an unclaimed WABA to an organization and replay its waiting PARTNER_ADDED webhooks.")
def assign_waba_op(context: OpExecutionContext, config: AssignWabaConfig, app_db: AppDatabase) -> dict:
    try:
        waba_id, organization = waba_ref(config.waba_id), organization_ref(config.organization)
        with app_db.get_engine().begin() as conn:
            result = assign_waba(conn, waba_id, organization)
    except (ValueError, LookupError, BindingConflict) as exc:  # malformed, unknown or taken: a clear failure, nothing changed
        raise Failure(description=str(exc)) from exc
    context.log.info(f"WABA {waba_id} bound to {organization}; replayed {len(result['replayed'])} webhooks")
    context.add_output_metadata({"connection_id": result["connection_id"], "replayed": result["replayed"]})
    return result


assign_waba_job = one_op_job("assign_waba", assign_waba_op, "Operator: give an unclaimed WABA to its organization.")
