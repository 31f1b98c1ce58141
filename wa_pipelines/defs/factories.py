"""Factories for the definitions that share one shape, so each shape is written once.

- :func:`one_op_job`: a job that runs one op with the in-process executor (a run starts in
  seconds on a small machine instead of one subprocess per step), tagged ``wa/queue`` so the
  run queue of ``dagster/dagster.yaml`` limits it (``maintenance``: one at a time;
  ``onboarding``: two).
- :func:`running_schedule`: a cron schedule that runs as soon as it is deployed
  (``DefaultScheduleStatus.RUNNING``).

Names, crons, timezones, tags and descriptions are given by the caller: run history, schedule
state and operators' habits hang on them (``tests/pipelines/test_definitions.py`` snapshots
the names).
"""

from __future__ import annotations

from dagster import DefaultScheduleStatus, JobDefinition, OpDefinition, ScheduleDefinition, in_process_executor, job

#: the run queue of replays, purges (webhook bodies, dead letters, Dagster runs), WABA
#: assignment and the nightly checks: one run at a time (``dagster/dagster.yaml``)
MAINTENANCE_QUEUE = "maintenance"


def one_op_job(name: str, op_def: OpDefinition, description: str, queue: str = MAINTENANCE_QUEUE) -> JobDefinition:
    """A job named ``name`` that runs ``op_def`` once, with the in-process executor and the tag
    ``{"wa/queue": queue}``; ``description`` is what the Dagster UI shows."""

    @job(name=name, description=description, executor_def=in_process_executor, tags={"wa/queue": queue})
    def _one_op_job() -> None:
        op_def()

    return _one_op_job


def running_schedule(
    name: str, job_def: JobDefinition, cron: str, timezone: str, description: str | None = None
) -> ScheduleDefinition:
    """A schedule named ``name`` that launches ``job_def`` on ``cron`` in ``timezone`` (an IANA
    name), running from deployment (``DefaultScheduleStatus.RUNNING``)."""
    return ScheduleDefinition(
        name=name,
        job=job_def,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description=description,
    )
