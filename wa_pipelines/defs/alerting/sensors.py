"""Alert sensors: a failed Dagster run becomes a ``run_failed`` alert through the notifier.

A run canceled on purpose (an operator's Terminate, the stop of ``wa-dev up``) is no failure:
Dagster can still end such a run FAILURE (its code server fails a run whose worker exited
without finishing it, which is what the worker of a run terminated while starting does), so a
failed run whose event log records a termination request raises no alert
(:func:`canceled_on_purpose`).

Failed asset checks raise their own alerts (``asset_check_failed``, from the checks), so no
check sensor is needed here. Alerts are grouped in ``ops_alerts`` per job: a job that keeps
failing is re-sent at most once per ``ALERT_REPEAT_SECONDS``; the job's next successful run
resolves the alert (``run_recovery_alerts``), so a later failure is news again and is sent.
"""

from __future__ import annotations

import re

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)

from wa_pipelines.resources import AppDatabase
from wa_core.alerts import Alert, get_notifier

#: longest failure message carried by an alert (characters)
MAX_MESSAGE_CHARS = 300

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_LONG_DIGITS = re.compile(r"\+?\d{8,}")


def scrub(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line, e-mail addresses and digit runs of 8 or more (phone numbers,
    WhatsApp ids) replaced by ``<email>``/``<number>``, cut to ``limit`` characters."""
    text = " ".join(str(text or "").split())
    text = _LONG_DIGITS.sub("<number>", _EMAIL.sub("<email>", text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _root_error_type(error) -> str | None:
    """The class name of the user's exception under Dagster's wrapping errors."""
    seen = 0
    while error is not None and seen < 10:
        cause = getattr(error, "cause", None)
        if cause is None or not str(getattr(error, "cls_name", "")).startswith("Dagster"):
            break
        error, seen = cause, seen + 1
    return getattr(error, "cls_name", None)


def run_failure_alert(run: DagsterRun, failure_event: DagsterEvent | None, step_failures: list[DagsterEvent] | None = None) -> Alert:
    """The ``run_failed`` alert for a failed run: key = job name; summary with the run id and
    Dagster's failure message (scrubbed, ≤ 300 characters); details with the run id, the
    failed step keys and their error types (never the exception messages, which may carry
    payload values)."""
    message = scrub(getattr(failure_event, "message", None) or "run failed")
    steps = []
    for event in step_failures or []:
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        steps.append({"step": event.step_key, "error_type": _root_error_type(error)})
    details = {"run_id": run.run_id, "job_name": run.job_name, "message": message}
    if steps:
        details["failed_steps"] = steps[:10]
    return Alert(
        "run_failed",
        run.job_name,
        f"run {run.run_id[:8]} of {run.job_name} failed: {message}",
        severity="error",
        details=details,
    )


def canceled_on_purpose(instance: DagsterInstance, run: DagsterRun) -> bool:
    """True when ``run`` is CANCELED or CANCELING, or its event log records a termination request
    (``RUN_CANCELING``: the UI's Terminate, ``wa-dev up``'s stop, any ``run_coordinator.cancel_run``),
    whatever status the run ended with."""
    if run.status in (DagsterRunStatus.CANCELED, DagsterRunStatus.CANCELING):
        return True
    return bool(instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_CANCELING, limit=1).records)


@run_failure_sensor(
    name="run_failure_alerts",
    default_status=DefaultSensorStatus.RUNNING,
    description="Send a run_failed alert (log, Sentry, Slack) when any run of this code location fails (not one canceled on purpose); grouped per job.",
)
def run_failure_alerts(context: RunFailureSensorContext, app_db: AppDatabase) -> None:
    """Notify ``run_failed`` for the failed run (grouped per job name in ``ops_alerts``), unless
    it was canceled on purpose (:func:`canceled_on_purpose`)."""
    run = context.dagster_run
    if canceled_on_purpose(context.instance, run):
        context.log.info(f"no run_failed alert for {run.job_name} ({run.run_id}): it was asked to terminate (canceled on purpose)")
        return
    try:
        step_failures = list(context.get_step_failure_events())
    except Exception:  # the run's event log is unreadable: alert without step details
        step_failures = []
    alert = run_failure_alert(context.dagster_run, context.failure_event, step_failures)
    sent = get_notifier(app_db.settings, app_db.get_engine()).notify(alert)
    context.log.info(f"run_failed alert for {context.dagster_run.job_name} ({context.dagster_run.run_id}): {'sent' if sent else 'grouped'}")


@run_status_sensor(
    name="run_recovery_alerts",
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Resolve a job's open run_failed alert when a run of that job succeeds.",
)
def run_recovery_alerts(context: RunStatusSensorContext, app_db: AppDatabase) -> None:
    """Resolve ``run_failed:<job>`` (no-op when that alert is not open)."""
    job = context.dagster_run.job_name
    if get_notifier(app_db.settings, app_db.get_engine()).resolve("run_failed", job):
        context.log.info(f"run_failed alert for {job} resolved by run {context.dagster_run.run_id}")


ALERT_SENSORS: list = [run_failure_alerts, run_recovery_alerts]
