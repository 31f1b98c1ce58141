"""Coexistence syncs, supervised: the stall check (every 15 minutes) and the operator's
re-request job. The rules are in :mod:`wa_core.coexistence_sync` (Meta, "Onboarding WhatsApp Business app users")."""

from dagster import Config, Failure, MetadataValue, OpExecutionContext, op
from pydantic import Field

from wa_pipelines.defs.factories import one_op_job, running_schedule
from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys


@op(description="Mark history syncs stalled (accepted by Meta, no history webhook within HISTORY_STALL_HOURS) and alert.")
def check_coexistence_syncs_op(context: OpExecutionContext, app_db: AppDatabase) -> dict:
    from wa_core.coexistence_sync import check_stalled_syncs

    counts = check_stalled_syncs(app_db.get_engine(), app_db.settings)
    context.log.info(f"coexistence syncs: {counts['stalled']} newly stalled, {counts['recovered']} stall alerts resolved")
    context.add_output_metadata(dict(counts))
    return counts


check_coexistence_syncs_job = one_op_job(
    "check_coexistence_syncs", check_coexistence_syncs_op,
    "Every 15 minutes: history syncs accepted by Meta without any history webhook after HISTORY_STALL_HOURS are stalled (alert).",
)

check_coexistence_syncs_schedule = running_schedule(
    "check_coexistence_syncs_every_15_minutes", check_coexistence_syncs_job, "*/15 * * * *", "UTC"
)


class RequestSyncConfig(Config):
    """Which number's sync to request again."""

    phone_number_id: str = Field(description="whatsapp_configs.phone_number_id of a coexistence number")
    sync_type: str = Field(default="history", description="history or smb_app_state_sync (contacts)")


@op(description="Re-request a coexistence number's history or contact sync, where Meta's rules allow it.")
def request_coexistence_sync_op(
    context: OpExecutionContext, config: RequestSyncConfig, app_db: AppDatabase, meta_graph: MetaGraph, token_keys: TokenKeys
) -> str:
    """Sends ``POST /{phone-number-id}/smb_app_data`` through :func:`~wa_core.coexistence_sync.rerequest`;
    a refusal (within 24 h of the last request, sync window closed, history complete) or
    Meta's error fails the run with the reason and the next allowed UTC time."""
    from wa_core.coexistence_sync import UnknownNumber, rerequest

    try:
        with meta_graph.client() as graph:
            result = rerequest(app_db.get_engine(), graph, token_keys.cipher(), config.phone_number_id, config.sync_type)
    except (UnknownNumber, ValueError) as exc:
        raise Failure(description=str(exc)) from exc
    next_at = result.next_allowed_at.isoformat() if result.next_allowed_at else "not before a new onboarding"
    metadata = {"outcome": result.outcome, "message": result.message, "next_allowed_at": MetadataValue.text(next_at)}
    if result.outcome != "sent":
        raise Failure(description=f"{result.outcome}: {result.message}", metadata=metadata)
    context.log.info(result.message)
    context.add_output_metadata({**metadata, "request_id": result.request_id or ""})
    return result.request_id or ""


request_coexistence_sync_job = one_op_job(
    "request_coexistence_sync", request_coexistence_sync_op,
    "Operator: request a coexistence number's history (or contact) sync again; refused within 24 h of the last request "
    "or once Meta's 24 h sync window after onboarding has closed, with the next allowed time.",
    queue="onboarding",
)
