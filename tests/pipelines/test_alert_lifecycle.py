"""Alerts that open also close: a job's ``run_failed`` alert is resolved by its next successful
run (a later failure is sent again; a run canceled on purpose is no failure), and the
per-error-kind ``dead_letter`` alerts raised by processing are resolved by the
``dead_letters_24h`` check once no dead row of that kind is recent."""

import uuid
from datetime import timedelta

import sqlalchemy as sa
from dagster import Config, DagsterInstance, DagsterRun, DagsterRunStatus, build_run_status_sensor_context, job, op
from sqlalchemy.engine import Engine

from wa_pipelines.defs.alerting.sensors import ALERT_SENSORS, run_failure_alerts, run_recovery_alerts
from wa_pipelines.resources import AppDatabase
from tests.conftest import fixture_bytes
from tests.helpers import land
from wa_pipelines.definitions import defs
from wa_core.processing.runner import run_processing
from wa_core.db.schema import ops_alerts, utcnow, whatsapp_webhook_logs
from wa_core.settings import Settings


class Flaky(Config):
    fail: bool


@op
def sometimes(config: Flaky) -> None:
    if config.fail:
        raise RuntimeError("boom")


@job
def flaky_job() -> None:
    sometimes()


def _run(instance: DagsterInstance, fail: bool):
    return flaky_job.execute_in_process(
        instance=instance, raise_on_error=False, run_config={"ops": {"sometimes": {"config": {"fail": fail}}}}
    )


def _evaluate(sensor, result, instance: DagsterInstance, event, pg_url: str) -> None:
    with build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"app_db": AppDatabase(database_url=pg_url)},
    ) as context:
        sensor(context)


def _alert(engine: Engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(ops_alerts).where(ops_alerts.c.fingerprint == "run_failed:flaky_job")).one_or_none()


def test_a_successful_run_resolves_the_jobs_failure_alert(settings: Settings, engine: Engine, pg_url: str) -> None:
    assert run_recovery_alerts in ALERT_SENSORS
    with DagsterInstance.ephemeral() as instance:
        failed = _run(instance, fail=True)
        _evaluate(run_failure_alerts, failed, instance, failed.get_run_failure_event(), pg_url)
        first = _alert(engine)
        assert first is not None and first.resolved_at is None

        ok = _run(instance, fail=False)
        assert ok.success
        success_event = next(e for e in ok.all_events if e.event_type_value == "PIPELINE_SUCCESS")
        _evaluate(run_recovery_alerts, ok, instance, success_event, pg_url)
        assert _alert(engine).resolved_at is not None

        again = _run(instance, fail=True)  # failing again after recovering is news: reopened and sent
        _evaluate(run_failure_alerts, again, instance, again.get_run_failure_event(), pg_url)
        reopened = _alert(engine)
        assert reopened.resolved_at is None and reopened.occurrences == 1 and reopened.last_sent_at > first.last_sent_at


def _open(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(ops_alerts.c.fingerprint).where(ops_alerts.c.resolved_at.is_(None))).scalars())


def test_dead_letter_alerts_close_when_no_recent_dead_row_has_their_kind(settings: Settings, engine: Engine) -> None:
    land(engine, fixture_bytes("not_json.txt"))
    run_processing(engine, settings, idle_exit_seconds=0)
    assert "dead_letter:invalid_json" in _open(engine)  # raised by processing when the row went dead

    refresh = defs.resolve_job_def("refresh_dashboards")
    with DagsterInstance.ephemeral() as instance:
        assert refresh.execute_in_process(instance=instance).success
    assert {"dead_letter:invalid_json", "dead_letter:dead_letters_24h"} <= _open(engine)  # still recent: kept open

    with engine.begin() as conn:  # a day later
        conn.execute(sa.update(whatsapp_webhook_logs).values(received_at=utcnow() - timedelta(hours=25)))
    with DagsterInstance.ephemeral() as instance:
        assert refresh.execute_in_process(instance=instance).success
    assert not {f for f in _open(engine) if f.startswith("dead_letter:")}


def _evaluate_failure(instance: DagsterInstance, run_id: str, event, pg_url: str) -> None:
    with build_run_status_sensor_context(
        sensor_name=run_failure_alerts.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources={"app_db": AppDatabase(database_url=pg_url)},
    ) as context:
        run_failure_alerts(context)


def test_runs_canceled_on_purpose_raise_no_run_failed_alert_and_real_failures_do(engine: Engine, pg_url: str) -> None:
    with DagsterInstance.ephemeral() as instance:
        # terminated while starting: the worker skips a CANCELING run that has not started, and
        # Dagster's code server then fails the run whose worker exited without finishing it
        starting = instance.add_run(DagsterRun(job_name="flaky_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTING))
        instance.report_run_canceling(starting)
        instance.report_engine_event("Run execution process unexpectedly exited with code 0.", starting)
        failed = instance.report_run_failed(instance.get_run_by_id(starting.run_id))
        assert instance.get_run_by_id(starting.run_id).status == DagsterRunStatus.FAILURE
        _evaluate_failure(instance, starting.run_id, failed, pg_url)
        # canceled cleanly (the UI's Terminate of a started run, `wa-dev up`'s stop)
        started = instance.add_run(DagsterRun(job_name="flaky_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED))
        instance.report_run_canceling(started)
        canceled = instance.report_run_canceled(instance.get_run_by_id(started.run_id))
        _evaluate_failure(instance, started.run_id, canceled, pg_url)
        assert _alert(engine) is None

        # a run killed with no termination request (the OOM killer, a lost machine) is a failure
        killed = instance.add_run(DagsterRun(job_name="flaky_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED))
        event = instance.report_run_failed(killed, message="Execution was interrupted unexpectedly.")
        _evaluate_failure(instance, killed.run_id, event, pg_url)
        assert _alert(engine) is not None and _alert(engine).occurrences == 1
        # and so is a run whose op raised
        result = _run(instance, fail=True)
        _evaluate(run_failure_alerts, result, instance, result.get_run_failure_event(), pg_url)
        assert _alert(engine).occurrences == 2
