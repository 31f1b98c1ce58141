"""Operator jobs that pause and resume processing of one organization or one WABA.

Thin wiring over :func:`wa_core.processing.controls.set_paused`: webhooks of a paused target
keep landing and wait; resuming makes them claimable again (the processing sensor picks them
up). Both jobs are idempotent. Config: exactly one of ``organization`` (id or external id)
and ``waba_id`` (a string or a number: run config written by hand often has the WABA id as
a number).
"""

from typing import Any

from dagster import Config, Failure, OpExecutionContext, in_process_executor, job, op
from pydantic import Field

from wa_core.processing.controls import set_paused
from wa_pipelines.resources import AppDatabase


class ProcessingControlConfig(Config):
    """The organization or the WABA to pause or resume (exactly one)."""

    organization: Any = Field(default=None, description="organization id or external id (string or number)")
    waba_id: Any = Field(default=None, description="WABA id (string or number)")
    reason: str | None = Field(default=None, description="pause only: why (shown in the admin API's controls list)")


def _apply(context: OpExecutionContext, config: ProcessingControlConfig, app_db: AppDatabase, paused: bool) -> dict:
    try:
        with app_db.get_engine().begin() as conn:
            state = set_paused(
                conn, organization=config.organization, waba_id=config.waba_id, paused=paused,
                reason=config.reason if paused else None,
            )
    except (ValueError, LookupError) as exc:  # malformed or unknown target: a clear failure, nothing changed
        raise Failure(description=str(exc)) from exc
    result = state.as_dict()
    what = f"organization {state.organization_external_id}" if state.target == "organization" else f"WABA {state.waba_id}"
    verb = "paused" if paused else "resumed"
    context.log.info(
        f"{what} {verb}" + ("" if state.changed else f" already ({'paused' if state.paused else 'running'})")
        + f"; {state.waiting} claimable webhook(s) of it {'wait' if state.paused else 'are released'}"
    )
    context.add_output_metadata({k: v for k, v in result.items() if v is not None})
    return result


@op(description="Pause processing of one organization or WABA: its webhooks keep landing and wait.")
def pause_processing_op(context: OpExecutionContext, config: ProcessingControlConfig, app_db: AppDatabase) -> dict:
    return _apply(context, config, app_db, True)


@op(description="Resume processing of a paused organization or WABA: its waiting webhooks become claimable.")
def resume_processing_op(context: OpExecutionContext, config: ProcessingControlConfig, app_db: AppDatabase) -> dict:
    return _apply(context, config, app_db, False)


@job(name="pause_processing", executor_def=in_process_executor, tags={"wa/queue": "maintenance"})
def pause_processing_job():
    """Operator: pause processing of one organization or WABA (config: organization or waba_id, reason)."""
    pause_processing_op()


@job(name="resume_processing", executor_def=in_process_executor, tags={"wa/queue": "maintenance"})
def resume_processing_job():
    """Operator: resume processing of a paused organization or WABA (config: organization or waba_id)."""
    resume_processing_op()
