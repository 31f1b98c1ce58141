"""The Dagster part of the doctor (:mod:`wa_pipelines.doctor`): the daemon's heartbeats and our
sensors, read from a real Dagster instance in a temporary DAGSTER_HOME, and the subprocess
``wa-onboarding doctor`` runs it in."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from dagster import DagsterInstance
from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus
from dagster._daemon.types import DaemonHeartbeat

from wa_pipelines import doctor
from wa_pipelines.definitions import defs
from wa_webhook.doctor import dagster_checks as dagster_subprocess_checks

SENSORS = sorted(s.name for s in defs.get_repository_def().sensor_defs)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def test_no_dagster_home_is_a_skip_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    [check] = doctor.dagster_checks()
    assert check.status == "skip" and "DAGSTER_HOME" in check.detail
    [check] = doctor.dagster_checks(str(tmp_path))  # a folder without dagster.yaml
    assert check.status == "skip" and "dagster.yaml" in check.detail
    [check] = dagster_subprocess_checks()
    assert check.status == "skip" and "DAGSTER_HOME" in check.detail


def test_a_daemon_without_heartbeat_fails_and_a_beating_one_passes(home: Path) -> None:
    checks = by_name(doctor.dagster_checks())
    assert checks["dagster.daemon"].status == "fail" and "never" in checks["dagster.daemon"].detail
    assert all(checks[f"dagster.sensor.{name}"].status == "warn" for name in SENSORS)  # default RUNNING, no tick yet
    with DagsterInstance.get() as instance:
        for daemon_type in instance.get_required_daemon_types():
            instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), daemon_type, "doctor-test"))
    checks = by_name(doctor.dagster_checks())
    assert checks["dagster.daemon"].status == "ok"


def test_the_subprocess_reports_the_same_checks(home: Path) -> None:
    checks = by_name(dagster_subprocess_checks())
    assert checks["dagster.daemon"].status == "fail" and checks["dagster.daemon"].fix
    assert {f"dagster.sensor.{name}" for name in SENSORS} <= set(checks)


def _instance(states, ticks):
    return SimpleNamespace(
        all_instigator_state=lambda instigator_type: states,
        get_ticks=lambda origin_id, selector_id, limit: ticks.get(origin_id, []),
    )


def test_a_stopped_sensor_a_stale_or_failed_tick_fails_a_recent_tick_passes() -> None:
    stopped, stale, fresh, failed = SENSORS[0], SENSORS[1], SENSORS[2], SENSORS[3]
    state = lambda name, status: SimpleNamespace(instigator_name=name, status=status, instigator_origin_id=name, selector_id=name)  # noqa: E731
    tick = lambda age: SimpleNamespace(timestamp=time.time() - age, status=TickStatus.SUCCESS)  # noqa: E731
    states = [state(stopped, InstigatorStatus.STOPPED), state(stale, InstigatorStatus.RUNNING), state(fresh, InstigatorStatus.RUNNING),
              state(failed, InstigatorStatus.RUNNING)]
    broken = SimpleNamespace(timestamp=time.time() - 3, status=TickStatus.FAILURE, error=SimpleNamespace(message="OperationalError: no such table\nmore"))
    ticks = {stale: [tick(doctor.TICK_STALE_SECONDS + 60)], fresh: [tick(3)], failed: [broken]}
    checks = by_name(doctor._sensors(_instance(states, ticks)))
    assert checks[f"dagster.sensor.{stopped}"].status == "fail" and "dagster sensor start" in checks[f"dagster.sensor.{stopped}"].fix
    assert checks[f"dagster.sensor.{stale}"].status == "fail" and "last tick" in checks[f"dagster.sensor.{stale}"].detail
    assert checks[f"dagster.sensor.{fresh}"].status == "ok"
    assert checks[f"dagster.sensor.{failed}"].status == "fail" and checks[f"dagster.sensor.{failed}"].detail.endswith("no such table")
