"""Housekeeping of Dagster's own storage: ``purge_dagster_runs`` and the instance settings.

Runs are created in a temporary ``DAGSTER_HOME`` with the project's ``dagster.yaml`` (the
embedded SQLite layout: one event-log file per run). Old runs get their creation time from
the run storage's ``add_historical_run`` (the storage API for importing past runs), so no
clock is frozen and none of our functions is replaced.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import yaml
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
)
from dagster._core.events import StepMaterializationData
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_URL
from wa_pipelines.defs.operations.housekeeping import (
    HOUSEKEEPING_JOBS,
    HOUSEKEEPING_SCHEDULES,
    purge_dagster_runs_job,
    purge_finished_runs,
)
from wa_core.settings import get_settings

PROJECT = Path(__file__).resolve().parents[2]
NOW = datetime.now(timezone.utc)


def _instance_home(tmp_path: Path, flavour: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(PROJECT / "dagster" / flavour, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # as in every Dagster process (the compute logs live under it)
    return home


@pytest.fixture()
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """A Dagster instance in a temporary home configured by the project's dagster.yaml (SQLite)."""
    monkeypatch.setenv("DAGSTER_RUN_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    with DagsterInstance.from_config(str(_instance_home(tmp_path, "dagster.yaml", monkeypatch))) as inst:
        yield inst
    get_settings.cache_clear()


@pytest.fixture()
def pg_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """A Dagster instance configured by dagster.postgres.yaml on a database of its own."""
    name = f"wa_test_dagster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)
    monkeypatch.setenv("DAGSTER_RUN_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    try:
        with DagsterInstance.from_config(str(_instance_home(tmp_path, "dagster.postgres.yaml", monkeypatch))) as inst:
            yield inst
    finally:
        get_settings.cache_clear()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_run(instance: DagsterInstance, status: DagsterRunStatus, age: timedelta, *, events: int = 3, materializes: str | None = None) -> str:
    """A run created ``age`` ago, in ``status``, with ``events`` engine events and captured logs."""
    run = DagsterRun(job_name="process_webhooks", run_id=str(uuid.uuid4()), status=status)
    instance.run_storage.add_historical_run(run, NOW - age)
    for i in range(events):
        instance.report_engine_event(f"event {i}", run)
    if materializes:  # an asset materialisation recorded in this run's event log
        event = DagsterEvent(
            DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=run.job_name,
            event_specific_data=StepMaterializationData(AssetMaterialization(materializes)),
        )
        instance.report_dagster_event(event, run_id=run.run_id)
    with instance.compute_log_manager.capture_logs([run.run_id, "compute_logs", "step"]):
        print(f"output of {run.run_id}")
    return run.run_id


def stored(instance: DagsterInstance, run_id: str) -> bool:
    return instance.get_run_by_id(run_id) is not None


def event_count(instance: DagsterInstance, run_id: str) -> int:
    return len(instance.all_logs(run_id))


def shard(instance: DagsterInstance, run_id: str) -> Path:
    return Path(instance.event_log_storage.path_for_shard(run_id))


def logs_dir(instance: DagsterInstance, run_id: str) -> Path:
    return Path(instance.root_directory) / "storage" / run_id


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_purge_job_deletes_old_finished_runs_with_their_event_logs_only(storage: str, request: pytest.FixtureRequest) -> None:
    instance: DagsterInstance = request.getfixturevalue("instance" if storage == "sqlite" else "pg_instance")
    old = {s: make_run(instance, s, timedelta(days=40)) for s in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)}
    old_in_flight = {s: make_run(instance, s, timedelta(days=40)) for s in (DagsterRunStatus.STARTED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.CANCELING)}
    recent = make_run(instance, DagsterRunStatus.SUCCESS, timedelta(days=29))
    for run_id in old.values():
        assert event_count(instance, run_id) == 3 and logs_dir(instance, run_id).exists()
        assert storage == "postgres" or shard(instance, run_id).exists()

    result = purge_dagster_runs_job.execute_in_process(instance=instance, run_config={"ops": {"purge_dagster_runs_op": {"config": {"page_size": 2}}}})

    assert result.success and result.output_for_node("purge_dagster_runs_op") == 3
    for run_id in old.values():
        assert not stored(instance, run_id)
        assert not logs_dir(instance, run_id).exists(), "captured logs stay on disk"
        if storage == "sqlite":  # the run's own event file is the event log; reading it would recreate it
            assert not shard(instance, run_id).exists(), "the run's SQLite event file stays on disk"
        else:
            assert event_count(instance, run_id) == 0
    for run_id in [*old_in_flight.values(), recent]:
        assert stored(instance, run_id) and event_count(instance, run_id) == 3
    assert stored(instance, result.run_id)
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert meta["deleted"] == 3 and meta["kept_unfinished"] == 3 and meta["failed"] == 0
    assert meta["retention_days"] == 30.0 and meta["pages"] >= 2  # two runs per page: paging was exercised
    assert meta["event_files_removed"] == (3 if storage == "sqlite" else 0)


def test_retention_comes_from_the_setting_and_config_overrides_it(instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    ten_days = make_run(instance, DagsterRunStatus.SUCCESS, timedelta(days=10))
    two_days = make_run(instance, DagsterRunStatus.FAILURE, timedelta(days=2))
    monkeypatch.setenv("DAGSTER_RUN_RETENTION_DAYS", "7")
    get_settings.cache_clear()
    first = purge_dagster_runs_job.execute_in_process(instance=instance)
    assert first.output_for_node("purge_dagster_runs_op") == 1
    assert not stored(instance, ten_days) and stored(instance, two_days)
    override = {"ops": {"purge_dagster_runs_op": {"config": {"older_than_days": 1}}}}
    second = purge_dagster_runs_job.execute_in_process(instance=instance, run_config=override)
    assert second.output_for_node("purge_dagster_runs_op") == 1
    assert not stored(instance, two_days)
    assert stored(instance, first.run_id) and stored(instance, second.run_id)  # seconds old: never due


def test_dry_run_deletes_nothing_and_the_current_run_is_never_deleted(instance: DagsterInstance) -> None:
    old = [make_run(instance, DagsterRunStatus.SUCCESS, timedelta(days=40)) for _ in range(5)]
    dry = purge_finished_runs(instance, 30, page_size=2, dry_run=True)
    assert sorted(dry.deleted) == sorted(old) and dry.pages == 3
    assert all(stored(instance, r) and event_count(instance, r) == 3 for r in old)
    # a run listed in keep_run_ids (the purge's own run) survives even when it is due
    done = purge_finished_runs(instance, 30, page_size=2, keep_run_ids=[old[0]])
    assert sorted(done.deleted) == sorted(old[1:])
    assert stored(instance, old[0]) and not any(stored(instance, r) for r in old[1:])
    # nothing left to do: a second purge is a no-op
    assert purge_finished_runs(instance, 30, page_size=2, keep_run_ids=[old[0]]).deleted == []


def test_the_run_holding_an_assets_latest_materialisation_is_kept(instance: DagsterInstance) -> None:
    older = make_run(instance, DagsterRunStatus.SUCCESS, timedelta(days=50), materializes="org_whatsapp_status")
    latest = make_run(instance, DagsterRunStatus.SUCCESS, timedelta(days=40), materializes="org_whatsapp_status")
    result = purge_finished_runs(instance, 30)
    assert result.deleted == [older] and result.kept_latest_materialization == [latest]
    assert stored(instance, latest)
    event = instance.get_latest_materialization_event(AssetKey("org_whatsapp_status"))
    assert event is not None and event.run_id == latest


def test_bad_arguments_are_refused(instance: DagsterInstance) -> None:
    with pytest.raises(ValueError):
        purge_finished_runs(instance, 0)
    for huge in (1e6, float("inf"), float("nan")):  # "keep forever" must not overflow the cutoff
        with pytest.raises(ValueError):
            purge_finished_runs(instance, huge)
    with pytest.raises(ValueError):
        purge_finished_runs(instance, 30, now=datetime(2030, 1, 1))  # naive: which zone?
    with pytest.raises(ValidationError, match="greater than 0"):  # a zero age would delete every finished run
        purge_dagster_runs_job.execute_in_process(
            instance=instance, run_config={"ops": {"purge_dagster_runs_op": {"config": {"older_than_days": 0}}}}
        )
    with pytest.raises(ValidationError, match="less than or equal to 36500"):
        purge_dagster_runs_job.execute_in_process(
            instance=instance, run_config={"ops": {"purge_dagster_runs_op": {"config": {"older_than_days": 1e12}}}}
        )


def test_daily_schedule_runs_by_default_in_the_maintenance_queue() -> None:
    from wa_pipelines.definitions import defs

    [schedule] = HOUSEKEEPING_SCHEDULES
    assert (schedule.name, schedule.cron_schedule, schedule.execution_timezone) == ("purge_dagster_runs_daily", "0 3 * * *", "UTC")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "purge_dagster_runs" and HOUSEKEEPING_JOBS == [purge_dagster_runs_job]
    assert purge_dagster_runs_job.tags["wa/queue"] == "maintenance"
    assert defs.resolve_job_def("purge_dagster_runs").name == "purge_dagster_runs"
    assert defs.resolve_schedule_def("purge_dagster_runs_daily").job_name == "purge_dagster_runs"


# --- dagster.yaml ---------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["dagster.yaml", "dagster.postgres.yaml"])
def test_instance_yaml_is_valid_and_its_daemon_settings_are_explicit(flavour: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/unused")
    shutil.copy(PROJECT / "dagster" / flavour, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # raises on any key Dagster does not know
    raw = yaml.safe_load((PROJECT / "dagster" / flavour).read_text())
    for daemon in ("sensors", "schedules"):
        assert raw[daemon]["use_threads"] is True and raw[daemon]["num_workers"] >= 1, daemon
    monitoring = raw["run_monitoring"]
    assert monitoring["enabled"] is True
    assert {"start_timeout_seconds", "cancel_timeout_seconds", "max_runtime_seconds", "max_resume_run_attempts", "poll_interval_seconds"} <= set(monitoring)
    assert raw["concurrency"]["runs"]["max_concurrent_runs"] >= 1 and "run_coordinator" not in raw
    assert config["retention"] == raw["retention"]
    assert raw["nux"] == {"enabled": False}  # no "Join the community" modal covering a fresh UI
    # loading the code location on a busy small machine can exceed Dagster's 180 s default
    assert raw["code_servers"]["local_startup_timeout"] >= 300
    if flavour == "dagster.yaml":
        assert "storage" not in raw
    else:
        assert raw["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}
    # both flavours agree on everything but the storage
    other = yaml.safe_load((PROJECT / "dagster" / "dagster.yaml").read_text())
    assert {k: v for k, v in raw.items() if k != "storage"} == other


def test_the_ui_shows_no_community_modal(instance: DagsterInstance) -> None:
    """The instance Dagster builds from dagster.yaml turns the new-user modal off (the
    webserver's ``shouldShowNux`` asks ``instance.nux_enabled``)."""
    assert instance.nux_enabled is False


def test_tick_retention_reaches_the_daemon_as_configured(instance: DagsterInstance) -> None:
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import TickStatus

    raw = yaml.safe_load((PROJECT / "dagster" / "dagster.yaml").read_text())["retention"]
    sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
    assert {s.value.lower(): d for s, d in sensor.items()} == raw["sensor"]["purge_after_days"]
    schedule = instance.get_tick_retention_settings(InstigatorType.SCHEDULE)
    days = raw["schedule"]["purge_after_days"]
    expected = days if isinstance(days, dict) else dict.fromkeys(("started", "skipped", "success", "failure"), days)
    assert {s.value.lower(): d for s, d in schedule.items()} == expected
    assert all(d > 0 for d in [*sensor.values(), *schedule.values()]), "a tick status kept forever (-1)"
    assert TickStatus.SKIPPED in sensor


def test_the_run_queue_allows_each_shard_its_run_and_one_successor(instance: DagsterInstance) -> None:
    """The instance's run queue, as Dagster reads it from the `concurrency:` settings of
    dagster.yaml (dagster.postgres.yaml agrees, see above): per unique wa/shard value two
    processing runs (a run and its rollover successor), a third waits; another shard is not
    held up by it; the other queues keep their limits."""
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    queue = instance.get_concurrency_config().run_queue_config
    assert instance.run_coordinator.dequeue_interval_seconds == 1

    def run(**tags: str) -> DagsterRun:
        return DagsterRun(job_name="process_webhooks", run_id=str(uuid.uuid4()), tags={"wa/queue": "processing", **tags})

    counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [run(**{"wa/shard": "0"}), run(**{"wa/shard": "0"})])
    assert counter.is_blocked(run(**{"wa/shard": "0"}))  # shard 0 has its run and its successor
    assert not counter.is_blocked(run(**{"wa/shard": "1"}))
    dashboards = DagsterRun(job_name="refresh_dashboards", run_id=str(uuid.uuid4()), tags={"wa/queue": "dashboards"})
    assert TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [dashboards]).is_blocked(dashboards)
    # room for the processing runs of two shards with their rollovers and today's other queues
    assert queue.max_concurrent_runs >= 2 * 2 + 4


def test_the_always_running_delivery_run_never_holds_an_operator_jobs_slot(instance: DagsterInstance) -> None:
    """deliver_events lives for an hour (EVENT_PUSH_KEEP_ALIVE): with it (and its rollover
    successor) running, a replay, a pause or a purge still starts at once."""
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    from wa_pipelines.definitions import defs

    queue = instance.get_concurrency_config().run_queue_config
    tags = lambda name: {k: v for k, v in defs.get_job_def(name).tags.items() if k == "wa/queue"}  # noqa: E731
    delivery = [DagsterRun(job_name="deliver_events", run_id=str(uuid.uuid4()), tags=tags("deliver_events")) for _ in range(2)]
    counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, delivery)
    for name in ("replay_dead_letters", "pause_processing", "resume_processing", "purge_webhook_bodies", "assign_waba", "replay_events"):
        assert not counter.is_blocked(DagsterRun(job_name=name, run_id=str(uuid.uuid4()), tags=tags(name))), name
    assert counter.is_blocked(DagsterRun(job_name="deliver_events", run_id=str(uuid.uuid4()), tags=tags("deliver_events")))  # a third waits


@pytest.mark.parametrize("example", ["dagster.k8s.yaml", "dagster.docker.yaml"])
def test_deployment_examples_are_valid_and_keep_the_queues(example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/deploy.md's instance files: Dagster accepts every key; they use the current
    `concurrency:` settings with the per-shard limit; the other queues and the daemon
    settings are those of dagster.postgres.yaml; room for each shard's run and successor."""
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/unused")
    shutil.copy(PROJECT / "dagster" / "examples" / example, tmp_path / "dagster.yaml")
    dagster_instance_config(str(tmp_path))  # raises on any key Dagster does not know
    raw = yaml.safe_load((PROJECT / "dagster" / "examples" / example).read_text())
    ours = yaml.safe_load((PROJECT / "dagster" / "dagster.postgres.yaml").read_text())
    assert "run_coordinator" not in raw and raw["run_queue"] == ours["run_queue"]
    limits = {(lim["key"], str(lim.get("value"))): lim["limit"] for lim in raw["concurrency"]["runs"]["tag_concurrency_limits"]}
    our_limits = {(lim["key"], str(lim.get("value"))): lim["limit"] for lim in ours["concurrency"]["runs"]["tag_concurrency_limits"]}
    processing = limits.pop(("wa/queue", "processing"))
    our_limits.pop(("wa/queue", "processing"))
    assert limits == our_limits  # per shard 2; dashboards, maintenance, onboarding as today
    assert raw["concurrency"]["runs"]["max_concurrent_runs"] >= processing + 4
    for key in ("sensors", "schedules", "retention", "python_logs", "storage", "nux"):
        assert raw[key] == ours[key], key
